"""PNG of a forecast: per-layer ratio curves with intervals, predicted peak |a|, precision limits.

Two panels: left, the predicted ratio top1/median over training per layer (lines coloured by depth,
shaded intervals for massive layers) with the INT8 (127), BF16 (256) and FP16 swamping (2048)
ratio limits; right, each layer's predicted peak |a| with its interval against the FP8 E4M3 (448),
FP8 E5M2 (57344) and FP16 (65504) maxima and the massive threshold (100).
"""

from __future__ import annotations

import io
import threading

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from predictor import precision as prec  # noqa: E402
from predictor.response import PredictResponse  # noqa: E402

_LOCK = threading.Lock()  # pyplot's state machine is not thread-safe

RATIO_LIMITS = (
    (prec.INT8_STEP_RATIO, "INT8 per-tensor step (127)", "tab:red"),
    (prec.BF16_SWAMP_RATIO, "BF16 swamping (256)", "tab:orange"),
    (prec.FP16_SWAMP_RATIO, "FP16 swamping (2048)", "tab:purple"),
)
ABS_LIMITS = (
    (100.0, "massive |a| > 100", "grey"),
    (prec.FP8_E4M3_MAX, "FP8 E4M3 max 448", "tab:red"),
    (prec.FP8_E5M2_MAX, "FP8 E5M2 max 57344", "tab:orange"),
    (prec.FP16_MAX, "FP16 max 65504", "tab:purple"),
)


def render_png(answer: PredictResponse, dpi: int = 90) -> bytes:
    layers = answer.layers
    n = max(len(layers), 1)
    with _LOCK:
        fig, (ax_r, ax_a) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [3, 2]})
        try:
            cmap = plt.get_cmap("viridis")
            ymax = 1.0
            for lf in layers:
                pts = lf.ratio_trajectory
                if not pts:
                    continue
                t = np.array([max(p.step, 1) for p in pts], dtype=float)
                v = np.array([p.value for p in pts], dtype=float)
                lo = np.array([p.lo for p in pts], dtype=float)
                hi = np.array([p.hi for p in pts], dtype=float)
                color = cmap(lf.layer / max(n - 1, 1))
                ax_r.plot(t, v, color=color, lw=1.6 if lf.massive else 0.9, label=f"layer {lf.layer}" if n <= 12 else None)
                if lf.massive or n <= 8:
                    ax_r.fill_between(t, np.clip(lo, 1e-3, None), hi, color=color, alpha=0.12, lw=0)
                finite = np.concatenate([v[np.isfinite(v)], hi[np.isfinite(hi)]])
                if finite.size:
                    ymax = max(ymax, float(finite.max()))
            for y, label, color in RATIO_LIMITS:
                if y < ymax * 3:
                    ax_r.axhline(y, ls="--", lw=0.9, color=color, label=label)
            ax_r.set_xscale("log")
            ax_r.set_yscale("log")
            ax_r.set_xlabel("training step")
            ax_r.set_ylabel("predicted ratio top1 / median |h|")
            ax_r.set_title(f"{answer.architecture}: per-layer emergence (shaded: interval)")
            ax_r.legend(fontsize=7, loc="best", ncol=2)

            idx = np.array([lf.layer for lf in layers], dtype=float)
            val = np.array([lf.peak_abs.value for lf in layers], dtype=float)
            lo = np.array([lf.peak_abs.lo for lf in layers], dtype=float)
            hi = np.array([lf.peak_abs.hi for lf in layers], dtype=float)
            colors = ["tab:red" if lf.massive else "tab:blue" for lf in layers]
            if len(layers):
                yerr = np.vstack([np.clip(val - lo, 0, None), np.clip(hi - val, 0, None)])
                ax_a.errorbar(idx, val, yerr=yerr, fmt="none", ecolor="0.6", lw=0.8)
                ax_a.scatter(idx, val, c=colors, s=14, zorder=3)
            amax = float(np.nanmax(hi)) if len(layers) and np.isfinite(hi).any() else 1.0
            for y, label, color in ABS_LIMITS:
                if y < amax * 3:
                    ax_a.axhline(y, ls="--", lw=0.9, color=color, label=label)
            ax_a.set_yscale("log")
            ax_a.set_xlabel("layer")
            ax_a.set_ylabel("predicted peak |a| (red: massive)")
            p = answer.predictor
            ax_a.set_title(f"{p.name} v{p.version or '?'} ({p.alias or 'pinned'})", fontsize=9)
            ax_a.legend(fontsize=7, loc="lower right")
            fig.tight_layout()
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=dpi)
            return buf.getvalue()
        finally:
            plt.close(fig)
