"""The precision plan in the answer: per format the precision target uses, the layers to keep in high
precision and why, the layers to monitor, and the plan's own risk.

A layer is kept when the probability that it crosses one of the format's *breaking* limits by the planned end
(``predictor.precision``: FP16 overflow, scaled FP8 underflow, INT8 median rounded to zero) is at least the
format's ``ALPHA`` (the default review policy's threshold for that format, so a design with its plan applied
passes the gate); it is monitored from a fifth of it. The plan's own risk is the probability that a layer outside the
plan still crosses: the largest such probability (layers move together, so the worst one is the risk).
A format with no breaking limit (BF16) has nothing to keep, and says so.
"""

from __future__ import annotations

from collections.abc import Sequence

from predictor import precision as prec
from predictor.response import FormatPlan, PlannedLayer, PrecisionPlan, PrecisionRisk

# per format: the default review policy's fail threshold (review.verdict.default_policy)
ALPHA = {"fp16": 0.2, "bf16": 0.2, "fp8_e4m3": 0.2, "fp8_e5m2": 0.2, "int8_per_tensor": 0.5}
MONITOR_FRACTION = 0.2


def precision_plan(risks: Sequence[PrecisionRisk], precision_target: str, alpha: dict[str, float] | None = None) -> PrecisionPlan:
    alphas = {**ALPHA, **(alpha or {})}
    formats = []
    for r in risks:
        if not r.target:
            continue
        alpha = alphas[r.format]
        best: dict[int, object] = {}
        for d in r.details:
            if prec.BREAKS[r.format, d.check] and (d.layer not in best or d.probability > best[d.layer].probability):
                best[d.layer] = d
        keep = sorted(layer for layer, d in best.items() if d.probability >= alpha)
        monitor = sorted(layer for layer, d in best.items() if d.probability >= alpha * MONITOR_FRACTION)
        outside = [d.probability for layer, d in best.items() if layer not in keep]
        breaking = [n for n, c in prec.CHECKS[r.format] if c.breaks]
        layers = [PlannedLayer(layer=layer, check=best[layer].check, probability=best[layer].probability,
                               predicted=best[layer].predicted, predicted_hi=best[layer].predicted_hi,
                               limit=best[layer].limit, from_step=best[layer].from_step,
                               from_step_hi=best[layer].from_step_hi,
                               why=(f"layer {layer}: P({best[layer].check}) = {best[layer].probability:.2f} by the planned end; "
                                    f"{'peak |a|' if best[layer].quantity == 'peak_abs' else 'ratio'} forecast "
                                    f"{best[layer].predicted:,.3g} (up to {best[layer].predicted_hi:,.3g}) against "
                                    f"{best[layer].limit:,.3g}"
                                    + (f", from step {best[layer].from_step:,.0f}" if best[layer].from_step is not None else
                                       f", from step {best[layer].from_step_hi:,.0f} at the interval's upper end"
                                       if best[layer].from_step_hi is not None else "")))
                  for layer in keep]
        n_layers = len({d.layer for d in r.details}) or 1
        why = (f"no {r.format} limit breaks from massive activations (its checks: "
               f"{', '.join(name for name, _ in prec.CHECKS[r.format])} are stated, not risks): nothing to keep"
               if not breaking else
               f"{len(keep)} layer(s) with P({'/'.join(breaking)}) >= {alpha:g} kept in high precision; "
               f"{len(set(monitor) - set(keep))} more monitored (P >= {alpha * MONITOR_FRACTION:g})"
               + ("; that is every layer: keep this format off the whole model" if keep and len(keep) == n_layers else ""))
        formats.append(FormatPlan(format=r.format, alpha=alpha, breaking_checks=breaking, keep_high_precision=layers,
                                  monitor=monitor, residual_risk=max(outside, default=0.0), why=why))
    return PrecisionPlan(precision_target=precision_target, formats=formats)
