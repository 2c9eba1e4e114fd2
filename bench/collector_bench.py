"""Collector benchmark: hooks + in-hook reduction vs a plain forward pass, and memory vs series length.

Run: ``python -m bench.collector_bench [--checkpoints 4] [--repeats 3] [--quick]``

Model: a GPT-NeoX of about 20M parameters (6 layers, d_model 384, 6 heads, FFN 1536, vocab
12288), random init, saved as N checkpoints (different seeds) in a temporary folder; CPU, float32.
Probe: 10 windows of 256 tokens (the collector's defaults), batch size 8.

Part 1, per checkpoint (same loaded model, same token ids, same batches, medians of interleaved
repeats): wall time and peak RSS increase of

- ``plain``: the base model forward (what the collector runs: decoder stack + final norm, no LM head),
- ``plain+lm_head``: the full ``AutoModelForCausalLM`` forward a user would write,
- ``collector``: ``collector.hooks.measure`` (forward with the reduction hooks).

Peak memory of a block = peak RSS (sampled every 2 ms) minus RSS at its start, after ``gc`` and
``malloc_trim`` so freed memory is not silently reused. The machine may be shared: timings are the
minimum of interleaved repeats, and CPU time (``time.process_time``) is reported next to wall time.

Overhead = collector / plain - 1 (target <= 15 %).

Part 2: ``collect_series`` (load from disk, measure, upsert the table; MLflow off) over the first
k = 1, 2, ..., N checkpoints, each in a fresh subprocess: wall time per checkpoint and the peak RSS
of the whole process (ru_maxrss), which should not grow with k.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

CONFIG = {
    "vocab_size": 12288,
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 6,
    "intermediate_size": 1536,
    "max_position_embeddings": 512,
    "rotary_pct": 0.25,
}
N_SEQ, SEQ_LEN, BATCH = 10, 256, 8


def _malloc_trim() -> None:
    """Return freed heap to the OS (glibc) so a block's peak RSS increase is not hidden by reuse."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakRSS:
    """Samples this process's RSS in a thread; ``peak - start`` is the extra memory of a block."""

    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.proc = psutil.Process()

    def __enter__(self):
        gc.collect()
        _malloc_trim()
        self.start = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def extra_mib(self) -> float:
        return (self.peak - self.start) / 2**20


def make_checkpoints(root: Path, n: int) -> list[Path]:
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    paths = []
    for i in range(n):
        torch.manual_seed(i)
        model = GPTNeoXForCausalLM(GPTNeoXConfig(**CONFIG))
        path = root / "bench-neox" / f"step{i * 1000}"
        model.save_pretrained(path)
        paths.append(path)
    return paths


def n_params(path: Path) -> int:
    from transformers import AutoModelForCausalLM

    return sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(path).parameters())


def part1(paths: list[Path], repeats: int) -> list[dict]:
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    from collector.hooks import measure

    ids = torch.from_numpy(np.random.default_rng(0).integers(0, CONFIG["vocab_size"], (N_SEQ, SEQ_LEN)))

    def plain(model, head: bool):
        fwd = model if head else model.base_model
        with torch.inference_mode():
            for start in range(0, N_SEQ, BATCH):
                fwd(input_ids=ids[start : start + BATCH], use_cache=False)

    rows = []
    for path in paths:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        runs = {
            "plain": lambda m=model: plain(m, False),
            "plain+lm_head": lambda m=model: plain(m, True),
            "collector": lambda m=model: measure(m, ids, batch_size=BATCH),
        }
        for fn in runs.values():  # warm-up
            fn()
        times: dict[str, list[float]] = {k: [] for k in runs}
        cpu: dict[str, list[float]] = {k: [] for k in runs}
        mem: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(repeats):
            for name, fn in runs.items():  # interleaved so load from other processes hits all alike
                with PeakRSS() as m:
                    t, c = time.perf_counter(), time.process_time()
                    fn()
                    times[name].append(time.perf_counter() - t)
                    cpu[name].append(time.process_time() - c)
                mem[name].append(m.extra_mib)
        row = {"checkpoint": path.name}
        for name in runs:
            row[f"{name}_s"] = min(times[name])  # min of repeats: least disturbed by other load
            row[f"{name}_cpu_s"] = min(cpu[name])
            row[f"{name}_mib"] = statistics.median(mem[name])
        row["overhead_pct"] = 100 * (row["collector_s"] / row["plain_s"] - 1)
        row["overhead_cpu_pct"] = 100 * (row["collector_cpu_s"] / row["plain_cpu_s"] - 1)
        rows.append(row)
        del model
    return rows


_CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from collector.probe import ProbeSet
from collector.run import CollectOptions, collect_series
from collector.sources import Checkpoint
import numpy as np
paths = {paths!r}
ids = np.random.default_rng(0).integers(0, {vocab}, ({n_seq}, {seq_len}))
cps = [Checkpoint("bench-neox", p.rsplit("/", 1)[-1], int(p.rsplit("step", 1)[-1]), p, False) for p in paths]
t = time.perf_counter()
collect_series(cps, ProbeSet(ids, "bench"), out={out!r}, options=CollectOptions(batch_size={batch}), track=False, progress=False)
print(json.dumps({{"seconds": time.perf_counter() - t, "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def part2(paths: list[Path], tmp: Path) -> list[dict]:
    root = str(Path(__file__).resolve().parent.parent)
    rows = []
    ks = sorted({1, 2, len(paths)} | ({4} if len(paths) >= 4 else set()))
    for k in ks:
        out = tmp / f"series-{k}.parquet"
        code = _CHILD.format(
            root=root, paths=[str(p) for p in paths[:k]], vocab=CONFIG["vocab_size"], n_seq=N_SEQ,
            seq_len=SEQ_LEN, out=str(out), batch=BATCH,
        )
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        stats = json.loads(res.stdout.strip().splitlines()[-1])
        rows.append({"checkpoints": k, "s_per_checkpoint": stats["seconds"] / k, "peak_rss_mib": stats["maxrss_mib"]})
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="2 checkpoints, 1 repeat")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: stable timings on a shared machine)")
    ap.add_argument("--json", type=Path, default=Path("bench/results/collector_bench.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.checkpoints, args.repeats = 2, 1
    import torch

    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # for the part-2 subprocesses
    with tempfile.TemporaryDirectory(prefix="collector-bench-") as tmp:
        tmp = Path(tmp)
        paths = make_checkpoints(tmp, args.checkpoints)
        params = n_params(paths[0])
        print(f"GPT-NeoX {params / 1e6:.1f}M params, {CONFIG['num_hidden_layers']} layers, d_model {CONFIG['hidden_size']}; "
              f"probe {N_SEQ} x {SEQ_LEN} tokens, batch {BATCH}; CPU float32, torch threads {torch.get_num_threads()}, "
              f"{os.cpu_count()} cores")
        p1 = part1(paths, args.repeats)
        print(f"\nPart 1: per checkpoint, same model and probe (wall/CPU: min of {args.repeats} interleaved repeats; "
              "MiB: peak RSS increase, median)")
        print(f"{'checkpoint':>10} | {'plain s':>8} | {'+lm_head s':>10} | {'collector s':>11} | {'overhead':>8} | "
              f"{'CPU overhead':>12} | {'plain MiB':>9} | {'+lm_head MiB':>12} | {'collector MiB':>13}")
        for r in p1:
            print(f"{r['checkpoint']:>10} | {r['plain_s']:8.3f} | {r['plain+lm_head_s']:10.3f} | {r['collector_s']:11.3f} | "
                  f"{r['overhead_pct']:7.1f}% | {r['overhead_cpu_pct']:11.1f}% | {r['plain_mib']:9.1f} | "
                  f"{r['plain+lm_head_mib']:12.1f} | {r['collector_mib']:13.1f}")
        overall = 100 * (sum(r["collector_s"] for r in p1) / sum(r["plain_s"] for r in p1) - 1)
        overall_cpu = 100 * (sum(r["collector_cpu_s"] for r in p1) / sum(r["plain_cpu_s"] for r in p1) - 1)
        print(f"overall overhead vs plain base forward: wall {overall:.1f}%, CPU {overall_cpu:.1f}% (target <= 15%)")
        p2 = part2(paths, tmp)
        print("\nPart 2: collect_series (load + measure + table upsert, MLflow off), fresh process per row")
        print(f"{'checkpoints':>11} | {'s / checkpoint':>14} | {'peak RSS MiB':>12}")
        for r in p2:
            print(f"{r['checkpoints']:>11} | {r['s_per_checkpoint']:14.3f} | {r['peak_rss_mib']:12.1f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"params": params, "config": CONFIG, "part1": p1, "overall_overhead_pct": overall,
                                      "overall_overhead_cpu_pct": overall_cpu, "threads": args.threads, "part2": p2}, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
