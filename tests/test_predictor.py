"""Predictor: schema, HF converter, grouped CV without leaks, registry versions, promotion, reload."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from maforecast.errors import UserError
from predictor.architecture import Architecture, ArchitectureError, parse_architecture
from predictor.hf_config import from_hf_config
from registry.evaluation import groups_of
from registry.reference import final_model_architectures, pythia_architectures

ROOT = Path(__file__).resolve().parent.parent

BASE = dict(n_layers=12, d_model=768, n_heads=12, d_ffn=3072)


# ------------------------------------------------------------------ schema
@pytest.mark.parametrize(
    "change, field",
    [
        ({"d_model": 770}, "n_heads"),
        ({"n_kv_heads": 5}, "n_kv_heads"),
        ({"n_layers": 0}, "n_layers"),
        ({"n_layers": 100_000}, "n_layers"),
        ({"d_model": 10_000_000}, "d_model"),
        ({"norm_type": "batchnorm"}, "norm_type"),
        ({"learning_rate": -1}, "learning_rate"),
        ({"colour": "red"}, "colour"),
        ({"d_ffn": 10}, "d_ffn"),
    ],
)
def test_schema_errors_name_the_field(change, field):
    with pytest.raises(ArchitectureError) as exc:
        parse_architecture({**BASE, **change})
    assert field in str(exc.value)
    assert isinstance(exc.value, UserError)


def test_reference_architectures_load_and_kb_fields():
    py = pythia_architectures()
    fm = final_model_architectures()
    assert len(py) == 10 and len(fm) == 13
    assert abs(py["pythia-160m"].n_params() / 162e6 - 1) < 0.02
    kb = fm["gemma-3-1b-pt"].kb_fields()
    assert kb["glu"] and kb["norm_placement_enum"] == "sandwich" and kb["ffn_enum"] == "geglu" and kb["qk_norm"]
    assert fm["OLMo-2-1124-7B"].kb_fields()["norm_placement_enum"] == "post_sublayer"
    assert py["pythia-1b"].kb_fields()["norm_placement_enum"] == "pre_parallel"
    expected = {"glu", "norm_type_enum", "norm_placement_enum", "ffn_enum", "qk_norm", "parallel_attn_mlp", "tied_embeddings",
                "attention_kind", "optimizer", "precision_target", "causal_lm", "n_params_B", "training_tokens_T", "tokens_per_param"}
    assert set(kb) == expected
    a = Architecture(**BASE, training_tokens=2e9, batch_tokens=1_000_000)
    assert a.planned_steps == 2000


# ------------------------------------------------------------------ HF configs
LLAMA = {"num_hidden_layers": 16, "hidden_size": 2048, "num_attention_heads": 32, "num_key_value_heads": 8,
         "intermediate_size": 8192, "vocab_size": 128256, "hidden_act": "silu", "rope_theta": 500000.0}
HF_CASES = {
    "gpt_neox": ({"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072,
                  "vocab_size": 50304, "hidden_act": "gelu", "rotary_pct": 0.25, "use_parallel_residual": True},
                 {"parallel_attn_mlp": True, "rotary_pct": 0.25, "ffn_type": "mlp"}),
    "llama": (LLAMA, {"ffn_type": "glu", "norm_type": "rmsnorm", "n_kv_heads": 8, "activation": "silu"}),
    "mistral": ({**LLAMA, "num_hidden_layers": 32}, {"ffn_type": "glu", "n_layers": 32}),
    "qwen2": (LLAMA, {"attention_bias": True, "ffn_type": "glu"}),
    "gemma": ({**LLAMA, "head_dim": 256, "hidden_activation": "gelu_pytorch_tanh"}, {"activation": "gelu_tanh", "tied_embeddings": True}),
    "gemma2": ({**LLAMA, "head_dim": 256}, {"norm_placement": "sandwich"}),
    "gemma3": ({**LLAMA, "head_dim": 256}, {"norm_placement": "sandwich", "qk_norm": True}),
    "olmo": (LLAMA, {"norm_type": "layernorm_nonparametric", "norm_placement": "pre"}),
    "olmo2": (LLAMA, {"norm_placement": "post_sublayer", "qk_norm": True}),
    "phi": ({"num_hidden_layers": 32, "hidden_size": 2560, "num_attention_heads": 32, "intermediate_size": 10240,
             "vocab_size": 51200, "hidden_act": "gelu_new", "partial_rotary_factor": 0.4},
            {"parallel_attn_mlp": True, "rotary_pct": 0.4, "activation": "gelu_tanh"}),
    "phi3": ({**LLAMA, "num_key_value_heads": 32}, {"ffn_type": "glu", "n_kv_heads": 32}),
    "falcon": ({"num_hidden_layers": 32, "hidden_size": 4544, "num_attention_heads": 71, "vocab_size": 65024,
                "multi_query": True, "parallel_attn": True, "bias": False},
               {"n_kv_heads": 1, "parallel_attn_mlp": True, "d_ffn": 18176}),
    "gpt2": ({"n_layer": 12, "n_embd": 768, "n_head": 12, "vocab_size": 50257, "n_positions": 1024, "n_inner": None,
              "activation_function": "gelu_new"}, {"d_ffn": 3072, "positional_encoding": "learned", "tied_embeddings": True}),
    "opt": ({"num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32, "ffn_dim": 16384, "vocab_size": 50272,
             "activation_function": "relu", "do_layer_norm_before": True}, {"activation": "relu", "norm_placement": "pre"}),
}


@pytest.mark.parametrize("model_type", sorted(HF_CASES))
def test_hf_config_converter(model_type, tmp_path):
    config, expect = HF_CASES[model_type]
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**config, "model_type": model_type}))
    arch, notes = from_hf_config(json.loads(path.read_text()), training={"learning_rate": 1e-3, "total_steps": 5000})
    for k, v in expect.items():
        assert getattr(arch, k) == v, (k, getattr(arch, k))
    assert arch.learning_rate == 1e-3 and arch.planned_steps == 5000
    assert any("batch_tokens" in n for n in notes)  # defaulted training field is named
    assert all("learning_rate" not in n for n in notes)


def test_hf_config_errors():
    with pytest.raises(UserError, match="'mamba'"):
        from_hf_config({"model_type": "mamba", "hidden_size": 8})
    with pytest.raises(UserError, match="warmup_steps"):
        from_hf_config({**LLAMA, "model_type": "llama"}, training={"warmup_steps": 10})
    with pytest.raises(UserError, match="num_attention_heads"):
        from_hf_config({"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64, "vocab_size": 10, "intermediate_size": 128})


# ------------------------------------------------------------------ grouped CV
def test_grouped_folds_never_leak():
    from registry.baseline import LeakError, assert_no_leak, grouped_folds, selection_folds

    groups = np.repeat([f"m{i}" for i in range(7)], 5)
    folds = list(grouped_folds(groups))
    assert len(folds) == 7
    for tr, te in folds + list(selection_folds(groups, max_folds=3)):
        assert not set(groups[tr]) & set(groups[te])
        assert len(set(groups[te])) >= 1
    with pytest.raises(LeakError):
        assert_no_leak(groups, np.arange(0, 6), np.arange(5, 10))


# ------------------------------------------------------------------ hierarchical model
def _synthetic_rows(level_fn, n_models=8, noise=0.05, seed=0):
    """Rows of synthetic models: y = level(model) + shared depth profile + noise."""
    from registry.dataset import FEATURES, layer_features

    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_models):
        d = 128 * 2 ** (i % 5)
        arch = Architecture(n_layers=6 + 2 * i, d_model=d, n_heads=d // 64, d_ffn=4 * d)
        f = layer_features(arch)
        prof = 0.8 * np.sin(np.pi * f["rel"]) - 1.0 * f["first_layer"] - 0.6 * f["last_layer"]
        f["log_peak_abs"] = level_fn(i, f) + prof + noise * rng.standard_normal(len(f))
        f.insert(0, "model", f"m{i}")
        frames.append(f)
    rows = pd.concat(frames, ignore_index=True)
    return rows[["model", "layer", *FEATURES, "log_peak_abs"]]


def test_model_keys_and_depth_basis_recover_models_and_layers():
    from registry.baseline import depth_basis, model_keys
    from registry.dataset import FEATURES

    rows = _synthetic_rows(lambda i, f: 0.0)
    X = rows[list(FEATURES)].to_numpy(float)
    keys = model_keys(X)
    assert len(set(keys)) == 8
    assert all(len(set(keys[rows["model"] == m])) == 1 for m in set(rows["model"]))
    D = depth_basis(X)
    np.testing.assert_array_equal(D[:, 4], (rows["layer"] == 0).astype(float))  # first layer
    np.testing.assert_array_equal(D[:, 6], rows["last_layer"].to_numpy())  # last layer


def test_hierarchical_recovers_level_and_profile_under_lomo():
    """Level linear in log d_model + shared profile: the decomposition recovers it on held-out models."""
    from registry.baseline import evaluate_target

    rows = _synthetic_rows(lambda i, f: 1.5 * f["log_d"])
    size = evaluate_target(rows, "log_peak_abs", learners=("hier_size",), random_repeats=1)
    assert size.metrics["lomo_r2"] > 0.9 > 0 > size.metrics["baseline_lomo_r2"]
    # mean level + profile: beats the mean baseline by (about) the within-model share of the variance
    mean_prof = evaluate_target(rows, "log_peak_abs", learners=("hier_mean",), random_repeats=1)
    assert mean_prof.metrics["lomo_r2"] > size.metrics["baseline_lomo_r2"] + 0.1
    # the held-out profile itself is right: within-model residuals are small
    o = size.oof
    centred = (o["y"] - o.groupby("model")["y"].transform("mean")) - (o["yhat"] - o.groupby("model")["yhat"].transform("mean"))
    assert float(np.sqrt(np.mean(centred**2))) < 0.1


def test_nested_selection_falls_back_to_mean_on_unpredictable_levels():
    """Random model levels: the nested choice (mean vs hierarchical) is never much worse than the mean."""
    from registry.baseline import DEFAULT_LEARNERS, evaluate_target

    rng = np.random.default_rng(3)
    levels = rng.normal(0, 1.0, 8)
    rows = _synthetic_rows(lambda i, f: levels[i], noise=0.02)
    tm = evaluate_target(rows, "log_peak_abs", learners=DEFAULT_LEARNERS, random_repeats=1)
    assert tm.metrics["lomo_r2"] >= tm.metrics["baseline_lomo_r2"] - 0.02
    assert tm.learner in DEFAULT_LEARNERS


# ------------------------------------------------------------------ trained predictor (module scope)
@pytest.fixture(scope="module")
def stats():
    from registry.dataset import reference_stats

    return reference_stats()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, migrated_mlflow_db, stats):
    """Two training runs in one data home: version 1 (families weigh 1/n) and version 2 (1/sqrt(n))."""
    import mlflow

    from registry.training import promote, train

    home = tmp_path_factory.mktemp("predictor-home")
    shutil.copy(migrated_mlflow_db, home / "mlflow.db")
    mp = pytest.MonkeyPatch()
    mp.setenv("MAFORECAST_DATA_HOME", str(home))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    try:
        r1 = train(stats)
        p1 = promote()
        r2 = train(stats, engine_params={"profile_alpha": 2.0}, cv=("lineage",))
        yield {"home": home, "r1": r1, "r2": r2, "p1": p1}
    finally:
        if mlflow.active_run():
            mlflow.end_run()
        mp.undo()


@pytest.fixture
def in_home(trained, monkeypatch):
    monkeypatch.setenv("MAFORECAST_DATA_HOME", str(trained["home"]))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return trained["home"]


def test_training_is_evaluated_on_unseen_groups(trained):
    r1 = trained["r1"]
    assert set(r1.evaluations) == {"lineage", "model"}
    for by, e in r1.evaluations.items():
        d = e.predictions
        assert {"peak_abs", "ratio_end", "t_emerge"} <= set(d["target"])
        # held-out groups are models or families of the evidence
        assert set(d["group"]) <= set(groups_of(r1.evidence, by))
        # the constant exists for every target but Pythia's own when the whole Pythia lineage is left out
        assert d.loc[d["target"] == "peak_abs", "baseline"].notna().all() and np.isfinite(d["pred"]).all()
        assert by == "lineage" or d["baseline"].notna().all()
    for k in ("headline_skill", "headline_peak_abs_mae", "headline_constant_mae"):
        assert np.isfinite(r1.metrics[k])
    assert r1.bundle.quality_ and "peak_abs" in r1.bundle.quality_


def test_two_runs_create_versions_with_metrics(trained, in_home):
    from maforecast.tracking import configure

    client = configure()
    assert trained["r1"].version == "1" and trained["r2"].version == "2"
    for v in ("1", "2"):
        mv = client.get_model_version("maforecast-predictor", v)
        assert "headline_skill" in mv.tags and mv.tags["data_digest"] and mv.tags["beats_baseline"] in ("true", "false")
        # what a reviewer reads in the UI: the data and the held-out scores next to the constant
        assert "constant" in mv.description and "leave one lineage out" in mv.description and "lineages" in mv.description
        assert len(mv.description) <= 5000  # MLflow's SQL stores hold 5,000 characters (PostgreSQL refuses more)
        assert "nearest sibling" in mv.description and "Proxy -> target" in mv.description
        # the model card: per change its effect, interval, evidence kind, studies, families, disagreement
        assert "Design effects" in mv.description and "Leave one study out" in mv.description
        row = next(x for x in mv.description.splitlines() if x.startswith("| norm_placement pre -> sandwich |"))
        assert "| controlled |" in row and "Sun2026" in row and "| yes |" in row  # association overruled, flagged
        run = client.get_run(mv.run_id)
        assert "headline_skill" in run.data.metrics
        assert "lineage.peak_abs_per_layer.all.mae" in run.data.metrics and "model.peak_abs.all.sibling_mae" in run.data.metrics
        assert {"skill_new_member", "skill_new_lineage", "proxy.mae"} <= set(run.data.metrics)
        assert "lineage.peak_abs_per_layer.all.constant_mae" in run.data.metrics
        assert run.inputs.dataset_inputs, "training data logged as dataset input"
        arts = {a.path for a in client.list_artifacts(mv.run_id, "plots")}
        assert {"plots/heldout_lineage.png", "plots/heldout_model.png"} <= arts
        evaluation = {a.path for a in client.list_artifacts(mv.run_id, "evaluation")}
        assert {"evaluation/evaluation.csv", "evaluation/proxy_pairs.csv", "evaluation/model_card.md"} <= evaluation
    # version 2 was trained with version 1 as champion: its card shows the champion's effect next to its own, and
    # an effect that rests on controlled comparisons is the same in both (the depth-profile alpha moves nothing there)
    v2 = client.get_model_version("maforecast-predictor", "2").description
    assert "champion |" in v2
    row = next(x for x in v2.splitlines() if x.startswith("| norm_placement pre -> sandwich |")).split("|")
    assert row[2].strip() == row[-2].strip()
    assert str(client.get_model_version_by_alias("maforecast-predictor", "challenger").version) == "2"
    assert trained["p1"].promoted and "no champion" in trained["p1"].message


def test_promote_both_directions(trained, in_home):
    from maforecast.tracking import configure
    from registry.training import promote

    client = configure()
    name = "maforecast-predictor"
    client.set_registered_model_alias(name, "champion", "1")
    client.set_model_version_tag(name, "1", "headline_skill", "0.5")
    client.set_model_version_tag(name, "2", "headline_skill", "0.1")
    res = promote()
    assert not res.promoted and "not better" in res.message and "0.1000" in res.message
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    # a challenger that does not beat the constant is refused in one line, whatever the champion
    client.set_model_version_tag(name, "2", "headline_skill", "-0.2")
    res = promote()
    assert not res.promoted and "does not beat the constant baseline" in res.message and "\n" not in res.message
    assert "MLflow validation" in res.message and client.get_model_version(name, "2").tags["gate.constant"] != "passed"
    res = promote(force=True)
    assert res.promoted and "--force" in res.message
    assert client.get_model_version(name, "2").tags["promoted_by_force"] == "true"
    assert str(client.get_model_version_by_alias(name, "champion").version) == "2"
    client.set_registered_model_alias(name, "champion", "1")
    client.set_model_version_tag(name, "2", "headline_skill", "0.9")
    res = promote()
    assert res.promoted and "beats" in res.message
    tags = client.get_model_version(name, "2").tags  # the gate's verdicts, where MLflow users look
    assert tags["gate.constant"] == "passed" and tags["gate.champion"] == "passed (v1)"
    assert str(client.get_model_version_by_alias(name, "champion").version) == "2"
    assert "already" in promote().message


def test_champion_with_an_older_model_interface_is_replaced(trained, in_home):
    """A champion the service cannot load (logged with another pyfunc interface) gives way to a
    current challenger that beats the baseline, even one with a lower headline."""
    from maforecast.tracking import configure
    from predictor.pyfunc import INTERFACE
    from registry.training import promote

    client = configure()
    name = "maforecast-predictor"
    assert client.get_model_version(name, "2").tags["pyfunc_interface"] == INTERFACE
    client.set_registered_model_alias(name, "champion", "1")
    client.set_model_version_tag(name, "1", "headline_skill", "0.9")
    client.set_model_version_tag(name, "2", "headline_skill", "0.1")
    client.set_model_version_tag(name, "1", "pyfunc_interface", "1")
    try:
        res = promote()
        assert res.promoted and "another model interface or predictor code" in res.message
        assert str(client.get_model_version_by_alias(name, "champion").version) == "2"
    finally:
        client.set_model_version_tag(name, "1", "pyfunc_interface", INTERFACE)


def test_cli_promote(trained, in_home):
    from click.testing import CliRunner

    from registry.cli import promote as promote_cmd

    out = CliRunner().invoke(promote_cmd, [])
    assert out.exit_code == 0 and "champion" in out.output


def test_forecast_schema_and_applicability(trained, in_home):
    from registry.loader import load_predictor

    fc = load_predictor()
    info = fc.info()
    assert info["version"] and info["alias"] == "champion" and info["data_digest"] and info["run_id"]
    inside = fc.answer(pythia_architectures()["pythia-160m"])
    assert not inside.applicability
    assert len(inside.layers) == 12
    for lf in inside.layers:
        assert lf.ratio_trajectory and lf.ratio_trajectory[0].step == 0
        for p in lf.ratio_trajectory:
            assert p.lo <= p.value <= p.hi
        assert lf.peak_abs.lo <= lf.peak_abs.value <= lf.peak_abs.hi
        assert lf.trajectory_class in ("plateau", "log_increase")
        assert lf.ratio_end.value == lf.ratio_trajectory[-1].value  # ratio_end = f(t_end)
        assert 0.0 <= lf.p_massive <= 1.0
    far = Architecture(n_layers=400, d_model=65536, n_heads=512, d_ffn=262144, ffn_type="glu", activation="silu",
                       norm_type="rmsnorm", total_steps=2_000_000)
    out = fc.answer(far, steps=[0, 1000, 2_000_000])
    flagged = {w.field for w in out.applicability}
    assert {"n_layers", "d_model", "n_params_B", "planned_steps"} <= flagged
    assert all(w.message for w in out.applicability)
    assert [p.step for p in out.layers[0].ratio_trajectory] == [0, 1000, 2_000_000]


def test_no_champion_error(data_home):
    from registry.loader import NoChampionError, load_predictor

    with pytest.raises(NoChampionError, match="maforecast bootstrap"):
        load_predictor()


def test_reload_in_fresh_process_gives_same_forecast(trained, in_home):
    from registry.loader import load_predictor

    arch = pythia_architectures()["pythia-410m"]
    here = json.loads(load_predictor().answers_json([arch])[0])
    code = (
        "import json, sys\n"
        "from registry.reference import pythia_architectures\n"
        "from registry.loader import load_predictor\n"
        "p = load_predictor('models:/maforecast-predictor@champion')\n"
        "print(p.answers_json([pythia_architectures()['pythia-410m']])[0].decode())\n"
    )
    env = {**os.environ, "MAFORECAST_DATA_HOME": str(in_home), "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, cwd=os.getcwd())
    assert proc.returncode == 0, proc.stderr[-2000:]
    there = json.loads(proc.stdout.strip().splitlines()[-1])
    assert there == here


def test_pyfunc_predict_gives_the_whole_answer(trained, in_home):
    """The registered model answers the whole question through MLflow's own pyfunc API: per row the
    /predict answer (precision risk and ranked mitigations with what-if effects included), /compare of
    named rows, the nowcast, and per-layer rows for tabular consumers."""
    import mlflow

    from maforecast.tracking import configure
    from predictor.pyfunc import arch_frame, forecast_frame
    from predictor.response import CompareResponse, NowcastResponse, PredictResponse
    from registry.loader import load_predictor

    configure()  # this test's data home, whatever an earlier test in this worker configured
    arch = pythia_architectures()["pythia-1b"]
    other = arch.model_copy(update={"qk_norm": True, "name": "qk"})
    model = mlflow.pyfunc.load_model("models:/maforecast-predictor@champion")
    served = load_predictor()
    full = model.predict(arch_frame([arch, other]), params={"view": "full"})
    assert list(full.columns) == ["answer"] and len(full) == 2
    a = PredictResponse.model_validate_json(full["answer"][0])
    compact = PredictResponse.model_validate_json(model.predict(arch_frame([arch]))["answer"][0])  # the default view
    assert compact.view == "compact" and compact.summary == a.summary and compact.precision_plan.at_risk == a.precision_plan.at_risk
    assert a == served.answer(arch).model_copy(update={"predictor": a.predictor})  # same answer, the loader names the version
    # loaded by MLflow itself, the model still says which registered version it is (issue 26: nulls before)
    assert a.predictor.version == served.version and a.predictor.alias == "champion"
    assert a.predictor.model_uri == f"models:/maforecast-predictor/{served.version}"
    assert a.precision and a.mitigations and any(m.effect for m in a.mitigations)
    assert len(a.layers) == arch.n_layers
    cmp = CompareResponse.model_validate_json(model.predict(arch_frame([arch, other], ["base", "qk"]),
                                                            params={"output": "compare"})["answer"][0])
    assert [v.name for v in cmp.variants] == ["base", "qk"] and cmp.differences[0].changed_inputs["qk_norm"] == [False, True]
    nc = NowcastResponse.model_validate_json(model.predict(arch_frame([arch]), params={"output": "nowcast"})["answer"][0])
    assert [m.id for m in nc.mitigations] == [m.id for m in a.mitigations]
    rows = model.predict(arch_frame([arch]), params={"output": "rows"})
    ref = forecast_frame(served.engine.forecast(arch))
    assert len(rows) == arch.n_layers
    pd.testing.assert_series_equal(rows["peak_abs"], ref["peak_abs"], check_names=False)
    with pytest.raises(Exception, match="params.output"):
        model.predict(arch_frame([arch]), params={"output": "nonsense"})
    with pytest.raises(Exception, match="layers"):
        model.predict(arch_frame([arch]), params={"layers": str(arch.n_layers)})  # a layer the architecture lacks


def test_champion_loads_outside_the_repo_without_the_project(trained, in_home, tmp_path):
    """The registered model carries its code (code_paths) and pinned requirements: a fresh process in a
    folder outside the repo, with the project's editable install hidden, loads it and forecasts the same."""
    import mlflow

    from maforecast.tracking import configure
    from predictor.pyfunc import arch_frame

    configure()
    local = mlflow.artifacts.download_artifacts("models:/maforecast-predictor@champion", dst_path=str(tmp_path / "model"))
    mlmodel = (Path(local) / "MLmodel").read_text()
    assert "code: code" in mlmodel
    reqs = (Path(local) / "requirements.txt").read_text()
    assert "scikit-learn==" in reqs and "numpy==" in reqs
    frame = arch_frame([pythia_architectures()["pythia-1b"]])
    frame.to_parquet(tmp_path / "input.parquet")
    here = mlflow.pyfunc.load_model(local).predict(frame)
    code = (
        "import sys\n"
        "sys.meta_path = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n"
        f"sys.path = [p for p in sys.path if p.rstrip('/') != {str(ROOT)!r} and p not in ('', '.')]\n"
        "import importlib.util\n"
        "assert importlib.util.find_spec('predictor') is None, 'the project must not be importable here'\n"
        "import mlflow.pyfunc, pandas as pd\n"
        f"m = mlflow.pyfunc.load_model({local!r})\n"
        "import predictor\n"
        "assert 'model/code' in predictor.__file__, predictor.__file__\n"
        "out = m.predict(pd.read_parquet('input.parquet'))\n"
        "out.to_parquet('output.parquet')\n"
    )
    from maforecast.settings import get_settings

    # the registry named, as `mlflow models serve` has it: the answer names its version there too
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
           "MLFLOW_TRACKING_URI": get_settings().resolved_tracking_uri}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    there = pd.read_parquet(tmp_path / "output.parquet")
    assert list(there["answer"]) == list(here["answer"])  # the whole answer, byte for byte


@pytest.mark.parametrize("cls", ["Qwen3Config", "Qwen3MoeConfig", "MixtralConfig", "DeepseekV3Config", "Gemma2Config",
                                 "Gemma3TextConfig", "LlamaConfig", "Olmo2Config", "Qwen2Config"])
def test_hf_configs_of_transformers_classes_map(cls):
    """Every mapped model type, from transformers' own config class: one note per field (no note that a
    later convention contradicts), Gemma's embedding scale, Qwen3's QK-norm, the routed experts."""
    import transformers

    doc = getattr(transformers, cls)().to_dict()
    arch, notes = from_hf_config(doc)
    fields = [n.split(":", 1)[0] for n in notes]
    assert len(fields) == len(set(fields)), notes
    mt = doc["model_type"]
    if mt.startswith("gemma"):
        assert arch.embedding_scale and arch.norm_placement == "sandwich"
    if mt.startswith("qwen3") or mt in ("gemma3_text", "olmo2"):
        assert arch.qk_norm
    if mt in ("qwen3_moe", "mixtral", "deepseek_v3"):
        assert arch.moe_experts and arch.moe_active_experts and arch.moe_active_experts <= arch.moe_experts
    if mt == "olmo2":
        assert arch.norm_placement == "post_sublayer" and not any("'pre'" in n for n in notes if n.startswith("norm_placement"))


@pytest.mark.parametrize(("change", "key"), [
    ({"tie_word_embeddings": "no"}, "config.tie_word_embeddings"),  # a string is not a boolean
    ({"num_hidden_layers": 0}, "config.num_hidden_layers"),
    ({"num_attention_heads": 7}, "num_attention_heads"),  # a check across fields, in the config's words
    ({"rope_theta": "big"}, "config.rope_theta"),
    ({"initializer_range": -1}, "config.initializer_range"),
    ({"head_dim": 0}, "config.head_dim"),
])
def test_hf_config_errors_name_the_users_key(change, key):
    base = {"model_type": "llama", "num_hidden_layers": 16, "hidden_size": 2048, "num_attention_heads": 32,
            "num_key_value_heads": 8, "intermediate_size": 8192, "vocab_size": 128256}
    with pytest.raises(UserError) as exc:
        from_hf_config({**base, **change})
    msg = str(exc.value)
    assert key in msg and not re.search(r"\b(n_layers|d_model|n_heads)\b", msg), msg
