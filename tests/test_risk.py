"""Precision risk without per-layer records (the compact answer's): the precision target's formats only, every field
but the records the full one's, and the plan, which reads the gated target formats' records, is the same (without its
own details: less the kept layers' sentences); the format probabilities are the largest per-layer ones of the one
formula."""

from __future__ import annotations

import numpy as np
import pytest

from bench.answer_bench import BASE
from predictor import precision as prec
from predictor.architecture import parse_architecture
from predictor.plan import precision_plan
from predictor.pyfunc import GOLDEN
from predictor.risk import format_probabilities_many, layer_probabilities_many, precision_risks
from predictor.schedule_risk import schedule_events
from predictor.schemas import IntervalArrays
from registry.reference import reference_engine

DESIGNS = [
    BASE,  # the bench's 32-layer Llama-3-8B-like FP8 design
    {**BASE, "name": "own-recipe", "precision_recipe": "fp8_e4m3"},
    *({**BASE, "name": t, "precision_target": t} for t in ("bf16", "fp16_inference", "int8_w8a8", "nvfp4_training",
                                                              "w4a16", "fp8_inference")),
    *GOLDEN,
]


@pytest.fixture(scope="module")
def engine():
    return reference_engine()


@pytest.mark.parametrize("design", DESIGNS, ids=lambda d: d["name"])
def test_risks_without_details_are_the_full_ones_less_their_records(engine, design):
    arch = parse_architecture(design)
    wf = engine.forecast_arrays(arch).worst_case()
    probs = format_probabilities_many([(wf.peak_abs, wf.ratio_end)])[0]
    full = precision_risks(wf, arch, probs, schedule_events(arch))
    compact = precision_risks(wf, arch, probs, schedule_events(arch), details=False)
    targets = prec.TARGET_FORMATS.get(str(arch.precision_target or ""), ())
    assert [r.format for r in compact] == [f for f in prec.FORMATS if f in targets] and any(r.details for r in full)
    by = {r.format: r for r in full}
    for c in compact:
        f = by[c.format]
        planned = f.format in prec.GATE  # the records the plan reads
        assert c.details == (f.details if planned else []), f.format
        assert c.model_copy(update={"details": []}) == f.model_copy(update={"details": []}), f.format
    plan = precision_plan(full, arch.precision_target, recipe=arch.precision_recipe)
    assert precision_plan(compact, arch.precision_target, recipe=arch.precision_recipe) == plan
    # the plan without details: the kept layers' sentences empty (as the compact views show them), nothing else
    short = precision_plan(compact, arch.precision_target, recipe=arch.precision_recipe, details=False)
    assert short == plan.model_copy(update={"formats": [f.model_copy(update={"keep_high_precision": [
        p.model_copy(update={"why": ""}) for p in f.keep_high_precision]}) for f in plan.formats]})
    assert any(p.why for f in plan.formats for p in f.keep_high_precision) or not any(
        f.keep_high_precision for f in plan.formats)


def test_format_probability_is_the_largest_layer_probability():
    """``format_probabilities_many`` takes the largest z of the breaking checks before ``ndtr``: the same number as
    the largest per-layer probability, with NaN layers (never crossing), ragged forecasts and one-layer ones."""
    rng = np.random.default_rng(0)

    def interval(n: int) -> IntervalArrays:
        v = 10 ** rng.uniform(-1, 7, n)
        w = 10 ** rng.uniform(0, 2, n)
        lo, hi = v / w, v * w * rng.uniform(0.5, 2, n)
        v[rng.integers(0, n, 2)] = np.nan
        lo[rng.integers(0, n)] = 0.0
        return IntervalArrays.model_construct(value=v.tolist(), lo=lo.tolist(), hi=hi.tolist())

    for sizes in ([32] * 14, [1, 5, 40], [3]):
        ends = [(interval(n), interval(n)) for n in sizes]
        probs, starts = layer_probabilities_many(ends)
        bounds = [*starts.tolist(), sum(sizes)]
        for i, got in enumerate(format_probabilities_many(ends)):
            assert list(got) == list(prec.FORMATS)
            for fmt in prec.FORMATS:
                rows = [k for k in prec.FORMAT_ROWS[fmt] if prec.CHECK_ROWS[k][2].breaks]
                want = max((float(probs[k, bounds[i]:bounds[i + 1]].max()) for k in rows), default=0.0)
                assert got[fmt] == want, (sizes, i, fmt)


def test_first_steps_of_some_formats_are_those_of_all():
    """``prec.crossings`` for some formats (the compact answer's target) compares each step with their distinct limits
    only: their checks' first steps are those of every format's crossings (NaN, infinite and missing values among the
    forecasts), the other checks' NaN, and everything else the same."""
    rng = np.random.default_rng(1)

    def matrix(shape: tuple[int, int]) -> np.ndarray:
        m = 10 ** rng.uniform(-1, 7, shape)
        m[rng.random(shape) < 0.1] = np.nan
        m[rng.random(shape) < 0.05] = np.inf
        return m

    for n_layers, n_steps in ((32, 25), (3, 1), (2, 0)):
        arrays = {q: (matrix((n_layers, n_steps)), matrix((n_layers, n_steps))) for q in prec.QUANTITIES}
        steps = np.sort(rng.integers(0, 10**5, n_steps))
        every = prec.crossings(steps, arrays)
        assert not np.isnan(every.first).any() and not np.isnan(every.first_hi).any()
        for target, formats in prec.TARGET_FORMATS.items():
            some = prec.crossings(steps, arrays, formats=[prec.FORMATS.index(f) for f in formats])
            rows = np.isin(np.arange(len(prec.CHECK_ROWS)), [k for f in formats for k in prec.FORMAT_ROWS[f]])
            for name in ("first", "first_hi"):
                got, want = getattr(some, name), getattr(every, name)
                assert np.array_equal(got[rows], want[rows]) and np.isnan(got[~rows]).all(), (target, name)
            for name in ("hit", "likely", "predicted", "predicted_hi", "probability"):
                assert np.array_equal(getattr(some, name), getattr(every, name)), (target, name)
