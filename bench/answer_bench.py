"""In-process answer time for new designs (issue 28): ``python -m bench answer``.

A fresh 32-layer Llama-3-8B-like design per call (the d_ffn differs, so nothing is reused between calls), answered by
``predictor.answer.Answerer`` on the engine fitted on the bundled data, in the compact (default) and full views, and a
batch of 64 new designs; beside each, in the same run, the bare cost of writing the same bytes from their parsed JSON
(``json.dumps``: what any answer costs at least). Target: the compact answer <= 1.0 ms median.
"""

from __future__ import annotations

import json
import statistics
import time

BASE = {"name": "llama3-8b-like", "n_layers": 32, "d_model": 4096, "n_heads": 32, "n_kv_heads": 8, "d_ffn": 14336,
        "ffn_type": "glu", "activation": "silu", "norm_type": "rmsnorm", "precision_target": "fp8_training"}
REPEATS = 60
TARGET_MS = 1.0


def main() -> None:
    from predictor import knowledge as kbm
    from predictor.answer import Answerer
    from predictor.architecture import Architecture
    from registry.reference import reference_engine

    answerer = Answerer(reference_engine(), kbm.load_kb())
    counter = iter(range(1, 10**6))

    def design() -> Architecture:
        return Architecture(**{**BASE, "name": f"new-{(i := next(counter))}", "d_ffn": BASE["d_ffn"] + 64 * i})

    answerer.answers_json([design()])  # imports and first-call work out of the timing
    rows = []
    for view in ("compact", "full"):
        times, bare = [], []
        for _ in range(REPEATS):
            arch = design()
            t0 = time.perf_counter()
            raw = answerer.answers_json([arch], view=view)[0]
            times.append(time.perf_counter() - t0)
            parsed = json.loads(raw)
            t0 = time.perf_counter()
            json.dumps(parsed)
            bare.append(time.perf_counter() - t0)
        rows.append((f"one new 32-layer design, {view}", statistics.median(times) * 1e3, statistics.median(bare) * 1e3, len(raw)))
    archs = [design() for _ in range(64)]
    t0 = time.perf_counter()
    raws = answerer.answers_json(archs)
    batch = time.perf_counter() - t0
    parsed = [json.loads(r) for r in raws]
    t0 = time.perf_counter()
    for p in parsed:
        json.dumps(p)
    rows.append(("64 new designs in one call, compact", batch * 1e3, (time.perf_counter() - t0) * 1e3, sum(map(len, raws))))
    head = f"{'measurement':44} {'answer ms':>10} {'bare ms':>8} {'x bare':>7} {'bytes':>9}"
    print(head)
    print("-" * len(head))
    for name, ms, bare_ms, size in rows:
        print(f"{name:44} {ms:10.2f} {bare_ms:8.3f} {ms / bare_ms:7.1f} {size:9,}")
    ms = rows[0][1]
    print(f"bare: json.dumps of the same answer's parsed JSON, same run; median of {REPEATS}")
    print(f"compact answer of a new 32-layer design: {ms:.2f} ms (target <= {TARGET_MS}): {'PASS' if ms <= TARGET_MS else 'MISS'}")


if __name__ == "__main__":
    main()
