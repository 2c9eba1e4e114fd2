"""The precision plan in the answer: per format the precision target uses, the layers to keep in high
precision and why, the layers to monitor, and the plan's own risk.

The plan keeps the fewest layers that make the design pass its gate (``fewest_to_keep``). The gate is
``predictor.precision.GATE``, the one table /predict's ``at_risk`` and the review's default fail rules read: per
format its *breaking* checks (FP16 overflow, scaled FP8 underflow, INT8 median rounded to zero) and the probability
above which the design is at risk. The format's risk is the largest probability that a layer left in the format
crosses a breaking limit by the planned end (layers move together, so the worst one is the risk, as in
``predictor.risk.format_probabilities_many``). A layer is monitored from a fifth of the threshold. The plan's
own risk is that risk over the layers outside the plan. A format without a gate (BF16: no breaking limit) has
nothing to keep, and says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from predictor import precision as prec
from predictor.response import PrecisionPlan, PrecisionRisk, RecipeOption

__all__ = ["ALPHA", "fewest_to_keep", "precision_plan"]

# per format: the gate's threshold (a format without a gate is never at risk: nothing to keep)
ALPHA = {f: prec.GATE.get(f, ((), 1.0))[1] for f in prec.FORMATS}
MONITOR_FRACTION = 0.2


def format_risk(probabilities: Iterable[float]) -> float:
    """The format's risk over some layers: the largest probability (layers move together, as in the gate)."""
    return max(probabilities, default=0.0)


def fewest_to_keep(probabilities: dict[int, float], alpha: float) -> list[int]:
    """The smallest set of layers whose removal from the format leaves its risk at or below ``alpha`` (the gate
    fails above it): the layers above it. Removed highest-risk first, the risk of the layers left (their largest
    probability) is the next one's, so every layer above ``alpha`` is needed and none other: left in the format,
    its own probability would be the format's risk and the gate would fail (``predictor.precision.gate_at_risk``:
    at risk above the threshold). So a layer whose point forecast lies below the limit (P < 0.5) is still kept
    when its interval puts P above alpha: the gate judges the probability."""
    return sorted(layer for layer, p in probabilities.items() if p > alpha)


def choose_recipe(options: Sequence[RecipeOption], chosen: str | None) -> tuple[str | None, str | None]:
    """The recipe to plan for and why: the architecture's own choice, else the cheapest safe one: the coarsest
    scaling that passes the gate with every layer in it; where none does, the fewest layers kept (ties: coarser)."""
    if not options:
        return None, None
    by = {o.format: o for o in options}
    if chosen is not None:
        o = by[chosen]
        return chosen, (f"{chosen} as the architecture's precision_recipe names: "
                        + (f"at risk (P {o.probability:.2f}), {o.keep} layer(s) kept" if o.at_risk else "passes the gate"))
    safe = next((o for o in options if not o.at_risk), None)
    if safe is not None:
        coarser = [o.format for o in options[:options.index(safe)]]
        return safe.format, (f"{safe.format} ({safe.label}): the coarsest scaling that passes the gate with every layer "
                             "in it" + (f"; {', '.join(coarser)} would not (P above the gate's threshold)" if coarser else ""))
    best = min(options, key=lambda o: (o.keep, options.index(o)))
    return best.format, (f"{best.format}: no recipe passes with every layer in it; this one needs the fewest layers in "
                         f"high precision ({best.keep})")


def _kept(layer: int, d: prec.LayerRisk, why: bool) -> dict:
    """A kept layer as ``PlannedLayer``'s fields: its record of the breaking check it crosses with the highest
    probability, and (``why``) why."""
    out = {"layer": layer, "check": d.check, "probability": d.probability, "predicted": d.predicted,
           "predicted_hi": d.predicted_hi, "limit": d.limit, "from_step": d.from_step, "from_step_hi": d.from_step_hi,
           "why": ""}
    if why:
        out["why"] = (f"layer {layer}: P({d.check}) = {d.probability:.2f} by the planned end; "
                      f"{'peak |a|' if d.quantity == 'peak_abs' else 'ratio'} forecast {d.predicted:,.3g} (up to "
                      f"{d.predicted_hi:,.3g}) against {d.limit:,.3g}"
                      + (f", from step {d.from_step:,.0f}" if d.from_step is not None else
                         f", from step {d.from_step_hi:,.0f} at the interval's upper end" if d.from_step_hi is not None
                         else ""))
    return out


def precision_plan(risks: Sequence[PrecisionRisk], precision_target: str, alpha: dict[str, float] | None = None,
                   recipe: str | None = None, details: bool = True) -> PrecisionPlan:
    """The plan for the target formats of ``risks``, from their gated checks' per-layer records (``details``, which
    ``predictor.risk.precision_risks`` keeps for these formats even without details). ``details=False``: the kept
    layers' ``why`` left empty (the compact views show none), every other field the same. The formats' plans are
    given to ``PrecisionPlan`` as data: one validation builds them all."""
    alphas = {**ALPHA, **(alpha or {})}
    formats, keeps = [], {}
    for r in risks:
        if not r.target:
            continue
        alpha = alphas[r.format]
        gated = prec.GATE.get(r.format, ((), 1.0))[0]
        best: dict[int, prec.LayerRisk] = {}
        for d in r.details:
            if d.check in gated and ((b := best.get(d.layer)) is None or d.probability > b.probability):
                best[d.layer] = d
        probs = {layer: d.probability for layer, d in best.items()}
        keep = fewest_to_keep(probs, alpha)
        monitor = sorted(layer for layer, p in probs.items() if p >= alpha * MONITOR_FRACTION)
        outside = [p for p in probs.values() if not p > alpha]  # the layers left in the format (``fewest_to_keep``)
        below = sum(best[layer].predicted < best[layer].limit for layer in keep)
        breaking = list(gated)
        n_layers = len({d.layer for d in r.details}) or 1
        why = (f"no {r.format} limit breaks from massive activations (its checks: "
               f"{', '.join(name for name, _ in prec.CHECKS[r.format])} are stated, not risks): nothing to keep"
               if not breaking else
               f"{len(keep)} layer(s) kept in high precision: the fewest that bring P({'/'.join(breaking)}) of the "
               f"layers left to at most {alpha:g} (the gate's threshold)"
               + (f", {below} of them for their interval's upper end (point forecast below the limit)" if below else "")
               + "; "
               f"{len(set(monitor).difference(keep))} more monitored (P >= {alpha * MONITOR_FRACTION:g})"
               + ("; that is every layer: keep this format off the whole model" if keep and len(keep) == n_layers else ""))
        keeps[r.format] = len(keep)
        formats.append({"format": r.format, "alpha": alpha, "breaking_checks": breaking,
                        "keep_high_precision": [_kept(layer, best[layer], details) for layer in keep], "monitor": monitor,
                        "residual_risk": format_risk(outside), "why": why})
    by = {r.format: r for r in risks}
    target = prec.TARGETS.get(precision_target)
    options = [RecipeOption(format=f, label=prec.SPECS[f].label, granularity=prec.SPECS[f].granularity,
                            at_risk=bool(by[f].at_risk), probability=float(by[f].probability or 0.0),
                            keep=keeps[f], tools=dict(prec.SPECS[f].tools))
               for f in (target.recipes if target else ()) if f in keeps and f in by]
    chosen, why = choose_recipe(options, recipe if recipe in keeps else None)
    at_risk = any(by[f].at_risk for f in prec.formats_in_use(precision_target, chosen) if f in by)
    return PrecisionPlan(precision_target=precision_target, recipe=chosen, recipe_why=why, at_risk=at_risk, recipes=options,
                         formats=formats)
