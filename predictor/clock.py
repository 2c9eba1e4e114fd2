"""A clock calibrated across families (issue 29): which time emergence follows, and how far families differ on it.

The engine's curves are fitted to the Pythia checkpoint series, whose sizes share one recipe (2M tokens per step,
143,000 steps): on Pythia alone, steps, tokens, the fraction of the planned run and the learning-rate integral
cannot be told apart. Published onsets of other families can: OLMo-1B's sink heads appear after 25k-56k steps
(52-117B tokens) of a 1.45M-step plan, where Pythia's size trend puts them at a few thousand steps.

**Onsets.** Every onset the evidence holds, each as a bracket of optimizer steps of a known plan:

- the Pythia checkpoint series: the step at each series' fitted midpoint (half the log rise of top-1/median);
- the engine's ``TIMING_ONSETS`` (Gu et al.'s LLaMA-60M sink, BERT-base outlier dimensions, pythia-12b);
- the rows of ``maforecast/data/reference/onsets_more.csv`` whose recipe places them (``PLACEMENTS``: OLMo-1B-0724
  and OLMoE sink heads, DINOv2 ViT-g outlier tokens, FP8 Llama-2-7B outliers), parsed from the CSV; a recipe value
  the row does not state is an assumption named with its source. The NVFP4 row (which run is not identified) and
  Dettmers et al.'s onset (indexed by model size, not by step) are left out (``EXCLUDED``).

**Bridge between criteria.** Each criterion is read as a fraction ``h`` of the Hill rise the engine's curve makes
(``ONSET_FRACTION`` = 10 % for "first appears / emerges"; a threshold on a share, e.g. ">= 50 % of heads are BOS
heads" with a final share of 80.9 %, as that share of its final value: h = 0.62). The time of that fraction is
``u_h tau_e`` with ``u_h = H^-1(h)``; so every onset is an estimate of log10 tau_e in any clock. The reading is
uncertain (another quantity, another threshold): ``BRIDGE_SD`` decades on each published onset.

**Calibration.** In each clock (``predictor.timeline.CLOCKS``), log10 tau_e = a + b (log10 params - 9) + u_family:
the size slope ``b`` from the checkpoint series (within a family, where size is the only change), the intercept
``a`` and the between-family spread ``sd(u_family)`` by maximum likelihood over families (each family one vote,
its onsets' bracket width and bridge as its measurement error). A design of the series' family and recipe keeps
the series' own regression; any other design gets ``a`` with the between-family spread.

**Choice.** Each clock is scored leaving one family out (its onsets predicted from the others' calibration):
the RMS over families of the decades between the served onset and the observed bracket. The engine serves the
clock with the smallest error (``ForecastEngine.clock_``), and says which and on which families.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources

import numpy as np
from scipy.stats import norm

from predictor.architecture import Architecture
from predictor.timeline import PlanEffects, Timeline, hill_inverse

__all__ = [
    "CANDIDATES", "CANDIDATE_TEXT", "ClockFit", "HORIZON", "Onset", "calibrate",
    "leave_one_family_out", "load_onsets_more", "points_for", "series_onsets", "table_onsets",
    "with_clock",
]

Z90 = float(norm.ppf(0.95))
ONSET_FRACTION = 0.1  # a published onset ("emerges", "appears") is read as 10 % of the curve's rise
BRIDGE_SD = 0.15  # decades: reading another criterion (quantity, threshold) as a fraction of the ratio's rise
FAMILY_SD_FLOOR = 0.15  # decades: the clock of another family's recipe is never known better than this
WITHIN_SD2_FLOOR = 0.01  # decades^2: a series' midpoint is never pinned better than +-0.1 decades
HORIZON = 10.0  # forecasts of an onset look this many times the plan ahead (the schedule's last rate continued)
SOURCE = "maforecast/data/reference/onsets_more.csv"

# how each usable onsets_more.csv row is placed: (model prefix, criterion prefix) -> family, design, bridge, and the
# recipe values the row does not state (each with its source). Numbers the row states are parsed from the CSV.
_OLMO1B = {"n_heads": 16, "d_ffn": 8192, "ffn_type": "glu", "activation": "silu", "norm_type": "layernorm_nonparametric",
           "tied_embeddings": True, "vocab_size": 50_304, "seq_len": 4096, "name": "OLMo-1B-0724"}
_OLMOE = {"n_heads": 16, "d_ffn": 1024, "ffn_type": "glu", "activation": "silu", "norm_type": "rmsnorm", "qk_norm": True,
          "moe_experts": 64, "moe_active_experts": 8, "vocab_size": 50_304, "seq_len": 4096, "name": "OLMoE-1B-7B-0924"}
_DINO = {"n_heads": 24, "d_ffn": 4096, "ffn_type": "glu", "activation": "silu", "positional_encoding": "learned",
         "causal_lm": False, "vocab_size": 2, "seq_len": 257, "name": "DINOv2-ViT-g14"}
_DINO_ASSUMED = {"batch_tokens": (263_168, "1,024 images x 257 tokens per global crop (total batch not read; 1,024 is the "
                                             "batch base_lr refers to)"),
                 "peak_lr": (2e-4, "base_lr 2e-4 per 1,024 images (absolute lr depends on the total batch, not read)")}
_LLAMA2_ASSUMED = {"batch_tokens": (4_194_304, "Llama 2's 4M-token batch (arXiv 2307.09288 Sec. 2.2; the FP8 runs' own "
                                               "batch not read; M)"),
                   "peak_lr": (3e-4, "Llama 2 7B's 3e-4 (arXiv 2307.09288 Table 1; M)"),
                   "warmup_steps": (2000, "Llama 2's 2,000 warmup steps (arXiv 2307.09288 Sec. 2.2; M)"),
                   "weight_decay": (0.1, "Llama 2's 0.1 (arXiv 2307.09288 Sec. 2.2; M)"),
                   "total_tokens": (2e12, "the row's 'runs up to 2T tokens'")}
PLACEMENTS: tuple[tuple[str, str, dict], ...] = (
    ("OLMo-1B", "first appearance", {"family": "OLMo", "arch": _OLMO1B, "h": ONSET_FRACTION,
                                     "bridge": "first BOS heads: 10 % of the rise"}),
    ("OLMo-1B", "whole-model BOS-class head fraction >=50%", {"family": "OLMo", "arch": _OLMO1B, "h": 50 / 80.9,
                                                             "bridge": "50 % of heads, final 80.9 %: h = 0.62"}),
    ("OLMoE", "whole-model BOS-class head fraction >=10%", {"family": "OLMo", "arch": _OLMOE, "h": 10 / 75.8,
                                                           "bridge": "10 % of heads, final 75.8 %: h = 0.13"}),
    ("OLMoE", "whole-model BOS-class head fraction >=30%", {"family": "OLMo", "arch": _OLMOE, "h": 30 / 75.8,
                                                           "bridge": "30 % of heads, final 75.8 %: h = 0.40"}),
    ("OLMoE", "whole-model BOS-class head fraction >=50%", {"family": "OLMo", "arch": _OLMOE, "h": 50 / 75.8,
                                                           "bridge": "50 % of heads, final 75.8 %: h = 0.66"}),
    ("DINOv2", "paper text", {"family": "DINOv2", "arch": _DINO, "h": ONSET_FRACTION, "assumed": _DINO_ASSUMED,
                              "bridge": "outlier tokens first appear: 10 % of the rise"}),
    ("DINOv2", "own figure reading", {"family": "DINOv2", "arch": _DINO, "h": ONSET_FRACTION, "assumed": _DINO_ASSUMED,
                                      "bridge": "norm ratio >= 2x: first visible, 10 % of the rise"}),
    ("Llama-2-7B", "sporadic", {"family": "Llama-2 FP8", "h": ONSET_FRACTION, "assumed": _LLAMA2_ASSUMED,
                                "arch": {"n_heads": 32, "d_ffn": 11008, "ffn_type": "glu", "activation": "silu",
                                         "norm_type": "rmsnorm", "vocab_size": 32_000, "seq_len": 4096,
                                         "precision": "fp8", "name": "Llama-2-7B-FP8"},
                                "bracket": (0.5, "a single observation 'after 200B tokens' (absent at the start): read as "
                                                 "an onset in [100B, 200B] tokens"),
                                "bridge": "outliers first visible: 10 % of the rise"}),
)
EXCLUDED: tuple[tuple[str, str], ...] = (
    ("NVFP4", "which run (340M-7B, softmax or linear attention) and its recipe are not identified"),
    ("fairseq", "an onset in model size (Dettmers et al.'s phase shift at ~6.7B), not in training time"),
)


@dataclass(frozen=True)
class Onset:
    """An observed emergence: a bracket of optimizer steps of a plan (``arch``) where a criterion was met."""

    label: str
    family: str
    arch: Architecture
    lo: float
    hi: float
    h: float  # the fraction of the curve's rise the criterion marks (the bridge)
    source: str
    bridge: str = ""
    bridge_sd: float = BRIDGE_SD
    assumptions: tuple[str, ...] = ()
    confidence: str = ""
    series: bool = False  # a checkpoint series' fitted midpoint (not a published onset)


# ------------------------------------------------------------------------ reading the bundled rows
_SUFFIX = {"k": 1e3, "K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}


def _number(text: str) -> float | None:
    """The first number in ``text`` with its suffix (1,454,000; 2.1M; 52B; 4e-4); a product 'a x b' wins."""
    if m := re.search(r"(\d+)\s*x\s*(\d+)", text):
        return float(m.group(1)) * float(m.group(2))
    m = re.search(r"(\d[\d,]*\.?\d*(?:e-?\d+)?)\s*([kKMBT]?)", text)
    if not m:
        return None
    return float(m.group(1).replace(",", "")) * _SUFFIX.get(m.group(2), 1.0)


def _recipe(row: dict, col: str, assumed: dict, notes: list[str]) -> float | None:
    """A recipe number from the row; 'not read (X in <config>)' takes X and says so; a value the row does not give
    takes the placement's assumption and says so."""
    text = (row.get(col) or "").strip()
    if col in assumed and (not text or text.startswith(("not read", "images", "base_lr", "runs up"))):
        v, why = assumed[col]
        notes.append(f"{col} = {v:g}: {why}")
        return v
    if text.startswith("not read"):
        inner = re.search(r"\(([^)]*)\)", text)
        v = _number(inner.group(1)) if inner else None
        if v is not None:
            notes.append(f"{col} = {v:g}: not read for this run; {inner.group(1)}")
        return v
    return _number(text) if text else None


def _params_B(text: str) -> float | None:
    v = _number(text)
    return None if v is None else v / 1e9


def load_onsets_more(path: str | None = None) -> tuple[list[Onset], list[dict]]:
    """The placeable rows of ``onsets_more.csv`` as ``Onset``s, and the rows left out with the reason."""
    src = path or str(resources.files("maforecast") / "data" / "reference" / "onsets_more.csv")
    with open(src, newline="") as fh:
        rows = list(csv.DictReader(fh))
    out, left = [], []
    for r in rows:
        place = next((p for m, c, p in PLACEMENTS if r["model"].startswith(m) and r["criterion"].startswith(c)), None)
        if place is None:
            why = next((w for m, w in EXCLUDED if r["model"].startswith(m)), "no placement for this row")
            left.append({"model": r["model"], "criterion": r["criterion"][:80], "why": why})
            continue
        notes: list[str] = []
        assumed = place.get("assumed", {})
        batch = _recipe(r, "batch_tokens", assumed, notes)
        lr = _recipe(r, "peak_lr", assumed, notes)
        warm = _recipe(r, "warmup_steps", assumed, notes) or 0.0
        wd = _recipe(r, "weight_decay", assumed, notes)
        total = _recipe(r, "total_steps", {}, notes) if not str(r["total_steps"]).startswith("runs up") else None
        if total is None and "total_tokens" in assumed:
            v, why = assumed["total_tokens"]
            total = v / batch
            notes.append(f"total_steps = {total:,.0f}: {why} / batch")
        lo, hi = _number(r["onset_step_lo"] or ""), _number(r["onset_step_hi"] or "")
        if lo is None:  # a token bracket only: steps through the batch
            lo, hi = _number(r["onset_tokens_lo"]) / batch, _number(r["onset_tokens_hi"]) / batch
        if "bracket" in place:
            f, why = place["bracket"]
            lo = lo * f
            notes.append(why)
        sched = "cosine" if "cosine" in (r["schedule"] or "cosine") or r["schedule"].startswith("not read") else "other"
        params = _params_B(r["params"])
        arch = Architecture(n_layers=int(r["n_layers"]), d_model=int(r["d_model"]), learning_rate=lr,
                            batch_tokens=int(round(batch)), total_steps=int(round(total)), warmup_frac=min(warm / total, 0.5),
                            weight_decay=wd if wd is not None else 0.1, lr_schedule=sched, total_params_B=params,
                            **place["arch"])
        out.append(Onset(label=f"{arch.name}: {r['criterion'][:70]}", family=place["family"], arch=arch, lo=float(lo),
                         hi=float(hi), h=float(place["h"]), source=f"{SOURCE}: {r['source'][:160]}", bridge=place["bridge"],
                         assumptions=tuple(notes), confidence=r["confidence"][:40]))
    return out, left


# ------------------------------------------------------------------------ calibration
TimelineFn = Callable[[Architecture, PlanEffects, float | None], Timeline]


def log_clock(onset_arch: Architecture, steps: Sequence[float], effects: PlanEffects, timeline: TimelineFn) -> np.ndarray:
    """log10 of the clock's time at ``steps`` of ``onset_arch``'s plan."""
    tl = timeline(onset_arch, effects, HORIZON * onset_arch.planned_steps)
    with np.errstate(divide="ignore"):
        return np.log10(np.maximum(tl(np.asarray(steps, float)), 1e-300))


@dataclass
class Point:
    family: str
    x: float  # log10 params - 9
    y: float  # log10 tau_e estimate in the clock
    var: float  # measurement variance (bracket + bridge), decades^2
    onset: Onset


@dataclass
class ClockFit:
    """One clock's calibration: the series' regression and the across-family intercept and spread."""

    clock: str
    coef: np.ndarray  # series regression (intercept, slope) in this clock
    cov: np.ndarray
    s2: float  # within-family residual variance of the series
    intercept: float  # across families
    intercept_var: float
    family_sd: float
    offsets: dict[str, float] = field(default_factory=dict)  # family -> its mean intercept

    def predict(self, x: float, own_family: bool) -> tuple[float, float]:
        """log10 tau_e and its sd: the series' regression for its own family, else across families."""
        if own_family:
            a = np.array([1.0, x])
            return float(a @ self.coef), float(math.sqrt(a @ self.cov @ a + self.s2))
        slope_var = float(self.cov[1, 1]) * x * x
        return (self.intercept + float(self.coef[1]) * x,
                float(math.sqrt(self.family_sd**2 + self.intercept_var + slope_var + self.s2)))


def series_regression(points: Sequence[Point]) -> tuple[np.ndarray, np.ndarray, float]:
    """log10 tau_e on size over the checkpoint series (the engine's regression, in any clock)."""
    x = np.array([p.x for p in points])
    y = np.array([p.y for p in points])
    A = np.column_stack([np.ones_like(x), x])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    resid = y - A @ coef
    s2 = float(resid @ resid / max(len(y) - 2, 1)) if len(y) > 2 else 0.25
    return coef, s2 * np.linalg.pinv(A.T @ A), s2


def across_families(points: Sequence[Point], slope: float, s2: float) -> tuple[float, float, float, dict[str, float]]:
    """Intercept, its variance and the between-family sd by maximum likelihood, each family one vote."""
    fams: dict[str, list[Point]] = {}
    for p in points:
        fams.setdefault(p.family, []).append(p)
    d, v = [], []
    for pts in fams.values():
        w = np.array([1.0 / (p.var + max(s2, WITHIN_SD2_FLOOR)) for p in pts])
        r = np.array([p.y - slope * p.x for p in pts])
        d.append(float(w @ r / w.sum()))
        v.append(float(1.0 / w.sum()))
    d_, v_ = np.array(d), np.array(v)
    if len(d_) == 1:
        return float(d_[0]), float(v_[0]), FAMILY_SD_FLOOR, dict(zip(fams, d, strict=True))
    best = None
    for sd in np.arange(0.0, 2.0, 0.005):
        t = sd**2 + v_
        a = float((d_ / t).sum() / (1 / t).sum())
        nll = float(np.sum(np.log(t) + (d_ - a) ** 2 / t))
        if best is None or nll < best[0]:
            best = (nll, sd, a, float(1 / (1 / t).sum()))
    _, sd, a, a_var = best
    return a, a_var, max(float(sd), FAMILY_SD_FLOOR), dict(zip(fams, d, strict=True))


def points_for(onsets: Iterable[Onset], effects: PlanEffects, p: float, timeline: TimelineFn) -> list[Point]:
    out = []
    for o in onsets:
        lo, hi = log_clock(o.arch, [o.lo, o.hi], effects, timeline)
        u = float(np.log10(hill_inverse(np.array([o.h]), p)[0]))
        width = (hi - lo) / (2 * Z90) if hi > lo else 0.0
        var = width**2 + (0.0 if o.series else o.bridge_sd**2)
        out.append(Point(o.family, math.log10(o.arch.n_params()) - 9.0, float((lo + hi) / 2 - u), float(var), o))
    return out


def calibrate(points: Sequence[Point], clock: str) -> ClockFit:
    series = [q for q in points if q.onset.series]
    coef, cov, s2 = series_regression(series)
    a, a_var, sd, offsets = across_families(points, float(coef[1]), s2)
    return ClockFit(clock, coef, cov, s2, a, a_var, sd, offsets)


def onset_interval(fit: ClockFit, o: Onset, effects: PlanEffects, p: float, timeline: TimelineFn, own_family: bool,
                   extra_sd: float | None = None) -> tuple[float, float, float]:
    """The served onset of ``o``'s criterion in steps of its plan (value, 90 % lo, hi); hi is inf where the plan's
    horizon (``HORIZON`` x the plan) ends first."""
    x = math.log10(o.arch.n_params()) - 9.0
    mu, sd = fit.predict(x, own_family)
    if extra_sd is not None:  # the previous calibration: a fixed cross-family spread
        sd = math.sqrt(sd**2 + extra_sd**2)
    if not own_family and not o.series:
        sd = math.sqrt(sd**2 + o.bridge_sd**2)
    u = float(hill_inverse(np.array([o.h]), p)[0])
    tl = timeline(o.arch, effects, HORIZON * o.arch.planned_steps)
    v, lo, hi = (float(tl.steps_at(np.array([u * 10 ** (mu + k * Z90 * sd)]))[0]) for k in (0, -1, 1))
    return (math.inf if math.isnan(v) else v), (math.inf if math.isnan(lo) else lo), (math.inf if math.isnan(hi) else hi)


def miss(v: float, lo: float, hi: float) -> float:
    """Decades from a served point to an observed bracket (0 inside)."""
    if not math.isfinite(v):
        return 2.0  # beyond ten plans: counted as two decades late
    return max(math.log10(lo / v), math.log10(v / hi), 0.0)


def leave_one_family_out(onsets: Sequence[Onset], effects: PlanEffects, p: float, timeline: TimelineFn,
                         previous: bool = False, own: Callable[[Onset], bool] | None = None) -> tuple[list[dict], dict]:
    """Each family's published onsets served by the calibration without that family.

    ``previous``: the calibration before issue 29 (intercept from the series only; the spread for other families
    the RMS residual of the other published onsets, at least ``FAMILY_SD_FLOOR``; a design of the series' family
    its within-family spread). ``own``: whether an onset's design is the series' family and recipe."""
    own = own or (lambda o: o.family == "Pythia")
    pts = points_for(onsets, effects, p, timeline)
    published = [q for q in pts if not q.onset.series]
    full = calibrate(pts, effects.clock)  # the size slope always from the series (the size effect within a family)
    rows = []
    for fam in sorted({q.family for q in published}):
        a, a_var, sd, offsets = across_families([q for q in pts if q.family != fam], float(full.coef[1]), full.s2)
        train_fit = replace(full, intercept=a, intercept_var=a_var, family_sd=sd, offsets=offsets)
        extra = None
        if previous:
            res = []
            for q in published:
                if q.family == fam or own(q.onset):
                    continue
                v, _, _ = onset_interval(full, q.onset, effects, p, timeline, True)
                res.append(math.log10(v) - math.log10(math.sqrt(q.onset.lo * q.onset.hi)) if math.isfinite(v) else 2.0)
            extra = max(math.sqrt(float(np.mean(np.square(res)))), FAMILY_SD_FLOOR) if res else 1.0
        for q in published:
            if q.family != fam:
                continue
            o = q.onset
            if previous:
                v, lo, hi = onset_interval(full, o, effects, p, timeline, True, None if own(o) else extra)
            else:
                v, lo, hi = onset_interval(train_fit, o, effects, p, timeline, False)
            rows.append({"family": fam, "onset": o.label, "observed": [o.lo, o.hi], "predicted": v,
                         "interval_loo": [lo, hi], "covered_loo": bool(lo <= o.hi and o.lo <= hi),
                         "width_decades": math.log10(hi / lo) if math.isfinite(hi) and lo > 0 else math.inf,
                         "miss_decades": miss(v, o.lo, o.hi),
                         "resid": math.log10(v / math.sqrt(o.lo * o.hi)) if math.isfinite(v) else 2.0})
    return rows, summarize(rows)


def summarize(rows: Sequence[dict]) -> dict:
    """Coverage, median width, and the error the clocks are chosen by (RMS over families of each family's mean
    squared residual to the bracket's centre, decades)."""
    if not rows:
        return {"n": 0, "coverage": float("nan"), "median_width": float("nan"), "rms_error": float("inf"), "families": 0}
    fams: dict[str, list[float]] = {}
    for r in rows:
        fams.setdefault(r["family"], []).append(r["resid"] ** 2)
    olmo = [r for r in rows if r["family"] == "OLMo"]
    return {"n": len(rows), "families": len(fams),
            "coverage": float(np.mean([r["covered_loo"] for r in rows])),
            "median_width": float(np.median([r["width_decades"] for r in rows])),
            "rms_error": float(math.sqrt(np.mean([np.mean(v) for v in fams.values()]))),
            "mean_miss": float(np.mean([r["miss_decades"] for r in rows])),
            "olmo_covered": f"{sum(r['covered_loo'] for r in olmo)}/{len(olmo)}"}


# the clocks compared: name -> (PlanEffects clock, plan exponent g, lr exponent (None: Gu et al.'s kappa), servable)
# "servable": keeps both controlled directions of Gu et al.'s grid (2410.10781 Table 9, one 60M model, lr x steps):
# a lower peak learning rate delays emergence at a fixed plan (lr exponent > 0), and a longer run at the same
# learning rate reaches further (plan exponent g < 1: effective time at the end grows as T^(1-g)). A clock without
# them (steps, tokens, a pure fraction of the plan) is scored and shown but not served: a what-if on the plan is an
# intervention, and the controlled grid is its evidence
CANDIDATES: dict[str, tuple[str, float, float | None, bool]] = {
    "steps": ("steps", 0.0, None, False),
    "tokens": ("tokens", 0.0, None, False),
    "fraction": ("fraction", 1.0, None, False),
    "schedule_fraction": ("lr_plan", 1.0, 0.0, False),
    "lr_integral": ("lr_integral", 0.0, None, True),
    "lr_fraction": ("lr_fraction", 1.0, None, False),
    "lr^1_fraction": ("lr_plan", 1.0, 1.0, False),
    "lr^0.5_fraction": ("lr_plan", 1.0, 0.5, False),
    "lr^0.25_fraction": ("lr_plan", 1.0, 0.25, False),
    **{f"lr^{k}_plan^{g}": ("lr_plan", g, k, True) for k in (1.0, 0.5, 0.25) for g in (0.5, 0.75)},
}
CANDIDATE_TEXT = {
    "steps": "optimizer steps", "tokens": "tokens seen", "fraction": "fraction of the planned run",
    "schedule_fraction": "fraction of the planned run weighted by the schedule's lr shape (no lr level)",
    "lr_integral": "effective time (lr integral, kappa from Gu et al.; the clock before issue 29)",
    "lr_fraction": "effective time per planned run (kappa from Gu et al.)",
    "lr^1_fraction": "effective time per planned run, lr exponent 1",
    "lr^0.5_fraction": "effective time per planned run, lr exponent 0.5",
    "lr^0.25_fraction": "effective time per planned run, lr exponent 0.25",
    **{f"lr^{k}_plan^{g}": f"effective time with lr exponent {k}, divided by (planned steps / 143,000)^{g}"
       for k in (1.0, 0.5, 0.25) for g in (0.5, 0.75)},
}


def with_clock(effects: PlanEffects, name: str) -> PlanEffects:
    """``effects`` counting time in the candidate clock ``name`` (``CANDIDATES``)."""
    if name not in CANDIDATES:
        raise ValueError(f"clock: {name!r} is not one of {', '.join(CANDIDATES)}")
    clock, g, kappa, _ = CANDIDATES[name]
    return replace(effects, clock=clock, plan_exponent=g, kappa=effects.kappa if kappa is None else kappa)


def table_onsets(entries: Iterable[tuple], archs: dict[str, Architecture]) -> list[Onset]:
    """The engine's ``TIMING_ONSETS`` (label, source, family, design fields or a bundled model, first, last step)."""
    out = []
    for label, source, family, fields, lo, hi in entries:
        arch = archs.get(fields) if isinstance(fields, str) else Architecture(**fields)
        if arch is not None:
            out.append(Onset(label=label, family=family, arch=arch, lo=float(lo), hi=float(hi), h=ONSET_FRACTION,
                             source=source, bridge="emerges / appears: 10 % of the rise"))
    return out


def series_onsets(curves: dict, archs: dict[str, Architecture], native: PlanEffects, timeline: TimelineFn,
                  family: Callable[[str], str]) -> list[Onset]:
    """Each timed checkpoint series' fitted midpoint (half its log rise), as a step of its own plan."""
    out = []
    for m, f in curves.items():
        if not f.timed or m not in archs:
            continue
        t = timeline(archs[m], native, None).step_at(10**f.log_tau_e)
        if t:
            out.append(Onset(label=f"{m} series midpoint", family=family(m), arch=archs[m], lo=t, hi=t, h=0.5,
                             source="checkpoint series (Hill fit)", bridge="half the log rise of top-1/median",
                             series=True))
    return out
