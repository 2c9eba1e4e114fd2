"""Precision risk per number format from the predicted per-layer peak |a| and ratio trajectory.

Formats and the limit each check uses (DESIGN.md section 5):

- FP16: max 65504 (overflow to inf); 11 significant bits, so a residual coordinate ``a`` cannot
  absorb updates smaller than half a unit in the last place, about ``a / 2^11``: with
  ratio = |a|/median > 2048 median-sized updates to the massive coordinate are rounded away.
- BF16: range ~3.4e38 (no overflow in practice) but only 8 significant bits: the same swamping
  happens once ratio > 256.
- FP8 E4M3: max 448. Unscaled, any |a| > 448 overflows; with per-tensor scaling (peak -> 448) the
  median falls below the smallest normal (2^-6) once ratio > 448 * 2^6 = 28672.
- FP8 E5M2: max 57344; scaled, the median leaves the normal range once ratio > 57344 * 2^14.
- INT8 per-tensor (symmetric, step = max/127): ratio > 127 puts the median below one quantization
  step, ratio > 254 rounds it to zero.

A layer is ``likely`` at risk when the point forecast crosses the limit and ``possible`` when only
the upper end of its interval does; ``from_step`` is the first forecast step at which it crosses.

Not every crossing breaks something a practitioner would notice (``Check.breaks``). Overflow of FP16
(inf/NaN in the forward pass), a per-tensor FP8 scale that pushes the other tokens below the smallest
normal, and INT8 per-tensor quantization that rounds the median to zero do. Swamping (FP16, BF16: the
massive channel's residual add loses the small updates) does not: every model in the evidence trained in
BF16 with its massive activations; nor does FP8 overflow *without* scaling, which no FP8 recipe uses; nor
an INT8 step above the median (degraded, not lost). Those are stated, never called "at risk".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FP16_MAX = 65504.0
BF16_MAX = 3.3895313892515355e38
FP8_E4M3_MAX = 448.0
FP8_E5M2_MAX = 57344.0
INT8_LEVELS = 127

FP16_SWAMP_RATIO = 2.0**11
BF16_SWAMP_RATIO = 2.0**8
E4M3_SCALED_RATIO = FP8_E4M3_MAX / 2.0**-6
E5M2_SCALED_RATIO = FP8_E5M2_MAX / 2.0**-14
INT8_STEP_RATIO = float(INT8_LEVELS)
INT8_ZERO_RATIO = 2.0 * INT8_LEVELS

FORMATS: tuple[str, ...] = ("fp16", "bf16", "fp8_e4m3", "fp8_e5m2", "int8_per_tensor")

# precision_target (knowledge-base vocabulary) -> formats the activations go through
TARGET_FORMATS: dict[str, tuple[str, ...]] = {
    "bf16": ("bf16",),
    "fp16_inference": ("fp16",),
    "fp8_training": ("fp8_e4m3", "fp8_e5m2"),
    "int8_w8a8": ("int8_per_tensor",),
    "int4_w4a4": ("int8_per_tensor",),  # INT4 is strictly worse than the INT8 check
    "w4a16": ("fp16", "bf16"),
    "w8a16": ("fp16", "bf16"),
}


@dataclass(frozen=True)
class Check:
    format: str
    quantity: str  # "peak_abs" | "ratio"
    limit: float
    effect: str  # what happens when crossed
    breaks: bool = True  # a practitioner would notice (see the module docstring); False: stated, not "at risk"


@dataclass(slots=True)  # not frozen: ~160 are built per answer, and a frozen init costs 2.5x
class LayerRisk:
    layer: int
    check: str  # e.g. "overflow", "swamping"
    quantity: str
    limit: float
    predicted: float  # max of the point forecast over the steps
    predicted_hi: float
    certainty: str  # likely | possible
    from_step: float | None  # first step where the point forecast crosses (None: only the interval)
    from_step_hi: float | None  # first step where the upper bound crosses
    probability: float = 0.0  # that the layer crosses the limit by the planned end (predictor.answer)


@dataclass(frozen=True)
class FormatRisk:
    format: str
    max_value: float
    at_risk: bool  # some layer's point forecast crosses a limit
    possible: bool  # some layer crosses only within its interval
    target: bool
    layers: tuple[LayerRisk, ...]
    why: str
    checks: tuple[str, ...]


CHECKS: dict[str, tuple[tuple[str, Check], ...]] = {
    "fp16": (
        ("overflow", Check("fp16", "peak_abs", FP16_MAX, "overflows to inf (FP16 max 65504)")),
        (
            "swamping",
            Check(
                "fp16",
                "ratio",
                FP16_SWAMP_RATIO,
                "median-sized updates to the massive coordinate fall below half an FP16 ulp (11 significant bits)",
                breaks=False,
            ),
        ),
    ),
    "bf16": (
        (
            "swamping",
            Check(
                "bf16",
                "ratio",
                BF16_SWAMP_RATIO,
                "median-sized updates to the massive coordinate fall below half a BF16 ulp (8 significant bits); BF16 "
                "training tolerates it (every model in the evidence trained in BF16)",
                breaks=False,
            ),
        ),
    ),
    "fp8_e4m3": (
        ("overflow_unscaled", Check("fp8_e4m3", "peak_abs", FP8_E4M3_MAX, "overflows E4M3 (max 448) without scaling; "
                                    "FP8 recipes scale per tensor, so this is stated, not a risk", breaks=False)),
        (
            "underflow_scaled",
            Check(
                "fp8_e4m3",
                "ratio",
                E4M3_SCALED_RATIO,
                "with per-tensor scaling to 448 the median drops below the smallest E4M3 normal (2^-6)",
            ),
        ),
    ),
    "fp8_e5m2": (
        ("overflow_unscaled", Check("fp8_e5m2", "peak_abs", FP8_E5M2_MAX, "overflows E5M2 (max 57344) without scaling; "
                                    "FP8 recipes scale per tensor", breaks=False)),
        (
            "underflow_scaled",
            Check(
                "fp8_e5m2",
                "ratio",
                E5M2_SCALED_RATIO,
                "with per-tensor scaling the median drops below the smallest E5M2 normal (2^-14)",
            ),
        ),
    ),
    "int8_per_tensor": (
        (
            "below_one_step",
            Check(
                "int8_per_tensor",
                "ratio",
                INT8_STEP_RATIO,
                "per-tensor step = max/127 exceeds the median, so typical values get <= 1 quantization level (degraded)",
                breaks=False,
            ),
        ),
        (
            "rounds_to_zero",
            Check(
                "int8_per_tensor",
                "ratio",
                INT8_ZERO_RATIO,
                "the median is below half a step (max/254) and rounds to zero",
            ),
        ),
    ),
}

BREAKS: dict[tuple[str, str], bool] = {(f, n): c.breaks for f, checks in CHECKS.items() for n, c in checks}

# The decision, one table every door reads (/predict's at_risk, the review's default fail rules, the plan):
# format -> (the breaking checks, the probability above which the design is at risk). BF16 has no breaking check.
GATE: dict[str, tuple[tuple[str, ...], float]] = {
    "fp16": (("overflow",), 0.2),
    "fp8_e4m3": (("underflow_scaled",), 0.2),
    "fp8_e5m2": (("underflow_scaled",), 0.2),
    "int8_per_tensor": (("rounds_to_zero",), 0.5),
}


def gate_probability(fmt: str, check_probabilities: dict[str, float]) -> float:
    """The probability the gate compares with its threshold: the largest of the format's breaking checks'."""
    checks, _ = GATE.get(fmt, ((), 1.0))
    return max((check_probabilities.get(c, 0.0) for c in checks), default=0.0)


def gate_at_risk(fmt: str, check_probabilities: dict[str, float]) -> bool:
    """At risk: some breaking check of ``fmt`` is crossed with probability above the gate's threshold."""
    return fmt in GATE and gate_probability(fmt, check_probabilities) > GATE[fmt][1]


MAX_VALUES = {
    "fp16": FP16_MAX,
    "bf16": BF16_MAX,
    "fp8_e4m3": FP8_E4M3_MAX,
    "fp8_e5m2": FP8_E5M2_MAX,
    "int8_per_tensor": float(INT8_LEVELS),
}


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def crossings(steps: np.ndarray, arrays: dict[str, tuple[np.ndarray, np.ndarray]],
              probs: dict[tuple[str, str], list[float]] | None = None) -> dict[tuple[str, str], list[LayerRisk]]:
    """Per (format, check), the layers that cross the check's limit (point forecast: ``likely``; upper bound
    only: ``possible``), in layer order. All checks of one quantity and all layers at once: ``arrays`` holds
    per quantity the (point, hi) layer x step matrices (-inf: never crosses); ``probs``, per (format, check),
    each layer's probability of crossing."""
    st = np.asarray(steps, float).tolist()
    out: dict[tuple[str, str], list[LayerRisk]] = {(f, n): [] for f in FORMATS for n, _ in CHECKS[f]}
    for quantity, (point, hi) in arrays.items():
        checks = [(f, n, c) for f in FORMATS for n, c in CHECKS[f] if c.quantity == quantity]
        if not checks or not point.size:
            continue
        hi = np.maximum(hi, point)
        limits = np.array([c.limit for _, _, c in checks])[:, None, None]
        over_hi = hi[None] > limits  # check x layer x step
        hit = over_hi.any(axis=2)
        if not hit.any():
            continue
        over_pt = point[None] > limits
        any_pt, first_pt, first_hi = over_pt.any(axis=2).tolist(), over_pt.argmax(axis=2).tolist(), over_hi.argmax(axis=2).tolist()
        pt_max, hi_max = point.max(axis=1).tolist(), hi.max(axis=1).tolist()
        for k, i in np.argwhere(hit).tolist():
            fmt, name, check = checks[k]
            t_point = st[first_pt[k][i]] if any_pt[k][i] else None
            out[fmt, name].append(LayerRisk(
                i, name, quantity, check.limit, pt_max[i], hi_max[i],
                "likely" if t_point is not None else "possible", t_point, st[first_hi[k][i]],
                probs[fmt, name][i] if probs else 0.0))
    return out


def assess_arrays(steps: np.ndarray, arrays: dict[str, tuple[np.ndarray, np.ndarray]],
                  precision_target: str | None = None,
                  probs: dict[tuple[str, str], list[float]] | None = None) -> list[FormatRisk]:
    """One ``FormatRisk`` per format in ``FORMATS`` (in that order). ``arrays``: for ``peak_abs`` (|a|) and
    ``ratio``, the (point, upper bound) layer x step matrices at ``steps`` (row i: layer i; NaN never crosses)."""
    targets = set(TARGET_FORMATS.get(str(precision_target or ""), ()))
    arrays = {q: (np.nan_to_num(p, nan=-np.inf), np.nan_to_num(h, nan=-np.inf)) for q, (p, h) in arrays.items()}
    crossed = crossings(steps, arrays, probs)
    out = []
    for fmt in FORMATS:
        risks: list[LayerRisk] = []
        reasons = []
        for name, check in CHECKS[fmt]:
            found = crossed[fmt, name]
            risks.extend(found)
            if found:
                likely = [r for r in found if r.certainty == "likely"]
                starts = [r.from_step for r in likely if r.from_step is not None] or [
                    r.from_step_hi for r in found if r.from_step_hi is not None
                ]
                qty = "peak |a|" if check.quantity == "peak_abs" else "ratio |a|/median"
                reasons.append(
                    f"{name}: {qty} > {_fmt(check.limit)} in {len(likely)} layer(s) by the forecast"
                    f" and {len(found) - len(likely)} more within the interval, from step {_fmt(min(starts))};"
                    f" {check.effect}"
                )
        why = "; ".join(reasons) if reasons else "no layer crosses this format's limits, within the interval"
        out.append(
            FormatRisk(
                format=fmt,
                max_value=MAX_VALUES[fmt],
                at_risk=any(r.certainty == "likely" and BREAKS[fmt, r.check] for r in risks),
                possible=any(r.certainty == "possible" for r in risks),
                target=fmt in targets,
                layers=tuple(sorted(risks, key=lambda r: (r.layer, r.check))),
                why=why,
                checks=tuple(n for n, _ in CHECKS[fmt]),
            )
        )
    return out
