"""What a design change does: effects from controlled comparisons (``controlled_effects.csv``).

The level model (``predictor.engine``) answers "what level will this design reach?" from trained models
of many families, associations included. This module answers "what does changing X do?" from
comparisons that changed one thing in one study with one recipe (docs/EFFECTS.md argues the split
with its numbers). Three steps, each fitted on the table (scikit-learn estimator API):

1. **Metric bridge.** A row's metric is read as log10 of the largest |h| (residual max |h|: as is; a
   sublayer's inf-norm: an assumed 0.3-decade sd, no study reports both; kurtosis: slope and residual
   sd fitted on the comparisons that report kurtosis *and* a max, with a factor-of-2 term on top), or
   as a direction only (presence of massive activations, or a note "direction -1 on magnitude"), or
   as nothing about magnitude (sink ratios, attention logits).
2. **Comparisons.** One per (study, base, change), from its best metric; a lower bound stays a bound.
3. **Per change, a hierarchical normal model.** Each study's estimate has a variance from run-to-run
   noise (over its seeds), its confidence and its bridge; studies differ by a heterogeneity tau; the
   change's effect is drawn from the distribution of all *other* changes' effects in the table (the
   prior a change with few studies shrinks towards). A direction-only study is a pseudo-observation at
   the table's typical effect size on its side. A bound truncates the posterior. The answer is the
   prediction for a new setting (posterior + tau), with the studies it rests on.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import truncnorm
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

__all__ = [
    "BASES", "Comparison", "ControlledEffects", "Estimate", "MAGNITUDE", "Z90", "change_key",
    "metric_class",
]

Z90 = 1.6448536269514722
RUN_SD = 0.27  # log10 sd of one run's max: Bondarenko's BERT gate, 39.2 +- 26.0 over seeds (CV 0.66)
CONFIDENCE_SD = {"H": 0.0, "M": 0.1, "L": 0.25}  # extra sd for a number read second-hand or off a figure
SUBLAYER_SD = 0.3  # a sublayer's inf-norm for the residual max: assumed (no study reports both)
TAU_FLOOR = 0.2  # between-study heterogeneity at least this (two studies cannot measure it)
# excess kurtosis below this reads "no outlier left", not how small: the ratio to it is a bound (OSP's 0.04)
KURTOSIS_FLOOR = 1.0

# metric -> class, first match wins (order matters: "massive activations / attention sinks" is presence)
METRIC_CLASSES: tuple[tuple[str, str], ...] = (
    ("presence", r"presence|massive activation|variance growth"),
    ("kurtosis", r"kurtosis"),
    ("sink", r"sink|attention fraction|first-token"),
    ("other", r"logit|l2-norm|convergence"),
    ("sublayer", r"attention-layer output|swiglu output"),
    ("residual", r"max \|h\||spike magnitude|max \|activation\||max activation|top-1 \|activation\|"),
)
MAGNITUDE = ("residual", "sublayer", "kurtosis")  # classes whose numbers bridge onto log10 max |h|
_DIRECTION = re.compile(r"direction ([+-]?[01])\b(?:\s*\(|\s*$|;|,|\s+on (magnitude|MA magnitude))?", re.I)

# schema field -> (the change_to spellings in the table -> the schema value); fields are compared as given
VALUES: dict[str, dict[str, Any]] = {
    "norm_placement": {"sandwich": "sandwich", "post_sublayer": "post_sublayer", "post": "post"},
    "norm_type": {"dyt": "dyt"},
    "attention_kind": {"clipped_softmax": "clipped_softmax", "sigmoid": "sigmoid", "softpick": "softpick",
                       "differential": "differential"},
    "attention_sink": {"kv_bias": "kv_bias", "sink_token": "sink_token", "softmax_plus_one": "softmax_plus_one",
                       "learned_sink": "learned_sink"},
    "attention_gate": {"true": True},
    "qk_norm": {"true": True},
    "optimizer": {"muon": "muon", "orthoadam": "orthoadam", "soap": "soap"},
    "weight_decay": {"0.0": 0.0},
}
OTHER_FIELDS = {"single_scale_norm_gain": ("norm_gain", "single_scale")}  # other:<name> the schema now has
# the schema value each change was measured from (the base value of the field in the studies)
BASES: dict[str, Any] = {"norm_placement": "pre", "norm_type": "rmsnorm", "attention_kind": "softmax",
                         "attention_sink": "none", "attention_gate": False, "qk_norm": False, "optimizer": "adamw",
                         "weight_decay": 0.1, "norm_gain": "per_channel"}
# changes whose effect the evidence says depends on the FFN: KV bias removes massive activations on
# GPT-2 but not on a GLU LLaMA (2503.22329, "KV bias fails on GLU model")
MODERATED_BY_GLU = {("attention_sink", "kv_bias")}


def metric_class(metric: str) -> str:
    m = metric.lower()
    return next((c for c, pat in METRIC_CLASSES if re.search(pat, m)), "other")


def change_key(change_field: str, change_to: str) -> tuple[str, Any] | None:
    """(schema field, value) of a row's change; ``other:<name>`` keeps its name; None for two changes at once
    or a value the schema cannot express."""
    if "+" in change_field:
        return None
    to = change_to.strip().lower().removeprefix("other:").replace("_attention", "")
    if change_field.startswith("other:"):
        name = change_field.removeprefix("other:").split(" ")[0]
        return OTHER_FIELDS.get(name, (f"other:{name}", to.split(" ")[0]))
    spellings = VALUES.get(change_field)
    if spellings is None:
        return None
    head = re.split(r"[\s(]", to, maxsplit=1)[0]
    return (change_field, spellings[head]) if head in spellings else None


def _float(x: str | None) -> float | None:
    try:
        return float(str(x).replace(",", ""))
    except (TypeError, ValueError):
        return None


def _glu(base: str) -> bool | None:
    b = base.lower()
    if re.search(r"glu|llama|qwen", b) and not re.search(r"gpt-2|opt-|bert", b):
        return True
    if re.search(r"gpt-2|opt-|bert", b) and not re.search(r"llama|qwen", b):
        return False
    return None


@dataclass(frozen=True)
class Comparison:
    """One controlled comparison read as evidence on log10 of the largest |h|."""

    study: str
    arxiv: str
    base: str
    key: tuple[str, Any]
    metric: str
    metric_class: str
    y: float | None  # bridged log10 ratio (None: direction only); for a bound, the bound
    var: float
    direction: int | None
    bound: str = ""  # "lower": the effect is at least y; "upper": at most y (a reduction at least this large)
    glu: bool | None = None
    confidence: str = "M"

    @property
    def numeric(self) -> bool:
        return self.y is not None

    @property
    def lower_bound(self) -> bool:
        return self.bound == "lower"

    def consistent(self, lo: float, hi: float) -> bool:
        """Whether an interval [lo, hi] (log10) holds this comparison's value, or reaches its bound's side."""
        if self.y is None:
            return True
        return {"lower": hi >= self.y, "upper": lo <= self.y}.get(self.bound, lo <= self.y <= hi)


@dataclass(frozen=True)
class Estimate:
    """The effect of one change on log10 of the largest |h| (a prediction for a new setting)."""

    field: str
    value: Any
    base: Any
    mean: float
    sd: float
    studies: tuple[str, ...]
    n_numeric: int
    n_direction: int
    direction_only: bool
    disagree: bool  # the controlled studies disagree in sign among themselves
    text: str

    @property
    def interval(self) -> tuple[float, float]:
        return self.mean - Z90 * self.sd, self.mean + Z90 * self.sd


@dataclass
class Bridge:
    """Kurtosis -> max: slope through the origin and residual sd, from the paired comparisons."""

    slope: float = 0.75
    sd: float = 0.5
    pairs: list[tuple[float, float]] = field(default_factory=list)


class ControlledEffects(BaseEstimator):
    """Fit on the controlled table; ``estimate(field, before, after, glu)`` answers one change."""

    def __init__(self, run_sd: float = RUN_SD, tau_floor: float = TAU_FLOOR, sublayer_sd: float = SUBLAYER_SD,
                 exclude_studies: tuple[str, ...] = ()):
        self.run_sd = run_sd
        self.tau_floor = tau_floor
        self.sublayer_sd = sublayer_sd
        self.exclude_studies = exclude_studies

    # ------------------------------------------------------------------ fit
    def fit(self, table: pd.DataFrame) -> ControlledEffects:
        rows = [r for r in table.fillna("").to_dict("records") if r["study"] not in self.exclude_studies]
        base = ""
        for r in rows:  # "same" repeats the previous row's base
            base = base if r["base_model"].strip().lower() == "same" else r["base_model"]
            r["base_model"] = base
        self.bridge_ = _fit_bridge(rows)
        comps = [c for r in rows if (c := self._comparison(r)) is not None]
        # one comparison per (study, base, change): residual max over a sublayer's over kurtosis
        best: dict[tuple, Comparison] = {}
        rank = {"residual": 0, "sublayer": 1, "kurtosis": 2, "presence": 3}
        for c in comps:
            k = (c.study, c.base, c.key)
            if k not in best or (rank[c.metric_class], not c.numeric) < (rank[best[k].metric_class], not best[k].numeric):
                best[k] = c
        self.comparisons_ = list(best.values())
        numeric = [abs(c.y) for c in self.comparisons_ if c.numeric and not c.bound]
        self.typical_ = float(np.median(numeric)) if numeric else 0.5  # direction-only pseudo-observations
        self.tau_ = self._heterogeneity()
        self.keys_ = sorted({c.key for c in self.comparisons_}, key=repr)
        self.cache_: dict = {}  # estimate() and prior() are pure once fitted: every answer asks the same few
        return self

    def _comparison(self, r: dict) -> Comparison | None:
        key = change_key(r["change_field"], r["change_to"])
        cls = metric_class(r["metric"])
        if key is None or "bundle, not single" in r["notes"].lower():
            return None
        d = _DIRECTION.search(r["notes"])
        on_magnitude = bool(d) and (cls in ("presence", *MAGNITUDE) or bool(d.group(2)))
        direction = int(d.group(1)) if on_magnitude else None
        before, after = _float(r["value_before"]), _float(r["value_after"])
        bound = "lower" if str(r["value_after"]).strip().startswith(">") else ""
        y: float | None = None
        if cls in MAGNITUDE:
            if cls == "kurtosis" and before and after is not None and after < KURTOSIS_FLOOR:
                y, bound = math.log10(KURTOSIS_FLOOR / before), "upper"
            elif r["log10_ratio"] not in ("", None):
                y = float(r["log10_ratio"])
            elif bound and before and (b := _float(str(r["value_after"]).strip()[1:])):
                y = math.log10(b / before)
        if y is None and direction is None:
            return None
        seeds = int(m.group()) if (m := re.match(r"\d+", str(r["n_seeds"]))) else 1
        var = self.run_sd**2 / seeds + CONFIDENCE_SD.get(r["confidence"], 0.25) ** 2
        if y is not None:
            if cls == "sublayer":
                var += self.sublayer_sd**2
            elif cls == "kurtosis":  # a bound keeps only its certain part: the factor-of-2 end of the bridge
                y *= self.bridge_.slope * (0.5 if bound else 1.0)
                var += self.bridge_.sd**2 + (0.5 * y) ** 2  # the factor-of-2 uncertainty in log terms on top
        return Comparison(r["study"], r["arxiv"], r["base_model"], key, r["metric"], cls if y is not None else "presence",
                          y, var, direction if direction is not None else (int(np.sign(y)) if y else 0), bound,
                          _glu(r["base_model"]), r["confidence"])

    def _heterogeneity(self) -> float:
        """DerSimonian-Laird tau over the changes with two or more numeric studies, at least ``tau_floor``."""
        q = df = c_sum = 0.0
        for key in {c.key for c in self.comparisons_}:
            ys = self._study_means([c for c in self.comparisons_ if c.key == key and c.numeric and not c.bound])
            if len(ys) < 2:
                continue
            y, v = np.array([m for m, _ in ys]), np.array([s for _, s in ys])
            w = 1 / v
            mu = float(w @ y / w.sum())
            q += float(w @ (y - mu) ** 2)
            df += len(ys) - 1
            c_sum += float(w.sum() - (w**2).sum() / w.sum())
        tau2 = max((q - df) / c_sum, 0.0) if c_sum > 0 else 0.0
        return max(math.sqrt(tau2), self.tau_floor)

    @staticmethod
    def _study_means(comps: list[Comparison]) -> list[tuple[float, float]]:
        """Per study: the mean of its comparisons of one change (its bases are not independent runs)."""
        out = []
        for study in sorted({c.study for c in comps}):
            mine = [c for c in comps if c.study == study]
            ys = np.array([c.y for c in mine], float)
            v = float(np.mean([c.var for c in mine])) / len(mine) + (float(ys.var()) if len(mine) > 1 else 0.0)
            out.append((float(ys.mean()), v))
        return out

    # ------------------------------------------------------------------ answer
    def prior(self, exclude: tuple[str, Any] | None = None) -> tuple[float, float]:
        """Mean and sd of the effects of the table's other changes (the hierarchy's top level)."""
        check_is_fitted(self, "comparisons_")
        return self.prior_of(exclude)

    def prior_of(self, exclude: tuple[str, Any] | None = None) -> tuple[float, float]:
        """``prior`` of a fitted table (the answer's hot path: no fitted check)."""
        cache = self.cache_
        if ("prior", exclude) not in cache:
            cache[("prior", exclude)] = self._prior(exclude)
        return cache[("prior", exclude)]

    def _prior(self, exclude: tuple[str, Any] | None) -> tuple[float, float]:
        means = []
        for key in self.keys_:
            if key == exclude:
                continue
            ys = [c.y for c in self.comparisons_ if c.key == key and c.numeric]
            if ys:
                means.append(float(np.mean(ys)))
        if len(means) < 2:
            return 0.0, 1.0
        return float(np.mean(means)), max(float(np.std(means, ddof=1)), 0.5)

    def estimate(self, field_name: str, value: Any, glu: bool | None = None) -> Estimate | None:
        """The effect of changing ``field_name`` from the studies' base value to ``value`` (None: no
        controlled evidence on magnitude for that change)."""
        check_is_fitted(self, "comparisons_")
        return self.estimate_of(field_name, value, glu)

    def estimate_of(self, field_name: str, value: Any, glu: bool | None = None) -> Estimate | None:
        """``estimate`` of a fitted table (the answer's hot path: no fitted check)."""
        cache = self.cache_
        if (field_name, value, glu) not in cache:
            cache[(field_name, value, glu)] = self._estimate(field_name, value, glu)
        return cache[(field_name, value, glu)]

    def _estimate(self, field_name: str, value: Any, glu: bool | None) -> Estimate | None:
        key = (field_name, value)
        comps = [c for c in self.comparisons_ if c.key == key]
        if key in MODERATED_BY_GLU and glu is not None and any(c.glu == glu for c in comps):
            comps = [c for c in comps if c.glu == glu]
        if not comps:
            return None
        mu0, sd0 = self.prior_of(exclude=key)
        tau2 = self.tau_**2
        prec, num = 1 / sd0**2, mu0 / sd0**2
        numeric = [c for c in comps if c.numeric]  # a bound counts at its value here (a conservative reading)
        for m, v in self._study_means(numeric):
            prec += 1 / (v + tau2)
            num += m / (v + tau2)
        directions = [c for c in comps if not c.numeric]
        for c in directions:  # a direction: the table's typical size on that side; 0: no change, half as wide
            v = (self.typical_ if c.direction else self.typical_ / 2) ** 2 + c.var
            prec += 1 / v
            num += c.direction * self.typical_ / v
        mean, sd = num / prec, math.sqrt(1 / prec + tau2)
        bounds = [c for c in numeric if c.bound]
        if bounds and len(bounds) == len(numeric):  # bounds only: they truncate the prediction (truncated normal)
            lo = max((c.y for c in bounds if c.bound == "lower"), default=-np.inf)
            hi = min((c.y for c in bounds if c.bound == "upper"), default=np.inf)
            a, b = (lo - mean) / sd, (hi - mean) / sd
            mean, sd = float(truncnorm.mean(a, b, mean, sd)), float(truncnorm.std(a, b, mean, sd))
        signs = {c.direction for c in comps if c.direction is not None and (not c.numeric or abs(c.y) > 0.1)}
        disagree = len(signs) > 1
        if disagree:  # the studies themselves disagree: widen by the spread they show
            sd = math.sqrt(sd**2 + self.typical_**2 / 4)
        studies = tuple(sorted({f"{c.study} ({c.arxiv})" for c in comps}))
        lo, hi = mean - Z90 * sd, mean + Z90 * sd
        parts = [f"{len(numeric)} magnitude comparison(s)"] if numeric else []
        parts += [f"{len(directions)} direction-only"] if directions else []
        text = (f"{field_name}={value}: x{10**mean:.2g} [{10**lo:.2g}, {10**hi:.2g}] on the largest |h| "
                f"(controlled: {', '.join(parts)}; {', '.join(s.split(' (')[0] for s in studies)})")
        return Estimate(field_name, value, BASES.get(field_name), mean, sd, studies, len(numeric),
                        len(directions), not numeric, disagree, text)


def _fit_bridge(rows: list[dict]) -> Bridge:
    """Slope and residual sd of log max ratio on log kurtosis ratio, over the comparisons that report both."""
    by: dict[tuple, dict[str, float]] = {}
    for r in rows:
        cls = metric_class(r["metric"])
        if cls in ("residual", "sublayer", "kurtosis") and r["log10_ratio"] not in ("", None):
            k = (r["study"], r["base_model"], r["change_field"], r["change_to"])
            by.setdefault(k, {})["kurtosis" if cls == "kurtosis" else "max"] = float(r["log10_ratio"])
    pairs = [(d["kurtosis"], d["max"]) for d in by.values() if len(d) == 2]
    if len(pairs) < 3:
        return Bridge()
    x, y = np.array(pairs).T
    slope = float(x @ y / (x @ x))
    sd = float(np.sqrt(((y - slope * x) ** 2).sum() / (len(x) - 1)))
    return Bridge(slope, sd, pairs)
