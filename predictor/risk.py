"""Precision risk of a forecast: the probability that each layer crosses each format's limits by the planned end,
and the per-format risk records the answer carries (``predictor.precision`` holds the formats and their checks).

One formula (``layer_probabilities_many``) gives every probability of the answer, of its what-if variants and of
the review gate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.special import ndtr

from predictor import precision as prec
from predictor.architecture import Architecture
from predictor.mechanisms import fp16_mechanisms
from predictor.response import MechanismRisk, PrecisionRisk
from predictor.schedule_risk import ScheduleEvent
from predictor.schemas import ForecastArrays, IntervalArrays

__all__ = ["format_probabilities_many", "precision_risks"]


def _log_gauss(ivs: Sequence[IntervalArrays]) -> tuple[np.ndarray, np.ndarray]:
    """Centre and sd in log10 of 90 % intervals read as Gaussian (NaN where an end is not positive), all
    layers of all ``ivs`` in one array."""
    a = np.array([[x for iv in ivs for x in getattr(iv, k)] for k in ("value", "lo", "hi")], float)
    with np.errstate(divide="ignore", invalid="ignore"):
        la = np.where(a > 0, np.log10(np.where(a > 0, a, 1.0)), np.nan)
    return la[0], np.maximum((la[2] - la[1]) / (2 * 1.6448536269514722), 1e-6)


def layer_probabilities_many(ends: Sequence[tuple[IntervalArrays, IntervalArrays]]) -> tuple[dict[tuple[str, str], np.ndarray], np.ndarray]:
    """Per (format, check): the probability that each layer crosses the check's limit by the planned end,
    all layers of all ``ends`` (a forecast and its what-if variants: their per-layer peak |a| and end
    ratio) in one array; and where each forecast's layers start. The one formula behind every
    probability of the answer (per layer and check, per check, per format) and of the review gate."""
    starts = np.cumsum([0] + [len(p.value) for p, _ in ends[:-1]])
    logs = {"peak_abs": _log_gauss([p for p, _ in ends]), "ratio": _log_gauss([r for _, r in ends])}
    out: dict[tuple[str, str], np.ndarray] = {}
    for fmt, checks in prec.CHECKS.items():
        for name, check in checks:
            mu, sd = logs[check.quantity]
            v = ndtr((mu - math.log10(check.limit)) / sd)
            out[(fmt, name)] = np.where(np.isfinite(v), v, 0.0)
    return out, starts


def format_probabilities_many(ends: Sequence[tuple[IntervalArrays, IntervalArrays]]) -> list[dict[str, float]]:
    """Per forecast and format: the probability that some layer crosses one of the format's *breaking* limits
    by the planned end (``Check.breaks``; the largest over layers and checks: layers move together, so this
    is the probability of the worst). A format without a breaking check (BF16) has 0."""
    if not ends:
        return []
    probs, starts = layer_probabilities_many(ends)
    out: list[dict[str, float]] = [{} for _ in ends]
    for fmt, checks in prec.CHECKS.items():
        best = np.zeros(len(ends))
        for name, check in checks:
            if check.breaks:  # a crossing nobody would notice (swamping, unscaled FP8) is stated, not a risk
                best = np.maximum(best, np.maximum.reduceat(probs[(fmt, name)], starts))
        for i, p in enumerate(best.tolist()):
            out[i][fmt] = p
    return out


def precision_arrays(fc: ForecastArrays) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The (point, upper bound) layer x step matrices of |a| and the ratio for the precision checks.

    The forecast gives the ratio trajectory and the peak |a| only; |a| over training is taken as
    the peak scaled by the ratio trajectory's shape (median |h| roughly constant), which is
    exact at the peak and conservative before it.
    """
    tr = fc.trajectory
    ratio = np.array(tr.value, dtype=float).reshape(fc.n_layers, len(tr.steps))
    ratio_hi = np.maximum(np.array(tr.hi, dtype=float).reshape(ratio.shape), ratio)
    finite = np.isfinite(ratio).any(axis=1)
    rmax = np.where(finite, np.where(np.isnan(ratio), -np.inf, ratio).max(axis=1, initial=-np.inf), np.nan)
    ok = np.isfinite(rmax) & (rmax > 0)
    shape = np.where(ok[:, None], np.clip(ratio / np.where(ok, rmax, 1.0)[:, None], 0.0, 1.0), 1.0)
    peak, peak_hi = np.array(fc.peak_abs.value, float), np.array(fc.peak_abs.hi, float)
    return {"peak_abs": (peak[:, None] * shape, np.maximum(peak_hi, peak)[:, None] * shape), "ratio": (ratio, ratio_hi)}


def precision_risks(fc: ForecastArrays, arch: Architecture,
                    probs: dict[str, float] | None = None, events: Sequence[ScheduleEvent] = ()) -> list[PrecisionRisk]:
    """Per format, the layers at risk and why, with the probability of crossing each limit per layer and
    check, per check and per format (``probs``: the forecast's format probabilities if known), FP16's mechanisms
    (``predictor.mechanisms``), and the plan's schedule-linked risk terms (``events``) on the target formats they
    concern. ``fc`` is the worst-case (corpus_max) forecast."""
    precision_target = arch.precision_target
    lp = {k: v.tolist() for k, v in layer_probabilities_many([(fc.peak_abs, fc.ratio_end)])[0].items()}
    risks = prec.assess_arrays(np.array(fc.trajectory.steps, float), precision_arrays(fc), precision_target, lp)
    probs = probs if probs is not None else format_probabilities_many([(fc.peak_abs, fc.ratio_end)])[0]
    out = []
    for r in risks:
        breaking = [d for d in r.layers if prec.BREAKS[r.format, d.check]]
        likely = [d.from_step for d in breaking if d.from_step is not None]
        likely_layers = {d.layer for d in breaking if d.certainty == "likely"}
        # constructed, not validated: the details (~160 for 24 layers) are the checks' own records, in
        # ``LayerRiskOut``'s field order, written as they are (tests check the bytes validate unchanged)
        checks = {name: max(lp[(r.format, name)], default=0.0) for name, _ in prec.CHECKS[r.format]}
        out.append(PrecisionRisk.model_construct(
            format=r.format, max_value=r.max_value, at_risk=prec.gate_at_risk(r.format, checks), target=r.target,
            layers=sorted(likely_layers),
            possible_layers=sorted({d.layer for d in breaking} - likely_layers), from_step=min(likely) if likely else None,
            stated_layers=sorted({d.layer for d in r.layers if d.certainty == "likely"} - likely_layers),
            probability=probs.get(r.format),
            check_probabilities=checks,
            why=r.why, details=list(r.layers),
            mechanisms=[MechanismRisk.model_construct(**m) for m in fp16_mechanisms(
                arch, fc.peak_abs.value, fc.peak_abs.lo, fc.peak_abs.hi, max(lp[("fp16", "overflow")], default=0.0))]
            if r.format == "fp16" else [],
            schedule=[risk for formats, risk in events if r.target and r.format in formats]))
    return out
