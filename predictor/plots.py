"""Run artifacts: predicted vs measured per target (held-out), and held-out model curves."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.interpolate import PchipInterpolator  # noqa: E402

from predictor.dataset import CANONICAL_STEPS  # noqa: E402


def scatter_plot(bundle):
    """Nested leave-one-model-out predictions vs measured values, one panel per target."""
    items = [(t, tm) for t, tm in bundle.targets.items() if tm.oof is not None and tm.oof["yhat"].notna().any()]
    if not items:
        return None
    n = len(items)
    cols = 5
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for ax, (t, tm) in zip(axes.ravel(), items, strict=False):
        o = tm.oof.dropna()
        for m, sub in o.groupby("model"):
            ax.scatter(sub["y"], sub["yhat"], s=8, label=m)
        lo, hi = float(min(o["y"].min(), o["yhat"].min())), float(max(o["y"].max(), o["yhat"].max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        r2 = tm.metrics.get("lomo_r2", float("nan"))
        ax.set_title(f"{t} ({tm.learner}) LOMO R2 {r2:.2f}", fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=5)
    fig.supxlabel("measured (from fitted curve / observation)")
    fig.supylabel("predicted, model held out")
    fig.tight_layout()
    return fig


def curve_plot(bundle, measured: pd.DataFrame | None):
    """Held-out reconstructed ratio trajectories vs measured points, per trajectory model."""
    canon = [(s, f"log_ratio_s{s}") for s in CANONICAL_STEPS if f"log_ratio_s{s}" in bundle.targets]
    if measured is None or not len(measured) or len(canon) < 2:
        return None
    models = sorted(set(measured["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.4), squeeze=False)
    for ax, model in zip(axes.ravel(), models, strict=True):
        sub = measured[measured["model"] == model]
        layers = sorted(sub["layer"].unique())
        cmap = plt.get_cmap("viridis")
        for i, layer in enumerate(layers):
            color = cmap(i / max(1, len(layers) - 1))
            m = sub[sub["layer"] == layer]
            ax.scatter(m["step"] + 1, m["ratio"], s=8, color=color)
            knots = []
            for s, c in canon:
                o = bundle.targets[c].oof
                v = o[(o["model"] == model) & (o["layer"] == layer)]["yhat"]
                if len(v) and np.isfinite(v.iloc[0]):
                    knots.append((s, float(v.iloc[0])))
            if len(knots) >= 2:
                u = np.log10(1 + np.array([k[0] for k in knots], float))
                f = PchipInterpolator(u, [k[1] for k in knots])
                grid = np.geomspace(1, knots[-1][0], 100)
                ax.plot(grid + 1, 10 ** f(np.log10(1 + grid)), color=color, lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{model} (held out)", fontsize=9)
        ax.set_xlabel("step + 1")
    axes.ravel()[0].set_ylabel("ratio top1/median")
    fig.tight_layout()
    return fig
