"""Precision risk of a forecast: the probability that each layer crosses each format's limits by the planned end,
and the per-format risk records the answer carries (``predictor.precision`` holds the formats and their checks).

One formula (``layer_probabilities_many``) gives every probability of the answer, of its what-if variants and of
the review gate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import accumulate

import numpy as np
from scipy.special import ndtr

from predictor import precision as prec
from predictor.architecture import Architecture
from predictor.mechanisms import fp16_mechanisms
from predictor.response import MechanismRisk, PrecisionRisk
from predictor.schedule_risk import ScheduleEvent
from predictor.schemas import ForecastArrays, IntervalArrays

__all__ = ["format_probabilities_many", "layer_probabilities_many", "precision_risks"]


def _log_gauss(ends: Sequence[tuple[IntervalArrays, IntervalArrays]]) -> tuple[np.ndarray, np.ndarray]:
    """Centre and sd in log10 of 90 % intervals read as Gaussian (NaN where an end is not positive): per quantity
    (``prec.QUANTITIES``: the peak |a|, the end ratio) all layers of all ``ends`` in one row."""
    keys = [(q, k) for q in (0, 1) for k in ("value", "lo", "hi")]
    if len({len(p.value) for p, _ in ends}) == 1:  # one array from the lists at once (ragged: one per forecast)
        a = np.array([[getattr(e[q], k) for e in ends] for q, k in keys], float).reshape(6, -1)
    else:
        a = np.array([np.concatenate([np.asarray(getattr(e[q], k), float) for e in ends]) for q, k in keys])
    la = np.log10(np.where(a > 0, a, np.nan)).reshape(2, 3, -1)
    return la[:, 0], np.maximum((la[:, 2] - la[:, 1]) / (2 * 1.6448536269514722), 1e-6)


_LOG_LIMIT = np.array([math.log10(c.limit) for _, _, c in prec.CHECK_ROWS])[:, None]
# the breaking checks' rows, the formats that have one, and where each format's rows start among them
_BREAK_ROWS = [k for k, (_, _, c) in enumerate(prec.CHECK_ROWS) if c.breaks]
_BREAK_FORMATS = list(dict.fromkeys(prec.CHECK_ROWS[k][0] for k in _BREAK_ROWS))
_BREAK_QUANTITY = prec.QUANTITY_ROW[_BREAK_ROWS]
_BREAK_STARTS = [[prec.CHECK_ROWS[k][0] for k in _BREAK_ROWS].index(f) for f in _BREAK_FORMATS]
_BREAK_LOG_LIMIT = _LOG_LIMIT[_BREAK_ROWS]
_BREAK_AT = [prec.FORMATS.index(f) for f in _BREAK_FORMATS]  # their rows among all formats' (the others': 0)


def layer_probabilities_many(ends: Sequence[tuple[IntervalArrays, IntervalArrays]]) -> tuple[np.ndarray, np.ndarray]:
    """Per check (a row of ``prec.CHECK_ROWS``): the probability that each layer crosses the check's limit by the
    planned end, all layers of all ``ends`` (a forecast and its what-if variants: their per-layer peak |a| and end
    ratio) in one row; and where each forecast's layers start. The one formula behind every probability of the
    answer (per layer and check, per check, per format) and of the review gate."""
    starts = np.cumsum([0] + [len(p.value) for p, _ in ends[:-1]])
    mu, sd = _log_gauss(ends)
    v = ndtr((mu[prec.QUANTITY_ROW] - _LOG_LIMIT) / sd[prec.QUANTITY_ROW])
    return np.where(np.isfinite(v), v, 0.0), starts


def format_probabilities_many(ends: Sequence[tuple[IntervalArrays, IntervalArrays]]) -> list[dict[str, float]]:
    """Per forecast and format: the probability that some layer crosses one of the format's *breaking* limits
    by the planned end (``Check.breaks``; the largest over layers and checks: layers move together, so this
    is the probability of the worst). A format without a breaking check (BF16) has 0."""
    if not ends:
        return []
    starts = [0, *accumulate(len(p.value) for p, _ in ends[:-1])]
    mu, sd = _log_gauss(ends)
    # a crossing nobody would notice (swamping, unscaled FP8) is stated, not a risk: the breaking checks only. ndtr
    # rises with its argument, so the largest layer's z gives the largest probability (NaN: a layer never crosses)
    z = (mu[_BREAK_QUANTITY] - _BREAK_LOG_LIMIT) / sd[_BREAK_QUANTITY]
    v = ndtr(np.fmax.reduceat(np.fmax.reduceat(z, starts, axis=1), _BREAK_STARTS, axis=0))  # format x forecast
    probs = np.zeros((len(prec.FORMATS), len(ends)))
    probs[_BREAK_AT] = np.where(np.isfinite(v), v, 0.0)
    return [dict(zip(prec.FORMATS, p, strict=True)) for p in probs.T.tolist()]


def precision_arrays(fc: ForecastArrays) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The (point, upper bound) layer x step matrices of |a| and the ratio for the precision checks.

    The forecast gives the ratio trajectory and the peak |a| only; |a| over training is taken as
    the peak scaled by the ratio trajectory's shape (median |h| roughly constant), which is
    exact at the peak and conservative before it.
    """
    tr = fc.trajectory
    ratio = np.array(tr.value, dtype=float).reshape(fc.n_layers, len(tr.steps))
    ratio_hi = np.maximum(np.array(tr.hi, dtype=float).reshape(ratio.shape), ratio)
    rmax = np.fmax.reduce(ratio, axis=1, initial=-np.inf)  # NaN skipped
    ok = np.isfinite(rmax) & (rmax > 0)
    shape = np.where(ok[:, None], np.minimum(np.maximum(ratio / np.where(ok, rmax, 1.0)[:, None], 0.0), 1.0), 1.0)
    peak, peak_hi = np.array(fc.peak_abs.value, float), np.array(fc.peak_abs.hi, float)
    return {"peak_abs": (peak[:, None] * shape, np.maximum(peak_hi, peak)[:, None] * shape), "ratio": (ratio, ratio_hi)}


def precision_risks(fc: ForecastArrays, arch: Architecture, probs: dict[str, float] | None = None,
                    events: Sequence[ScheduleEvent] = (), details: bool = True) -> list[PrecisionRisk]:
    """Per format, the layers at risk and why, with the probability of crossing each limit per layer and
    check, per check and per format (``probs``: the forecast's format probabilities if known), FP16's mechanisms
    (``predictor.mechanisms``), and the plan's schedule-linked risk terms (``events``) on the target formats they
    concern. ``fc`` is the worst-case (corpus_max) forecast. ``details=False`` (the compact views, which show only
    formats of the precision target, as does everything else that reads them: the plan, the mitigations'
    motivations): the precision target's formats only, each the full record less its per-layer records except where
    ``predictor.plan.precision_plan`` reads them (the formats with a gate); nothing is computed for the others."""
    targets = prec.TARGET_FORMATS.get(str(arch.precision_target or ""), ())
    shown = range(len(prec.FORMATS)) if details else [i for i, f in enumerate(prec.FORMATS) if f in targets]
    if not shown:
        return []
    ends = [(fc.peak_abs, fc.ratio_end)]
    cr = prec.crossings(fc.trajectory.steps, precision_arrays(fc), layer_probabilities_many(ends)[0], shown)
    probs = probs if probs is not None else format_probabilities_many(ends)[0]
    kept = [i for i in shown if details or prec.FORMATS[i] in prec.GATE]
    records = dict(zip(kept, cr.records(kept), strict=True))
    checked = cr.check_probabilities()
    out = []
    for i, (likely, possible, stated, from_step, why) in zip(shown, cr.summaries(shown), strict=True):
        fmt = prec.FORMATS[i]
        checks = {prec.CHECK_ROWS[k][1]: checked[k] for k in prec.FORMAT_ROWS[fmt]}
        # constructed, not validated: the details (~490 for 32 layers) are the checks' own records, in
        # ``LayerRiskOut``'s field order, written as they are (tests check the bytes validate unchanged)
        out.append(PrecisionRisk.model_construct(
            format=fmt, max_value=prec.MAX_VALUES[fmt], at_risk=prec.gate_at_risk(fmt, checks), target=fmt in targets,
            layers=likely, possible_layers=possible, from_step=from_step, stated_layers=stated,
            probability=probs.get(fmt), check_probabilities=checks, why=why, details=records.get(i, []),
            mechanisms=[MechanismRisk(**m) for m in fp16_mechanisms(  # validated: faster than constructed for 5
                arch, fc.peak_abs.value, fc.peak_abs.lo, fc.peak_abs.hi, checks["overflow"])] if fmt == "fp16" else [],
            schedule=[risk for formats, risk in events if fmt in targets and fmt in formats]))
    return out
