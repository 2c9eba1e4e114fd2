"""Run artifact: held-out predictions against measurements, with 90 % intervals and the constant."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TITLES = {"peak_abs": "log10 peak |a| (largest layer)", "ratio_end": "log10 end ratio (Pythia)", "t_emerge": "log10 emergence step (Pythia)"}


def heldout_plot(evaluation):
    """One panel per target: held-out prediction (with its 90 % interval) vs measured, constant dashed."""
    d = evaluation.predictions
    targets = [t for t in TITLES if t in set(d["target"])]
    fig, axes = plt.subplots(1, len(targets), figsize=(4.4 * len(targets), 4.2), squeeze=False)
    for ax, t in zip(axes.ravel(), targets, strict=True):
        sub = d[d["target"] == t]
        for proto, s in sub.groupby("protocol"):
            ax.errorbar(s["y"], s["pred"], yerr=1.645 * s["sd"], fmt="o", ms=4, alpha=0.7, label=proto)
            ax.scatter(s["y"], s["baseline"], marker="_", s=60, color="grey")
        lo, hi = min(sub["y"].min(), sub["pred"].min()) - 0.3, max(sub["y"].max(), sub["pred"].max()) + 0.3
        ax.plot([lo, hi], [lo, hi], "k:", lw=1)
        ax.set(xlabel="measured", ylabel="held-out forecast", title=TITLES[t], xlim=(lo, hi))
        ax.legend(fontsize=7)
    fig.suptitle(f"leave one {evaluation.by} out (grey: constant baseline)")
    fig.tight_layout()
    return fig
