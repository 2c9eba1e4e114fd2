"""Fitting benchmark: fit quality on the bundled Pythia data vs the paper, and raw speed.

``python -m bench fitting`` prints (1) per (model, metric): series, fitted, mean and median R^2,
share flagged ill-conditioned, wall time, and the paper's per-size R^2 (Table 5 of arXiv
2508.03616); (2) the time to fit 1,000 synthetic 30-point series on all cores.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd

from collector.reference import load_pythia_stats
from fitting.batch import fit_table, summarize
from fitting.curves import eq9
from maforecast.tables import StatsRow, conform

PAPER_R2 = {"14m": 0.995, "70m": 0.983, "160m": 0.807, "410m": 0.983, "1b": 0.992, "1.4b": 0.967, "2.8b": 0.993,
            "6.9b": 0.995, "12b": 0.966}
STEPS = np.unique(np.concatenate([[0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512], np.linspace(1000, 143000, 19)]))


def synthetic_stats(n: int = 1000, seed: int = 0) -> pd.DataFrame:
    """n series of 30 points: half early peaks, half log increases, random parameters, 1% noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        if i % 2:
            p = dict(A=rng.uniform(20, 200), lam=rng.uniform(0.02, 0.1), gamma=rng.uniform(1e-3, 5e-3), t0=1.0,
                     K=rng.uniform(5, 50))
        else:
            p = dict(A=rng.uniform(10, 60), lam=rng.uniform(1e-4, 5e-4), gamma=rng.uniform(5e-4, 2e-3), t0=1.0,
                     K=rng.uniform(1, 10))
        y = eq9(STEPS, **p)
        y = y + 0.01 * np.abs(y).mean() * rng.standard_normal(y.size)
        rows.append(pd.DataFrame({"model": f"syn{i // 10}", "step": STEPS.astype(int), "sequence": 0, "layer": i % 10,
                                  "top1": y, "median": 1.0, "source": "synthetic"}))
    return conform(pd.concat(rows, ignore_index=True), StatsRow)


def main() -> None:
    stats = load_pythia_stats()
    start = time.perf_counter()
    fits = fit_table(stats, n_jobs=os.cpu_count(), progress=False)
    wall = time.perf_counter() - start
    table = summarize(fits).drop(columns="statuses")
    table["paper_r2"] = table.apply(
        lambda r: PAPER_R2.get(r["model"].removeprefix("pythia-")) if r["metric"] == "ratio" else None, axis=1
    )
    print(f"bundled Pythia data: {len(fits)} series in {wall:.1f} s on {os.cpu_count()} cores")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    ratio = fits[(fits.metric == "ratio") & fits.status.isin(["ok", "ill_conditioned"])]
    print(f"ratio series: {len(ratio)} fitted, median R^2 {ratio.r2.median():.4f} (goal >= 0.98), "
          f"mean R^2 {ratio.r2.mean():.4f} (paper: 0.984 over 188 layers of 9 models)")

    syn = synthetic_stats()
    start = time.perf_counter()
    sfits = fit_table(syn, metrics=("top1",), n_jobs=os.cpu_count(), progress=False)
    wall = time.perf_counter() - start
    good = sfits.status.isin(["ok", "ill_conditioned"]).mean()
    print(f"synthetic: {len(sfits)} series x {STEPS.size} points in {wall:.2f} s on {os.cpu_count()} cores "
          f"(goal < 10 s); {good:.1%} usable, median R^2 {sfits.r2.median():.4f}")


if __name__ == "__main__":
    main()
