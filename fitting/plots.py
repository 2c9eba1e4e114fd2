"""Plots of measured points and fitted curves, one figure per (model, metric), a panel per layer."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from fitting.curves import eq9, step1  # noqa: E402


def curve_values(fit: pd.Series, t: np.ndarray) -> np.ndarray | None:
    """The selected fitted curve of a fits-table row at steps t (None when there is no curve)."""
    if fit["curve"] == "eq9" and pd.notna(fit["A"]):
        return eq9(t, fit["A"], fit["lam"], fit["gamma"], fit["t0"], fit["K"])
    if fit["curve"] == "step1" and pd.notna(fit["tau"]):
        return step1(t, fit["step1_K"], fit["tau"], fit["step1_c"])
    return None


def plot_model(series: pd.DataFrame, fits: pd.DataFrame, model: str, metric: str):
    """``series``: aggregated stats (model, step, layer, <metric>); ``fits``: the fits table."""
    data = series[series["model"] == model]
    f = fits[(fits["model"] == model) & (fits["metric"] == metric)].set_index("layer")
    layers = sorted(data["layer"].unique())
    n = len(layers)
    cols = min(6, max(1, n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.2 * rows), squeeze=False, sharex=True)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    for ax, layer in zip(axes.ravel(), layers, strict=False):
        d = data[data["layer"] == layer].sort_values("step")
        ax.plot(d["step"] + 1, d[metric], "o", ms=3, color="black", label="measured")
        if layer in f.index:
            row = f.loc[layer]
            t = np.geomspace(1, max(float(d["step"].max()), 2.0) + 1, 200) - 1
            y = curve_values(row, t)
            if y is not None:
                color = "tab:blue" if row["status"] == "ok" else "tab:orange"
                ax.plot(t + 1, y, color=color, lw=1.3, label=f"{row['curve']} ({row['status']})")
            r2 = row["r2"]
            ax.set_title(f"L{layer}  R²={r2:.3f}" if pd.notna(r2) else f"L{layer}  {row['status']}", fontsize=8)
        ax.set_xscale("log")
        ax.tick_params(labelsize=6)
    fig.suptitle(f"{model}: {metric} (x = step + 1, log scale; blue ok, orange ill-conditioned)", fontsize=9)
    fig.tight_layout()
    return fig


def save_model_plots(stats: pd.DataFrame, fits: pd.DataFrame, out_dir) -> list:
    """Write one PNG per (model, metric) that has at least one fitted curve; returns the paths."""
    from pathlib import Path

    # pandas loads only when plots are drawn
    from maforecast.tables import stats_with_ratio

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    series = stats_with_ratio(stats[stats["step"].notna()])
    paths = []
    for (model, metric), g in fits.groupby(["model", "metric"]):
        if not g["curve"].isin(["eq9", "step1"]).any():
            continue
        fig = plot_model(series, fits, model, metric)
        path = out_dir / f"{model}_{metric}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths
