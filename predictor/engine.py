"""Forecast engine v2: a structured model of when and how strongly massive activations emerge.

Three parts, each learned from the evidence (``predictor.evidence``) and each interpretable:

1. **Magnitude** (``predictor.level.LineageLevel``, one per quantity: log10 peak |a| and log10
   top-1/median). The asymptotic log magnitude of a model's largest layer is a sum of common terms (size:
   width and parameters; design switches: GLU, norm type and placement, QK-norm, parallel block, positional
   encoding, embedding scale, MoE, attention kind, gate and sink, tied embeddings; a term per measurement
   protocol) plus its lineage's own level and size slope, fitted as one empirical-Bayes Gaussian model on
   one row per (model, protocol): a new size of a known lineage leans on its measured siblings, a new
   lineage gets the between-lineage spread, a switch seen in few lineages is shrunk towards zero.
2. **Depth profile** (``DepthProfile``): each layer's offset from the model's largest layer, a
   ridge on a depth basis (first three layers, last two, smooth in relative depth), with its
   residual spread per depth zone.
3. **Time** (``predictor.timeline``): the plan's effective time tau(t) (learning rate and its
   schedule, batch, weight decay; exponents fitted to Gu et al.'s grids) and a Hill curve in
   u = tau/tau_e whose scale tau_e follows model size (fitted to the Pythia checkpoints).

The forecast of layer l at step t is ``y(t) = y0 + (Y_inf(l) - y0) H(tau(t)/tau_e)``: the
trajectory, ``ratio_end = y(t_end)``, ``t_emerge`` and the peak all come from that one curve. Each
layer also carries the probabilities of the trajectory classes (``predictor.trajectory``: plateau,
early peak, continued growth) that the checkpoint series show at its depth; the nowcast uses them.
Intervals are Gaussian in log10 (level posterior + profile spread, scaled by the factor that
gives 90 % coverage on held-out families) combined with the tau_e uncertainty; probabilities of
massive activations and of overflow follow from the same distribution.
"""

from __future__ import annotations

import bisect
import copy
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import least_squares
from scipy.special import ndtr
from scipy.stats import norm
from sklearn.base import BaseEstimator
from sklearn.linear_model import Ridge
from sklearn.utils.validation import check_is_fitted

from maforecast.tables import DEFAULT_PROTOCOL, PROTOCOLS
from predictor import clock as clocks
from predictor.architecture import LINEAGE_NEW, Architecture, ArchitectureError, family_of, parse_architecture
from predictor.effects import BASES, ControlledEffects, Estimate
from predictor.evidence import Evidence
from predictor.level import PROTOCOL_SD, LineageLevel, width_term
from predictor.schedule_risk import schedule_notes
from predictor.schemas import (
    ApplicabilityWarning,
    EmergenceArrays,
    Forecast,
    ForecastArrays,
    Interval,
    IntervalArrays,
    TrajectoryArrays,
)
from predictor.timeline import PlanEffects, Timeline, fit_plan_effects, hill, hill_inverse
from predictor.trajectory import CLASSES, as_dict, class_prior, classify, uniform_prior

__all__ = [
    "ASSOCIATED", "DesignMemo", "FIELD_OF", "ForecastEngine", "MAX_EXTRAPOLATION", "QUANTITIES", "SIZE_TERMS",
    "SWITCHES", "TERMS", "TargetQuality", "Y0_DEFAULT", "Z90", "arch_timeline", "default_steps",
    "fit_series",
]

Z90 = float(norm.ppf(0.95))  # two-sided 90 % interval
MASSIVE_ABS, MASSIVE_RATIO = 2.0, 3.0  # log10 of Sun et al.'s |a| > 100 and |a| > 1000 x median
LOG10_LIMIT = 30.0
LN10 = math.log(10.0)
QUANTITIES = ("abs", "ratio")
Y0_DEFAULT = {"abs": 0.85, "ratio": 0.85}  # log10 values at initialisation when no early checkpoint says otherwise
SIGMA_CLASSIFY = 0.05  # log10: least noise assumed when classifying an evidence layer's trajectory (probe noise ~0.03)

# design terms of the magnitude model: name -> (description, function of the architecture)
SWITCHES: dict[str, tuple[str, object]] = {
    "log_params": ("log10 parameters - 9 (size)", lambda a: math.log10(a.n_params()) - 9.0),
    "log_width": ("2.5 (log10 d_model - 3.5) (the size within a lineage)", lambda a: width_term(a.d_model)),
    "glu": ("gated FFN (SwiGLU/GeGLU)", lambda a: float(a.glu)),
    "rmsnorm": ("RMSNorm instead of LayerNorm", lambda a: float(a.norm_type == "rmsnorm")),
    "sandwich": ("sandwich norm (norm before and after each sublayer)", lambda a: float(a.norm_placement == "sandwich")),
    "post_sublayer": ("post-sublayer norm (OLMo-2 reordered norm)", lambda a: float(a.norm_placement == "post_sublayer")),
    "post_norm": ("post-norm (original transformer)", lambda a: float(a.norm_placement == "post")),
    "parallel": ("parallel attention + MLP block", lambda a: float(a.parallel_attn_mlp)),
    "qk_norm": ("QK-norm", lambda a: float(a.qk_norm)),
    "learned_pos": ("learned / sinusoidal absolute positions", lambda a: float(a.positional_encoding in ("learned", "sinusoidal"))),
    "no_rope_bias": ("ALiBi or no positional encoding", lambda a: float(a.positional_encoding in ("alibi", "none"))),
    "embedding_scale": ("embeddings scaled by sqrt(d_model)", lambda a: float(a.embedding_scale)),
    "moe": ("mixture-of-experts FFN", lambda a: float(a.moe)),
    "linear_attention": ("linear / hybrid linear attention", lambda a: float(a.attention_kind in ("linear", "hybrid"))),
    "sigmoid_attention": ("sigmoid attention", lambda a: float(a.attention_kind == "sigmoid")),
    "attention_gate": ("gated attention output", lambda a: float(a.attention_gate)),
    "attention_sink": ("explicit attention sink (KV bias, sink token, learned sink)", lambda a: float(a.attention_sink != "none")),
    "tied": ("tied input/output embeddings", lambda a: float(a.tied_embeddings)),
}
# design values no trained model has: their level is the studies' base value's plus the controlled effect
PROXY_VALUES: dict[str, tuple[str, ...]] = {"norm_type": ("dyt",), "attention_kind": ("clipped_softmax", "softpick", "differential"),
                                            "norm_gain": ("single_scale",)}
# controlled changes and the level model's term that carries the same change as an association
ASSOCIATED: dict[tuple[str, object], str] = {
    ("norm_placement", "sandwich"): "sandwich", ("norm_placement", "post"): "post_norm",
    ("norm_placement", "post_sublayer"): "post_sublayer", ("attention_gate", True): "attention_gate",
    ("attention_sink", "kv_bias"): "attention_sink", ("attention_sink", "sink_token"): "attention_sink",
    ("attention_sink", "learned_sink"): "attention_sink", ("attention_sink", "softmax_plus_one"): "attention_sink",
    ("attention_kind", "sigmoid"): "sigmoid_attention", ("qk_norm", True): "qk_norm",
}
# published onsets the clock is checked on: (label, source, family, architecture fields or a bundled model, first, last step)
TIMING_ONSETS: tuple[tuple[str, str, str, dict | str, float, float], ...] = (
    ("LLaMA-style 60M, attention sink", "arXiv 2410.10781 Sec. 4, Fig. 4: the sink emerges between 1k and 2k steps",
     "Gu2025 LLaMA-style", {"n_layers": 10, "d_model": 768, "n_heads": 8, "d_ffn": 2048, "ffn_type": "glu",
                            "activation": "silu", "norm_type": "rmsnorm", "learning_rate": 4e-4, "batch_tokens": 1_048_576,
                            "total_steps": 20_000, "weight_decay": 0.1, "name": "Gu2025-60M"}, 1000.0, 2000.0),
    ("BERT-base, LayerNorm outlier dimensions", "Kovaleva et al. 2021 (BERT Busters; peers/README 5h, M): they emerge "
     "gradually from about 50k steps (read as within x1.4)", "BERT",
     {"n_layers": 12, "d_model": 768, "n_heads": 12, "d_ffn": 3072, "norm_placement": "post", "positional_encoding": "learned",
      "causal_lm": False, "vocab_size": 30_522, "seq_len": 512, "learning_rate": 1e-4, "weight_decay": 0.01,
      "lr_schedule": "linear", "total_steps": 1_000_000, "batch_tokens": 131_072, "name": "BERT-base"}, 36_000.0, 70_000.0),
    ("pythia-12b, last-layer outlier dimensions", "arXiv 2503.21718 (peers/README 5h, M): steps 3,000-4,000",
     "Pythia", "pythia-12b", 3000.0, 4000.0),
)
# the recipe fields whose values, when no checkpoint series has them, put a design outside the clock's family
RECIPE_FIELDS = ("batch_tokens", "lr_schedule", "optimizer", "weight_decay")
ONSET_FRACTION = clocks.ONSET_FRACTION  # a published onset ("emerges", "appears") is read as 10 % of the curve's rise
TAU_FAMILY_FLOOR = 0.15  # decades: the clock of another family's recipe is never known better than this
ASSOCIATION_SD_FLOOR = 0.3  # an association's extra sd is at least this, however well it agreed
PROTOCOL_TERMS = tuple(f"protocol_{p}" for p in PROTOCOLS if p != DEFAULT_PROTOCOL)
TERMS = (*SWITCHES, *PROTOCOL_TERMS)
SIZE_TERMS = ("log_params", "log_width")
WORST_CASE = "corpus_max"  # the protocol precision risk uses: overflow happens at the worst token a deployment sees


def design_vector(arch: Architecture, protocol: str = DEFAULT_PROTOCOL) -> np.ndarray:
    """``SWITCHES``' functions and the protocol terms of ``arch`` (one pass over its fields: the answer reads
    dozens of design vectors, ``_switches`` is ``SWITCHES`` written out)."""
    return _with_protocol(_switches(arch), protocol)


def _with_protocol(switches: list[float], protocol: str) -> np.ndarray:
    """The design vector of ``_switches``' values in ``protocol`` (one design read in several protocols)."""
    tail = _PROTOCOL_TAIL.get(protocol)
    if tail is None:
        tail = [float(protocol == t.removeprefix("protocol_")) for t in PROTOCOL_TERMS]
    return np.array(switches + tail, float)


def _switches(a: Architecture) -> list[float]:
    """The values of ``SWITCHES``' functions, in its order (checked at import against the functions' names)."""
    place, pos, kind, experts = a.norm_placement, a.positional_encoding, a.attention_kind, a.moe_experts
    return [math.log10(a.n_params()) - 9.0, width_term(a.d_model), float(a.ffn_type == "glu"),
            float(a.norm_type == "rmsnorm"), float(place == "sandwich"), float(place == "post_sublayer"),
            float(place == "post"), float(a.parallel_attn_mlp), float(a.qk_norm), float(pos in ("learned", "sinusoidal")),
            float(pos in ("alibi", "none")), float(a.embedding_scale), float(bool(experts and experts > 1)),
            float(kind in ("linear", "hybrid")), float(kind == "sigmoid"), float(a.attention_gate),
            float(a.attention_sink != "none"), float(a.tied_embeddings)]


class DesignMemo:
    """What one call reads of several designs, each computed once: the design vector of an architecture in a protocol
    and the association of a change to it (what-ifs ask for the same ones again and again). Keyed by identity: the
    memo holds the architectures it has seen, so no id is reused while it lives; it lives for one call, never on the
    engine."""

    def __init__(self) -> None:
        self._vectors: dict[tuple[int, str], tuple[Architecture, np.ndarray]] = {}
        self.associations: dict[tuple, tuple[Architecture, tuple[float, float] | None]] = {}

    def vector(self, arch: Architecture, protocol: str = DEFAULT_PROTOCOL) -> np.ndarray:
        """``design_vector(arch, protocol)`` (read only: the array is shared)."""
        key = (id(arch), protocol)
        hit = self._vectors.get(key)
        if hit is None:
            hit = self._vectors[key] = (arch, design_vector(arch, protocol))
        return hit[1]


_SWITCH_ORDER = ("log_params", "log_width", "glu", "rmsnorm", "sandwich", "post_sublayer", "post_norm", "parallel",
                 "qk_norm", "learned_pos", "no_rope_bias", "embedding_scale", "moe", "linear_attention",
                 "sigmoid_attention", "attention_gate", "attention_sink", "tied")
assert tuple(SWITCHES) == _SWITCH_ORDER, "design_vector's _switches must follow SWITCHES"
_PROTOCOL_TAIL = {p: [float(p == t.removeprefix("protocol_")) for t in PROTOCOL_TERMS] for p in PROTOCOLS}


_DESIGN_TERMS = [(j, t) for j, t in enumerate(SWITCHES) if t not in SIZE_TERMS]  # (column, name): the switches


_CURVE_KEYS = ("Y", "sd", "mean", "lo", "hi")  # a quantity's curves: level and sd per layer, values per layer and step
_Y0 = np.array([Y0_DEFAULT[q] for q in QUANTITIES])


def _clip10(v: np.ndarray | float) -> np.ndarray:
    """10**v with v clipped to +-LOG10_LIMIT (np.clip's values, without its wrapper), as exp(v ln 10): a few times
    faster than np.power on a forecast's thousands of values, within 1e-14 of it relative."""
    return np.exp(np.minimum(np.maximum(v, -LOG10_LIMIT), LOG10_LIMIT) * LN10)


def depth_basis(layer: np.ndarray, n_layers: np.ndarray) -> np.ndarray:
    layer, L = np.asarray(layer, float), np.asarray(n_layers, float)
    rel = layer / np.maximum(L - 1, 1)
    return np.column_stack([layer == 0, layer == 1, layer == 2, layer == L - 1, layer == L - 2, rel, rel**2, rel**3]).astype(float)


def depth_zone(layer: np.ndarray, n_layers: np.ndarray) -> np.ndarray:
    layer, L = np.asarray(layer), np.asarray(n_layers)
    return np.where(layer <= 2, "first", np.where(layer >= L - 2, "last", "middle"))


ZONES = ("first", "middle", "last")


def _zone_index(n_layers: int) -> np.ndarray:
    """Each layer's index into ``ZONES`` for a model of ``n_layers`` (``depth_zone`` of all its layers)."""
    layer = np.arange(n_layers)
    return np.where(layer <= 2, 0, np.where(layer >= n_layers - 2, 2, 1))


class DepthProfile(BaseEstimator):
    """Offset of each layer from the model's largest one (<= 0), shared across models."""

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def fit(self, layer, n_layers, offset) -> DepthProfile:
        B = depth_basis(layer, n_layers)
        self.reg_ = Ridge(alpha=self.alpha).fit(B, offset)
        resid = np.asarray(offset) - self.reg_.predict(B)
        zones = depth_zone(layer, n_layers)
        self.sd_ = {z: float(np.sqrt(np.mean(resid[zones == z] ** 2))) if (zones == z).any() else float(np.std(resid))
                    for z in ("first", "middle", "last")}
        return self

    def predict(self, n_layers: int) -> tuple[np.ndarray, np.ndarray]:
        check_is_fitted(self, "reg_")
        return self._predict(n_layers)

    def _predict(self, n_layers: int) -> tuple[np.ndarray, np.ndarray]:
        """``predict`` of a fitted profile (the engine's hot path: no fitted check)."""
        return self._at(*_layer_basis(n_layers))

    def _at(self, basis: np.ndarray, zone: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``_predict`` from a model's ``_layer_basis`` (the quantities' profiles read the same one)."""
        d = basis @ self.reg_.coef_ + self.reg_.intercept_  # Ridge.predict
        d = d - d.max()  # the largest layer sits at the model level
        sd = np.array([self.sd_[z] for z in ZONES])[zone]
        return d, sd


@functools.lru_cache(maxsize=64)
def _layer_basis(n_layers: int) -> tuple[np.ndarray, np.ndarray]:
    """``depth_basis`` of every layer of a model of ``n_layers`` (filled in place: the same values without stacking
    eight columns) and each layer's ``_zone_index``. A pure function of one number, asked for the same few depths
    again and again: cached, its arrays read-only."""
    rel = np.arange(n_layers, dtype=float) / max(n_layers - 1, 1)
    basis = np.zeros((n_layers, 8))
    first = np.arange(min(n_layers, 3))
    basis[first, first] = 1.0  # layers 0, 1, 2
    basis[n_layers - 1, 3] = 1.0
    if n_layers > 1:
        basis[n_layers - 2, 4] = 1.0
    basis[:, 5], basis[:, 6], basis[:, 7] = rel, rel**2, rel**3
    zone = _zone_index(n_layers)
    basis.flags.writeable = zone.flags.writeable = False
    return basis, zone


# ------------------------------------------------------------------------ time
def _onset_family(model: str) -> str:
    """The family label of a checkpoint series (the one ``TIMING_ONSETS`` uses for Pythia)."""
    return "Pythia" if model.startswith("pythia") else family_of(model)


def arch_timeline(arch: Architecture, effects: PlanEffects, horizon: float | None = None) -> Timeline:
    """The effective time of ``arch``'s training plan. Cached per plan: tabulating one costs ~0.1 ms,
    sweeps and what-if variants share plans, and a ``Timeline`` is never changed once built."""
    return _timeline((arch.planned_steps, arch.learning_rate, arch.lr_schedule, arch.warmup_frac, arch.batch_tokens,
                      arch.weight_decay), effects, None if horizon is None else float(horizon))


@functools.lru_cache(maxsize=512)
def _timeline(plan: tuple, effects: PlanEffects, horizon: float | None) -> Timeline:
    return Timeline(*plan, effects, horizon=horizon)


H_FLOOR = 0.1  # a value measured before emergence is scaled up to its asymptote by at most x10 (in log10 rise)
MAX_EXTRAPOLATION = 0.5  # decades of effective time a series' fitted midpoint may lie beyond its last checkpoint


@dataclass
class CurveFit:
    """Hill fit of one checkpoint series (all layers share tau_e and p; each has its own rise)."""

    model: str
    log_tau_e: float
    p: float
    y0: dict[str, np.ndarray]  # quantity -> per-layer start
    rise: dict[str, np.ndarray]  # quantity -> per-layer Y_inf - y0 (NaN where not measured)
    layers: np.ndarray
    rmse: float
    log_tau_span: tuple[float, float] = (-np.inf, np.inf)  # log10 effective time of the first and last checkpoints after 0

    @property
    def timed(self) -> bool:
        """Whether the series pins its emergence time: the fitted midpoint within the checkpoints it saw (a run
        that emerged before its first save, or had not yet emerged, says little about when)."""
        lo, hi = self.log_tau_span
        return lo - MAX_EXTRAPOLATION <= self.log_tau_e <= hi and self.p < 6.0 - 1e-3


def fit_series(model: str, sub: pd.DataFrame, tl: Timeline) -> CurveFit | None:
    """Variable projection: for given (tau_e, p) each layer's rise is linear least squares."""
    q = "ratio" if sub["y_ratio"].notna().any() else "abs"
    steps = np.sort(sub["step"].unique())
    if len(steps) < 3:
        return None
    layers = np.sort(sub["layer"].unique())
    y0s, rises, data = {}, {}, {}
    for qq in QUANTITIES:
        piv = sub.pivot_table(index="layer", columns="step", values=f"y_{qq}").reindex(index=layers, columns=steps)
        first = piv.iloc[:, 0] if steps[0] <= 100 else pd.Series(np.nan, index=layers)
        y0s[qq] = first.fillna(Y0_DEFAULT[qq]).to_numpy(float)
        data[qq] = piv.to_numpy(float)
    tau = tl(steps)

    def rises_for(theta, qq):
        h = hill(tau / 10.0 ** theta[0], theta[1])
        Y = data[qq] - y0s[qq][:, None]
        ok = np.isfinite(Y)
        num = np.nansum(np.where(ok, Y * h, 0.0), axis=1)
        den = np.sum(np.where(ok, h * h, 0.0), axis=1)
        r = np.where(den > 0, num / np.maximum(den, 1e-300), np.nan)
        return r, h, Y, ok

    def resid(theta):
        r, h, Y, ok = rises_for(theta, q)
        e = Y - r[:, None] * h[None, :]
        return np.where(ok, e, 0.0).ravel()

    # the midpoint no later than ~3x the last observation: a series still rising when it ends (a short proxy run)
    # otherwise puts tau_e anywhere beyond it and its asymptote, rise / H(end), at any height (seen: 10**400)
    lt_max = float(np.log10(max(tau[-1], 1.0))) + MAX_EXTRAPOLATION
    best = None
    for lt in np.log10(np.geomspace(max(tau[1], 1.0), tau[-1], 7)):
        for p in (0.8, 1.5, 2.5):
            sol = least_squares(resid, [min(lt, lt_max - 1e-6), p], bounds=([0.0, 0.3], [lt_max, 6.0]), method="trf")
            if best is None or sol.cost < best.cost:
                best = sol
    theta = best.x
    rises = {qq: rises_for(theta, qq)[0] for qq in QUANTITIES}
    n = max(int((resid(theta) != 0).sum()), 1)
    return CurveFit(model, float(theta[0]), float(theta[1]), y0s, rises, layers, float(np.sqrt(2 * best.cost / n)),
                    (float(np.log10(max(tau[1], 1e-300))), float(np.log10(max(tau[-1], 1e-300)))))


# ------------------------------------------------------------------------ the engine
@dataclass
class TargetQuality:
    """Held-out score of one served target (filled in by ``registry.evaluation``)."""

    name: str
    mae: float
    baseline_mae: float
    coverage: float | None = None
    n_groups: int = 0

    @property
    def predictable(self) -> bool:
        return bool(math.isfinite(self.mae) and math.isfinite(self.baseline_mae) and self.mae < self.baseline_mae)


# forecast target -> (quantity, description) used for "not predictable" handling
SERVED_TARGETS = {"peak_abs": "log10 peak |a|", "ratio_end": "log10 end-of-training ratio", "t_emerge": "emergence step"}


class ForecastEngine(BaseEstimator):
    """Fit on ``Evidence``; ``forecast(arch)`` returns a ``Forecast`` (scikit-learn estimator API)."""

    def __init__(self, protocol: str = DEFAULT_PROTOCOL, interval_scale: dict | None = None, profile_alpha: float = 1.0,
                 terms: tuple[str, ...] | None = None, level_start: dict | None = None, protocol_sd: float = PROTOCOL_SD,
                 clock: str | None = None):
        self.clock = clock  # None: the clock with the smallest leave-one-family-out error (predictor.clock)
        self.level_start = level_start
        self.protocol_sd = protocol_sd
        self.protocol = protocol
        self.interval_scale = interval_scale
        self.profile_alpha = profile_alpha
        self.terms = terms

    # ---------------------------------------------------------------- fit
    def fit(self, ev: Evidence) -> ForecastEngine:
        scale = self.interval_scale or {}
        self._association_cache: dict[bytes, tuple[float, float] | None] = {}  # association(): one entry per design change
        self._derived: dict[Any, Any] = {}  # _fit_derived(): what the hot path derives from the fit alone
        self.series_effects_ = fit_plan_effects(ev.peers)  # the clock the checkpoint series' curves are fitted in
        self.effects_ = self.series_effects_
        self._fit_time(ev)
        self._fit_clock(ev)  # the served clock (effects_) and tau_e's calibration across families
        self.horizon_tokens_, self.late_slopes_ = _late_growth(ev)
        levels, offsets = self._levels(ev)
        self.levels_table_ = levels
        self.level_ = {}
        self.profile_ = {}
        self.constant_ = {}
        for q in QUANTITIES:
            lv = levels[levels["quantity"] == q]
            X = np.vstack([self._x(ev.archs[m], p) for m, p in zip(lv["model"], lv["protocol"], strict=True)])
            start = (self.level_start or {}).get(q)
            self.level_[q] = LineageLevel(TERMS, interval_scale=scale.get(q, 1.0), start=tuple(start) if start else None,
                                          protocol_sd=self.protocol_sd,
                                          new_lineage_scale=scale.get(f"{q}_new", scale.get(q, 1.0))).fit(
                X, lv["lineage"].to_numpy(), lv["family"].to_numpy(), lv["Y"].to_numpy())
            off = offsets[offsets["quantity"] == q]
            self.profile_[q] = DepthProfile(alpha=self.profile_alpha).fit(off["layer"], off["n_layers"], off["offset"])
            w = 1.0 / lv["lineage"].map(lv["lineage"].value_counts()).to_numpy(float)
            same = lv["protocol"] == self.protocol
            src = lv[same] if same.any() else lv
            ws = w[same.to_numpy()] if same.any() else w
            mu = float(np.average(src["Y"], weights=ws))
            self.constant_[q] = (mu, float(np.sqrt(np.average((src["Y"] - mu) ** 2, weights=ws))))
        self.lineage_members_ = _lineage_members(levels, ev)
        self.controlled_table_ = ev.controlled
        self.controlled_ = ControlledEffects().fit(ev.controlled)
        self.association_sd_, self.association_pairs_ = self._association_error()
        self.domain_ = _domain(ev)
        self.evidence_summary_ = ev.describe()
        self.data_digest_ = ev.digest()
        self.quality_: dict[str, TargetQuality] = {}  # held-out quality per served target (with_evaluation)
        self.caveats_: list[str] = []  # notes every forecast carries (with_evaluation)
        self.metrics_: dict[str, float] = {}  # the evaluation's headline metrics (with_evaluation)
        self.posterior_: Any = None  # a nowcast's posterior curves the forecast reads instead (conditioned)
        self.posterior_classes_: np.ndarray | None = None
        return self

    # ---------------------------------------------------------------- variants (new fitted objects)
    def with_evaluation(self, *, quality: dict[str, TargetQuality] | None = None, caveats: Sequence[str] | None = None,
                        metrics: dict[str, float] | None = None) -> ForecastEngine:
        """A new fitted engine carrying what the evaluation found (``registry.evaluation``, ``registry.training``):
        each served target's held-out ``quality`` (an unpredictable one is answered with the constant), ``caveats``
        every forecast notes and the headline ``metrics``; None keeps this engine's. The fit is shared, not copied."""
        check_is_fitted(self, "level_")
        eng = copy.copy(self)
        if quality is not None:
            eng.quality_ = dict(quality)
        if caveats is not None:
            eng.caveats_ = list(caveats)
        if metrics is not None:
            eng.metrics_ = dict(metrics)
        return eng

    def without_studies(self, studies: Sequence[str]) -> ForecastEngine:
        """A new fitted engine whose controlled layer is refitted without ``studies``' comparisons, its association
        error recomputed (the level model is kept: it never saw the controlled table). For leave-one-study-out."""
        check_is_fitted(self, "level_")
        eng = copy.copy(self)
        eng.controlled_ = ControlledEffects(exclude_studies=tuple(studies)).fit(self.controlled_table_)
        eng.association_sd_, eng.association_pairs_ = eng._association_error()
        return eng

    def conditioned(self, posterior: Any) -> ForecastEngine:
        """A new fitted engine that forecasts a nowcast's update (``predictor.nowcast.Posterior``): the posterior's
        per-layer curves (``posterior.layer_curves``), trajectory-class probabilities and rise steepness (``p_post``)
        replace the fitted ones, and every target is data-driven (observed points: no constant answer)."""
        check_is_fitted(self, "level_")
        eng = copy.copy(self)
        eng.posterior_ = posterior
        eng.posterior_classes_ = posterior.class_probabilities()
        eng.quality_ = {}
        eng.p_ = posterior.p_post
        return eng

    def _fit_clock(self, ev: Evidence) -> None:
        """Calibrate every candidate clock (``predictor.clock.CANDIDATES``) on every onset the evidence holds (the
        checkpoint series' midpoints, ``TIMING_ONSETS``, the placeable rows of onsets_more.csv), score each leaving
        one family out, and serve the servable one with the smallest error (or ``clock`` when set). Sets
        ``effects_`` (the served clock), ``clock_``, ``clock_fit_``, ``clock_table_``, ``clock_families_``,
        ``onsets_``, ``onsets_left_out_``, ``timing_checks_`` (the served clock's onsets, each left out),
        ``tau_family_sd_`` (its between-family spread) and ``tau_coef_``/``tau_cov_``/``tau_s2_`` in its units."""
        native = self.series_effects_
        more, self.onsets_left_out_ = clocks.load_onsets_more()
        series = clocks.series_onsets(self.curves_, ev.archs, native, arch_timeline, _onset_family)
        onsets = [*series, *clocks.table_onsets(TIMING_ONSETS, ev.archs), *more]
        self.onsets_ = [{"label": o.label, "family": o.family, "steps": [o.lo, o.hi], "h": o.h, "bridge": o.bridge,
                         "assumptions": list(o.assumptions), "source": o.source, "series": o.series} for o in onsets]
        if len(series) < 2:  # no checkpoint series to pin the size slope: the clock before issue 29
            self.clock_, self.clock_fit_, self.clock_table_, self.clock_families_ = "lr_integral", None, [], []
            self.tau_family_sd_, self.timing_checks_ = TAU_FAMILY_FLOOR, []
            return
        own = self._own_family
        table, rows_by = [], {}
        for name, (_, _, _, servable) in clocks.CANDIDATES.items():
            eff = clocks.with_clock(native, name)
            for previous in (True, False):
                if previous and name not in ("lr_integral", "steps", "fraction"):
                    continue
                rows, summ = clocks.leave_one_family_out(onsets, eff, self.p_, arch_timeline, previous=previous, own=own)
                rows_by[(name, previous)] = rows
                table.append({"clock": name, "calibration": "previous (Pythia series only)" if previous else "across families",
                              "servable": servable, **summ})
        across = [r for r in table if r["calibration"] == "across families" and r["servable"]]
        chosen = self.clock or min(across, key=lambda r: r["rms_error"])["clock"]
        self.clock_, self.clock_table_ = chosen, table
        self.effects_ = clocks.with_clock(native, chosen)
        fit = clocks.calibrate(clocks.points_for(onsets, self.effects_, self.p_, arch_timeline), chosen)
        self.clock_fit_ = fit
        self.clock_families_ = sorted(fit.offsets)
        self.tau_coef_, self.tau_cov_, self.tau_s2_ = fit.coef, fit.cov, fit.s2
        self.tau_family_sd_ = fit.family_sd
        by_label = {o.label: o for o in onsets}
        self.timing_checks_ = [{**r, "source": by_label[r["onset"]].source,
                                "outside_family": self.timing_distance(by_label[r["onset"]].arch)}
                               for r in rows_by[(chosen, False)]]

    def _own_family(self, onset: clocks.Onset) -> bool:
        """Whether an onset's design is the checkpoint series' family and recipe (the series' own clock applies)."""
        return not self.timing_distance(onset.arch)

    def _onset(self, arch: Architecture) -> tuple[float | None, float, float]:
        """The step at which the curve has done ONSET_FRACTION of its rise (a published onset is where
        something first shows, not a midpoint), with its 90 % interval from tau_e's."""
        lt, lt_sd = self.tau_e(arch)
        tl = arch_timeline(arch, self.effects_, horizon=10 * arch.planned_steps)
        u = float(hill_inverse(np.array([ONSET_FRACTION]), self.p_)[0])
        v, lo, hi = (float(tl.steps_at(np.array([u * 10 ** (lt + k * Z90 * lt_sd)]))[0]) for k in (0, -1, 1))
        if math.isnan(v):
            return None, float("nan"), float("nan")
        return v, (v if math.isnan(lo) else lo), (float(tl.steps[-1]) if math.isnan(hi) else hi)

    def timing_distance(self, arch: Architecture) -> list[str]:
        """How this design departs from the family the clock is calibrated on: the design terms and recipe
        fields whose value no checkpoint series has (empty: the clock's own family)."""
        return self._away(arch, design_vector(arch))

    def _away(self, arch: Architecture, x: np.ndarray) -> list[str]:
        """``timing_distance`` of ``arch`` whose ``design_vector`` is ``x`` (a forecast reads it several times)."""
        ref = self._series_reference()
        if ref is None:
            return ["no checkpoint series"]
        seen, recipes = ref
        near = (np.abs(seen - x) < 1e-9).any(axis=0).tolist()
        out = [t for j, t in _DESIGN_TERMS if not near[j]]
        out += [f"{f}={getattr(arch, f)}" for f in RECIPE_FIELDS if _recipe_value(arch, f) not in recipes[f]]
        return out

    def _series_reference(self) -> tuple[np.ndarray, dict[str, set]] | None:
        """The checkpoint series' design vectors and recipe values (set in fit: ``series_ref_``)."""
        return self.series_ref_

    def _fit_time(self, ev: Evidence) -> None:
        traj = ev.layers[ev.layers["step"].notna()]
        fits = []
        for model, sub in traj.groupby("model"):
            tl = arch_timeline(ev.archs[model], self.series_effects_, horizon=sub["step"].max())
            f = fit_series(model, sub, tl)
            if f is not None:
                fits.append(f)
        self.curves_ = {f.model: f for f in fits}
        self.class_prior_, self.class_evidence_ = self._class_prior(traj, ev)
        fits = [f for f in fits if f.timed]  # the clock from series that pin their emergence (levels use them all)
        if len(fits) >= 2:
            x = np.array([math.log10(ev.archs[f.model].n_params()) - 9.0 for f in fits])
            y = np.array([f.log_tau_e for f in fits])
            A = np.column_stack([np.ones_like(x), x])
            coef, *_ = np.linalg.lstsq(A, y, rcond=None)
            resid = y - A @ coef
            dof = max(len(y) - 2, 1)
            s2 = float(resid @ resid / dof) if len(y) > 2 else 0.25
            cov = s2 * np.linalg.pinv(A.T @ A)
            self.tau_coef_, self.tau_cov_, self.tau_s2_ = coef, cov, s2
            self.series_params_B_ = [float(10 ** (v + 9.0) / 1e9) for v in x]
            self.series_archs_ = {f.model: ev.archs[f.model] for f in fits}
            self.p_ = float(np.median([f.p for f in fits]))
        else:  # no checkpoint series: Gu et al.'s emergence at 1-2k steps of a 60M model at lr 4e-4, no size trend
            self.tau_coef_ = np.array([math.log10(1500 * (4e-4 / 3e-4) ** self.effects_.kappa), 0.0])
            self.tau_cov_, self.tau_s2_, self.p_ = np.diag([0.25, 0.0]), 0.25, 1.5
            self.series_params_B_, self.series_archs_ = [], {}
        series = [self.series_archs_[m] for m in self.curves_ if m in self.series_archs_]
        self.series_ref_ = (np.stack([design_vector(a) for a in series]),
                            {f: {_recipe_value(a, f) for a in series} for f in RECIPE_FIELDS}) if series else None

    def _class_prior(self, traj: pd.DataFrame, ev: Evidence) -> tuple[dict[str, list[float]], list[dict]]:
        """Prior trajectory-class probabilities per depth zone (``predictor.trajectory``): every layer of every
        checkpoint series classified on its own curve's clock (tau_e, p) with white noise at the series' misfit."""
        rows, table = [], []
        for model, f in self.curves_.items():
            sub = traj[traj["model"] == model]
            q = "ratio" if sub["y_ratio"].notna().any() else "abs"
            piv = sub.pivot_table(index="layer", columns="step", values=f"y_{q}")
            steps = piv.columns.to_numpy(float)
            tl = arch_timeline(ev.archs[model], self.series_effects_, horizon=float(steps.max()))
            with np.errstate(divide="ignore"):
                log_u = np.log(np.maximum(tl(steps), 1e-300)) - math.log(10.0) * f.log_tau_e
            n_layers = ev.archs[model].n_layers
            for layer, y in piv.iterrows():
                i = int(np.flatnonzero(f.layers == layer)[0])
                probs = classify(log_u, y.to_numpy(float) - f.y0[q][i], f.p, max(f.rmse, SIGMA_CLASSIFY))
                zone = str(depth_zone(np.array([layer]), np.array([n_layers]))[0])
                rows.append((model, zone, probs))
                table.append({"model": model, "layer": int(layer), "zone": zone, "quantity": q,
                              **{c: float(v) for c, v in zip(CLASSES, probs, strict=True)}})
        return (class_prior(rows) if rows else uniform_prior()), table

    def class_probabilities(self, arch: Architecture) -> np.ndarray:
        """(L, 3) prior probabilities of the trajectory classes per layer, by depth zone."""
        if self.posterior_classes_ is not None:  # a nowcast's update (conditioned)
            return self.posterior_classes_
        return self.class_probabilities_of(arch.n_layers)

    def class_probabilities_of(self, n_layers: int) -> np.ndarray:
        """The prior's ``class_probabilities`` in a model of ``n_layers`` (they depend on the depth alone)."""
        prior = self.class_prior_ or uniform_prior()
        return np.array([prior[z] for z in ZONES], float)[_zone_index(n_layers)]

    def _association_error(self) -> tuple[float, list[dict]]:
        """How far the cross-family association of a design term is from the controlled estimate of the
        same change, beyond both uncertainties: the extra sd an associational what-if deserves
        (root mean square over the changes that have both, at least ``ASSOCIATION_SD_FLOOR``)."""
        coef = self.level_["abs"].coefficients()
        pairs = []
        for (f, v), term in ASSOCIATED.items():
            e = self.controlled_.estimate_of(f, v)
            if e is None or coef[term]["families"] == 0:
                continue
            pairs.append({"field": f, "value": v, "term": term, "association": coef[term]["coef"],
                          "association_sd": coef[term]["sd"], "controlled": e.mean, "controlled_sd": e.sd})
        excess = [(p["association"] - p["controlled"]) ** 2 - p["association_sd"] ** 2 - p["controlled_sd"] ** 2
                  for p in pairs]
        sd = math.sqrt(max(float(np.mean(excess)), ASSOCIATION_SD_FLOOR**2)) if excess else 1.0
        return sd, pairs

    def _proxy(self, arch: Architecture) -> tuple[Architecture, float, float, list[Estimate]]:
        """A design value no trained model has (DyT, softpick, ...): the level of the studies' base value
        plus the controlled effect of the change, its variance added (an unknown effect: 0 +- the prior)."""
        update, shift, var, used = {}, 0.0, 0.0, []
        for f, values in PROXY_VALUES.items():
            v = getattr(arch, f)
            if v not in values:
                continue
            update[f] = BASES[f]
            e = self.controlled_.estimate_of(f, v, arch.glu)
            if e is None:  # nobody measured it: the distribution of the measured changes' effects
                mu, sd = self.controlled_.prior_of(exclude=(f, v))
                shift, var = shift + mu, var + sd**2
            else:
                shift, var = shift + e.mean, var + e.sd**2
                used.append(e)
        return (arch.model_copy(update=update) if update else arch), shift, var, used

    def _level_many(self, archs: Sequence[Architecture], protocol: str | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """(mean, sd) of the largest layer's asymptotic log10 magnitude per quantity, for several architectures."""
        return self._level_design_many(archs, protocol)[0]

    def _level_design_many(self, archs: Sequence[Architecture], protocol: str | None = None, memo: DesignMemo | None = None
                           ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray]:
        """``_level_many`` and the design vectors the level read (rows of X, in ``protocol`` or each one's own)."""
        prox = [self._proxy(a) for a in archs]
        X = np.stack([self._x(p[0], protocol or a.protocol, memo) for p, a in zip(prox, archs, strict=True)])
        shift, var = np.array([p[1] for p in prox]), np.array([p[2] for p in prox])
        lineages = [self.lineage(a) for a in archs]
        out = {}
        for q in QUANTITIES:
            m, sd = self.level_[q]._predict(X, lineages)
            out[q] = (m + shift, np.sqrt(sd**2 + var))
        return out, X

    def lineage(self, arch: Architecture) -> str | None:
        """The lineage whose measured members this design leans on (None: a new lineage). A lineage the
        evidence does not hold is the user's error, named with the ones it does."""
        name = arch.lineage
        if name is None or name == LINEAGE_NEW:
            return None
        known = self.level_["abs"].lineages_
        if name not in known:
            raise ArchitectureError(f"lineage: {name!r} is not a lineage this predictor holds; use 'new' or one of: "
                                    f"{', '.join(sorted(known))}")
        return name

    def lineage_info(self, arch: Architecture) -> dict:
        """What the design's lineage contributes (``predictor.response.LineageInfo`` as plain data): its measured
        members, the nearest one and how the design differs from it, and how far the lineage moves the level."""
        name = self.lineage(arch)
        x = self.design(arch)[None, :]
        if name is None:
            return self._lineage_info(arch, None, float(self.level_["abs"]._predict(x, [None])[1][0]), None)
        return self._lineage_info(arch, name, None, self.level_["abs"].lineage_effect(name, x))

    def _lineage_info(self, arch: Architecture, name: str | None, sd: float | None, effect: float | None) -> dict:
        """``lineage_info`` of a design of lineage ``name``: a new lineage's level, in the engine's protocol, has sd
        ``sd``; a known lineage moves the level by ``effect`` (log10)."""
        if name is None:
            return {"name": None, "members": [], "nearest": None, "differences": [], "effect": None,
                    "text": "a new lineage: the level is the common terms' (size, design switches, protocol), with the "
                            f"between-lineage spread in its interval (x{10 ** (Z90 * sd):.0f} either way at 90 %); set "
                            f"`lineage` to one of {len(self.level_['abs'].lineages_)} known lineages to lean on measured siblings"}
        members = self.lineage_members_.get(name, [])
        w = width_term(arch.d_model)
        near = min(members, key=lambda m: (abs(width_term(m["d_model"]) - w), abs(math.log10(m["params_B"] * 1e9 / arch.n_params()))))
        diffs = [f"{f} {_show(getattr(arch, f))} vs {_show(near['fields'][f])}" for f in LINEAGE_FIELDS
                 if f in near["fields"] and getattr(arch, f) != near["fields"][f]]
        size = arch.n_params() / (near["params_B"] * 1e9)
        effect = 10**effect
        shown = [{k: v for k, v in m.items() if k != "fields"} for m in members]
        listed = ", ".join(f"{m['model']} {m['peak_abs']:,.0f}" for m in shown)
        return {"name": name, "members": shown, "nearest": near["model"], "differences": diffs, "effect": effect,
                "text": f"lineage {name}: {len(members)} measured member(s) ({listed}); "
                        f"nearest {near['model']} (this design x{size:.2g} its parameters"
                        + (f"; differs in {', '.join(diffs)}" if diffs else "; same design switches") + "); "
                        f"the lineage puts the level x{effect:.2g} the common terms alone"}

    def protocol_shift(self, arch: Architecture, to: str = WORST_CASE) -> dict[str, tuple[float, float]]:
        """Per quantity, the mean and sd (log10) that turn this design's magnitudes in its protocol into ``to``'s:
        the posterior of the protocol terms' difference (the depth profile and the clock do not depend on it)."""
        xa, xb = self._x(arch, arch.protocol), self._x(arch, to)
        if np.array_equal(xa, xb):
            return {q: (0.0, 0.0) for q in QUANTITIES}
        return {q: tuple(float(v[0]) for v in self.level_[q]._diff(xa[None, :], xb[None, :])) for q in QUANTITIES}

    def association(self, arch: Architecture, change: dict, memo: DesignMemo | None = None) -> tuple[float, float] | None:
        """Mean and sd (log10, largest |h|) of the cross-family association's effect of ``change`` on ``arch``
        (None: the change touches no design term the trained models vary, or a value none of them has).
        ``memo``: the calling pass's, where it asks for several changes of the same designs."""
        if any(change[f] in vals or getattr(arch, f) in vals for f, vals in PROXY_VALUES.items() if f in change):
            return None
        if memo is None:
            return self._association(arch, change, None)
        asked = (id(arch), *change.items())
        hit = memo.associations.get(asked)
        if hit is None:
            hit = memo.associations[asked] = (arch, self._association(arch, change, memo))
        return hit[1]

    def _association(self, arch: Architecture, change: dict, memo: DesignMemo | None) -> tuple[float, float] | None:
        """``association`` of a change that keeps to values trained models have."""
        xa, xb = self._x(arch, self.protocol, memo), self._x(arch.model_copy(update=change), self.protocol)
        key = (xb - xa).tobytes()  # the effect depends on the design-vector difference only: asked again and again
        cache = self._association_cache
        if key not in cache:
            moved = [t for t, a, b in zip(TERMS, xa, xb, strict=True) if a != b]
            if not moved or any(self.level_["abs"].support_.get(t, 0) == 0 for t in moved):
                cache[key] = None
            else:
                m, sd = self.level_["abs"]._diff(xa[None, :], xb[None, :])
                cache[key] = (float(m[0]), float(sd[0]))
        return cache[key]

    def design(self, arch: Architecture, memo: DesignMemo | None = None) -> np.ndarray:
        """The design vector the level model reads for ``arch`` (a value no trained model has read as its base)."""
        return self._x(self._proxy(arch)[0], self.protocol, memo)

    def _x(self, arch: Architecture, protocol: str, memo: DesignMemo | None = None) -> np.ndarray:
        """The design vector with terms outside ``terms`` zeroed (they then carry no effect)."""
        return self._mask(design_vector(arch, protocol) if memo is None else memo.vector(arch, protocol))

    def _mask(self, x: np.ndarray) -> np.ndarray:
        """``x`` with terms outside ``terms`` zeroed (``_x`` of a design vector already computed)."""
        if self.terms is not None:
            x = x * np.array([t in self.terms or t.startswith("protocol_") for t in TERMS], float)
        return x

    def tau_e(self, arch: Architecture) -> tuple[float, float]:
        """log10 tau_e (in the served clock, ``effects_``) and its predictive sd for an architecture: the checkpoint
        series' size regression for a design of their family and recipe, else the intercept calibrated across
        families with the between-family spread (``predictor.clock``)."""
        return self._tau_e(math.log10(arch.n_params()) - 9.0, self.timing_distance(arch))

    def _tau_e(self, x: float, away: list[str]) -> tuple[float, float]:
        """``tau_e`` of a design of log10 parameters - 9 ``x`` whose ``timing_distance`` is ``away``."""
        if self.clock_fit_ is not None:
            return self.clock_fit_.predict(x, own_family=not away)
        a = np.array([1.0, x])
        family = self.tau_family_sd_ if away else 0.0
        return float(a @ self.tau_coef_), float(math.sqrt(a @ self.tau_cov_ @ a + self.tau_s2_ + family**2))

    def _levels(self, ev: Evidence) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Asymptotic per-layer log magnitudes: trained models as measured; checkpoint series from
        their Hill fit; a single checkpoint divided by H(u) at its step."""
        rows = []
        for (model, protocol), sub in ev.layers.groupby(["model", "protocol"]):
            arch = ev.archs[model]
            final = sub[sub["step"].isna()]
            if model in self.curves_ and protocol == DEFAULT_PROTOCOL:
                f = self.curves_[model]
                for qq in QUANTITIES:
                    for layer, y0, r in zip(f.layers, f.y0[qq], f.rise[qq], strict=True):
                        if np.isfinite(r):
                            rows.append((model, protocol, int(layer), arch.n_layers, qq, float(y0 + r)))
                continue
            if len(final):
                src, h = final, 1.0
            else:  # one checkpoint (or two): scale up to the asymptote with the size-predicted tau_e
                last = sub["step"].max()
                src = sub[sub["step"] == last]
                lt, _ = self.tau_e(arch)
                h = float(hill(arch_timeline(arch, self.effects_, horizon=last)(last) / 10**lt, self.p_))
            for r in src.to_dict("records"):
                for qq in QUANTITIES:
                    y = r[f"y_{qq}"]
                    if pd.notna(y):
                        y0 = Y0_DEFAULT[qq]
                        rows.append((model, protocol, int(r["layer"]), arch.n_layers, qq, y0 + (y - y0) / max(h, H_FLOOR)))
        per_layer = pd.DataFrame(rows, columns=["model", "protocol", "layer", "n_layers", "quantity", "Y"])
        per_layer = per_layer.groupby(["model", "protocol", "layer", "n_layers", "quantity"], as_index=False)["Y"].mean()
        lv = per_layer.groupby(["model", "protocol", "quantity"], as_index=False)["Y"].max()
        offsets = per_layer.merge(lv.rename(columns={"Y": "M"}), on=["model", "protocol", "quantity"])
        offsets["offset"] = offsets["Y"] - offsets["M"]
        for r in ev.anchors.to_dict("records"):  # model-level figures: asymptote through the same curve
            arch = ev.archs[r["model"]]
            lt, _ = self.tau_e(arch)
            h = float(hill(arch_timeline(arch, self.effects_)(r["step"]) / 10**lt, self.p_))
            y0 = Y0_DEFAULT[r["metric"]]
            lv.loc[len(lv)] = [r["model"], r["protocol"], r["metric"], y0 + (math.log10(r["value"]) - y0) / max(h, H_FLOOR)]
        lv["family"] = lv["model"].map(family_of)
        lv["lineage"] = lv["model"].map(ev.lineages)
        return lv, offsets

    # ---------------------------------------------------------------- prediction
    def level(self, arch: Architecture, protocol: str | None = None) -> dict[str, tuple[float, float]]:
        """(mean, sd) of the asymptotic log10 magnitude of the largest layer, per quantity."""
        check_is_fitted(self, "level_")
        return {q: (float(m[0]), float(s[0])) for q, (m, s) in self._level_many([arch], protocol).items()}

    def _fit_derived(self) -> dict[Any, Any]:
        """What the hot path derives from the fit alone (depth profiles per depth, the trajectory classes' dicts per
        depth, the timing notes' fixed part), made once: ``fit`` starts it afresh; the variants share it (they share
        the fit it is derived from)."""
        return self.__dict__.setdefault("_derived", {})

    def _depth(self, n_layers: int) -> tuple[np.ndarray, np.ndarray]:
        """Per quantity (rows) and layer, the depth profile's offset and its sd in a model of ``n_layers`` (read only)."""
        memo = self._fit_derived()
        hit = memo.get(("depth", n_layers))
        if hit is None:
            basis = _layer_basis(n_layers)
            hit = tuple(np.stack(v) for v in zip(*(self.profile_[q]._at(*basis) for q in QUANTITIES), strict=True))
            for v in hit:
                v.flags.writeable = False
            memo[("depth", n_layers)] = hit
        return hit

    def _class_dicts(self, n_layers: int) -> list[dict[str, float]]:
        """``as_dict`` of each layer's ``class_probabilities`` in a model of ``n_layers`` (shared: copy before handing
        out). The prior's are made once per depth, a nowcast's posterior's once per call."""
        if self.posterior_classes_ is not None:
            return _class_dicts(self.posterior_classes_)
        memo = self._fit_derived()
        hit = memo.get(("classes", n_layers))
        if hit is None:
            hit = memo[("classes", n_layers)] = _class_dicts(self.class_probabilities_of(n_layers))
        return hit

    def layer_curves(self, arch: Architecture, steps: np.ndarray, protocol: str | None = None,
                     lev: dict[str, tuple[float, float]] | None = None, tl: Timeline | None = None) -> dict:
        """Everything per layer, vectorised: log10 values (mean, lo, hi) at ``steps`` per quantity.
        ``lev`` and ``tl``: the level and timeline when the caller computed them for several architectures.
        A conditioned engine returns its posterior's curves (in the same layout; ``lev`` and ``tl`` unused)."""
        if self.posterior_ is not None:
            return self.posterior_.layer_curves(arch, steps, protocol, lev, tl)
        lev = lev or self.level(arch, protocol)
        lt, lt_sd = self.tau_e(arch)
        tl = tl or arch_timeline(arch, self.effects_, horizon=max(float(np.max(steps)), arch.planned_steps))
        c = self._curves_many(np.array([float(arch.batch_tokens)]), steps, arch.n_layers,
                              np.array([[[lev[q][0] for q in QUANTITIES]]]), np.array([[[lev[q][1] for q in QUANTITIES]]]),
                              tl(steps)[None, :], np.array([lt]), np.array([lt_sd]))
        return {"timeline": tl, "log_tau_e": (lt, lt_sd), "h": c["h"][0],
                **{q: {k: c[k][0, 0, j] for k in _CURVE_KEYS} for j, q in enumerate(QUANTITIES)}}

    def _curves_many(self, batch_tokens: np.ndarray, steps: np.ndarray, n_layers: int, level: np.ndarray,
                     level_sd: np.ndarray, tau: np.ndarray, lt: np.ndarray, lt_sd: np.ndarray) -> dict[str, np.ndarray]:
        """``layer_curves`` of several designs of ``n_layers`` layers, each at several levels (a forecast's protocol
        and the worst case), as arrays over (design, level, quantity, layer[, step]): ``level``, ``level_sd`` (design,
        level, quantity); ``tau`` (design, step): each design's effective time at ``steps``; ``lt``, ``lt_sd``: its
        log10 tau_e. The depth profile is read once, the clock and the widening beyond the evidence once per design."""
        z = Z90
        lt, lt_sd = lt[:, None], lt_sd[:, None]
        h = hill(tau / 10**lt, self.p_)
        h_fast = hill(tau / 10 ** (lt - z * lt_sd), self.p_)[:, None, None, None]
        h_slow = hill(tau / 10 ** (lt + z * lt_sd), self.p_)[:, None, None, None]
        down, up = (v[:, None, None, None] for v in self._beyond(np.asarray(steps, float) * batch_tokens[:, None]))
        d, d_sd = self._depth(n_layers)
        Y = level[..., None] + d
        sd = np.sqrt((level_sd**2)[..., None] + d_sd**2)
        y0 = _Y0[:, None]
        rise, rise_lo, rise_hi = (Y - y0)[..., None], (Y - z * sd - y0)[..., None], (Y + z * sd - y0)[..., None]
        mean = y0[..., None] + rise * h[:, None, None, None]
        lo = y0[..., None] + np.minimum(rise_lo * h_slow, rise_lo * h_fast)
        hi = y0[..., None] + np.maximum(rise_hi * h_fast, rise_hi * h_slow)
        lo, hi = np.minimum(lo - down, mean), np.maximum(hi + up, mean)
        return {"h": h, "Y": Y, "sd": sd, "mean": mean, "lo": lo, "hi": hi}

    def forecast(self, arch: Architecture | dict, steps: list[int] | None = None, name: str = "maforecast-predictor",
                 version: str | None = None, alias: str | None = None, protocol: str | None = None) -> Forecast:
        """The per-point ``Forecast`` (``forecast_arrays``, expanded)."""
        return self.forecast_arrays(arch, steps, name, version, alias, protocol).to_forecast()

    def forecast_arrays(self, arch: Architecture | dict, steps: list[int] | None = None, name: str = "maforecast-predictor",
                        version: str | None = None, alias: str | None = None, protocol: str | None = None) -> ForecastArrays:
        """The forecast, every per-layer quantity computed for all layers at once (``forecast_arrays_many`` of one
        design, in ``protocol`` where given)."""
        check_is_fitted(self, "level_")
        arch = parse_architecture(arch)
        if protocol and protocol != arch.protocol:
            arch = arch.model_copy(update={"protocol": protocol})
        return self._forecast_many([arch], steps, name, version, alias)[0]

    def forecast_arrays_many(self, archs: Sequence[Architecture | dict], steps: list[int] | None = None
                             ) -> list[ForecastArrays]:
        """``forecast_arrays(a, steps)`` of each design, their array work done once: the levels in one prediction, the
        curves, magnitudes and emergence of the designs that share a step grid and a depth as one set of arrays."""
        check_is_fitted(self, "level_")
        return self._forecast_many([parse_architecture(a) for a in archs], steps, "maforecast-predictor", None, None)

    def _forecast_many(self, archs: list[Architecture], steps: list[int] | None, name: str, version: str | None,
                       alias: str | None) -> list[ForecastArrays]:
        """``forecast_arrays_many`` of parsed designs, each in its own protocol."""
        if not archs:
            return []
        switches = [_switches(a) for a in archs]
        levels = self._forecast_levels_many(archs, switches)
        groups: dict[tuple, list[int]] = {}
        for i, arch in enumerate(archs):
            t_end = int(arch.planned_steps)
            shown = sorted({int(s) for s in (steps or default_steps(t_end)) if 0 <= int(s) <= 10 * t_end})
            grid = sorted(set(shown) | {t_end})  # the end is always computed (ratio_end = f(t_end)), shown if asked
            groups.setdefault((tuple(grid), tuple(shown), t_end, arch.n_layers), []).append(i)
        unpredictable = [t for t, q in self.quality_.items() if not q.predictable]
        ev = self.evidence_summary_
        notes = ([f"trained on {ev['models']} models in {ev.get('lineages', '?')} lineages ({ev['checkpoint_models']} with "
                  "checkpoint series)"],
                 ["intervals: 90 % (Gaussian in log10: the level's posterior given the lineage's measured members, or the "
                  "between-lineage spread for a new one, + depth spread, scaled to cover 90 % of held-out models of that "
                  "question, combined with the emergence-time uncertainty)", *self.caveats_],
                 [f"{SERVED_TARGETS[t]} is not predictable from the data held (held-out error {self.quality_[t].mae:.2f} "
                  f"vs {self.quality_[t].baseline_mae:.2f} for a constant): the constant is shown" for t in unpredictable])
        out: list[Any] = [None] * len(archs)
        for (grid, shown, t_end, _), idx in groups.items():
            made = self._forecast_group([archs[i] for i in idx], [switches[i] for i in idx], [levels[i] for i in idx],
                                        list(grid), shown, t_end, unpredictable, notes, (name, version, alias))
            for i, fc in zip(idx, made, strict=True):
                out[i] = fc
        return out

    def _forecast_group(self, archs: list[Architecture], switches: list[list[float]], levels: list[tuple[dict, dict, dict]],
                        steps: list[int], shown: tuple[int, ...], t_end: int, unpredictable: list[str],
                        notes: tuple[list[str], list[str], list[str]], who: tuple[str, str | None, str | None]
                        ) -> list[ForecastArrays]:
        """The forecasts of designs of one depth on one step grid (``steps``, of which ``shown`` are shown), from their
        ``_switches`` and ``_forecast_levels_many``: ``notes``, those every forecast carries (before its protocol's,
        after it, at the end)."""
        st = np.array(steps, float)
        n = archs[0].n_layers
        xs = [_with_protocol(sw, DEFAULT_PROTOCOL) for sw in switches]
        aways = [self._away(a, x) for a, x in zip(archs, xs, strict=True)]
        if self.posterior_ is None:
            tls = [arch_timeline(a, self.effects_, horizon=max(float(st[-1]), a.planned_steps)) for a in archs]
            lt, lt_sd = np.array([self._tau_e(sw[0], away) for sw, away in zip(switches, aways, strict=True)]).T
            c = self._curves_many(np.array([float(a.batch_tokens) for a in archs]), st, n,
                                  np.array([[[lv[q][0] for q in QUANTITIES] for lv in lvs[:2]] for lvs in levels]),
                                  np.array([[[lv[q][1] for q in QUANTITIES] for lv in lvs[:2]] for lvs in levels]),
                                  np.stack([tl(st) for tl in tls]), lt, lt_sd)
        else:
            curves = []
            for a, (lev, lev_w, _) in zip(archs, levels, strict=True):
                cc = self.layer_curves(a, st, lev=lev)
                curves.append((cc, cc if a.protocol == WORST_CASE else
                               self.layer_curves(a.model_copy(update={"protocol": WORST_CASE}), st, lev=lev_w, tl=cc["timeline"])))
            tls = [cc["timeline"] for cc, _ in curves]
            lt, lt_sd = np.array([cc["log_tau_e"] for cc, _ in curves], float).T
            c = {k: np.array([[[cc[q][k] for q in QUANTITIES] for cc in pair] for pair in curves]) for k in _CURVE_KEYS}
        # (design, level, quantity, layer[, step]): level 0 the design's protocol, 1 the worst case
        mean, lo, hi, Y, sd = c["mean"], c["lo"], c["hi"], c["Y"], c["sd"]
        i_end = steps.index(t_end)
        shown_set = set(shown)
        shown_k = [k for k, s in enumerate(steps) if s in shown_set]
        a_end_log, r_end_log = mean[:, 0, 0, :, i_end], mean[:, 0, 1, :, i_end]
        sd_end = np.maximum((hi[:, 0, :, :, i_end] - lo[:, 0, :, :, i_end]) / (2 * Z90), 1e-6)
        # P(|a| > 100 and ratio > 1000) with the two errors moving together (the upper Frechet bound)
        p_mass = np.minimum(ndtr((a_end_log - MASSIVE_ABS) / sd_end[:, 0]), ndtr((r_end_log - MASSIVE_RATIO) / sd_end[:, 1]))
        massive = (a_end_log > MASSIVE_ABS) & (r_end_log > MASSIVE_RATIO)
        # every magnitude in linear units: one exponential and one conversion for the trajectories, one for the ends
        r_m, r_lo, r_hi, Yr, sdr = mean[:, :, 1], lo[:, :, 1], hi[:, :, 1], Y[:, :, 1], sd[:, :, 1]
        traj = _clip10(np.stack([r_m[..., shown_k], r_lo[..., shown_k], r_hi[..., shown_k]], axis=2)).tolist()
        ends = _clip10(np.stack([r_m[..., i_end], r_lo[..., i_end], r_hi[..., i_end], Yr, Yr - Z90 * sdr, Yr + Z90 * sdr,
                                 mean[:, :, 0, :, i_end], lo[:, :, 0, :, i_end], hi[:, :, 0, :, i_end]], axis=2)).tolist()
        y0 = Y0_DEFAULT["ratio"]
        rises, u = self._emerge_u(y0, Yr[:, 0])
        t_emerge = (None if "t_emerge" in unpredictable else self._t_emerge_many(archs, rises, u, lt, lt_sd))
        p_emerge = self._p_emerge_many(tls, rises, u, lt, lt_sd, t_end).tolist()
        rising = _still_rising(r_m[:, 0].reshape(len(archs) * n, -1), steps, t_end).reshape(len(archs), n)
        classes = np.where(rising, "log_increase", "plateau").tolist()
        class_dicts = self._class_dicts(n)
        Y_inf, p_mass, massive, lts = Y[:, 0].tolist(), p_mass.tolist(), massive.tolist(), lt.tolist()

        def constant(q: str) -> dict[str, list[float]]:
            iv = self._constant_interval(q)
            return {"value": [iv.value] * n, "lo": [iv.lo] * n, "hi": [iv.hi] * n}

        def magnitudes(tr: list, en: list) -> dict:
            return {"trajectory": {"steps": list(shown), "value": tr[0], "lo": tr[1], "hi": tr[2]},
                    "ratio_end": constant("ratio") if "ratio_end" in unpredictable else
                    {"value": en[0], "lo": en[1], "hi": en[2]},
                    "steady_state": {"value": en[3], "lo": en[4], "hi": en[5]},
                    "peak_abs": constant("abs") if "peak_abs" in unpredictable else {"value": en[6], "lo": en[7], "hi": en[8]}}

        name, version, alias = who
        kappa, beta = float(self.effects_.kappa), float(self.effects_.beta)
        out = []
        for i, arch in enumerate(archs):
            lev, lev_w, lineage = levels[i]
            protocol = arch.protocol
            shown_m = magnitudes(traj[i][0], ends[i][0])
            # how the worst case departs from the shown protocol at the level (a nowcast's update moves by it)
            shift = {q: [lev_w[q][0] - lev[q][0], math.sqrt(max(lev_w[q][1] ** 2 - lev[q][1] ** 2, 0.0))] for q in QUANTITIES}
            te = ({"value": [None] * n, "lo": [None] * n, "hi": [None] * n} if t_emerge is None else t_emerge[i])
            # constructed, not validated: every value is already of its field's type (lists of Python floats, bools and
            # strings from ``tolist``, the nested arrays constructed the same way, the warnings validated when made)
            out.append(ForecastArrays.model_construct(
                predictor_name=name, predictor_version=version, predictor_alias=alias, architecture=arch.label(),
                t_end=t_end, trajectory=TrajectoryArrays.model_construct(**shown_m["trajectory"]),
                params={"y0": [y0] * n, "Y_inf": Y_inf[i][1], "Y_inf_abs": Y_inf[i][0], "log10_tau_e": [lts[i]] * n,
                        "p": [float(self.p_)] * n, "kappa": [kappa] * n, "beta": [beta] * n},
                t_emerge=EmergenceArrays.model_construct(**te),
                p_emerge_within_plan=p_emerge[i],
                trajectory_class=classes[i],
                class_probabilities=[d.copy() for d in class_dicts],
                ratio_end=IntervalArrays.model_construct(**shown_m["ratio_end"]),
                steady_state=IntervalArrays.model_construct(**shown_m["steady_state"]),
                peak_abs=IntervalArrays.model_construct(**shown_m["peak_abs"]),
                massive=massive[i], p_massive=p_mass[i],
                applicability=self._applicability(arch, xs[i]),
                notes=[*notes[0], f"magnitudes in the {protocol} protocol: {PROTOCOLS[protocol]}; precision risk uses the "
                       f"worst case ({WORST_CASE}: {PROTOCOLS[WORST_CASE]})", *notes[1], *self.contradictions(arch),
                       *self.timing_notes(arch, aways[i]), *self.extrapolation_notes(arch), *schedule_notes(arch), *notes[2]],
                protocol=protocol, unpredictable=list(unpredictable), worst_case_shift=shift,
                worst_case_arrays=None if protocol == WORST_CASE else magnitudes(traj[i][1], ends[i][1]), lineage=lineage,
            ))
        return out

    def _forecast_levels_many(self, archs: list[Architecture], switches: list[list[float]]
                              ) -> list[tuple[dict[str, tuple[float, float]], dict[str, tuple[float, float]], dict]]:
        """Per design (whose ``_switches`` are ``switches``): its level in its protocol and in the worst case, and its
        ``lineage_info`` (a new lineage's in the engine's protocol: the first row's, not predicted again). One
        prediction of the level model for all."""
        rows, shift, var, lineages = [], [], [], []
        for arch, sw in zip(archs, switches, strict=True):
            prox, s, v, _ = self._proxy(arch)
            sw = sw if prox is arch else _switches(prox)
            rows += [self._mask(_with_protocol(sw, p)) for p in (arch.protocol, WORST_CASE)]
            shift.append(s)
            var.append(v)
            lineages.append(self.lineage(arch))
        X = np.stack(rows)
        shift_, var_ = np.array(shift)[:, None], np.array(var)[:, None]
        levels = {}
        for q in QUANTITIES:
            m, sd = (v.reshape(-1, 2) for v in self.level_[q]._predict(X, [g for g in lineages for _ in (0, 1)]))
            levels[q] = ((m + shift_).tolist(), np.sqrt(sd**2 + var_).tolist())
            if q == "abs":
                new_sd = sd[:, 0].tolist()
        out = []
        for i, (arch, g) in enumerate(zip(archs, lineages, strict=True)):
            lineage = (self._lineage_info(arch, None, new_sd[i], None) if g is None and arch.protocol == self.protocol
                       else self.lineage_info(arch))
            lev, lev_w = ({q: (levels[q][0][i][k], levels[q][1][i][k]) for q in QUANTITIES} for k in (0, 1))
            out.append((lev, lev_w, lineage))
        return out

    def beyond(self, arch: Architecture, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """How far below and above (log10) the interval reaches at ``steps`` for the part of the plan beyond the
        longest trajectory in the evidence (``_late_growth``): zero inside it, growing with the doublings beyond."""
        return self._beyond(np.asarray(steps, float) * arch.batch_tokens)

    def _beyond(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``beyond`` at ``tokens`` trained (steps times batch, of any shape)."""
        horizon = self.horizon_tokens_
        lo, hi = self.late_slopes_
        with np.errstate(divide="ignore"):  # no trajectory in the evidence: an infinite horizon, nothing beyond it
            d = np.maximum(np.log2(np.maximum(tokens, 1.0) / horizon), 0.0)
        return d * max(-lo, 0.0), d * max(hi, 0.0)

    def extrapolation_notes(self, arch: Architecture) -> list[str]:
        horizon = self.horizon_tokens_
        tokens = arch.planned_steps * arch.batch_tokens
        if not math.isfinite(horizon) or tokens <= horizon:
            return []
        down, up = self.beyond(arch, np.array([float(arch.planned_steps)]))
        lo, hi = self.late_slopes_
        return [f"this plan runs {tokens / 1e9:,.0f}B tokens, x{tokens / horizon:.1f} beyond the longest trajectory the "
                f"evidence holds ({horizon / 1e9:,.0f}B tokens): whether the layers plateau, keep growing or decline there is "
                f"not measured, so the interval widens by the rates the longest trajectories still moved at their end "
                f"({lo:+.2f} to {hi:+.2f} decades per doubling): -{down[0]:.2f} / +{up[0]:.2f} decades at the end"]

    def _end_h(self, archs: Sequence[Architecture], memo: DesignMemo) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The Hill fraction H(tau(t_end)/tau_e) per architecture, at tau_e and at its 90 % ends (fast, slow)."""
        tau = np.array([float(arch_timeline(a, self.effects_, horizon=a.planned_steps)(float(a.planned_steps)))
                        for a in archs])
        xs = [memo.vector(a) for a in archs]  # its first term is the size tau_e reads
        lt, lt_sd = np.array([self._tau_e(float(x[0]), self._away(a, x)) for a, x in zip(archs, xs, strict=True)]).T
        return (hill(tau / 10**lt, self.p_), hill(tau / 10 ** (lt - Z90 * lt_sd), self.p_),
                hill(tau / 10 ** (lt + Z90 * lt_sd), self.p_))

    def end_logs_many(self, archs: Sequence[Architecture], protocol: str | None = None) -> list[dict[str, np.ndarray]]:
        """Per architecture and quantity, the per-layer log10 value at the planned end at the level's mean:
        rows (tau_e, fast, slow). What-if differences (``predictor.whatif``) are taken on these."""
        check_is_fitted(self, "level_")
        return self._end_logs_designs(archs, protocol)[0]

    def _end_logs_designs(self, archs: Sequence[Architecture], protocol: str | None = None,
                          memo: DesignMemo | None = None) -> tuple[list[dict[str, np.ndarray]], np.ndarray | None]:
        """``end_logs_many`` of a fitted engine and the design vectors (``design``) of the architectures, rows of one
        array (what-if differences read both: the level's design vectors are these where the protocol is the engine's).
        ``memo``: the calling pass's (the level, the clock and the differences read the same design vectors)."""
        if not archs:
            return [], None
        memo = DesignMemo() if memo is None else memo
        levels, X = self._level_design_many(archs, protocol, memo)
        if protocol is None:
            own = [a.protocol == self.protocol for a in archs]
        else:
            own = [protocol == self.protocol] * len(archs)
        if not all(own):
            X = np.stack([x if o else self.design(a, memo) for x, o, a in zip(X, own, archs, strict=True)])
        hs = np.stack(self._end_h(archs, memo), axis=1)  # (n, 3)
        out: list[dict[str, np.ndarray]] = [{} for _ in archs]
        depth = np.array([a.n_layers for a in archs])
        for n_layers in np.unique(depth):  # one depth profile per depth, all its architectures at once
            idx = np.flatnonzero(depth == n_layers)
            offsets = self._depth(int(n_layers))[0]
            for j, q in enumerate(QUANTITIES):
                d = offsets[j]
                Y, y0 = levels[q][0][idx, None] + d[None, :], Y0_DEFAULT[q]
                vals = y0 + (Y - y0)[:, None, :] * hs[idx][:, :, None]  # (k, 3, layers)
                for k, i in enumerate(idx):
                    out[i][q] = vals[k]
        return out, X

    def _constant_interval(self, q: str) -> Interval:
        mu, sd = self.constant_[q]
        return Interval(value=float(_clip10(mu)), lo=float(_clip10(mu - Z90 * sd)), hi=float(_clip10(mu + Z90 * sd)))

    def _emerge_u(self, y0: float, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per layer: whether the ratio rises (from ``y0`` to its steady state ``Y``), and the u = tau/tau_e at which
        half of that rise is done in linear units (``_t_emerge`` and ``_p_emerge`` read both)."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            target = np.log10((10**y0 + 10**Y) / 2)
            u = hill_inverse((target - y0) / (Y - y0), self.p_)
        return y0 + 0.05 < Y, u

    def _t_emerge_many(self, archs: list[Architecture], ok: np.ndarray, u: np.ndarray, lt: np.ndarray,
                       lt_sd: np.ndarray) -> list[dict]:
        """Per design and layer (rows of ``ok``, ``u``; ``lt``, ``lt_sd`` per design): the first step with half of the
        ratio's rise from f(0) to its steady state (the curve's asymptote Y_inf) done, in linear units, with its 90 %
        interval from tau_e's. The steady state does not depend on where the plan stops, so neither does t_emerge:
        DESIGN section 5's "maximum over [0, t_end]" made a shorter plan emerge *earlier* (its maximum is lower). Any
        end may lie after the planned end: the curve is continued at the schedule's last learning rate up to
        ``clocks.HORIZON`` plans (``value_after_plan``, ``hi_after_plan``); an end beyond that is given as that horizon.
        ``None`` only where the ratio does not rise. Designs of one plan share its timeline: read once for them all."""
        tls = [arch_timeline(a, self.effects_, horizon=clocks.HORIZON * float(a.planned_steps)) for a in archs]
        scale = u[None] * 10 ** (lt[None, :, None] + np.array([0, -1, 1])[:, None, None] * Z90 * lt_sd[None, :, None])
        at = np.empty_like(scale)  # value, lo, hi
        plans: dict[int, list[int]] = {}
        for i, tl in enumerate(tls):
            plans.setdefault(id(tl), []).append(i)
        for rows in plans.values():
            tl = tls[rows[0]]
            got = tl.steps_at(scale[:, rows])
            at[:, rows] = np.where(np.isnan(got), float(tl.steps[-1]), got)
        vals = np.stack([at[0], np.minimum(at[1], at[0]), np.maximum(at[2], at[0])]).tolist()
        flags = ok.tolist()
        out = []
        for i, a in enumerate(archs):
            t_end = float(a.planned_steps)
            val, lo, hi = vals[0][i], vals[1][i], vals[2][i]
            if all(flags[i]):  # the usual case: every layer rises
                out.append({"value": val, "lo": lo, "hi": hi, "value_after_plan": [x > t_end for x in val],
                            "hi_after_plan": [x > t_end for x in hi]})
                continue
            fl = flags[i]
            d = {k: [x if o else None for x, o in zip(v, fl, strict=True)] for k, v in (("value", val), ("lo", lo), ("hi", hi))}
            d["value_after_plan"] = [bool(o and x > t_end) for x, o in zip(val, fl, strict=True)]
            d["hi_after_plan"] = [bool(o and x > t_end) for x, o in zip(hi, fl, strict=True)]
            out.append(d)
        return out

    def _p_emerge_many(self, tls: list[Timeline], rises: np.ndarray, u: np.ndarray, lt: np.ndarray, lt_sd: np.ndarray,
                       t_end: int) -> np.ndarray:
        """Per design (timeline ``tls``, rows of ``rises`` and ``u``) and layer, P(t_emerge <= the planned end): the
        layer emerges once tau(t) reaches u * tau_e, and log10 tau_e is Gaussian (``tau_e``), so P = Phi((log10(tau(t_end)
        / u) - lt) / sd); 0 where the ratio does not rise. Every layer has one, so a t_emerge after the plan
        (``value_after_plan``) says how likely it is within it."""
        tau_end = np.array([float(tl(t_end)) for tl in tls])[:, None]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            z = (np.log10(tau_end / u) - lt[:, None]) / np.maximum(lt_sd, 1e-9)[:, None]
            p = np.where(rises & np.isfinite(z), ndtr(z), 0.0)
        return np.minimum(np.maximum(p, 0.0), 1.0).round(4)

    def contradictions(self, arch: Architecture) -> list[str]:
        """Notes where this design's level leans on a cross-family association that controlled evidence
        contradicts (the association's effect outside the controlled 90 % interval)."""
        coef = None  # read only where the design has an associated change (most have none)
        out = []
        for (f, v), term in ASSOCIATED.items():
            if getattr(arch, f) != v:
                continue
            coef = coef or self.level_["abs"].coefficients()
            if coef[term]["families"] == 0 or (e := self.controlled_.estimate_of(f, v, arch.glu)) is None:
                continue
            a = coef[term]["coef"]
            lo, hi = e.interval
            if not lo <= a <= hi:
                out.append(f"the level leans on the cross-family association of {SWITCHES[term][0]} (x{10**a:.2g}, "
                           f"{coef[term]['families']} families), which controlled evidence contradicts ({f}={v}: "
                           f"x{10**e.mean:.2g} [{10**lo:.2g}, {10**hi:.2g}], {', '.join(s.split(' (')[0] for s in e.studies)}): "
                           "the level is the prediction from similar trained models; what-ifs use the controlled estimate")
        return out

    def timing_notes(self, arch: Architecture, away: list[str] | None = None) -> list[str]:
        """Which family the emergence timing is calibrated on, and how far this design is from it (``away``: its
        ``timing_distance`` where the caller has it)."""
        memo = self._fit_derived()
        fixed = memo.get("timing")
        if fixed is None:
            fixed = memo["timing"] = self._timing_fixed()
        series, lo, hi, said, spread = fixed
        n_b = arch.n_params() / 1e9
        where = "inside" if lo * 0.999 <= n_b <= hi * 1.001 else "outside"
        away = self.timing_distance(arch) if away is None else away
        head = f"{series}; this design, {n_b:.2g}B, is {where} that range){said}"
        if not away:
            return [head + "; its design and recipe are that family's: the within-family spread applies"]
        return [head + f"; it departs from that family in {', '.join(away)}: {spread}"]

    def _timing_fixed(self) -> tuple[str, float, float, str, str]:
        """``timing_notes``' parts that do not depend on the design: the series it names, their size range, the
        clock's choice and the across-family spread."""
        fams = sorted({family_of(m).split("-")[0] for m in self.curves_}) or ["no checkpoint series"]
        sizes = self.series_params_B_ or [self.domain_["numeric"]["n_params_B"][0]]
        lo, hi = min(sizes), max(sizes)
        checks = self.timing_checks_
        covered = sum(c["covered_loo"] for c in checks)
        series = (f"timing (t_emerge, the curve's clock) is calibrated on {', '.join(fams)} checkpoint series ({len(self.curves_)} "
                  f"series, {lo:.2g}-{hi:.2g}B parameters")
        clock = self.clock_
        row = next((r for r in self.clock_table_ if r["clock"] == clock and r["calibration"] == "across families"), None)
        said = (f"; time is counted in the {clock} clock ({clocks.CANDIDATE_TEXT.get(clock, clock)}), chosen by "
                f"leave-one-family-out error ({row['rms_error']:.2f} decades) among {len(clocks.CANDIDATES)} clocks on "
                f"{row['n']} published onsets of {len(self.clock_families_)} families "
                f"({', '.join(self.clock_families_)})") if row else ""
        spread = (f"its tau_e is the across-family intercept with a between-family spread of {self.tau_family_sd_:.2f} "
                  f"decades ({covered}/{len(checks)} published onsets covered when their family is left out)")
        return series, lo, hi, said, spread

    # ---------------------------------------------------------------- applicability
    def applicability(self, arch: Architecture) -> list[ApplicabilityWarning]:
        return self._applicability(arch, design_vector(arch))

    def _applicability(self, arch: Architecture, x: np.ndarray) -> list[ApplicabilityWarning]:
        """``applicability`` of ``arch`` whose ``design_vector`` is ``x``."""
        out = []
        dom = self.domain_
        n_b = arch.n_params() / 1e9
        for f, v in (("n_params_B", n_b), ("n_layers", arch.n_layers), ("d_model", arch.d_model),
                     ("learning_rate", arch.learning_rate), ("planned_steps", arch.planned_steps)):
            lo, hi = dom["numeric"][f]
            if not lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9):
                out.append(ApplicabilityWarning(field=f, value=float(v), train_min=lo, train_max=hi, scope="all",
                                                message=f"{f}={v:g} is outside the evidence [{lo:g}, {hi:g}]: extrapolated, wide interval"))
        _, _, _, used = self._proxy(arch)
        for f, values in PROXY_VALUES.items():
            v = getattr(arch, f)
            if v not in values:
                continue
            e = next((u for u in used if u.field == f), None)
            why = (f"its effect comes from controlled comparisons only ({e.text.split(': ', 1)[1]})" if e else
                   "no comparison measured it: the distribution of the measured changes' effects, wide")
            out.append(ApplicabilityWarning(field=f, value=str(v), seen=[str(BASES[f])], scope="all",
                                            message=f"{f}={v}: in no trained model; the level is {BASES[f]}'s and {why}"))
        on = x.tolist()
        for j, t in _DESIGN_TERMS:
            if on[j] == 0:
                continue
            fams = self.level_["abs"].support_.get(t, 0)
            if fams < 2:
                what = "never seen" if fams == 0 else "seen in one lineage only"
                out.append(ApplicabilityWarning(field=FIELD_OF[t], value=str(_field_value(arch, t)), seen=dom["seen"].get(t, []),
                                                scope="all", message=f"{SWITCHES[t][0]}: {what} in the evidence; its effect is "
                                                f"shrunk towards zero and the interval widened"))
        return out

    def info(self) -> dict:
        """What a reviewer needs to know about this engine: terms with their evidence, time model, scores."""
        check_is_fitted(self, "level_")
        return {
            "evidence": self.evidence_summary_,
            "terms": {q: self.level_[q].coefficients() for q in QUANTITIES},
            "time": {"log10_tau_e_coef": [float(v) for v in self.tau_coef_], "p": self.p_, "kappa": self.effects_.kappa,
                     "beta": self.effects_.beta, "source": self.effects_.source,
                     "clock": {"chosen": self.clock_, "text": clocks.CANDIDATE_TEXT.get(self.clock_, ""),
                               "families": list(self.clock_families_), "between_family_sd": float(self.tau_family_sd_),
                               "intercept": None if self.clock_fit_ is None else float(self.clock_fit_.intercept),
                               "leave_one_family_out": list(self.clock_table_),
                               "onsets_left_out": list(self.onsets_left_out_)},
                     "series": {m: {"log10_tau_e": f.log_tau_e, "p": f.p, "rmse": f.rmse} for m, f in self.curves_.items()}},
            "quality": {t: {"mae": q.mae, "baseline_mae": q.baseline_mae, "coverage": q.coverage, "predictable": q.predictable}
                        for t, q in self.quality_.items()},
        }


FIELD_OF = {
    "glu": "ffn_type", "rmsnorm": "norm_type", "sandwich": "norm_placement", "post_sublayer": "norm_placement",
    "post_norm": "norm_placement", "parallel": "parallel_attn_mlp", "qk_norm": "qk_norm", "learned_pos": "positional_encoding",
    "no_rope_bias": "positional_encoding", "embedding_scale": "embedding_scale", "moe": "moe_experts",
    "linear_attention": "attention_kind", "sigmoid_attention": "attention_kind", "attention_gate": "attention_gate",
    "attention_sink": "attention_sink", "tied": "tied_embeddings",
}


def _late_growth(ev: Evidence) -> tuple[float, tuple[float, float]]:
    """The longest trajectory the evidence holds (in tokens) and how its layers still moved at the end:
    the 10th and 90th percentile over layers of the ratio's change over the last doubling of steps
    (log10 per doubling; negative: declining). A plan beyond the horizon widens its interval by these
    rates per doubling beyond it: the evidence cannot tell a plateau from continued growth or decline."""
    traj = ev.layers[ev.layers["step"].notna() & ev.layers["y_ratio"].notna()]
    if traj.empty:
        return float("inf"), (0.0, 0.0)
    horizon = max(float(sub["step"].max()) * ev.archs[m].batch_tokens for m, sub in traj.groupby("model"))
    slopes = []
    for _, g in traj.groupby(["model", "layer"]):
        steps = g.groupby("step")["y_ratio"].mean()
        last = float(steps.index.max())
        half = float(steps.index[np.abs(steps.index - last / 2).argmin()])
        if 0 < half < last:
            slopes.append((steps[last] - steps[half]) / math.log2(last / half))
    if not slopes:
        return horizon, (0.0, 0.0)
    lo, hi = np.percentile(slopes, [10, 90])
    return horizon, (float(lo), float(hi))


# the fields an answer names when a design differs from its lineage's nearest measured member
LINEAGE_FIELDS = ("n_layers", "d_model", "n_heads", "n_kv_heads", "d_ffn", "ffn_type", "activation", "norm_type", "norm_placement",
                  "parallel_attn_mlp", "qk_norm", "positional_encoding", "attention_kind", "attention_gate", "attention_sink",
                  "embedding_scale", "moe_experts", "tied_embeddings", "vocab_size")


def _show(v) -> str:
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)


def _lineage_members(levels: pd.DataFrame, ev: Evidence) -> dict[str, list[dict]]:
    """Per lineage, its measured members: size, the largest layer's level per protocol, and the design fields."""
    out: dict[str, list[dict]] = {}
    lv = levels[levels["quantity"] == "abs"]
    series = set(ev.layers.loc[ev.layers["step"].notna(), "model"])
    for model, sub in lv.groupby("model"):
        a = ev.archs[model]
        for r in sub.sort_values("protocol").to_dict("records"):
            out.setdefault(r["lineage"], []).append({
                "model": model, "params_B": a.n_params() / 1e9, "d_model": a.d_model, "n_layers": a.n_layers, "moe": a.moe,
                "protocol": r["protocol"], "peak_abs": float(10 ** r["Y"]),
                "measured_as": "checkpoint series (fitted asymptote)" if model in series else "trained model",
                "fields": {f: getattr(a, f) for f in LINEAGE_FIELDS}})
    return out


def _recipe_value(arch: Architecture, f: str):
    v = getattr(arch, f)
    return {"adam": "adamw"}.get(v, v) if isinstance(v, str) else v  # Pythia's "Adam" decouples weight decay too


def _field_value(arch: Architecture, term: str):
    return getattr(arch, FIELD_OF[term])


def _domain(ev: Evidence) -> dict:
    archs = [ev.archs[m] for m in ev.models]
    recipe = [ev.archs[m] for m in set(ev.layers.loc[ev.layers["step"].notna(), "model"])] or archs
    lrs = [a.learning_rate for a in recipe] + [1e-4, 8e-4]  # + Gu et al.'s learning-rate grid
    seen = {t: sorted({str(_field_value(a, t)) for a in archs}) for t in FIELD_OF}
    return {
        "numeric": {
            "n_params_B": (min(a.n_params() for a in archs) / 1e9, max(a.n_params() for a in archs) / 1e9),
            "n_layers": (min(a.n_layers for a in archs), max(a.n_layers for a in archs)),
            "d_model": (min(a.d_model for a in archs), max(a.d_model for a in archs)),
            "learning_rate": (min(lrs), max(lrs)),
            "planned_steps": (min(min(a.planned_steps for a in recipe), 10_000), max(a.planned_steps for a in recipe)),
        },
        "seen": seen,
    }


def _still_rising(y: np.ndarray, steps: Sequence[float], t_end: int) -> np.ndarray:
    """Per row of ``y`` (log10 values at ``steps``, ascending): still rising at the end, > 0.05 decades over the
    last doubling of the plan (linear interpolation, as ``np.interp``, for all rows at once)."""
    def at(x: float) -> np.ndarray:
        j = min(max(bisect.bisect_right(steps, x) - 1, 0), len(steps) - 1)
        if j == len(steps) - 1 or steps[j] == x:
            return y[:, j]
        w = (x - steps[j]) / (steps[j + 1] - steps[j])
        return y[:, j] + (y[:, j + 1] - y[:, j]) * w

    return (at(float(t_end)) - at(t_end / 2)) > 0.05


def default_steps(t_end: int, n: int = 24) -> list[int]:
    """Log-spaced steps over the planned training length (plus step 0)."""
    return list(_default_steps(t_end, n))


@functools.lru_cache(maxsize=256)
def _default_steps(t_end: int, n: int) -> tuple[int, ...]:  # a pure function of two numbers: plans share few lengths
    return tuple(sorted({0, *np.unique(np.geomspace(1, max(t_end, 2), n).round().astype(int)).tolist()}))


def _class_dicts(probs: np.ndarray) -> list[dict[str, float]]:
    """``as_dict`` of each row (layers of one depth zone share a row: each distinct row is rounded once; every
    layer gets its own dict)."""
    seen: dict[tuple, dict[str, float]] = {}
    out = []
    for r in probs.tolist():
        key = tuple(r)
        d = seen.get(key)
        if d is None:
            d = seen[key] = as_dict(r)
        out.append(d.copy())
    return out
