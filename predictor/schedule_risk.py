"""Precision risk that the training schedule, not the emergence curve, brings late in a run.

Two results tie risk to where a plan is, not to when massive activations emerge:

- FP8 training of SwiGLU models diverged after about 200B tokens (Llama2-7B to 2T tokens, arXiv
  2409.12517): SwiGLU weight alignment, slowly growing outliers at the FFN's product. A number: the
  step at which the plan passes 200B tokens is stated.
- Post-training weight quantization error (3-4-bit GPTQ on open training trajectories up to 15T
  tokens, arXiv 2510.06213) rises once the learning rate decays, largely independent of the token
  count; warmup-stable-decay keeps it lower than cosine. A direction only: the decay's start is stated,
  no magnitude is encoded.
"""

from __future__ import annotations

from dataclasses import dataclass

from predictor.architecture import Architecture
from predictor.precision import TARGET_FORMATS

FP8_SWIGLU_TOKENS = 200e9  # 2409.12517: divergence after ~200B tokens
PTQ_TARGETS = ("w4a16", "w8a16", "int4_w4a4", "int8_w8a8")  # weight quantization after training


def decay_start(arch: Architecture) -> int | None:
    """The step at which the learning rate starts to fall (None: a constant schedule)."""
    t, w = arch.planned_steps, int(round(arch.warmup_frac * arch.planned_steps))
    return {"constant": None, "wsd": w + int(0.9 * (t - w))}.get(arch.lr_schedule, w)


@dataclass(frozen=True)
class ScheduleEvent:
    """A point of the plan where a published result puts precision risk, for the formats it concerns."""

    kind: str  # fp8_swiglu_tokens | lr_decay_ptq
    formats: tuple[str, ...]
    step: int | None  # where the plan reaches it (None: never)
    tokens: float | None
    within_plan: bool
    evidence: str  # number (the paper gives the point) | direction (only that risk rises from there)
    source: str
    text: str


def schedule_events(arch: Architecture) -> list[ScheduleEvent]:
    """The schedule-linked risk terms of a plan (``ScheduleEvent``), each with its source."""
    out = []
    fp8 = arch.precision == "fp8" or arch.precision_target == "fp8_training"
    if fp8 and arch.glu and arch.activation == "silu":
        at = int(FP8_SWIGLU_TOKENS / arch.batch_tokens)
        inside = arch.planned_tokens > FP8_SWIGLU_TOKENS
        text = (f"late FP8 risk (schedule): FP8 training of SwiGLU models diverged after ~200B tokens (arXiv 2409.12517, "
                f"Llama2-7B; SwiGLU weight alignment); this plan passes 200B tokens at step {at:,} of "
                f"{arch.planned_steps:,}: the FP8 risk there is beyond what the emergence curve shows (their fix: "
                f"Smooth-SwiGLU)") if inside else (
                f"late FP8 risk (schedule): the SwiGLU divergence of arXiv 2409.12517 came after ~200B tokens; this plan "
                f"ends at {arch.planned_tokens / 1e9:,.0f}B tokens, before it")
        out.append(ScheduleEvent("fp8_swiglu_tokens", TARGET_FORMATS["fp8_training"], at if inside else None,
                                 FP8_SWIGLU_TOKENS, inside, "number", "arXiv 2409.12517", text))
    if arch.precision_target in PTQ_TARGETS:
        start = decay_start(arch)
        where = (f"this plan's {arch.lr_schedule} decay starts at step {start:,} of {arch.planned_steps:,}" if start is not None
                 else "this plan's constant learning rate does not decay")
        text = (f"post-training quantization (schedule, direction only): weight-quantization error rose once the learning "
                f"rate decayed, largely independent of the token count (arXiv 2510.06213, 3-4-bit GPTQ up to 15T tokens; "
                f"warmup-stable-decay kept it lower than cosine); {where}. No magnitude is encoded")
        out.append(ScheduleEvent("lr_decay_ptq", TARGET_FORMATS[arch.precision_target], start,
                                 None if start is None else float(start * arch.batch_tokens), start is not None,
                                 "direction", "arXiv 2510.06213", text))
    return out


def schedule_notes(arch: Architecture) -> list[str]:
    return [e.text for e in schedule_events(arch)]
