"""Answer time of this code against another commit's, paired: ``python -m bench.paired_answers --old REF``.

On a shared machine whose speed drifts by up to 2x within minutes, two runs one after the other do not compare code
versions. Here two persistent processes, one on this tree and one on a ``git worktree`` of ``REF``, answer the same
new designs in turn, one answer each (which goes first alternates), so both see the same machine speed; the table
gives each side's median and the median of the per-pair ratios new/old. Designs: a 32-layer Llama-3-8B-like design
(compact and full view), the service bench's 8-31-layer designs, and batches of 64 of them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("compact", "full", "variant", "batch64")


def serve() -> None:
    """The worker: answers ``KIND I`` lines from stdin with ``[wall s, cpu s]`` lines (the tree is the current directory)."""
    import gc
    import time

    from bench.answer_bench import BASE
    from bench.service_bench import _variant
    from predictor import knowledge as kbm
    from predictor.answer import Answerer
    from predictor.architecture import Architecture
    from registry.reference import reference_engine

    answerer = Answerer(reference_engine(), kbm.load_kb())
    answerer.answers_json([Architecture(**BASE)], view="full")  # imports and first-call work out of the timing
    gc.collect()
    gc.freeze()  # as the service does after loading
    print("ready", flush=True)
    for line in sys.stdin:
        kind, i = line.split()
        n = int(i)
        if kind in ("compact", "full"):
            archs = [Architecture(**{**BASE, "name": f"new-{n}", "d_ffn": BASE["d_ffn"] + 64 * n})]
        else:
            archs = [Architecture(**_variant(100_000 + 100 * n + k)) for k in range(64 if kind == "batch64" else 1)]
        t0, c0 = time.perf_counter(), time.process_time()
        answerer.answers_json(archs, view="full" if kind == "full" else None)
        print(json.dumps([time.perf_counter() - t0, time.process_time() - c0]), flush=True)


def run(old: str, pairs: int) -> dict[str, tuple[float, float, float]]:
    """Per kind: (old median ms, new median ms, median of the paired ratios new/old)."""
    reps = {"compact": pairs, "full": max(pairs // 2, 1), "variant": pairs, "batch64": max(pairs // 15, 1)}
    with tempfile.TemporaryDirectory(prefix="maforecast-paired-") as tmp:
        tree = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), old], cwd=ROOT, check=True)
        procs = {}
        try:
            for side, where in (("old", tree), ("new", ROOT)):
                # this file runs in both trees (the old one may not have it); the tree's own code is imported
                procs[side] = subprocess.Popen(
                    [sys.executable, __file__, "--serve"], cwd=where, text=True,
                    env={**os.environ, "PYTHONPATH": str(where)}, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            for side, p in procs.items():
                if p.stdout.readline().strip() != "ready":
                    raise SystemExit(f"the {side} worker did not start (see its error above)")
            times: dict[tuple[str, str], list[float]] = {(s, k): [] for s in procs for k in KINDS}
            n = 0
            for kind in KINDS:
                for r in range(reps[kind]):
                    n += 1
                    for side in ("old", "new") if r % 2 == 0 else ("new", "old"):
                        procs[side].stdin.write(f"{kind} {n}\n")
                        procs[side].stdin.flush()
                        times[side, kind].append(json.loads(procs[side].stdout.readline())[0])
        finally:
            for p in procs.values():
                p.stdin.close()
                p.wait(timeout=60)
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    return {k: (statistics.median(times["old", k]) * 1e3, statistics.median(times["new", k]) * 1e3,
                statistics.median(b / a for a, b in zip(times["old", k], times["new", k], strict=True))) for k in KINDS}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", default="HEAD~1", help="the commit to compare with (default HEAD~1)")
    ap.add_argument("--pairs", type=int, default=120, help="pairs of single answers per design kind")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve()
        return 0
    rows = run(args.old, args.pairs)
    head = f"{'answer (median ms)':34} {'old':>9} {'new':>9} {'new/old (paired)':>17}"
    print(f"old = {args.old}, new = this tree; {args.pairs} pairs of single answers, alternating which goes first")
    print(head)
    print("-" * len(head))
    names = {"compact": "new 32-layer design, compact", "full": "new 32-layer design, full",
             "variant": "service bench design (8-31 layers)", "batch64": "64 new designs in one call"}
    for kind, (o, n, ratio) in rows.items():
        print(f"{names[kind]:34} {o:9.2f} {n:9.2f} {ratio:17.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
