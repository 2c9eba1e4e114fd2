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

from predictor.architecture import Architecture
from predictor.precision import TARGET_FORMATS
from predictor.response import ScheduleRisk

__all__ = ["ScheduleEvent", "schedule_events", "schedule_notes"]

# a schedule-linked risk term and the formats it concerns
ScheduleEvent = tuple[tuple[str, ...], ScheduleRisk]

FP8_SWIGLU_TOKENS = 200e9  # 2409.12517: divergence after ~200B tokens
PTQ_TARGETS = ("w4a16", "w8a16", "int4_w4a4", "int8_w8a8")  # weight quantization after training


def decay_start(arch: Architecture) -> int | None:
    """The step at which the learning rate starts to fall (None: a constant schedule)."""
    t, w = arch.planned_steps, int(round(arch.warmup_frac * arch.planned_steps))
    return {"constant": None, "wsd": w + int(0.9 * (t - w))}.get(arch.lr_schedule, w)


def schedule_events(arch: Architecture) -> list[ScheduleEvent]:
    """The schedule-linked risk terms of a plan, each with its source and the formats it concerns."""
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
        out.append((TARGET_FORMATS["fp8_training"],
                    ScheduleRisk(kind="fp8_swiglu_tokens", step=at if inside else None, tokens=FP8_SWIGLU_TOKENS,
                                 within_plan=inside, evidence="number", source="arXiv 2409.12517", text=text)))
    if arch.precision_target in PTQ_TARGETS:
        start = decay_start(arch)
        where = (f"this plan's {arch.lr_schedule} decay starts at step {start:,} of {arch.planned_steps:,}" if start is not None
                 else "this plan's constant learning rate does not decay")
        text = (f"post-training quantization (schedule, direction only): weight-quantization error rose once the learning "
                f"rate decayed, largely independent of the token count (arXiv 2510.06213, 3-4-bit GPTQ up to 15T tokens; "
                f"warmup-stable-decay kept it lower than cosine); {where}. No magnitude is encoded")
        out.append((TARGET_FORMATS[arch.precision_target],
                    ScheduleRisk(kind="lr_decay_ptq", step=start, tokens=None if start is None else float(start * arch.batch_tokens),
                                 within_plan=start is not None, evidence="direction", source="arXiv 2510.06213", text=text)))
    return out


def schedule_notes(arch: Architecture) -> list[str]:
    return [risk.text for _, risk in schedule_events(arch)]
