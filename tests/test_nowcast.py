"""Nowcast: the architecture forecast updated by a run's own checkpoints (predictor/nowcast.py),
``POST /nowcast`` (service/nowcast.py) and ``maforecast monitor`` (pipeline/monitor.py).

The prior is the forecast engine fitted on the bundled reference data; the monitored run is a tiny
GPT-NeoX saved at six steps (tests/collector_helpers.py).
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from predictor.architecture import Architecture
from predictor.nowcast import NowcastRequest, nowcast
from registry.reference import reference_engine

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/ (the synthetic and held-out runs)

# one worker runs the tests that start the service app (its lifespans must not overlap)
pytestmark = pytest.mark.xdist_group("service")

# Pythia's own design and recipe (parallel block): the clock's calibration family, so the prior band is the
# within-family one (another family's design adds the cross-family spread of tau_e)
ARCH = Architecture(name="small", n_layers=6, d_model=512, n_heads=8, d_ffn=2048, total_steps=20000,
                    parallel_attn_mlp=True)
STEPS = (0, 1000, 2000, 5000, 10000)
# a run this far above its prior leaves the band: since issue 29's clock (which counts time per planned run) this
# 20k-step plan's rise lies inside the observed steps, where the prior band is wider (30x, the factor before, sits in it)
OFF_BAND = 1000.0


@pytest.fixture(scope="module")
def engine():
    return reference_engine()


def rows_on_prior(engine, arch=ARCH, steps=STEPS, factor=None, layers=None):
    """Observation rows at the prior's mean ratio (times ``factor[layer]``), median 1."""
    c = engine.layer_curves(arch, np.array(steps, float))["ratio"]["mean"]
    factor = factor or {}
    out = []
    for k, s in enumerate(steps):
        for layer in layers if layers is not None else range(arch.n_layers):
            out.append({"step": s, "layer": layer, "top1": float(10 ** c[layer, k]) * factor.get(layer, 1.0), "median": 1.0})
    return out


# ------------------------------------------------------------------------------------ the update


def test_no_observations_is_the_prior_forecast(engine):
    res = nowcast(engine, ARCH, [])
    assert res.forecast == engine.forecast(ARCH)
    assert nowcast(engine, ARCH, [], steps=[0, 500, 20000]).forecast == engine.forecast(ARCH, [0, 500, 20000])
    assert not res.info.left_band and res.info.deviation is None and res.info.n_observations == 0
    assert all(lyr.deviation is None and not lyr.observed for lyr in res.layers)
    assert [lyr.class_probabilities for lyr in res.layers] == [lf.class_probabilities for lf in res.forecast.layers]
    assert all(lyr.prior_class_probabilities == lyr.class_probabilities and lyr.next_checkpoint is None for lyr in res.layers)


def test_on_forecast_run_stays_in_its_band(engine):
    res = nowcast(engine, ARCH, rows_on_prior(engine))
    assert not res.info.left_band and res.info.layers_left == []
    assert res.info.deviation < 0.5
    for lyr in res.layers:
        assert [p.step for p in lyr.observed] == list(STEPS)
        assert all(abs(p.z) < 0.5 and not p.outside for p in lyr.observed)
        assert 1 / 1.5 < lyr.ratio_end / lyr.prior_ratio_end < 1.5
    assert len(res.forecast.layers) == ARCH.n_layers and "nowcast: updated with 30 observed points" in res.forecast.notes[-1]


def test_deviation_flag_when_layers_leave_their_band(engine):
    rows = rows_on_prior(engine, factor={0: OFF_BAND, 1: OFF_BAND})
    res = nowcast(engine, ARCH, rows)
    assert res.info.left_band and res.info.layers_left == [0, 1]
    by_layer = {lyr.layer: lyr for lyr in res.layers}
    for layer in (0, 1):
        last = by_layer[layer].observed[-1]
        assert last.outside and last.z > 1.645 and by_layer[layer].left_band
        assert by_layer[layer].deviation >= last.z
        # the update follows the run: the forecast at the observed step and at the end move up
        assert last.updated > 10 * last.prior
        assert by_layer[layer].ratio_end > 5 * by_layer[layer].prior_ratio_end
    assert not any(by_layer[k].left_band for k in range(2, 6))
    # a layer that was outside earlier but is back inside is not "left" (only counted)
    rows = [dict(r, top1=r["top1"] * (OFF_BAND if r["layer"] == 2 and r["step"] == 2000 else 1.0)) for r in rows_on_prior(engine)]
    back = nowcast(engine, ARCH, rows).layers[2]
    assert back.n_outside == 1 and not back.left_band


def test_many_observations_follow_the_data(engine):
    """A run 4x above its prior, observed to half the plan: the updated end ratio is near the run's."""
    steps = (0, 500, 1000, 2000, 3000, 5000, 7000, 10000)
    truth_steps = (*steps, 20000)
    truth = rows_on_prior(engine, steps=truth_steps, factor={k: 4.0 for k in range(6)})
    end = {r["layer"]: r["top1"] for r in truth if r["step"] == 20000}
    res = nowcast(engine, ARCH, [r for r in truth if r["step"] <= 10000])
    prior = engine.forecast(ARCH)
    for lf, pf in zip(res.forecast.layers, prior.layers, strict=True):
        assert 1 / 1.3 < lf.ratio_end.value / end[lf.layer] < 1.3
        assert lf.ratio_end.lo <= end[lf.layer] <= lf.ratio_end.hi
        assert math.log(lf.ratio_end.hi / lf.ratio_end.lo) < math.log(pf.ratio_end.hi / pf.ratio_end.lo)


def test_samples_are_averaged_like_the_stats_table(engine):
    """Rows of one (step, layer) with several probe sequences: ratio of the means (Eq. 8)."""
    rows = [{"step": 1000, "layer": 0, "top1": t, "median": m, "sample": i} for i, (t, m) in enumerate([(10, 1), (30, 3), (20, 1)])]
    res = nowcast(engine, ARCH, rows)
    assert res.info.n_observations == 1 and res.info.n_rows == 3
    assert res.layers[0].observed[0].observed == pytest.approx(20 / (5 / 3))


# ------------------------------------------------------------------------------------ bad input

GOOD = {"step": 1000, "layer": 1, "top1": 50.0, "median": 0.5}
BAD_ROWS = [  # (row 1 replaced by ..., field named)
    ({"top1": -1.0}, "top1"),
    ({"top1": float("nan")}, "top1"),
    ({"median": float("nan")}, "median"),
    ({"median": 0.0}, "median"),
    ({"median": -2.0}, "median"),
    ({"top2": -1.0}, "top2"),
    ({"step": -5}, "step"),
    ({"layer": 6}, "layer"),
    ({"step": 20001}, "step"),
    ({"step": 0}, "sample"),  # duplicate of row 0 (step 0, layer 1, no sample)
    ({"top1": 0.1, "median": 0.5}, "top1"),  # top1 below the median
]


def _body(change: dict) -> dict:
    rows = [dict(GOOD, step=0), dict(GOOD, **change), dict(GOOD, step=2000)]
    return {"architecture": ARCH.model_dump(exclude_none=True), "observations": rows}


@pytest.mark.parametrize(("change", "field"), BAD_ROWS, ids=[f"{f}:{list(c.items())[0]}" for c, f in BAD_ROWS])
def test_request_validation_names_row_and_field(change, field):
    with pytest.raises(ValidationError) as info:
        NowcastRequest.model_validate(_body(change))
    locs = [tuple(e["loc"]) for e in info.value.errors()]
    assert ("observations", 1, field) in locs, locs


def test_empty_observations_are_refused():
    with pytest.raises(ValidationError) as info:
        NowcastRequest.model_validate({"architecture": ARCH.model_dump(exclude_none=True), "observations": []})
    assert [tuple(e["loc"]) for e in info.value.errors()] == [("observations",)]


# ------------------------------------------------------------------------------------ POST /nowcast


@pytest.fixture(scope="module")
def served(engine, tmp_path_factory):
    """The reference engine as a real pyfunc model, loaded as the service loads a registered version."""
    import mlflow

    from registry.loader import RegisteredPredictor
    from registry.training import pyfunc_kwargs

    tmp = tmp_path_factory.mktemp("pyfunc")
    mlflow.pyfunc.save_model(str(tmp / "model"), **pyfunc_kwargs(engine, ARCH, tmp))
    return RegisteredPredictor(mlflow.pyfunc.load_model(str(tmp / "model")), name="maforecast-predictor", version="7",
                               alias="champion")


def test_a_model_logged_with_another_interface_is_refused_whatever_its_uri(engine, tmp_path, data_home):
    """The interface travels in the model's metadata, so a folder (or run) URI is checked like a registered
    version: a model of another interface is one line naming both interfaces and the command, not a failure
    at the first request."""
    import mlflow

    from predictor.pyfunc import INTERFACE
    from registry.loader import NoChampionError, load_predictor
    from registry.training import pyfunc_kwargs

    current, older = pyfunc_kwargs(engine, ARCH, tmp_path), pyfunc_kwargs(engine, ARCH, tmp_path)
    del older["metadata"]["maforecast"]["pyfunc_interface"]  # as interface 2 logged it
    mlflow.pyfunc.save_model(str(tmp_path / "current"), **current)
    mlflow.pyfunc.save_model(str(tmp_path / "older"), **older)
    assert load_predictor(model_uri=str(tmp_path / "current")).model.metadata.metadata["maforecast"]["pyfunc_interface"] == INTERFACE
    with pytest.raises(NoChampionError, match=f"an older interface, this process reads interface {INTERFACE}; run `maforecast bootstrap`"):
        load_predictor(model_uri=str(tmp_path / "older"))


@pytest.fixture
def api(data_home, served):
    """The in-process service with the reference engine as its loaded predictor."""
    from starlette.testclient import TestClient

    from service import service as svc

    with TestClient(svc.asgi_app(), raise_server_exceptions=False) as client:
        body = _body({"step": 3000})
        assert client.post("/nowcast", json=body).status_code == 503  # no champion in this store yet
        svc.STATE.answers = svc.Answers(served)
        yield client


def test_api_nowcast_answer_has_the_predict_shape_plus_deviation(api, engine):
    rows = rows_on_prior(engine, factor={3: OFF_BAND})
    r = api.post("/nowcast", json={"architecture": ARCH.model_dump(exclude_none=True), "observations": rows})
    assert r.status_code == 200, r.text[:500]
    a = r.json()
    for key in ("predictor", "summary", "layers", "precision", "mitigations", "applicability", "notes"):
        assert key in a
    assert a["predictor"]["version"] == "7" and len(a["layers"]) == 6
    assert a["nowcast"]["left_band"] is True and a["nowcast"]["layers_left"] == [3]
    lyr = a["nowcast_layers"][3]
    assert lyr["left_band"] and [p["step"] for p in lyr["observed"]] == list(STEPS)
    assert {"observed", "prior", "prior_lo", "prior_hi", "updated", "updated_lo", "updated_hi", "z"} <= set(lyr["observed"][0])
    assert a["layers"][3]["ratio_end"]["value"] > lyr["prior_ratio_end"]  # the answer is the updated forecast
    assert a["layers"][3]["ratio_end"]["value"] == pytest.approx(lyr["ratio_end"])
    assert "/nowcast" in api.get("/docs.json").json()["paths"]


@pytest.mark.parametrize(("change", "field"), BAD_ROWS, ids=[f"{f}:{list(c.items())[0]}" for c, f in BAD_ROWS])
def test_api_bad_rows_are_400_naming_row_and_field(api, change, field):
    body = json.dumps(_body(change))  # NaN goes out as the JSON extension token NaN
    r = api.post("/nowcast", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text[:500]
    out = r.json()
    assert f"observations.1.{field}" in out["fields"] and f"observations.1.{field}" in out["error"], out


def test_api_empty_list_is_400(api):
    r = api.post("/nowcast", json={"architecture": ARCH.model_dump(exclude_none=True), "observations": []})
    assert r.status_code == 400 and r.json()["fields"] == ["observations"]


# ------------------------------------------------------------------------------------ maforecast monitor

TINY_ARCH = {"name": "tiny", "n_layers": 2, "d_model": 32, "n_heads": 4, "d_ffn": 64, "total_steps": 10, "vocab_size": 64}
PROBE_ARGS = ["--n-sequences", "3", "--seq-len", "12", "--batch-size", "2", "--no-progress"]


@pytest.fixture(scope="module")
def long_series():
    pytest.importorskip("torch")
    from collector_helpers import build_long_series, build_series

    return build_long_series(), build_series()["probe"]


def _run_dir(tmp_path, long_series, steps) -> Path:
    root, _ = long_series
    run = tmp_path / "tiny-run"
    run.mkdir(exist_ok=True)
    for s in steps:
        if not (run / f"step{s}").exists():
            shutil.copytree(root / f"step{s}", run / f"step{s}")
    return run


def _arch_file(tmp_path, **change) -> Path:
    path = tmp_path / f"arch-{len(list(tmp_path.glob('arch-*.json')))}.json"
    path.write_text(json.dumps({**TINY_ARCH, **change}))
    return path


def _monitor(args, capsys) -> tuple[int, str, str]:
    from maforecast.cli import main

    code = 0
    try:
        main(["monitor", *args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_monitor_resumes_writes_png_and_logs_mlflow(data_home, tmp_path, long_series, capsys):
    from mlflow.tracking import MlflowClient

    _, probe = long_series
    arch = _arch_file(tmp_path)
    png = tmp_path / "monitor.png"
    run = _run_dir(tmp_path, long_series, (0, 1, 2))
    args = [str(run), "--arch", str(arch), "--probe", str(probe), "--png", str(png), "--prior", "reference", *PROBE_ARGS]

    code, out, err = _monitor(args, capsys)
    assert code == 0, err
    assert "measured 3 new checkpoints, 0 already" in err and png.stat().st_size > 10_000
    assert "tiny: 6 points up to step 2" in " ".join(out.split())
    flat = " ".join(out.split())
    assert "class:" in flat and "next checkpoint (step 3)" in flat and "early peak" in flat  # issue 20

    _run_dir(tmp_path, long_series, (3, 5, 8))  # the run went on
    code, out, err = _monitor(args, capsys)
    assert code == 0 and "measured 3 new checkpoints, 3 already" in err, err
    code, out, err = _monitor([*args, "--json"], capsys)
    assert code == 0 and "measured 0 new checkpoints, 6 already" in err, err  # nothing new: nothing measured
    res = json.loads(out)
    assert res["nowcast"]["steps"] == [0, 1, 2, 3, 5, 8] and res["nowcast"]["n_rows"] == 2 * 6 * 3

    client = MlflowClient()
    exp = client.get_experiment_by_name("maforecast-monitoring")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1  # one run per monitored series, resumed
    rid = runs[0].info.run_id
    assert [m.step for m in client.get_metric_history(rid, "observed_ratio/layer_00")] == [0, 1, 2, 3, 5, 8]
    assert sorted(m.step for m in client.get_metric_history(rid, "nowcast_ratio_end/layer_01")) == [2, 8]
    assert sorted(m.step for m in client.get_metric_history(rid, "z/layer_01")) == [0, 1, 2, 3, 5, 8]
    assert {a.path for a in client.list_artifacts(rid)} >= {"monitor.png", "nowcast.json"}
    p_classes = [sum(client.get_metric_history(rid, f"p_{c}/layer_00")[-1].value for c in ("plateau", "early_peak", "growth"))]
    assert p_classes == [pytest.approx(1.0, abs=1e-3)]

    # --fail-on-deviation: exit 1 exactly when a layer left its band (forced here by a near-zero noise)
    import predictor.nowcast as nc

    code, out, err = _monitor([*args, "--fail-on-deviation", "--no-mlflow"], capsys)
    assert code == 0 and "every layer within its band" in " ".join(out.split())
    real = nc.Noise
    nc.Noise = lambda: real(probe=1e-3, misfit=1e-3)
    try:
        code, out, err = _monitor([*args, "--fail-on-deviation", "--no-mlflow"], capsys)
    finally:
        nc.Noise = real
    assert code == 1 and "left their forecast band" in err and "LEFT" in out


def test_monitor_answers_with_the_registered_model_its_precision_decision_and_mitigations(
        tmp_path, tmp_path_factory, migrated_mlflow_db, long_series, capsys, monkeypatch):
    """With a champion (--prior registry, or auto), the monitor's answer is the registered model's nowcast of the
    run's points: the /predict answer of the updated forecast, whose precision decision for the design's target and
    best-ranked effective mitigations the monitor prints and logs (issue 28: it computed its own nowcast and
    showed neither)."""
    import mlflow
    from mlflow.tracking import MlflowClient
    from review_helpers import champion_home, use_home

    from pipeline.monitor import run_monitor, validate_rows
    from predictor.answer import TOP_MITIGATIONS
    from predictor.response import NowcastResponse
    from registry.loader import load_predictor
    from review.inputs import load_architecture

    home = tmp_path / "home"  # a copy: the monitor adds a series, an architecture and a monitoring run to its home
    shutil.copytree(champion_home(tmp_path_factory, migrated_mlflow_db), home)
    use_home(monkeypatch, home)
    monkeypatch.setenv("COLUMNS", "400")  # no cell wraps: the printed sentences are read back whole
    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    _, probe = long_series
    arch_path = _arch_file(tmp_path, precision_target="fp8_training")
    run = _run_dir(tmp_path, long_series, (0, 1, 2, 3))
    args = [str(run), "--arch", str(arch_path), "--probe", str(probe), "--png", str(tmp_path / "m.png"), *PROBE_ARGS]

    code, out, err = _monitor([*args, "--prior", "registry"], capsys)
    assert code == 0 and "measured 4 new checkpoints" in err and "prior: registered maforecast-predictor@champion" in err, err
    code, raw, err = _monitor([*args, "--json", "--no-mlflow"], capsys)  # auto: the champion loads
    assert code == 0 and "measured 0 new checkpoints, 4 already" in err and "prior: registered" in err, err
    mr = run_monitor(run, arch_path, png=tmp_path / "m2.png", probe_spec=str(probe), n_sequences=3, seq_len=12,
                     batch_size=2, track=False, prior="registry", progress=False, echo=lambda _m: None)

    # the registered model's own /nowcast answer for the same observations
    arch, _ = load_architecture(arch_path)
    expected = load_predictor().nowcast(arch, validate_rows(mr.observations, arch))
    assert isinstance(mr.result, NowcastResponse) and mr.result == expected
    assert NowcastResponse.model_validate_json(raw) == expected
    assert expected.predictor.version and expected.nowcast.steps == [0, 1, 2, 3] and expected.nowcast.n_observations == 8
    plan = expected.precision_plan
    assert plan.precision_target == "fp8_training" and plan.recipe and plan.recipe_why

    # printed: the decision as `maforecast predict` words it, and the best-ranked effective mitigations
    flat = " ".join(out.split())
    decision = f"decision for fp8_training: {'at risk' if plan.at_risk else 'passes'} with {plan.recipe}: {plan.recipe_why}"
    assert " ".join(decision.split()) in flat, flat[-3000:]
    best = [m for m in expected.mitigations if m.effective][:TOP_MITIGATIONS]
    assert best and all(m.id in flat for m in best)
    assert all(" ".join(m.effect.text.split()) in flat for m in best if m.effect), flat[-4000:]  # the predicted effect
    assert not any(m.id in flat for m in expected.mitigations if not m.effective)

    # logged: the decision and the target's probabilities at the last step, the mitigations as a tag
    client = MlflowClient()
    (found,) = client.search_runs([client.get_experiment_by_name("maforecast-monitoring").experiment_id])
    rid = found.info.run_id
    assert [(m.step, m.value) for m in client.get_metric_history(rid, "precision_at_risk")] == [(3, float(plan.at_risk))]
    fmt = plan.recipe
    risk = next(r for r in expected.precision if r.format == fmt)
    assert client.get_metric_history(rid, f"precision_p/{fmt}")[-1].value == pytest.approx(risk.probability)
    assert found.data.tags["maforecast.top_mitigations"] == ",".join(m.id for m in best)
    assert found.data.tags["maforecast.precision_at_risk"] == str(plan.at_risk).lower()


def test_monitor_bad_inputs_are_one_line_errors(data_home, tmp_path, long_series, capsys):
    _, probe = long_series
    run = _run_dir(tmp_path, long_series, (0, 2, 5))
    base = ["--probe", str(probe), "--no-mlflow", "--prior", "reference", *PROBE_ARGS]
    cases = [
        (_arch_file(tmp_path, n_layers=1), "observations[3].layer (step 0, layer 1): layer 1 does not exist"),
        (_arch_file(tmp_path, total_steps=4), "observations[12].step (step 5, layer 0): step 5 is beyond the planned end"),
    ]
    for arch, expected in cases:
        code, _, err = _monitor([str(run), "--arch", str(arch), *base], capsys)
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert code == 2 and len(lines) == 1 and expected in lines[0], err
        assert "Traceback" not in err
    code, _, err = _monitor([str(tmp_path / "nope"), "--arch", str(cases[0][0]), *base], capsys)
    assert code == 2 and err.strip().startswith("error: no such run folder") and "\n" not in err.strip()


@pytest.mark.parametrize(("change", "field"), [({"top1": -1.0}, "top1"), ({"median": float("nan")}, "median"),
                                                ({"median": 0.0}, "median"), ({"step": 0}, "sample")])
def test_monitor_row_checks_are_one_line(change, field):
    """The rows the monitor reads from the stats table go through the same checks, one line each."""
    import pandas as pd

    from maforecast.errors import UserError
    from pipeline.monitor import validate_rows

    rows = pd.DataFrame([dict(GOOD, step=0, sample=np.nan), dict(GOOD, sample=np.nan, **change), dict(GOOD, step=2000, sample=np.nan)])
    with pytest.raises(UserError) as info:
        validate_rows(rows, ARCH)
    assert str(info.value).startswith(f"observations[1].{field}") and "\n" not in str(info.value)


def test_documented_recipe_makes_a_series_the_monitor_reads(tmp_path):
    """docs/make_checkpoint_series.py (the NOWCAST.md recipe) writes step folders with a real transformers
    model, a tokenizer, a valid arch.json and a probe text; the collector lists the series."""
    import importlib.util

    from collector.sources import resolve_source
    from predictor.architecture import Architecture

    spec = importlib.util.spec_from_file_location("make_series", Path(__file__).resolve().parent.parent / "docs" / "make_checkpoint_series.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    run = tmp_path / "tiny"
    mod.main([str(run), "--steps", "0,2,4", "--layers", "2", "--width", "32"])
    arch = Architecture.model_validate(json.loads((run / "arch.json").read_text()))
    assert arch.n_layers == 2 and arch.total_steps == 4 and (run / "probe.txt").stat().st_size > 100
    assert [c.step for c in resolve_source(str(run))] == [0, 2, 4]
    with pytest.raises(SystemExit, match="not empty"):
        mod.main([str(run)])


# ------------------------------------------------------------------------------------ trajectory classes

CLASS_STEPS = (0, 250, 500, 1000, 1500, 2000, 3000, 4000, 5000, 6000, 8000)


def _shaped_rows(kind: str) -> list[dict]:
    """Every layer rises to emergence by ~1.5k steps, then (from 3k steps) declines by 0.55 decades per doubling
    (``turn``) or keeps growing by 0.3 (``grow``). Both end near the same ratio (a few hundred) at 8k steps, so
    the shape, not the level, tells them apart."""
    rise, slope = {"turn": (2.6, -0.55), "grow": (1.5, 0.30)}[kind]
    out = []
    for s in CLASS_STEPS:
        h = (s / 1500) ** 2 / (1 + (s / 1500) ** 2)
        y = 0.85 + rise * h + slope * (max(0.0, math.log2(s / 3000)) if s else 0.0)
        out += [{"step": s, "layer": layer, "top1": 10**y, "median": 1.0} for layer in range(ARCH.n_layers)]
    return out


def test_api_turning_run_forecast_below_growing_above_and_classes_follow(api):
    """Through the API: a run that is turning over is forecast below its last observation and called an early
    peak; one that keeps growing is forecast above it; the class probabilities move with the data (before:
    the nowcast extrapolated a turning run upwards, issue 20)."""
    answers = {}
    for kind in ("turn", "grow"):
        r = api.post("/nowcast", json={"architecture": ARCH.model_dump(exclude_none=True), "observations": _shaped_rows(kind)})
        assert r.status_code == 200, r.text[:500]
        answers[kind] = r.json()
    for kind, sign in (("turn", -1), ("grow", 1)):
        for lyr, lf in zip(answers[kind]["nowcast_layers"], answers[kind]["layers"], strict=True):
            last = lyr["observed"][-1]["observed"]
            assert sign * (lf["ratio_end"]["value"] - last) > 0, (kind, lyr["layer"], last, lf["ratio_end"])
            assert lf["class_probabilities"] == pytest.approx(lyr["class_probabilities"], abs=1e-6)
            assert sum(lyr["class_probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    turn, grow, prior = (answers["turn"]["nowcast_layers"], answers["grow"]["nowcast_layers"],
                         answers["turn"]["nowcast_layers"][0]["prior_class_probabilities"])
    assert all(t["class_probabilities"]["early_peak"] > 0.9 for t in turn)
    assert all(t["class_probabilities"]["early_peak"] > g["class_probabilities"]["early_peak"] for t, g in zip(turn, grow, strict=True))
    assert all(g["class_probabilities"]["growth"] > t["class_probabilities"]["growth"] for t, g in zip(turn, grow, strict=True))
    assert turn[0]["class_probabilities"]["early_peak"] > prior["early_peak"]
    # what the next checkpoint would have to read: 8k + the last spacing (2k), each class's expectation there
    nxt = turn[0]["next_checkpoint"]
    assert nxt["step"] == 10000 and [c["trajectory_class"] for c in nxt["by_class"]] == ["plateau", "early_peak", "growth"]
    assert [s["quantile"] for s in nxt["if_reads"]] == [0.05, 0.5, 0.95]
    assert nxt["if_reads"][0]["ratio"] < nxt["if_reads"][2]["ratio"] and nxt["most_probable_if"]


def test_forecast_carries_class_probabilities_from_the_evidence(engine):
    """/predict's layers carry the prior class probabilities (the evidence's checkpoint series by depth zone),
    the same for every plan; without observations the nowcast's prior and the forecast agree."""
    from predictor.trajectory import CLASSES

    fc = engine.forecast(ARCH)
    probs = [lf.class_probabilities for lf in fc.layers]
    assert all(set(p) == set(CLASSES) and sum(p.values()) == pytest.approx(1.0, abs=1e-3) for p in probs)
    assert all(0.05 < v < 0.9 for p in probs for v in p.values())  # a handful of series cannot rule a class out
    assert {r["model"] for r in engine.trajectory_classes_.evidence_} >= {"pythia-14m", "pythia-160m", "pythia-1b"}
    # the evidence: pythia-160m's last layer collapses (ratio 117 -> 3 at the end) and is classified an early peak
    last = [r for r in engine.trajectory_classes_.evidence_ if r["model"] == "pythia-160m" and r["layer"] == 11][0]
    assert last["early_peak"] > 0.9


def test_synthetic_runs_of_each_class_are_told_apart():
    """bench/synthetic_runs.py (Eq. 9 early peaks, Weibull plateaus, log-growth): an early-peak run observed to
    20 % of the plan gets a higher early-peak probability than a plateau run, and its end forecast is closer
    to the truth than the plateau-only nowcast's."""
    from bench.synthetic_runs import make_run
    from predictor.nowcast import Posterior, observation_frame
    from registry.reference import reference_architectures

    eng = reference_engine()
    arch = reference_architectures()["pythia-160m"]
    cut = int(0.2 * arch.planned_steps)
    got = {}
    for cls in ("early_peak", "plateau"):
        run = make_run(eng, arch, cls, seed=3)
        obs = observation_frame(run[run["step"] <= cut][["step", "layer", "top1", "median"]])
        truth = run[run["step"] == arch.planned_steps].sort_values("layer")["y_true"].to_numpy()
        mix = Posterior(eng, arch, obs)
        only = Posterior(eng, arch, obs, class_probs=np.array([1.0, 0.0, 0.0]))
        err = [float(np.median(np.abs(p.predictive("ratio", [arch.planned_steps])[0][:, 0] - truth))) for p in (mix, only)]
        got[cls] = (mix.class_probabilities()[:, 1].mean(), *err)
    assert got["early_peak"][0] > got["plateau"][0] + 0.2
    assert got["early_peak"][1] < got["early_peak"][2]


def test_a_fault_inside_the_answer_is_a_5xx_not_the_users(api, monkeypatch):
    """Issue 26: /nowcast answered 400 'validation error for ClassOutlook probability 1.0000000000000018' for a
    well-formed run: a fault of the server reported as the user's. Now a schema error inside the answer is a 500."""
    from predictor.answer import Answerer
    from predictor.schemas import ClassOutlook

    def broken(self, *args, **kwargs):
        return ClassOutlook(trajectory_class="plateau", probability=1.0000000000000018)

    monkeypatch.setattr(Answerer, "nowcast", broken)
    r = api.post("/nowcast", json=_body({"step": 3000}))
    assert r.status_code == 500, r.text[:500]  # BentoML keeps a 5xx's text for the server log
    assert r.json()["error"]


def test_class_probabilities_stay_within_0_and_1(engine):
    from predictor.nowcast import nowcast

    res = nowcast(engine, ARCH, rows_on_prior(engine, factor={3: OFF_BAND}))
    assert res.layers
    for lyr in res.layers:
        probs = [*lyr.class_probabilities.values(), *(o.probability for o in lyr.next_checkpoint.by_class)]
        assert all(0.0 <= p <= 1.0 for p in probs), probs


# ------------------------------------------------------------------------ persistence recommendation (issue 29)
PLAN_STEPS = (0, 500, 1000, 2000, 3000, 4000, 5000, 6000)


def _run_rows(kind: str) -> list[dict]:
    """Every layer rises to emergence by ~1k steps; then ``flat`` stays on its plateau (its last observed decade
    moves < 0.01 log10), ``rising`` keeps climbing by 0.6 log10 per doubling."""
    out = []
    for s in PLAN_STEPS:
        h = (s / 300) ** 4 / (1 + (s / 300) ** 4)
        y = 0.85 + 1.8 * h + (0.6 * math.log2(s / 2000) if kind == "rising" and s > 2000 else 0.0)
        out += [{"step": s, "layer": layer, "top1": 10**y, "median": 1.0} for layer in range(ARCH.n_layers)]
    return out


def test_plateau_like_run_gets_persistence_and_a_rising_one_the_nowcast(engine):
    """A layer whose last observed decade is flat is told to trust its last value (the nowcast's shapes would still
    extrapolate from the prior); a layer still climbing is told to trust the nowcast. Persistence's answer carries
    the last value and an interval no narrower than persistence's own."""
    flat = nowcast(engine, ARCH, _run_rows("flat"))
    rising = nowcast(engine, ARCH, _run_rows("rising"))
    for lyr in flat.layers:
        assert lyr.recommend == "persistence", (lyr.layer, lyr.recommend_reason)
        assert "plateau-like" in lyr.recommend_reason
        rec, per = lyr.recommended_ratio_end, lyr.persistence_ratio_end
        assert rec.value == pytest.approx(lyr.observed[-1].observed, rel=1e-9) == pytest.approx(per.value, rel=1e-9)
        assert rec.lo <= per.lo and rec.hi >= per.hi
    for lyr in rising.layers:
        assert lyr.recommend == "nowcast", (lyr.layer, lyr.recommend_reason)
        assert lyr.recommended_ratio_end.value == pytest.approx(lyr.ratio_end, rel=1e-9)
        assert lyr.ratio_end > lyr.observed[-1].observed


def test_unobserved_layers_carry_no_recommendation(engine):
    res = nowcast(engine, ARCH, rows_on_prior(engine, layers=[0, 1]))
    assert [lyr.recommend is not None for lyr in res.layers] == [True, True] + [False] * (ARCH.n_layers - 2)
    assert nowcast(engine, ARCH, []).layers[0].recommend is None


def test_persistence_interval_widens_with_the_horizon():
    import pandas as pd

    from predictor.nowcast import observation_frame, persistence

    obs = observation_frame(pd.DataFrame({"step": [1000, 2000], "layer": [0, 0], "top1": [100.0, 120.0], "median": [1.0, 1.0]}))
    m, lo, hi = persistence(obs, 2, [2000, 20000, 200000])
    assert np.allclose(m[0], math.log10(120.0)) and np.isnan(m[1]).all()
    assert np.all(np.diff(hi[0] - lo[0]) > 0)


def test_out_of_generator_test_set_is_disjoint_from_the_tuning_set():
    """bench/holdout_runs.py: the held-out Pythia size is not a tuning size; the Eq. 9 test runs are Eq. 9 curves
    drawn from the fitted spread (not the generator's classes) with their own seeds; DINOv2 is a ratio series."""
    from bench.holdout_runs import (
        DINOV2_ARCH,
        EQ9_SEED,
        HELD_OUT_SIZE,
        TUNING_SIZES,
        dinov2_series,
        eq9_fits,
        make_eq9_run,
    )
    from bench.nowcast_bench import SYNTHETIC_RUNS
    from bench.synthetic_runs import make_run
    from registry.reference import reference_architectures

    assert HELD_OUT_SIZE not in TUNING_SIZES and EQ9_SEED >= SYNTHETIC_RUNS
    fits = eq9_fits()
    assert set(fits["model"]) >= set(TUNING_SIZES) | {HELD_OUT_SIZE} and len(fits) >= 12
    arch = reference_architectures()["pythia-160m"]
    a, b = make_eq9_run(fits, arch, EQ9_SEED), make_eq9_run(fits, arch, EQ9_SEED + 1)
    assert not np.allclose(a["y_true"], b["y_true"])
    assert (10 ** a["y_true"] >= 1.0).all()
    eng = reference_engine()
    for cls in ("plateau", "early_peak", "growth"):  # no test run is a generator run
        g = make_run(eng, arch, cls, EQ9_SEED)
        assert not np.allclose(g["y_true"].to_numpy(), a["y_true"].to_numpy())
    d = dinov2_series()
    assert d["layer"].eq(DINOV2_ARCH.n_layers - 1).all() and d["step"].max() == DINOV2_ARCH.planned_steps
    assert (d["top1"] >= d["median"]).all() and 25000 not in set(d["step"])
