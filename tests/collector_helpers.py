"""Tiny real checkpoint series for the collector tests, built locally once per process.

A word-level tokenizer is trained with ``tokenizers`` on a small local text and wrapped in
``PreTrainedTokenizerFast``. GPT-NeoX and Llama models (2-3 layers, d_model 32) start from a seeded
random init and take a few AdamW steps on that text between saves, so the weights differ between
"steps". GPT-NeoX checkpoints are named ``step<N>`` with the tokenizer in each folder; Llama ones
are named ``early`` / ``late`` with the step in ``trainer_state.json`` and the tokenizer only in
the series root (its tokenizer prepends a BOS token, like Llama's).
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path

TEXT = (
    "the quick brown fox jumps over the lazy dog . a small model learns to predict the next word . "
    "massive activations appear in a few dimensions on the first token and on delimiters . "
    "we measure the largest absolute value and the median of every layer output at every step . "
    "the ratio of the largest value to the median grows during training and may decay later . "
    "numbers like 1 2 3 4 5 6 7 8 9 10 and punctuation , ; : ! ? also appear in the text . "
) * 6

PROBE_TEXT = (
    "the model reads a fixed probe text at every checkpoint so that the inputs never change . "
    "each window has the same number of tokens and no padding is needed . the first token matters . "
) * 5

NEOX_STEPS = (0, 2, 4)
LLAMA_STEPS = {"early": 0, "late": 3}


def make_tokenizer(bos: bool):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["[UNK]", "<s>", "</s>", "[PAD]"])
    tok.train_from_iterator([TEXT, PROBE_TEXT], trainer=trainer)
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", bos_token="<s>", eos_token="</s>", pad_token="[PAD]"
    )


def _train_and_save(model, tokenizer, saves: dict[str, int], root: Path, extra) -> None:
    import torch

    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    data = torch.tensor(ids[: (len(ids) // 24) * 24]).view(-1, 24)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    step = 0
    for name, target in sorted(saves.items(), key=lambda kv: kv[1]):
        while step < target:
            model.train()
            batch = data[(step * 4) % len(data) :][:4]
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            step += 1
        model.eval()
        folder = root / name
        model.save_pretrained(folder)
        extra(folder, target)


@functools.lru_cache(maxsize=1)
def build_series() -> dict[str, Path]:
    """Build (once per process) the tiny series; returns paths by name."""
    import torch
    from transformers import BertConfig, GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM

    base = Path(tempfile.mkdtemp(prefix="maforecast-collector-"))
    atexit.register(shutil.rmtree, base, True)
    tok = make_tokenizer(bos=False)
    vocab = len(tok)

    torch.manual_seed(0)
    neox_root = base / "tiny-neox"
    neox = GPTNeoXForCausalLM(
        GPTNeoXConfig(
            vocab_size=vocab, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=64, rotary_pct=0.5,
        )
    )
    _train_and_save(neox, tok, {f"step{s}": s for s in NEOX_STEPS}, neox_root, lambda f, s: tok.save_pretrained(f))

    torch.manual_seed(1)
    llama_root = base / "tiny-llama"
    llama_tok = make_tokenizer(bos=True)
    llama = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=64, max_position_embeddings=64,
        )
    )

    def trainer_state(folder: Path, step: int) -> None:
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))

    _train_and_save(llama, llama_tok, LLAMA_STEPS, llama_root, trainer_state)
    llama_tok.save_pretrained(llama_root)

    bert = base / "tiny-bert"
    BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64).save_pretrained(bert)
    tok.save_pretrained(bert)

    probe = base / "probe.txt"
    probe.write_text(PROBE_TEXT)
    return {"base": base, "neox": neox_root, "llama": llama_root, "bert": bert, "probe": probe}


LONG_STEPS = (0, 1, 2, 3, 5, 8)


@functools.lru_cache(maxsize=1)
def build_long_series() -> Path:
    """A 2-layer GPT-NeoX saved at 6 steps (enough points for the 5-parameter curve fit)."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    root = build_series()["base"] / "tiny-neox-long"
    tok = make_tokenizer(bos=False)
    torch.manual_seed(2)
    model = GPTNeoXForCausalLM(
        GPTNeoXConfig(
            vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=64,
        )
    )
    _train_and_save(model, tok, {f"step{s}": s for s in LONG_STEPS}, root, lambda f, s: tok.save_pretrained(f))
    return root
