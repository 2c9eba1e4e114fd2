"""Fit every (model, layer, metric) series of a stats table, in parallel across cores.

A bad series never stops the batch: it gets a status row (too_short, flat, missing, ...).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

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


def _series_key(s: Series, t_end: float | None, params: dict | None) -> str:
    """Identity of one fit job: the series' data and the fit settings (changed data refits)."""
    model, layer, metric, t, y = s
    h = hashlib.sha256(f"{model}|{layer}|{metric}|{t_end}|{sorted((params or {}).items())}".encode())
    h.update(np.ascontiguousarray(t, dtype=float).tobytes())
    h.update(np.ascontiguousarray(y, dtype=float).tobytes())
    return h.hexdigest()[:20]


def _load_parts(resume_dir: Path) -> dict[str, dict]:
    done: dict[str, dict] = {}
    for part in sorted(resume_dir.glob("part-*.parquet")):
        try:
            frame = pd.read_parquet(part)
        except Exception:  # a part cut short by a crash is simply redone
            continue
        for row in frame.to_dict("records"):
            done[row.pop("_key")] = row
    return done


def _save_part(resume_dir: Path, keys: list[str], rows: list[dict]) -> None:
    frame = pd.DataFrame(rows)
    frame["_key"] = keys
    name = f"part-{hashlib.sha256(''.join(keys).encode()).hexdigest()[:16]}.parquet"
    tmp = resume_dir / f".{name}.tmp"
    frame.to_parquet(tmp, index=False)
    tmp.replace(resume_dir / name)  # atomic: a part is either complete or absent


def fit_table(
    stats: pd.DataFrame,
    metrics: tuple[str, ...] = METRICS,
    n_jobs: int | None = None,
    t_end: float | None = None,
    fitter_params: dict | None = None,
    progress: bool = True,
    resume_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Fit all series of ``stats``; returns a table conforming to ``FitRow``.

    ``n_jobs``: worker processes (default: all cores; 1 = in process). ``t_end``: planned end
    of training for derived quantities (default: each series' last step). ``resume_dir``:
    finished chunks are saved there as they complete, so a killed batch resumes where it
    stopped (nothing refitted, nothing duplicated); the caller removes it when done.
    """
    series = list(iter_series(stats, tuple(metrics)))
    if not series:
        return empty(FitRow)
    keys = [_series_key(s, t_end, fitter_params) for s in series]
    done: dict[str, dict] = {}
    if resume_dir is not None:
        resume_dir = Path(resume_dir)
        resume_dir.mkdir(parents=True, exist_ok=True)
        done = _load_parts(resume_dir)
    todo = [i for i, k in enumerate(keys) if k not in done]
    n_jobs = n_jobs or os.cpu_count() or 1
    size = max(1, min(64, len(todo) // (n_jobs * 4))) if todo else 1
    chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
    with tqdm(total=len(series), initial=len(series) - len(todo), desc="fitting", unit="series",
              disable=None if progress else True) as bar:

        def collect(chunk: list[int], rows: list[dict]) -> None:
            for i, row in zip(chunk, rows, strict=True):
                done[keys[i]] = row
            if resume_dir is not None:
                _save_part(resume_dir, [keys[i] for i in chunk], rows)
            bar.update(len(rows))

        jobs = [([series[i] for i in c], t_end, fitter_params) for c in chunks]
        if n_jobs == 1 or len(todo) < 8:
            for chunk, job in zip(chunks, jobs, strict=True):
                collect(chunk, _fit_chunk(job))
        elif jobs:
            with ProcessPoolExecutor(max_workers=n_jobs) as pool:
                for chunk, rows in zip(chunks, pool.map(_fit_chunk, jobs), strict=True):
                    collect(chunk, rows)
    return conform(pd.DataFrame([done[k] for k in keys]), FitRow)


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
