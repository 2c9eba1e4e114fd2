"""Small text helpers the answer's sentences and every presentation of it share."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["emergence", "ranges"]


def ranges(layers: Sequence[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    out, run = [], []
    for x in sorted(set(layers)):
        if run and x == run[-1] + 1:
            run.append(x)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [x]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(out)


def emergence(iv, p_within: float | None, fmt) -> str:
    """A t_emerge interval as text, its ends after the planned end marked: '45,000 [14,000, after the plan: 190,000]
    (P within the plan 0.62)'. ``fmt`` formats a number; ``iv`` is an ``EmergenceInterval`` (or None)."""
    if iv is None:
        return "-" if p_within is None else f"no rise (P within the plan {p_within:.2g})"
    after_v, after_hi = getattr(iv, "value_after_plan", False), getattr(iv, "hi_after_plan", False)
    v = ("after the plan: " if after_v else "") + fmt(iv.value)
    hi = ("after the plan: " if after_hi and not after_v else "") + fmt(iv.hi)
    p = f" (P within the plan {p_within:.2g})" if p_within is not None and (after_v or after_hi) else ""
    return f"{v} [{fmt(iv.lo)}, {hi}]{p}"
