"""Per-layer features and targets of the v1 per-target learners (``registry.baseline``), and the bundled
reference stats table.

``layer_features`` gives one feature row per decoder layer of an architecture (``FEATURES``); ``TARGETS`` names
the per-layer targets with the transform their learner scores in. The served predictor is the structured engine
(``predictor.engine.ForecastEngine``), which reads ``predictor.evidence.Evidence`` instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from collector.reference import load_reference_stats
from predictor.architecture import Architecture

# absolute training steps at which the ratio curve is predicted (Pythia trains 143000 steps)
CANONICAL_STEPS: tuple[int, ...] = (0, 100, 300, 1000, 3000, 10000, 30000, 60000, 100000, 143000)
PARAMS = ("A", "lam", "gamma", "t0", "K")


@dataclass(frozen=True)
class TargetSpec:
    name: str
    transform: str  # none | slog1p | yeojohnson
    group: str  # paper | curve | summary
    description: str


TARGETS: dict[str, TargetSpec] = {
    **{p: TargetSpec(p, "yeojohnson" if p == "K" else "slog1p", "paper", f"Eq. 9 parameter {p} of the ratio curve") for p in PARAMS},
    **{
        f"log_ratio_s{s}": TargetSpec(f"log_ratio_s{s}", "none", "curve", f"log10 ratio at step {s}")
        for s in CANONICAL_STEPS
    },
    "log_t_emerge": TargetSpec("log_t_emerge", "none", "summary", "log10(1 + t_emerge) of the ratio curve"),
    "early_peak": TargetSpec("early_peak", "none", "summary", "1 if the ratio curve peaks inside training"),
    "log_t_peak": TargetSpec("log_t_peak", "none", "summary", "log10(1 + t_peak), early-peak layers only"),
    "log_ratio_end": TargetSpec("log_ratio_end", "none", "summary", "log10 ratio at end of training"),
    "log_steady_state": TargetSpec("log_steady_state", "none", "summary", "log10 steady-state ratio (K; final models: observed)"),
    "log_peak_abs": TargetSpec("log_peak_abs", "none", "summary", "log10 peak |a| of the layer output over training"),
}

PAPER_FEATURES = ("rel", "rel2", "rel3", "sqrt_rel", "h_over_d", "dff_over_d", "d_over_L", "h_over_L", "log_d", "l_times_L")
OUR_FEATURES = (
    "glu",
    "rmsnorm",
    "norm_nonparametric",
    "parallel",
    "sandwich",
    "post_sublayer",
    "post_norm",
    "qk_norm",
    "rotary",
    "rotary_pct",
    "alibi",
    "learned_pos",
    "kv_ratio",
    "tied",
    "first_layer",
    "last_layer",
    "log_params",
    "log_lr",
    "log_batch_tokens",
    "log_steps",
)
FEATURES: tuple[str, ...] = PAPER_FEATURES + OUR_FEATURES


def layer_features(arch: Architecture, recipe_known: bool = True) -> pd.DataFrame:
    """Feature rows (one per decoder layer) of an architecture; recipe features NaN when unknown."""
    L = arch.n_layers
    layer = np.arange(L)
    rel = (layer + 1) / L
    d, H = arch.d_model, arch.n_heads
    nan = float("nan")
    f = {
        "layer": layer,
        "rel": rel,
        "rel2": rel**2,
        "rel3": rel**3,
        "sqrt_rel": np.sqrt(rel),
        "h_over_d": np.full(L, H / d),
        "dff_over_d": np.full(L, arch.d_ffn / d),
        "d_over_L": np.full(L, d / L),
        "h_over_L": np.full(L, H / L),
        "log_d": np.full(L, math.log10(d)),
        "l_times_L": (layer + 1) * L,
        "glu": float(arch.glu),
        "rmsnorm": float(arch.norm_type == "rmsnorm"),
        "norm_nonparametric": float(arch.norm_type == "layernorm_nonparametric"),
        "parallel": float(arch.parallel_attn_mlp),
        "sandwich": float(arch.norm_placement == "sandwich"),
        "post_sublayer": float(arch.norm_placement == "post_sublayer"),
        "post_norm": float(arch.norm_placement == "post"),
        "qk_norm": float(arch.qk_norm),
        "rotary": float(arch.positional_encoding == "rotary"),
        "rotary_pct": arch.rotary_pct if arch.positional_encoding == "rotary" else 0.0,
        "alibi": float(arch.positional_encoding == "alibi"),
        "learned_pos": float(arch.positional_encoding == "learned"),
        "kv_ratio": arch.kv_heads / H,
        "tied": float(arch.tied_embeddings),
        "first_layer": (layer == 0).astype(float),
        "last_layer": (layer == L - 1).astype(float),
        "log_params": math.log10(arch.n_params()),
        "log_lr": math.log10(arch.learning_rate) if recipe_known else nan,
        "log_batch_tokens": math.log10(arch.batch_tokens) if recipe_known else nan,
        "log_steps": math.log10(arch.planned_steps) if recipe_known else nan,
    }
    return pd.DataFrame(f)


def reference_stats() -> pd.DataFrame:
    """Bundled reference stats: Pythia trajectories plus trained-LLM rows of both protocols."""
    return load_reference_stats()
