"""Fit every (model, layer, metric) series of a stats table, in parallel across cores.

A bad series never stops the batch: it gets a status row (too_short, flat, missing, ...).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from fitting.estimator import EmergenceCurveFitter
from maforecast.tables import METRICS, FitRow, conform, empty, stats_with_ratio

Series = tuple[str, int, str, np.ndarray, np.ndarray]


def iter_series(stats: pd.DataFrame, metrics: tuple[str, ...] = METRICS) -> Iterator[Series]:
    """(model, layer, metric, steps, values) per series, from a stats table (rows without a step skipped)."""
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown metric(s) {sorted(unknown)}; choose from {list(METRICS)}")
    timed = stats[stats["step"].notna()]
    if not len(timed):
        return
    agg = stats_with_ratio(timed)
    for (model, layer), g in agg.groupby(["model", "layer"], sort=True):
        t = g["step"].to_numpy(dtype=float)
        for metric in metrics:
            yield str(model), int(layer), metric, t, g[metric].to_numpy(dtype=float)


def fit_one(series: Series, t_end: float | None = None, params: dict | None = None) -> dict:
    """Fit one series and return a FitRow-shaped dict; never raises."""
    model, layer, metric, t, y = series
    row = {"model": model, "layer": layer, "metric": metric}
    try:
        fitter = EmergenceCurveFitter(t_end=t_end, **(params or {})).fit(t, y)
        row.update(fitter.summary())
    except Exception as exc:  # a batch must survive any single series
        row.update(curve="none", status="failed", n_points=int(np.isfinite(y).sum()), message=f"{type(exc).__name__}: {exc}")
    return row


def _fit_chunk(args: tuple[list[Series], float | None, dict | None]) -> list[dict]:
    chunk, t_end, params = args
    return [fit_one(s, t_end, params) for s in chunk]


def fit_table(
    stats: pd.DataFrame,
    metrics: tuple[str, ...] = METRICS,
    n_jobs: int | None = None,
    t_end: float | None = None,
    fitter_params: dict | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Fit all series of ``stats``; returns a table conforming to ``FitRow``.

    ``n_jobs``: worker processes (default: all cores; 1 = in process). ``t_end``: planned end
    of training for derived quantities (default: each series' last step).
    """
    series = list(iter_series(stats, tuple(metrics)))
    if not series:
        return empty(FitRow)
    n_jobs = n_jobs or os.cpu_count() or 1
    rows: list[dict] = []
    with tqdm(total=len(series), desc="fitting", unit="series", disable=not progress) as bar:
        if n_jobs == 1 or len(series) < 8:
            for s in series:
                rows.append(fit_one(s, t_end, fitter_params))
                bar.update()
        else:
            size = max(1, min(64, len(series) // (n_jobs * 4)))
            chunks = [series[i : i + size] for i in range(0, len(series), size)]
            with ProcessPoolExecutor(max_workers=n_jobs) as pool:
                for out in pool.map(_fit_chunk, [(c, t_end, fitter_params) for c in chunks]):
                    rows.extend(out)
                    bar.update(len(out))
    return conform(pd.DataFrame(rows), FitRow)


def summarize(fits: pd.DataFrame) -> pd.DataFrame:
    """Per (model, metric): series count, mean/median R^2 of usable fits, ill-conditioned share."""
    def agg(g: pd.DataFrame) -> pd.Series:
        usable = g[g["status"].isin(["ok", "ill_conditioned"])]
        return pd.Series(
            {
                "n_series": len(g),
                "n_fitted": len(usable),
                "mean_r2": usable["r2"].mean(),
                "median_r2": usable["r2"].median(),
                "ill_share": (g["status"] == "ill_conditioned").sum() / max(len(usable), 1),
                "statuses": ", ".join(f"{k}={v}" for k, v in g["status"].value_counts().items()),
            }
        )

    return fits.groupby(["model", "metric"]).apply(agg, include_groups=False).reset_index()
