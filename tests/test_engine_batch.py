"""``ForecastEngine.forecast_arrays_many``: a batch of designs forecast together is each design forecast alone."""

from __future__ import annotations

import math

import pytest

from predictor.architecture import parse_architecture
from predictor.pyfunc import GOLDEN
from registry.reference import reference_architectures, reference_engine
from tests.conftest import stand_in_posterior

RTOL = 1e-12
BASE = {"name": "llama3-8b-like", "n_layers": 32, "d_model": 4096, "n_heads": 32, "n_kv_heads": 8, "d_ffn": 14336,
        "ffn_type": "glu", "activation": "silu", "norm_type": "rmsnorm", "precision_target": "fp8_training"}


@pytest.fixture(scope="module")
def engine():
    return reference_engine()


@pytest.fixture(scope="module")
def designs(engine):
    """Depths, lineages (known and new), precision targets, protocols, plans and proxy values (DyT, softpick) mixed,
    several sharing a depth and a step grid (one group) and others alone in theirs."""
    known = set(engine.level_["abs"].lineages_)
    golden = [parse_architecture(g) for g in GOLDEN]
    golden = [a.model_copy(update={"lineage": None}) if a.lineage and a.lineage not in known else a for a in golden]
    ref = reference_architectures()
    lineage = sorted(known)[0]
    return [
        *golden,
        *(parse_architecture({**BASE, "name": f"new-{i}", "d_ffn": BASE["d_ffn"] + 64 * i}) for i in range(4)),
        parse_architecture({**BASE, "name": "worst", "protocol": "corpus_max"}),
        parse_architecture({**BASE, "name": "one-sentence", "protocol": "one_sentence", "precision_target": "int8_w8a8"}),
        parse_architecture({**BASE, "name": "plan", "learning_rate": 1.5e-4, "total_steps": 60_000, "weight_decay": 0.0,
                            "lr_schedule": "linear"}),
        parse_architecture({**BASE, "name": "dyt-softpick", "norm_type": "dyt", "attention_kind": "softpick"}),
        parse_architecture({**BASE, "name": "deep", "n_layers": 48, "qk_norm": True, "attention_sink": "kv_bias"}),
        ref["Qwen2.5-7B"].model_copy(update={"precision_target": "fp8_training", "lineage": None}),
        ref["gemma-2-2b"].model_copy(update={"lineage": lineage}),
    ]


def _differences(want, got, path: str = "$") -> list[str]:
    """Where ``got`` departs from ``want``: a number by more than RTOL relative, anything else at all."""
    if isinstance(want, float) and isinstance(got, float):
        return [] if math.isclose(want, got, rel_tol=RTOL, abs_tol=1e-300) or want == got else [f"{path}: {want!r} -> {got!r}"]
    if isinstance(want, dict) and isinstance(got, dict):
        if list(want) != list(got):
            return [f"{path}: keys {list(want)} -> {list(got)}"]
        return [d for k in want for d in _differences(want[k], got[k], f"{path}.{k}")]
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return [f"{path}: {len(want)} items -> {len(got)}"]
        return [d for i, (w, g) in enumerate(zip(want, got, strict=True)) for d in _differences(w, g, f"{path}[{i}]")]
    return [] if want == got and type(want) is type(got) else [f"{path}: {want!r} -> {got!r}"]


@pytest.mark.parametrize("steps", [None, [0, 10, 1000, 50_000, 143_000]])
def test_a_batch_is_each_design_forecast_alone(engine, designs, steps):
    batch = engine.forecast_arrays_many(designs, steps)
    assert len(batch) == len(designs)
    for arch, fc in zip(designs, batch, strict=True):
        alone = engine.forecast_arrays(arch, steps)
        assert fc.architecture == arch.label()
        assert not _differences(alone.model_dump(), fc.model_dump()), arch.name


def test_a_batch_of_one_and_an_empty_batch(engine, designs):
    assert engine.forecast_arrays_many([]) == []
    one = engine.forecast_arrays_many([dict(BASE)])[0]
    assert one.model_dump() == engine.forecast_arrays(BASE).model_dump()
    assert one.worst_case_arrays is not None and engine.forecast_arrays_many([designs[1]])[0].worst_case_arrays is None


def test_a_conditioned_engine_batches_its_posterior(engine, designs):
    """A nowcast's posterior replaces the curves (each design's own, not stacked from the prior's)."""
    cond = engine.conditioned(stand_in_posterior(engine, BASE["n_layers"]))
    same_depth = [a for a in designs if a.n_layers == BASE["n_layers"]]
    for arch, fc in zip(same_depth, cond.forecast_arrays_many(same_depth), strict=True):
        assert not _differences(cond.forecast_arrays(arch).model_dump(), fc.model_dump()), arch.name
        assert fc.class_probabilities[0] == {"plateau": 0.3333, "early_peak": 0.3333, "growth": 0.3333}
