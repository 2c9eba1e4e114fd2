"""Make a small local checkpoint series to try ``maforecast monitor`` on (docs/NOWCAST.md, "Try it").

Trains a tiny GPT-NeoX (a real ``transformers`` class) from a seeded random init on a local text (the
project's README by default) with AdamW on the CPU, and saves it at the given steps as ``RUN_DIR/step<N>``
(weights + a word-level tokenizer in each folder, as ``maforecast collect`` reads them). Writes
``RUN_DIR/arch.json`` (the schema's architecture, training plan included) and ``RUN_DIR/probe.txt``.

    python docs/make_checkpoint_series.py runs/tiny --steps 0,25,50,100,200,300 --layers 4 --width 128
    maforecast monitor runs/tiny --arch runs/tiny/arch.json --probe runs/tiny/probe.txt --n-sequences 4 --seq-len 32

Measured on 2 CPU cores: 4 layers x width 128, 300 steps of 8 x 64 tokens: 24 s; the monitor then
reads a top-1/median ratio of ~5.5 at step 300, inside the reference prior's band. Longer runs rise
further (a 5-minute run lifts it to ~25); the massive regime (100x+) is out of CPU reach.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path


def _tokenizer(text: str):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([text], trainer=trainers.WordLevelTrainer(vocab_size=4000, special_tokens=["[UNK]", "[PAD]"]))
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--steps", default="0,25,50,100,200,300", help="save points, comma-separated (default %(default)s)")
    ap.add_argument("--lineage", default=None, help="the lineage to name in arch.json (docs/LEVEL.md: a proxy of a target)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch", type=int, default=8, help="sequences per step")
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--text", type=Path, default=Path(__file__).resolve().parent.parent / "README.md")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    steps = sorted({int(s) for s in a.steps.split(",")})
    if a.run_dir.exists() and any(a.run_dir.iterdir()):
        raise SystemExit(f"error: {a.run_dir} exists and is not empty (each run gets its own folder)")

    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    text = a.text.read_text(encoding="utf-8")
    tok = _tokenizer(text)
    ids = torch.tensor(tok(text)["input_ids"])
    n = (len(ids) // a.seq_len) * a.seq_len
    data = ids[:n].view(-1, a.seq_len)
    torch.manual_seed(a.seed)
    cfg = GPTNeoXConfig(vocab_size=len(tok), hidden_size=a.width, num_hidden_layers=a.layers, num_attention_heads=a.heads,
                        intermediate_size=4 * a.width, max_position_embeddings=max(a.seq_len, 128), rotary_pct=0.25)
    model = GPTNeoXForCausalLM(cfg)
    total = steps[-1]
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01, betas=(0.9, 0.95))
    warm = max(1, total // 100)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, total) / max(total, 1))))
    a.run_dir.mkdir(parents=True, exist_ok=True)
    t0, step = time.perf_counter(), 0
    for target in steps:
        while step < target:
            model.train()
            batch = data[torch.randint(0, len(data), (a.batch,))]
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad()
            step += 1
        model.eval()
        folder = a.run_dir / f"step{target}"
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
        print(f"step {target}: saved {folder} ({time.perf_counter() - t0:.0f} s)", flush=True)
    arch = {"name": a.run_dir.name, "n_layers": a.layers, "d_model": a.width, "n_heads": a.heads, "d_ffn": 4 * a.width,
            "ffn_type": "mlp", "activation": "gelu", "norm_type": "layernorm", "parallel_attn_mlp": True, "rotary_pct": 0.25,
            "vocab_size": len(tok), "seq_len": a.seq_len, "learning_rate": a.lr, "lr_schedule": "cosine",
            "warmup_frac": warm / max(total, 1), "batch_tokens": a.batch * a.seq_len, "total_steps": max(total, 1),
            "weight_decay": 0.01, "optimizer": "adamw", "precision": "fp32", **({"lineage": a.lineage} if a.lineage else {})}
    (a.run_dir / "arch.json").write_text(json.dumps(arch, indent=1))
    (a.run_dir / "probe.txt").write_text(text[: 20 * a.seq_len * 8])
    print(f"wrote {a.run_dir / 'arch.json'} and {a.run_dir / 'probe.txt'}; next: maforecast monitor {a.run_dir} "
          f"--arch {a.run_dir / 'arch.json'} --probe {a.run_dir / 'probe.txt'}")


if __name__ == "__main__":
    main()
