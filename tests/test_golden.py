"""Golden answers (issue 28): every number the answer carries for the README's and the docs' designs is unchanged
to 1e-9 relative by a restructuring of the engine.

``tests/golden_answers.json.gz`` was written from the answers of the code before the restructuring:
``MAFORECAST_WRITE_GOLDEN=1 python -m pytest tests/test_golden.py`` rewrites it, which is a deliberate act
(a formula change), reviewed in the diff like any other change of a number.
"""

from __future__ import annotations

import gzip
import json
import math
import os
from pathlib import Path

import pytest

from predictor import knowledge as kbm
from predictor.answer import Answerer
from predictor.architecture import parse_architecture
from predictor.pyfunc import GOLDEN
from predictor.response import PredictorInfo
from registry.reference import reference_architectures, reference_engine

FILE = Path(__file__).with_name("golden_answers.json.gz")
RTOL = 1e-9
ATOL = 1e-300  # exact zeros stay zeros
WHO = PredictorInfo(name="golden")

DESIGNS: dict[str, dict] = {
    # README: the curl sample and the Python client
    "readme-neox-400m": {"name": "neox-400m", "n_layers": 24, "d_model": 1024, "n_heads": 16, "d_ffn": 4096,
                         "total_steps": 143000, "precision_target": "int8_w8a8"},
    # README: `maforecast predict arch.json`
    "readme-my-160m": {"name": "my-160m", "n_layers": 12, "d_model": 768, "n_heads": 12, "d_ffn": 3072,
                       "total_steps": 143000, "precision_target": "fp16_inference"},
    # the designs a registered version's answer digest is taken over (predictor/pyfunc.py)
    **{f"pyfunc-{g['name']}": g for g in GOLDEN},
}
# docs/PLAN.md's examples: measured models' shapes as designs of a new lineage, for their targets
DOC_MODELS = {"docs-qwen2.5-7b-fp8": ("Qwen2.5-7B", "fp8_training"), "docs-olmo2-7b-int8": ("OLMo-2-1124-7B", "int8_w8a8"),
              "docs-gemma-2-2b-fp16": ("gemma-2-2b", "fp16_inference")}


def _observations(n_layers: int) -> list[dict]:
    """A run observed at three early checkpoints (docs/NOWCAST.md's /nowcast body): fixed numbers, no randomness."""
    return [{"step": s, "layer": li, "top1": float(4.0 + 0.5 * li + s / 1000.0 * (1 + li % 3)), "median": 1.0}
            for s in (1000, 4000, 16000) for li in range(n_layers)]


def current_answers() -> dict:
    answerer = Answerer(reference_engine(), kbm.load_kb())
    archs = {k: parse_architecture(v) for k, v in DESIGNS.items()}
    known = set(answerer.engine.lineage_members_)
    archs = {k: a.model_copy(update={"lineage": None}) if a.lineage and a.lineage not in known else a
             for k, a in archs.items()}
    ref = reference_architectures()
    for k, (model, target) in DOC_MODELS.items():
        archs[k] = ref[model].model_copy(update={"precision_target": target, "lineage": None})
    out = {k: json.loads(raw) for k, raw in zip(archs, answerer.answers_json(list(archs.values()), view="full", who=WHO), strict=True)}
    # the default (compact) view: what a review tool reads first, built on its own path (not trimmed from the full one)
    out |= {f"compact-{k}": json.loads(raw) for k, raw in zip(archs, answerer.answers_json(list(archs.values()), who=WHO), strict=True)}
    out["compare-neox-vs-llama"] = json.loads(answerer.compare(
        {"neox": archs["pyfunc-golden-neox"], "llama": archs["pyfunc-golden-llama"]}, who=WHO).model_dump_json())
    a = archs["readme-my-160m"]
    out["nowcast-my-160m"] = json.loads(answerer.nowcast(a, _observations(a.n_layers), who=WHO).model_dump_json())
    return out


def differences(want, got, path: str = "$") -> list[str]:
    """Where ``got`` departs from ``want``: a number by more than RTOL relative, anything else at all."""
    if isinstance(want, bool) or isinstance(got, bool) or want is None or got is None or isinstance(want, str):
        return [] if want == got else [f"{path}: {want!r} -> {got!r}"]
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        if math.isclose(want, got, rel_tol=RTOL, abs_tol=ATOL):
            return []
        return [f"{path}: {want!r} -> {got!r}"]
    if isinstance(want, dict) and isinstance(got, dict):
        out = [f"{path}.{k}: missing" for k in want if k not in got] + [f"{path}.{k}: new" for k in got if k not in want]
        for k in want:
            if k in got:
                out += differences(want[k], got[k], f"{path}.{k}")
        return out
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return [f"{path}: {len(want)} items -> {len(got)}"]
        return [d for i, (w, g) in enumerate(zip(want, got, strict=True)) for d in differences(w, g, f"{path}[{i}]")]
    return [f"{path}: {type(want).__name__} -> {type(got).__name__}"]


@pytest.fixture(scope="module")
def answers():
    got = current_answers()
    if os.environ.get("MAFORECAST_WRITE_GOLDEN") == "1":
        FILE.write_bytes(gzip.compress(json.dumps(got, sort_keys=True, separators=(",", ":")).encode(), mtime=0))
    return got


def test_differences_sees_a_change_past_the_tolerance():
    assert differences({"a": [1.0, "x"]}, {"a": [1.0 + 1e-12, "x"]}) == []
    assert differences({"a": [1.0, "x"]}, {"a": [1.0 + 1e-6, "x"]}) == ["$.a[0]: 1.0 -> 1.000001"]
    assert differences({"a": 1}, {"b": 1}) == ["$.a: missing", "$.b: new"]


@pytest.mark.parametrize("key", [*DESIGNS, *DOC_MODELS, *(f"compact-{k}" for k in (*DESIGNS, *DOC_MODELS)),
                                 "compare-neox-vs-llama", "nowcast-my-160m"])
def test_answer_is_the_golden_one(answers, key):
    want = json.loads(gzip.decompress(FILE.read_bytes()))[key]
    diffs = differences(want, answers[key])
    assert not diffs, f"{len(diffs)} differences, first: " + "; ".join(diffs[:8])
