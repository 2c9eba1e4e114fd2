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
3. **Time** (``predictor.emergence_clock.EmergenceClock``, on ``predictor.timeline``): the plan's effective
   time tau(t) (learning rate and its schedule, batch, weight decay; exponents fitted to Gu et al.'s grids)
   and a Hill curve in u = tau/tau_e whose scale tau_e follows model size (fitted to the Pythia checkpoints,
   calibrated across families on published onsets).

The forecast of layer l at step t is ``y(t) = y0 + (Y_inf(l) - y0) H(tau(t)/tau_e)``: the
trajectory, ``ratio_end = y(t_end)``, ``t_emerge`` and the peak all come from that one curve. Each
layer also carries the probabilities of the trajectory classes (``predictor.trajectory.TrajectoryClasses``:
plateau, early peak, continued growth) that the checkpoint series show at its depth; the nowcast uses them.
``ForecastEngine`` fits each part once and composes them; a variant (leave-one-study-out, a nowcast's update)
is a new engine whose changed part is a new fitted part.
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
from scipy.special import ndtr
from scipy.stats import norm
from sklearn.base import BaseEstimator
from sklearn.linear_model import Ridge
from sklearn.utils.validation import check_is_fitted

from maforecast.tables import DEFAULT_PROTOCOL, PROTOCOLS
from predictor.architecture import LINEAGE_NEW, Architecture, ArchitectureError, family_of, parse_architecture
from predictor.clock import HORIZON
from predictor.design import (
    DESIGN_TERMS,
    FIELD_OF,
    SWITCHES,
    TERMS,
    DesignMemo,
    design_vector,
    switches_of,
    with_protocol,
)
from predictor.effects import BASES, ControlledEffects, Estimate
from predictor.emergence_clock import QUANTITIES, Y0_DEFAULT, EmergenceClock
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
from predictor.timeline import Timeline, arch_timeline, hill, hill_inverse
from predictor.trajectory import ZONES, TrajectoryClasses, zone_index

__all__ = ["ASSOCIATED", "ForecastEngine", "TargetQuality", "Z90", "default_steps"]

Z90 = float(norm.ppf(0.95))  # two-sided 90 % interval
MASSIVE_ABS, MASSIVE_RATIO = 2.0, 3.0  # log10 of Sun et al.'s |a| > 100 and |a| > 1000 x median
LOG10_LIMIT = 30.0
LN10 = math.log(10.0)

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
ASSOCIATION_SD_FLOOR = 0.3  # an association's extra sd is at least this, however well it agreed
WORST_CASE = "corpus_max"  # the protocol precision risk uses: overflow happens at the worst token a deployment sees


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
    eight columns) and each layer's ``zone_index``. A pure function of one number, asked for the same few depths
    again and again: cached, its arrays read-only."""
    rel = np.arange(n_layers, dtype=float) / max(n_layers - 1, 1)
    basis = np.zeros((n_layers, 8))
    first = np.arange(min(n_layers, 3))
    basis[first, first] = 1.0  # layers 0, 1, 2
    basis[n_layers - 1, 3] = 1.0
    if n_layers > 1:
        basis[n_layers - 2, 4] = 1.0
    basis[:, 5], basis[:, 6], basis[:, 7] = rel, rel**2, rel**3
    zone = zone_index(n_layers)
    basis.flags.writeable = zone.flags.writeable = False
    return basis, zone


H_FLOOR = 0.1  # a value measured before emergence is scaled up to its asymptote by at most x10 (in log10 rise)


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
        """Fits the parts, each once: the emergence clock (``clock_model_``), the trajectory classes on its series'
        curves (``trajectory_classes_``), per quantity the level model, depth profile and constant answer on the
        levels the clock puts the evidence at, and the controlled effects."""
        scale = self.interval_scale or {}
        clock = EmergenceClock(clock=self.clock).fit(ev)
        levels, offsets = _levels(ev, clock)
        level, profile, constant = {}, {}, {}
        for q in QUANTITIES:
            lv = levels[levels["quantity"] == q]
            X = np.vstack([self._x(ev.archs[m], p) for m, p in zip(lv["model"], lv["protocol"], strict=True)])
            start = (self.level_start or {}).get(q)
            level[q] = LineageLevel(TERMS, interval_scale=scale.get(q, 1.0), start=tuple(start) if start else None,
                                    protocol_sd=self.protocol_sd,
                                    new_lineage_scale=scale.get(f"{q}_new", scale.get(q, 1.0))).fit(
                X, lv["lineage"].to_numpy(), lv["family"].to_numpy(), lv["Y"].to_numpy())
            off = offsets[offsets["quantity"] == q]
            profile[q] = DepthProfile(alpha=self.profile_alpha).fit(off["layer"], off["n_layers"], off["offset"])
            w = 1.0 / lv["lineage"].map(lv["lineage"].value_counts()).to_numpy(float)
            same = lv["protocol"] == self.protocol
            src = lv[same] if same.any() else lv
            ws = w[same.to_numpy()] if same.any() else w
            mu = float(np.average(src["Y"], weights=ws))
            constant[q] = (mu, float(np.sqrt(np.average((src["Y"] - mu) ** 2, weights=ws))))
        self.clock_model_ = clock
        self.trajectory_classes_ = TrajectoryClasses().fit(ev, clock)
        self.levels_table_, self.level_, self.profile_, self.constant_ = levels, level, profile, constant
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
        self._association_cache: dict[bytes, tuple[float, float] | None] = {}  # association(): one entry per design change
        self._depths: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # _depth(): the profiles' offsets and sd per depth
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
        eng.trajectory_classes_ = self.trajectory_classes_.given(posterior.class_probabilities())
        eng.clock_model_ = self.clock_model_.with_p(posterior.p_post)
        eng.quality_ = {}
        return eng

    def class_probabilities(self, arch: Architecture) -> np.ndarray:
        """(L, 3) probabilities of the trajectory classes per layer: the prior's by depth zone, or a nowcast's."""
        return self.trajectory_classes_.probabilities(arch.n_layers)

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

    # ---------------------------------------------------------------- prediction
    def level(self, arch: Architecture, protocol: str | None = None) -> dict[str, tuple[float, float]]:
        """(mean, sd) of the asymptotic log10 magnitude of the largest layer, per quantity."""
        check_is_fitted(self, "level_")
        return {q: (float(m[0]), float(s[0])) for q, (m, s) in self._level_many([arch], protocol).items()}

    def _depth(self, n_layers: int) -> tuple[np.ndarray, np.ndarray]:
        """Per quantity (rows) and layer, the depth profile's offset and its sd in a model of ``n_layers`` (read only)."""
        hit = self._depths.get(n_layers)
        if hit is None:
            basis = _layer_basis(n_layers)
            hit = tuple(np.stack(v) for v in zip(*(self.profile_[q]._at(*basis) for q in QUANTITIES), strict=True))
            for v in hit:
                v.flags.writeable = False
            self._depths[n_layers] = hit
        return hit

    def layer_curves(self, arch: Architecture, steps: np.ndarray, protocol: str | None = None,
                     lev: dict[str, tuple[float, float]] | None = None, tl: Timeline | None = None) -> dict:
        """Everything per layer, vectorised: log10 values (mean, lo, hi) at ``steps`` per quantity.
        ``lev`` and ``tl``: the level and timeline when the caller computed them for several architectures.
        A conditioned engine returns its posterior's curves (in the same layout; ``lev`` and ``tl`` unused)."""
        if self.posterior_ is not None:
            return self.posterior_.layer_curves(arch, steps, protocol, lev, tl)
        lev = lev or self.level(arch, protocol)
        lt, lt_sd = self.clock_model_.tau_e(arch)
        tl = tl or arch_timeline(arch, self.clock_model_.effects_, horizon=max(float(np.max(steps)), arch.planned_steps))
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
        z, clock = Z90, self.clock_model_
        lt, lt_sd = lt[:, None], lt_sd[:, None]
        h = hill(tau / 10**lt, clock.p_)
        h_fast = hill(tau / 10 ** (lt - z * lt_sd), clock.p_)[:, None, None, None]
        h_slow = hill(tau / 10 ** (lt + z * lt_sd), clock.p_)[:, None, None, None]
        down, up = (v[:, None, None, None] for v in clock._beyond(np.asarray(steps, float) * batch_tokens[:, None]))
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
        switches = [switches_of(a) for a in archs]
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
        ``switches_of`` and ``_forecast_levels_many``: ``notes``, those every forecast carries (before its protocol's,
        after it, at the end)."""
        st = np.array(steps, float)
        n = archs[0].n_layers
        clock = self.clock_model_
        xs = [with_protocol(sw, DEFAULT_PROTOCOL) for sw in switches]
        aways = [clock._away(a, x) for a, x in zip(archs, xs, strict=True)]
        if self.posterior_ is None:
            tls = [arch_timeline(a, clock.effects_, horizon=max(float(st[-1]), a.planned_steps)) for a in archs]
            lt, lt_sd = np.array([clock._tau_e(sw[0], away) for sw, away in zip(switches, aways, strict=True)]).T
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
        class_dicts = self.trajectory_classes_.dicts(n)
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
        kappa, beta = float(clock.effects_.kappa), float(clock.effects_.beta)
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
                        "p": [float(clock.p_)] * n, "kappa": [kappa] * n, "beta": [beta] * n},
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
                       *clock.timing_notes(arch, aways[i]), *clock.extrapolation_notes(arch), *schedule_notes(arch), *notes[2]],
                protocol=protocol, unpredictable=list(unpredictable), worst_case_shift=shift,
                worst_case_arrays=None if protocol == WORST_CASE else magnitudes(traj[i][1], ends[i][1]), lineage=lineage,
            ))
        return out

    def _forecast_levels_many(self, archs: list[Architecture], switches: list[list[float]]
                              ) -> list[tuple[dict[str, tuple[float, float]], dict[str, tuple[float, float]], dict]]:
        """Per design (whose ``switches_of`` are ``switches``): its level in its protocol and in the worst case, and its
        ``lineage_info`` (a new lineage's in the engine's protocol: the first row's, not predicted again). One
        prediction of the level model for all."""
        rows, shift, var, lineages = [], [], [], []
        for arch, sw in zip(archs, switches, strict=True):
            prox, s, v, _ = self._proxy(arch)
            sw = sw if prox is arch else switches_of(prox)
            rows += [self._mask(with_protocol(sw, p)) for p in (arch.protocol, WORST_CASE)]
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

    def _end_h(self, archs: Sequence[Architecture], memo: DesignMemo) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The Hill fraction H(tau(t_end)/tau_e) per architecture, at tau_e and at its 90 % ends (fast, slow)."""
        clock = self.clock_model_
        tau = np.array([float(arch_timeline(a, clock.effects_, horizon=a.planned_steps)(float(a.planned_steps)))
                        for a in archs])
        xs = [memo.vector(a) for a in archs]  # its first term is the size tau_e reads
        lt, lt_sd = np.array([clock._tau_e(float(x[0]), clock._away(a, x)) for a, x in zip(archs, xs, strict=True)]).T
        return (hill(tau / 10**lt, clock.p_), hill(tau / 10 ** (lt - Z90 * lt_sd), clock.p_),
                hill(tau / 10 ** (lt + Z90 * lt_sd), clock.p_))

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
            u = hill_inverse((target - y0) / (Y - y0), self.clock_model_.p_)
        return y0 + 0.05 < Y, u

    def _t_emerge_many(self, archs: list[Architecture], ok: np.ndarray, u: np.ndarray, lt: np.ndarray,
                       lt_sd: np.ndarray) -> list[dict]:
        """Per design and layer (rows of ``ok``, ``u``; ``lt``, ``lt_sd`` per design): the first step with half of the
        ratio's rise from f(0) to its steady state (the curve's asymptote Y_inf) done, in linear units, with its 90 %
        interval from tau_e's. The steady state does not depend on where the plan stops, so neither does t_emerge:
        DESIGN section 5's "maximum over [0, t_end]" made a shorter plan emerge *earlier* (its maximum is lower). Any
        end may lie after the planned end: the curve is continued at the schedule's last learning rate up to
        ``predictor.clock.HORIZON`` plans (``value_after_plan``, ``hi_after_plan``); an end beyond that is given as that horizon.
        ``None`` only where the ratio does not rise. Designs of one plan share its timeline: read once for them all."""
        tls = [arch_timeline(a, self.clock_model_.effects_, horizon=HORIZON * float(a.planned_steps)) for a in archs]
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
        for j, t in DESIGN_TERMS:
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
            "time": self.clock_model_.info(),
            "quality": {t: {"mae": q.mae, "baseline_mae": q.baseline_mae, "coverage": q.coverage, "predictable": q.predictable}
                        for t, q in self.quality_.items()},
        }


# the fields an answer names when a design differs from its lineage's nearest measured member
LINEAGE_FIELDS = ("n_layers", "d_model", "n_heads", "n_kv_heads", "d_ffn", "ffn_type", "activation", "norm_type", "norm_placement",
                  "parallel_attn_mlp", "qk_norm", "positional_encoding", "attention_kind", "attention_gate", "attention_sink",
                  "embedding_scale", "moe_experts", "tied_embeddings", "vocab_size")


def _show(v) -> str:
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)


def _levels(ev: Evidence, clock: EmergenceClock) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Asymptotic per-layer log magnitudes: trained models as measured; checkpoint series from
    their Hill fit (``clock``'s); a single checkpoint divided by H(u) at its step."""
    rows = []
    for (model, protocol), sub in ev.layers.groupby(["model", "protocol"]):
        arch = ev.archs[model]
        final = sub[sub["step"].isna()]
        if model in clock.curves_ and protocol == DEFAULT_PROTOCOL:
            f = clock.curves_[model]
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
            lt, _ = clock.tau_e(arch)
            h = float(hill(arch_timeline(arch, clock.effects_, horizon=last)(last) / 10**lt, clock.p_))
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
        lt, _ = clock.tau_e(arch)
        h = float(hill(arch_timeline(arch, clock.effects_)(r["step"]) / 10**lt, clock.p_))
        y0 = Y0_DEFAULT[r["metric"]]
        lv.loc[len(lv)] = [r["model"], r["protocol"], r["metric"], y0 + (math.log10(r["value"]) - y0) / max(h, H_FLOOR)]
    lv["family"] = lv["model"].map(family_of)
    lv["lineage"] = lv["model"].map(ev.lineages)
    return lv, offsets


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
