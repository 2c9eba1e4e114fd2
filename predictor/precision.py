"""Precision risk per number format *and scaling recipe*, from the predicted per-layer peak |a| and ratio.

One table (``SPECS``) holds what every consumer needs to know of a format: its element encoding's constants
(``ELEMENTS``, from the specifications), how it is scaled (granularity), its checks and which of them break a
model, the gate's threshold, whether it is a training or an inference recipe, the recipe's name in each tool's own
words, and the outcomes behind it. The answer, the review gate, the plan and the plan files read it.

What a massive activation does to a scaled format depends on what shares its scale (docs/PRECISION.md):

- **per tensor** (FP8 tensorwise / delayed / current scaling, INT8 per-tensor, llm-compressor ``FP8``): the
  massive value sets the scale of the whole tensor, so *every* token's typical value sits ``ratio`` below the
  format's maximum. Past the format's range (FP8 E4M3: 448 / 2^-6 = 28,672 to the smallest normal; INT8: the
  median below half a step at ratio > 254) the typical values are lost everywhere: this breaks models (INT8
  per-tensor W8A8 on Llama-2, TensorRT-LLM #1618 and vLLM #1112).
- **per row / per token** (torchao ``rowwise``, llm-compressor ``FP8_DYNAMIC`` and ``W8A8``): the massive
  token's row gets its own scale, so only that token's other values are compressed by ``ratio``; other tokens
  keep their own range. Stated, not a break: per-token INT8 runs Llama-2-13B at full accuracy where per-tensor
  fails; row-wise FP8 served Llama-3.1-405B (with its row scales capped at 1200 against that token's underflow).
- **per block** (1x128 tiles as in DeepSeek-V3, MXFP8's 32 elements with a power-of-two E8M0 scale, NVFP4's 16
  elements with an E4M3 scale): only the massive value's block neighbours are compressed. NVFP4 adds a per-tensor
  FP32 scale *over the block scales*: the massive block's scale maps to 448, so ordinary blocks' scales (their max
  ~``TYPICAL_BLOCK_MAX`` medians) fall below E4M3's range once ratio > 448 x 2^10 x 3 (flushed: the per-tensor
  mechanism again, a break).
- **unscaled** (FP16, BF16): FP16 overflows past 65,504 (a break); swamping (FP16 ratio > 2^11, BF16 > 2^8) is
  stated: every model in the evidence trained in BF16 with it.

A layer is ``likely`` at risk when the point forecast crosses the limit and ``possible`` when only the upper end
of its interval does; ``from_step`` is the first forecast step at which it crosses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from itertools import accumulate, pairwise

import numpy as np

__all__ = ["BF16_SWAMP_RATIO", "BREAKS", "CHECKS", "CHECK_ROWS", "E4M3_FLUSH_RATIO", "E4M3_SCALED_RATIO", "ELEMENTS",
           "FORMATS", "FORMAT_ROWS", "FP16_MAX", "FP16_SWAMP_RATIO", "FP8_E4M3_MAX", "FP8_E5M2_MAX", "GATE",
           "INT8_STEP_RATIO", "LayerRisk", "MAX_VALUES", "MXFP8_BLOCK_RATIO", "NVFP4_BLOCK_ZERO_RATIO", "NVFP4_SCALE_FLUSH_RATIO",
           "QUANTITIES", "QUANTITY_ROW", "SPECS", "TARGETS", "TARGET_FORMATS", "assess_arrays", "crossings", "formats_in_use",
           "gate_at_risk", "gate_probability"]


@dataclass(frozen=True)
class Element:
    """An element encoding's constants (its specification)."""

    label: str
    max: float
    min_normal: float
    min_subnormal: float  # the smallest non-zero magnitude (for INT8: one step)
    source: str


ELEMENTS: dict[str, Element] = {
    "fp16": Element("FP16 (IEEE binary16)", 65504.0, 2.0**-14, 2.0**-24, "IEEE 754-2008 binary16"),
    "bf16": Element("BF16", 3.3895313892515355e38, 2.0**-126, 2.0**-133, "bfloat16 (8 exponent, 7 mantissa bits)"),
    "e4m3": Element("FP8 E4M3", 448.0, 2.0**-6, 2.0**-9, "OCP 8-bit Floating Point Specification (OFP8) rev. 1.0, "
                    "Table 1: E4M3 max 448, min normal 2^-6, min subnormal 2^-9"),
    "e5m2": Element("FP8 E5M2", 57344.0, 2.0**-14, 2.0**-16, "OFP8 rev. 1.0, Table 1: E5M2 max 57344, min normal 2^-14, "
                    "min subnormal 2^-16"),
    "e2m1": Element("FP4 E2M1", 6.0, 1.0, 0.5, "OCP Microscaling (MX) Formats Specification v1.0, Sec. 5.3.3: E2M1 "
                    "values 0, 0.5, 1, 1.5, 2, 3, 4, 6"),
    "int8": Element("INT8 (symmetric)", 127.0, 1.0, 1.0, "symmetric signed 8-bit: levels -127..127, step = max / 127"),
}

FP16_MAX = ELEMENTS["fp16"].max
BF16_MAX = ELEMENTS["bf16"].max
FP8_E4M3_MAX = ELEMENTS["e4m3"].max
FP8_E5M2_MAX = ELEMENTS["e5m2"].max
INT8_LEVELS = 127

FP16_SWAMP_RATIO = 2.0**11
BF16_SWAMP_RATIO = 2.0**8
E4M3_SCALED_RATIO = FP8_E4M3_MAX / ELEMENTS["e4m3"].min_normal  # 28,672: the typical value below the smallest normal
E4M3_FLUSH_RATIO = FP8_E4M3_MAX / (ELEMENTS["e4m3"].min_subnormal / 2)  # 458,752: it rounds to zero
E5M2_SCALED_RATIO = FP8_E5M2_MAX / ELEMENTS["e5m2"].min_normal
INT8_STEP_RATIO = float(INT8_LEVELS)
INT8_ZERO_RATIO = 2.0 * INT8_LEVELS
# MXFP8: an E8M0 (power-of-two) block scale puts the block max in [2^8, 2^9), clamped to 448 (OCP MX v1.0 Sec. 6.3):
# at worst 256, so the block's typical value leaves the normals at ratio > 256 / 2^-6
MXFP8_BLOCK_RATIO = 2.0**8 / ELEMENTS["e4m3"].min_normal
NVFP4_BLOCK_ZERO_RATIO = ELEMENTS["e2m1"].max / (ELEMENTS["e2m1"].min_subnormal / 2)  # 24: neighbours round to zero
# max |x| of 16 values over their median |x| (a Gaussian row: E max|x| of 16 ~ 2.0 sd, median |x| = 0.674 sd)
TYPICAL_BLOCK_MAX = 3.0
NVFP4_SCALE_SUBNORMAL_RATIO = FP8_E4M3_MAX * TYPICAL_BLOCK_MAX / ELEMENTS["e4m3"].min_normal
NVFP4_SCALE_FLUSH_RATIO = FP8_E4M3_MAX * TYPICAL_BLOCK_MAX / (ELEMENTS["e4m3"].min_subnormal / 2)


@dataclass(frozen=True)
class Check:
    format: str
    quantity: str  # "peak_abs" | "ratio"
    limit: float
    effect: str  # what happens when crossed
    breaks: bool = True  # a practitioner would notice (see the module docstring); False: stated, not "at risk"


@dataclass(frozen=True)
class FormatSpec:
    """One number format with its scaling recipe: everything a consumer reads about it (module docstring)."""

    label: str
    element: str  # key of ELEMENTS
    granularity: str  # none | tensor | row | block
    scale: str  # what holds the scale: "-" (unscaled), "FP32 per tensor", "FP32 per row", "E8M0 per 32", ...
    use: str  # training | inference | both
    checks: tuple[tuple[str, Check], ...]
    gate: tuple[tuple[str, ...], float] | None = None  # (the breaking checks, the probability above which at risk)
    tools: dict[str, str] = field(default_factory=dict)  # tool -> the recipe in that tool's own words
    evidence: tuple[str, ...] = ()  # outcomes behind the checks' "breaks" flags (precision_outcomes*.csv)


def _c(fmt: str, quantity: str, limit: float, effect: str, breaks: bool = False) -> Check:
    return Check(fmt, quantity, limit, effect, breaks)


def _row_checks(fmt: str, what: str, subnormal: float, flush: float, breaks_flush: bool = False) -> tuple[tuple[str, Check], ...]:
    """The two checks of a format whose scale isolates the massive value's ``what`` (its row, its block)."""
    return ((f"{what}_subnormal", _c(fmt, "ratio", subnormal, f"the massive value's {what} only: its other values fall "
                                     f"below the element's smallest normal (precision lost on that {what}, not elsewhere)")),
            (f"{what}_flush", _c(fmt, "ratio", flush, f"the massive value's {what} only: its other values round to zero",
                                 breaks_flush)))


# The gate's thresholds are calibrated on the outcome table (registry.outcomes.gate_outcomes; docs/PRECISION.md):
# the largest threshold that keeps every modelled break failing, midway (in log-odds) to the fine models above it.
GATE_FP16 = 0.25
GATE_FP8 = 0.2
GATE_INT8 = 0.5

SPECS: dict[str, FormatSpec] = {
    "fp16": FormatSpec(
        "FP16 (unscaled activations)", "fp16", "none", "-", "both",
        (("overflow", _c("fp16", "peak_abs", FP16_MAX, "overflows to inf (FP16 max 65504)", True)),
         ("swamping", _c("fp16", "ratio", FP16_SWAMP_RATIO, "median-sized updates to the massive coordinate fall below "
                         "half an FP16 ulp (11 significant bits)"))),
        gate=(("overflow",), GATE_FP16),
        tools={"llm-compressor": "W4A16"},
        evidence=("Gemma 3 and gpt-oss FP16 inference: the residual passes 65,504 (transformers #36822, vLLM PR #17364, "
                  "onnxruntime-genai PR #2444)",)),
    "bf16": FormatSpec(
        "BF16", "bf16", "none", "-", "both",
        (("swamping", _c("bf16", "ratio", BF16_SWAMP_RATIO, "median-sized updates to the massive coordinate fall below "
                         "half a BF16 ulp (8 significant bits); BF16 training tolerates it (every model in the evidence "
                         "trained in BF16)")),),
        tools={"llm-compressor": "W4A16"}),
    "fp8_e4m3": FormatSpec(
        "FP8 E4M3, one scale per tensor (tensorwise: delayed or current scaling)", "e4m3", "tensor", "FP32 per tensor",
        "both",
        (("overflow_unscaled", _c("fp8_e4m3", "peak_abs", FP8_E4M3_MAX, "overflows E4M3 (max 448) without scaling; "
                                  "FP8 recipes scale, so this is stated, not a risk")),
         ("underflow_scaled", _c("fp8_e4m3", "ratio", E4M3_SCALED_RATIO, "with one scale per tensor set by the massive "
                                 "value, every token's median drops below the smallest E4M3 normal (2^-6)", True))),
        gate=(("underflow_scaled",), GATE_FP8),
        tools={"torchao": 'Float8LinearConfig.from_recipe_name("tensorwise")',
               "te": "Float8CurrentScaling(fp8_format=Format.HYBRID)",
               "megatron": "--fp8-format hybrid --fp8-recipe tensorwise", "llm-compressor": "FP8"},
        evidence=("Apertus-8B: FP8 current scaling rolled back to BF16 (arXiv 2509.14233 Sec. 2.6)",
                  "Llama-3.1-405B chose row-wise scaling (arXiv 2407.21783 Sec. 6.2)")),
    "fp8_e5m2": FormatSpec(
        "FP8 E5M2 (gradients of the hybrid recipes), one scale per tensor", "e5m2", "tensor", "FP32 per tensor", "training",
        (("overflow_unscaled", _c("fp8_e5m2", "peak_abs", FP8_E5M2_MAX, "overflows E5M2 (max 57344) without scaling; "
                                  "FP8 recipes scale")),
         ("underflow_scaled", _c("fp8_e5m2", "ratio", E5M2_SCALED_RATIO, "with one scale per tensor the median drops "
                                 "below the smallest E5M2 normal (2^-14)", True))),
        gate=(("underflow_scaled",), GATE_FP8)),  # not a recipe: the tensorwise recipes' gradients (TE/Megatron HYBRID)
    "fp8_rowwise": FormatSpec(
        "FP8 E4M3, one scale per row (per token for activations)", "e4m3", "row", "FP32 per row", "both",
        _row_checks("fp8_rowwise", "row", E4M3_SCALED_RATIO, E4M3_FLUSH_RATIO),
        tools={"torchao": 'Float8LinearConfig.from_recipe_name("rowwise")', "llm-compressor": "FP8_DYNAMIC"},
        evidence=("Llama-3.1-405B row-wise FP8 inference ran with row scales capped at 1200 and the first and last "
                  "layers in BF16 (arXiv 2407.21783 Sec. 6.2); the torchtitan row-wise NaNs were software faults "
                  "(torchtitan #3109, ao #3356) or not localized (#865)",)),
    "fp8_block128": FormatSpec(
        "FP8 E4M3, 1x128 activation tiles and 128x128 weight blocks (DeepSeek-V3)", "e4m3", "block", "FP32 per 128",
        "both", _row_checks("fp8_block128", "block", E4M3_SCALED_RATIO, E4M3_FLUSH_RATIO),
        tools={"te": "Float8BlockScaling(fp8_format=Format.E4M3)", "megatron": "--fp8-format e4m3 --fp8-recipe blockwise",
               "llm-compressor": "FP8_BLOCK"},
        evidence=("DeepSeek-V3: 14.8T tokens with 1x128 tiles, relative loss error < 0.25 % (arXiv 2412.19437 Sec. 3.3)",)),
    "mxfp8": FormatSpec(
        "MXFP8: E4M3 in blocks of 32 with a power-of-two (E8M0) scale", "e4m3", "block", "E8M0 per 32", "both",
        _row_checks("mxfp8", "block", MXFP8_BLOCK_RATIO, 2.0**8 / (ELEMENTS["e4m3"].min_subnormal / 2)),
        tools={"te": "MXFP8BlockScaling(fp8_format=Format.E4M3)", "megatron": "--fp8-format e4m3 --fp8-recipe mxfp8",
               "llm-compressor": "MXFP8"}),
    "nvfp4": FormatSpec(
        "NVFP4: E2M1 in blocks of 16 with an E4M3 scale, and an FP32 scale per tensor", "e2m1", "block",
        "E4M3 per 16 + FP32 per tensor", "both",
        (("block_zero", _c("nvfp4", "ratio", NVFP4_BLOCK_ZERO_RATIO, "the massive value's 16-element block only: its "
                           "other values are below half the smallest E2M1 subnormal and round to zero")),
         ("scale_subnormal", _c("nvfp4", "ratio", NVFP4_SCALE_SUBNORMAL_RATIO, "the per-tensor scale maps the massive "
                                "block's scale to 448: ordinary blocks' E4M3 scales fall below the smallest normal")),
         ("scale_flush", _c("nvfp4", "ratio", NVFP4_SCALE_FLUSH_RATIO, "ordinary blocks' E4M3 scales round to zero: every "
                            "ordinary block is lost (the per-tensor mechanism)", True))),
        gate=(("scale_flush",), GATE_FP8),
        tools={"te": "NVFP4BlockScaling()", "megatron": "--fp4-format e2m1 --fp4-recipe nvfp4", "llm-compressor": "NVFP4"},
        evidence=("NVFP4 pretraining of a 12B model over 10T tokens matched FP8 with selective BF16 layers and Hadamard "
                  "transforms (arXiv 2509.25149)",)),
    "int8_per_tensor": FormatSpec(
        "INT8 W8A8, one activation scale per tensor (static; SmoothQuant-style migration included)", "int8", "tensor",
        "FP32 per tensor", "inference",
        (("below_one_step", _c("int8_per_tensor", "ratio", INT8_STEP_RATIO, "per-tensor step = max/127 exceeds the "
                               "median, so typical values get <= 1 quantization level (degraded)")),
         ("rounds_to_zero", _c("int8_per_tensor", "ratio", INT8_ZERO_RATIO, "the median is below half a step (max/254) "
                               "and rounds to zero", True))),
        gate=(("rounds_to_zero",), GATE_INT8),
        tools={"llm-compressor": "INT8 per tensor (config_groups)"},
        evidence=("Llama-2-7b SmoothQuant W8A8 static per-tensor: WikiText ppl 6.4 -> 15.7 (vLLM PR #1112)",
                  "Llama-2-13b per-tensor W8A8: MMLU 29.4 vs 54.5 per-token (TensorRT-LLM #1618)")),
    "int8_per_token": FormatSpec(
        "INT8 W8A8, per-channel weights and a dynamic scale per token", "int8", "row", "FP32 per token", "inference",
        (("row_below_one_step", _c("int8_per_token", "ratio", INT8_STEP_RATIO, "the massive token's row only: its "
                                   "typical values get <= 1 quantization level")),
         ("row_zero", _c("int8_per_token", "ratio", INT8_ZERO_RATIO, "the massive token's row only: its median rounds "
                         "to zero"))),
        tools={"llm-compressor": "W8A8"},
        evidence=("Llama-2-13b per-channel x per-token W8A8: MMLU 54.5, as unquantized (TensorRT-LLM #1618)",
                  "LLaMA 7B-65B RTN W8A8 near-lossless (LLM-QAT tables; facebookresearch/LLM-QAT #19)")),
}

FORMATS: tuple[str, ...] = tuple(SPECS)
CHECKS: dict[str, tuple[tuple[str, Check], ...]] = {f: s.checks for f, s in SPECS.items()}
BREAKS: dict[tuple[str, str], bool] = {(f, n): c.breaks for f, checks in CHECKS.items() for n, c in checks}
# The decision, one table every door reads (/predict's at_risk, the review's default fail rules, the plan):
# format -> (the breaking checks, the probability above which the design is at risk). No breaking check: no gate.
GATE: dict[str, tuple[tuple[str, ...], float]] = {f: s.gate for f, s in SPECS.items() if s.gate}
MAX_VALUES = {f: ELEMENTS[s.element].max for f, s in SPECS.items()}


@dataclass(frozen=True)
class Target:
    """A precision target: what it is for, the formats its tensors go through, and its alternative recipes in order
    of cost (the coarsest scaling first: the cheapest to run, the first the plan tries)."""

    use: str  # training | inference
    formats: tuple[str, ...]
    recipes: tuple[str, ...] = ()
    companions: dict[str, tuple[str, ...]] = field(default_factory=dict)  # recipe -> formats it brings along


TARGETS: dict[str, Target] = {
    "bf16": Target("training", ("bf16",)),
    "fp16_inference": Target("inference", ("fp16",)),
    "fp8_training": Target("training", ("fp8_e4m3", "fp8_e5m2", "fp8_rowwise", "fp8_block128", "mxfp8"),
                           ("fp8_e4m3", "fp8_rowwise", "fp8_block128", "mxfp8"), {"fp8_e4m3": ("fp8_e5m2",)}),
    "fp8_inference": Target("inference", ("fp8_e4m3", "fp8_rowwise", "fp8_block128", "mxfp8"),
                            ("fp8_e4m3", "fp8_rowwise", "fp8_block128", "mxfp8")),
    "nvfp4_training": Target("training", ("nvfp4",), ("nvfp4",)),
    "nvfp4_inference": Target("inference", ("nvfp4",), ("nvfp4",)),
    "int8_w8a8": Target("inference", ("int8_per_tensor", "int8_per_token"), ("int8_per_tensor", "int8_per_token")),
    "int4_w4a4": Target("inference", ("int8_per_tensor",)),  # INT4 is strictly worse than the INT8 check
    "w4a16": Target("inference", ("fp16", "bf16")),
    "w8a16": Target("inference", ("fp16", "bf16")),
}
# precision_target (knowledge-base vocabulary) -> formats the activations go through
TARGET_FORMATS: dict[str, tuple[str, ...]] = {t: s.formats for t, s in TARGETS.items()}


def formats_in_use(precision_target: str | None, recipe: str | None) -> tuple[str, ...]:
    """The formats a target's tensors go through under ``recipe`` (the recipe and what it brings along: the tensorwise
    FP8 recipes' E5M2 gradients); every format of the target where it has no choice of recipe or none is named."""
    t = TARGETS.get(str(precision_target or ""))
    if t is None:
        return ()
    if not t.recipes or recipe not in t.recipes:
        return t.formats
    return (recipe, *t.companions.get(recipe, ()))


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


def gate_probability(fmt: str, check_probabilities: dict[str, float]) -> float:
    """The probability the gate compares with its threshold: the largest of the format's breaking checks'."""
    checks, _ = GATE.get(fmt, ((), 1.0))
    return max((check_probabilities.get(c, 0.0) for c in checks), default=0.0)


def gate_at_risk(fmt: str, check_probabilities: dict[str, float]) -> bool:
    """At risk: some breaking check of ``fmt`` is crossed with probability above the gate's threshold."""
    return fmt in GATE and gate_probability(fmt, check_probabilities) > GATE[fmt][1]


def _fmt(x: float) -> str:
    return f"{x:.3g}"


# Every check as one row of the crossing and probability matrices: FORMATS order, each format's checks in its own order
CHECK_ROWS: tuple[tuple[str, str, Check], ...] = tuple((f, n, c) for f in FORMATS for n, c in CHECKS[f])
_ENDS = list(accumulate(len(CHECKS[f]) for f in FORMATS))
FORMAT_ROWS: dict[str, range] = {f: range(b - len(CHECKS[f]), b) for f, b in zip(FORMATS, _ENDS, strict=True)}
QUANTITIES = ("peak_abs", "ratio")
QUANTITY_ROW = np.array([QUANTITIES.index(c.quantity) for _, _, c in CHECK_ROWS])  # row -> its quantity's index
_FORMAT_START = np.array([r.start for r in FORMAT_ROWS.values()])
_LIMIT = np.array([c.limit for _, _, c in CHECK_ROWS])
_FLOAT_MAX = np.finfo(float).max
_BREAKING = np.array([c.breaks for _, _, c in CHECK_ROWS])[:, None]
# per format (padded with the row past the last, which never crosses): its rows in the order its records are listed
_WIDTH = max(len(r) for r in FORMAT_ROWS.values())
_BY_NAME = np.array([sorted(r, key=lambda k: CHECK_ROWS[k][1]) + [len(CHECK_ROWS)] * (_WIDTH - len(r))
                     for r in FORMAT_ROWS.values()])
# per row, the values its records carry
_NAME = [n for _, n, _ in CHECK_ROWS]
_QUANTITY = [c.quantity for _, _, c in CHECK_ROWS]
_LIMITS = [c.limit for _, _, c in CHECK_ROWS]
_REASON = [(f"{n}: {'peak |a|' if c.quantity == 'peak_abs' else 'ratio |a|/median'} > {_fmt(c.limit)} in ", f"; {c.effect}")
           for _, n, c in CHECK_ROWS]
_NO_CROSSING = "no layer crosses this format's limits, within the interval"


@dataclass(frozen=True)
class Crossings:
    """Per check (a row of ``CHECK_ROWS``) and layer: whether and from which step the layer crosses the check's limit
    (point forecast: ``likely``; upper bound: ``hit``, which ``likely`` implies), the largest forecast of the check's
    quantity over the steps and the probability of crossing. Every format's records and summaries come from these
    arrays, so a summary costs no per-layer record."""

    hit: np.ndarray
    likely: np.ndarray
    first: np.ndarray  # the first step the point forecast crosses (where likely; NaN outside ``crossings``' formats)
    first_hi: np.ndarray  # the first step the upper bound crosses (where hit; NaN outside them)
    predicted: np.ndarray
    predicted_hi: np.ndarray
    probability: np.ndarray

    def records(self, formats: Sequence[int]) -> list[list[LayerRisk]]:
        """Per format of ``formats`` (indices into FORMATS), its crossings as records in (layer, check) order."""
        hit = np.vstack((self.hit, np.zeros((1, self.hit.shape[1]), bool)))
        rows = _BY_NAME[list(formats)]
        fi, ls, ci = np.nonzero(hit[rows].transpose(0, 2, 1))  # format x layer x check (by name)
        ks = rows[fi, ci]
        kl, likely = ks.tolist(), self.likely[ks, ls].tolist()
        risks = list(map(LayerRisk, ls.tolist(), [_NAME[k] for k in kl], [_QUANTITY[k] for k in kl],
                         [_LIMITS[k] for k in kl], self.predicted[ks, ls].tolist(), self.predicted_hi[ks, ls].tolist(),
                         ["likely" if a else "possible" for a in likely],
                         [t if a else None for t, a in zip(self.first[ks, ls].tolist(), likely, strict=True)],
                         self.first_hi[ks, ls].tolist(), self.probability[ks, ls].tolist()))
        return [risks[a:b] for a, b in pairwise([0, *np.cumsum(np.bincount(fi, minlength=len(rows))).tolist()])]

    def check_probabilities(self) -> list[float]:
        """Per check: the largest probability over the layers that one crosses its limit."""
        return self.probability.max(axis=1, initial=0.0).tolist()

    def summaries(self, formats: Sequence[int] = range(len(FORMATS))) -> list[tuple[list[int], list[int], list[int],
                                                                                   float | None, str]]:
        """Per format of ``formats`` (indices into FORMATS), from the same per-check reductions: the layers whose point
        forecast crosses a breaking limit, the further layers that cross one only within their interval, and the
        layers whose point forecast crosses only limits that break nothing; the earliest step a layer's point forecast
        crosses a breaking limit (None: none does); and why: per check crossed, how many layers cross it (by the point
        forecast, and more only within the interval) and from which step, and what crossing it does."""
        formats = list(formats)
        sets = np.logical_or.reduceat(np.stack((self.likely & _BREAKING, self.hit & _BREAKING, self.likely)),
                                      _FORMAT_START, axis=1)[:, formats]  # 3 x format x layer
        sets[1:] &= ~sets[0]
        n = len(formats)
        which, fmt, layers = np.nonzero(sets)
        out = layers.tolist()
        lists = [out[a:b] for a, b in pairwise([0, *np.cumsum(np.bincount(which * n + fmt, minlength=3 * n)).tolist()])]
        n_likely, n_hit = self.likely.sum(axis=1), self.hit.sum(axis=1)
        first = np.where(self.likely, self.first, np.inf).min(axis=1, initial=np.inf)  # per check
        steps = np.minimum.reduceat(np.where(_BREAKING[:, 0], first, np.inf), _FORMAT_START).tolist()
        starts = np.where(n_likely > 0, first, np.where(self.hit, self.first_hi, np.inf).min(axis=1, initial=np.inf)).tolist()
        n_likely, n_hit = n_likely.tolist(), n_hit.tolist()
        whys = []
        for i in formats:
            reasons = [f"{_REASON[k][0]}{n_likely[k]} layer(s) by the forecast and {n_hit[k] - n_likely[k]} more within "
                       f"the interval, from step {_fmt(starts[k])}{_REASON[k][1]}" for k in FORMAT_ROWS[FORMATS[i]] if n_hit[k]]
            whys.append("; ".join(reasons) if reasons else _NO_CROSSING)
        return list(zip(lists[:n], lists[n:2 * n], lists[2 * n:], [None if steps[i] == math.inf else steps[i] for i in formats],
                        whys, strict=True))


@cache
def _first_rows(formats: tuple[int, ...]) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """The rows of ``formats`` (indices into FORMATS), per quantity the distinct limits of these rows (limit x 1 x 1 x
    1: what ``crossings`` compares each step with) and each row's place among them (the quantities' limits in turn)."""
    rows = [k for f in sorted(set(formats)) for k in FORMAT_ROWS[FORMATS[f]]]
    limits = [sorted({_LIMITS[k] for k in rows if QUANTITY_ROW[k] == q}) for q in range(len(QUANTITIES))]
    offsets = [0, *accumulate(len(x) for x in limits)]
    place = [offsets[QUANTITY_ROW[k]] + limits[QUANTITY_ROW[k]].index(_LIMITS[k]) for k in rows]
    return np.array(rows, int), [np.array(x)[:, None, None, None] for x in limits], np.array(place, int)


def crossings(steps: np.ndarray, arrays: dict[str, tuple[np.ndarray, np.ndarray]],
              probs: np.ndarray | None = None, formats: Sequence[int] = range(len(FORMATS))) -> Crossings:
    """Every check's crossings, all checks and layers at once. ``arrays``: for ``peak_abs`` (|a|) and ``ratio``, the
    (point, upper bound) layer x step matrices at ``steps`` (row i: layer i; NaN never crosses); ``probs``: per row
    of ``CHECK_ROWS`` and layer, the probability of crossing (zeros if not given). The first steps (the one comparison
    at every step, per distinct limit) only for the checks of ``formats`` (indices into FORMATS: the compact answer
    reads its target's only; NaN for the others, whose records and summaries are then not to be read)."""
    st = np.asarray(steps, float)
    # quantity x (point, upper bound) x layer x step; as np.nan_to_num(nan=-inf) (NaN never crosses), in fewer steps
    a = np.array([arrays[q][i] for q in QUANTITIES for i in (0, 1)], float)
    a = np.maximum(a, -_FLOAT_MAX).reshape(len(QUANTITIES), 2, *a.shape[1:])
    np.fmax(np.minimum(a, _FLOAT_MAX, out=a), -np.inf, out=a)
    np.maximum(a[:, 1], a[:, 0], out=a[:, 1])
    if not st.size:  # no step: nothing crosses
        st, a = np.zeros(1), np.full((*a.shape[:3], 1), -np.inf)
    top = a.max(axis=3)[QUANTITY_ROW]  # check x (point, upper bound) x layer
    rows, limits, place = _first_rows(tuple(formats))
    first = np.full(top.shape, np.nan)
    first[rows] = st[np.concatenate([(a[q][None] > lim).argmax(axis=3) for q, lim in enumerate(limits)])[place]]
    return Crossings(hit=top[:, 1] > _LIMIT[:, None], likely=top[:, 0] > _LIMIT[:, None], first=first[:, 0],
                     first_hi=first[:, 1], predicted=top[:, 0], predicted_hi=top[:, 1],
                     probability=np.zeros(top[:, 0].shape) if probs is None else np.asarray(probs, float))


def assess_arrays(steps: np.ndarray, arrays: dict[str, tuple[np.ndarray, np.ndarray]],
                  precision_target: str | None = None) -> list[FormatRisk]:
    """One ``FormatRisk`` per format in ``FORMATS`` (in that order), from ``crossings``."""
    targets = set(TARGET_FORMATS.get(str(precision_target or ""), ()))
    cr = crossings(steps, arrays)
    likely = np.logical_or.reduceat(cr.likely & _BREAKING, _FORMAT_START, axis=0).any(axis=1).tolist()
    possible = np.logical_or.reduceat(cr.hit & ~cr.likely, _FORMAT_START, axis=0).any(axis=1).tolist()
    return [FormatRisk(format=fmt, max_value=MAX_VALUES[fmt], at_risk=a, possible=p, target=fmt in targets,
                       layers=tuple(found), why=why, checks=tuple(n for n, _ in CHECKS[fmt]))
            for fmt, a, p, found, (*_, why) in zip(FORMATS, likely, possible, cr.records(range(len(FORMATS))),
                                                   cr.summaries(), strict=True)]
