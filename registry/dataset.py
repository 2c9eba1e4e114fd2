"""Training rows for the predictor: one row per (model, layer), features + targets.

Sources
- fitted curves (fits table, ``maforecast.tables.FitRow``) of ``ratio`` and ``top1`` per
  (model, layer), joined with the model's architecture: curve targets;
- final-model per-layer peaks (stats rows with no training step): steady-state-only rows.

Targets (``TARGETS``): the paper's five Eq. 9 parameters (Table 3 comparison) and the
well-identified quantities: log10 ratio at canonical steps (curve reconstruction), log10
t_emerge, early-peak indicator, log10 t_peak, log10 ratio at end of training, log10 steady
state, log10 peak |a|. Derived quantities come from ``fitting.derived.derive``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from collector.reference import load_final_model_stats, load_reference_stats
from fitting.curves import eq9
from fitting.derived import EARLY_PEAK, derive
from maforecast.tables import stats_with_ratio
from predictor.architecture import Architecture

GOOD_STATUSES = ("ok", "ill_conditioned")
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
HEADLINE_TARGETS = ("log_ratio_end", "log_steady_state", "log_peak_abs")

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
RECIPE_FEATURES = ("log_lr", "log_batch_tokens", "log_steps")


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


def _log10_pos(v) -> float:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return math.log10(v) if v > 0 and math.isfinite(v) else float("nan")


def _curve_targets(row: dict, t_end: float) -> dict:
    """Targets of one ratio fit: canonical log ratios, derived quantities, raw parameters."""
    p = {k: float(row[k]) for k in PARAMS}
    out: dict = {}
    vals = eq9(np.array(CANONICAL_STEPS, dtype=float), *(p[k] for k in PARAMS))
    for s, v in zip(CANONICAL_STEPS, vals, strict=True):
        out[f"log_ratio_s{s}"] = _log10_pos(v)
    der = derive(p, t_end)
    out["log_t_emerge"] = math.log10(1 + der.t_emerge) if der.t_emerge is not None else float("nan")
    out["early_peak"] = 1.0 if der.trajectory_class == EARLY_PEAK else 0.0
    out["log_t_peak"] = math.log10(1 + der.t_peak) if der.t_peak is not None else float("nan")
    out["log_ratio_end"] = _log10_pos(der.value_end)
    out["log_steady_state"] = _log10_pos(der.steady_state) if row.get("status") == "ok" else float("nan")
    out.update(p)
    return out


def _peak_abs_target(row: dict, t_end: float) -> float:
    p = {k: float(row[k]) for k in PARAMS}
    der = derive(p, t_end)
    peak = max(v for v in (der.value_peak, der.value_end) if v is not None)
    return _log10_pos(peak)


def build_training_rows(
    fits: pd.DataFrame, stats: pd.DataFrame | None, architectures: dict[str, Architecture], recipe_known=None
) -> pd.DataFrame:
    """One row per (model, layer): ``model``, ``layer``, ``kind`` (trajectory | steady_state),
    the features and every target (NaN where the row does not inform it)."""
    recipe_known = recipe_known or (lambda name: True)
    per_key: dict[tuple[str, int], dict] = {}
    fits = fits[fits["status"].isin(GOOD_STATUSES)] if len(fits) else fits
    for row in fits.to_dict("records"):
        model = row["model"]
        if model not in architectures or any(pd.isna(row.get(k)) for k in PARAMS):
            continue
        arch = architectures[model]
        t_end = float(arch.planned_steps)
        key = (model, int(row["layer"]))
        rec = per_key.setdefault(key, {"model": model, "layer": int(row["layer"]), "kind": "trajectory"})
        if row["metric"] == "ratio":
            rec.update(_curve_targets(row, t_end))
            rec["ratio_fit_status"] = row["status"]
        elif row["metric"] == "top1":
            rec["log_peak_abs"] = _peak_abs_target(row, t_end)
    # steady-state-only rows: stats rows without a training step (fully trained public models)
    if stats is not None and len(stats):
        final = stats[stats["step"].isna()]
        if len(final):
            g = final.groupby(["model", "layer"], as_index=False).agg(top1=("top1", "mean"), median=("median", "mean"))
            for row in g.to_dict("records"):
                model = row["model"]
                if model not in architectures or (model, int(row["layer"])) in per_key:
                    continue
                rec = {"model": model, "layer": int(row["layer"]), "kind": "steady_state"}
                rec["log_peak_abs"] = _log10_pos(row["top1"])
                if pd.notna(row["median"]) and row["median"] > 0:
                    ratio = _log10_pos(row["top1"] / row["median"])
                    rec["log_ratio_end"] = ratio
                    rec["log_steady_state"] = ratio
                per_key[(model, int(row["layer"]))] = rec
    if not per_key:
        return pd.DataFrame(columns=["model", "layer", "kind", *FEATURES, *TARGETS])
    rows = pd.DataFrame(list(per_key.values()))
    feats = []
    for model, sub in rows.groupby("model"):
        arch = architectures[model]
        known = recipe_known(model) and (sub["kind"] == "trajectory").any()
        f = layer_features(arch, recipe_known=known)
        f.insert(0, "model", model)
        feats.append(f)
    feat = pd.concat(feats, ignore_index=True)
    out = rows.merge(feat, on=["model", "layer"], how="left")
    for t in TARGETS:
        if t not in out.columns:
            out[t] = np.nan
    keep = ["model", "layer", "kind", *FEATURES, *TARGETS]
    out = out[keep].replace([np.inf, -np.inf], np.nan)
    return out.sort_values(["kind", "model", "layer"]).reset_index(drop=True)


def measured_ratio_points(stats: pd.DataFrame) -> pd.DataFrame:
    """Measured (model, step, layer, ratio) points of trajectory models, for curve R^2."""
    s = stats[stats["step"].notna() & stats["median"].notna() & stats["top1"].notna()]
    if not len(s):
        return pd.DataFrame(columns=["model", "step", "layer", "ratio"])
    g = stats_with_ratio(s)
    return g[np.isfinite(g["ratio"]) & (g["ratio"] > 0)][["model", "step", "layer", "ratio"]]


def reference_stats() -> pd.DataFrame:
    """Bundled reference stats: Pythia trajectories plus trained-LLM rows of both protocols."""
    return load_reference_stats()


def final_model_stats() -> pd.DataFrame:
    """Final-model per-layer peaks (2503.22329) as stats rows (step missing)."""
    return load_final_model_stats()
