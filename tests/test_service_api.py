"""The BentoML service in process (``TestClient(MAForecast.to_asgi())``) and once as a real server.

A small real predictor is trained once per session on the bundled reference data and registered
as champion in a template store (``champion_template``); each test gets its own copy of that
data home. No MLflow or BentoML mocks.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from predictor.precision import FORMATS

ROOT = Path(__file__).resolve().parent.parent
# one worker builds the champion once and runs every service test (see Makefile: --dist loadgroup)
pytestmark = pytest.mark.xdist_group("service")

SMALL = {
    "name": "small",
    "n_layers": 6,
    "d_model": 512,
    "n_heads": 8,
    "d_ffn": 2048,
    "total_steps": 20000,
}
LLAMA_1B = {
    "name": "llama-1b",
    "n_layers": 16,
    "d_model": 2048,
    "n_heads": 32,
    "n_kv_heads": 8,
    "d_ffn": 8192,
    "ffn_type": "glu",
    "activation": "silu",
    "norm_type": "rmsnorm",
    "precision_target": "int8_w8a8",
    "training_tokens": 1e11,
}
HF_LLAMA = {
    "model_type": "llama",
    "num_hidden_layers": 16,
    "hidden_size": 2048,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "intermediate_size": 8192,
    "vocab_size": 128256,
    "hidden_act": "silu",
    "max_position_embeddings": 8192,
}


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def champion_template(tmp_path_factory, migrated_mlflow_db):
    """A data home with reference stats, fits and a small trained predictor promoted to champion."""
    home = tmp_path_factory.mktemp("champion-home")
    shutil.copy(migrated_mlflow_db, home / "mlflow.db")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MAFORECAST_DATA_HOME", str(home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        from pipeline.bootstrap import run

        log: list[str] = []
        run(echo=log.append)
    return home


@pytest.fixture
def champion_home(champion_template, tmp_path, monkeypatch):
    """A per-test copy of the champion data home, selected through MAFORECAST_DATA_HOME."""
    home = tmp_path / "home"
    shutil.copytree(champion_template, home)
    _repoint_artifacts(champion_template, home)
    monkeypatch.setenv("MAFORECAST_DATA_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for var in ("MAFORECAST_MODEL_URI", "MAFORECAST_MODEL_VERSION", "MAFORECAST_MODEL_ALIAS"):
        monkeypatch.delenv(var, raising=False)
    return home


def _repoint_artifacts(old: Path, new: Path) -> None:
    """The copied SQLite store still names artifact folders under ``old``; point them at ``new``."""
    import sqlite3

    con = sqlite3.connect(new / "mlflow.db")
    try:
        olds, news = old.resolve().as_uri(), new.resolve().as_uri()
        for table, col in (
            ("experiments", "artifact_location"),
            ("runs", "artifact_uri"),
            ("model_versions", "source"),
            ("model_versions", "storage_location"),
            ("logged_models", "artifact_location"),
        ):
            try:
                con.execute(f"UPDATE {table} SET {col} = REPLACE({col}, ?, ?)", (olds, news))
                con.execute(f"UPDATE {table} SET {col} = REPLACE({col}, ?, ?)", (str(old.resolve()), str(new.resolve())))
            except sqlite3.OperationalError:
                pass  # column absent in this schema version
        con.commit()
    finally:
        con.close()


def service_app():
    from service.service import asgi_app

    return asgi_app()


@pytest.fixture(scope="module")
def client(champion_template, tmp_path_factory):
    """One in-process service over a copy of the champion home, shared by the read-only tests."""
    home = tmp_path_factory.mktemp("service") / "home"
    shutil.copytree(champion_template, home)
    _repoint_artifacts(champion_template, home)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MAFORECAST_DATA_HOME", str(home))
        for var in ("MLFLOW_TRACKING_URI", "MAFORECAST_MODEL_URI", "MAFORECAST_MODEL_VERSION", "MAFORECAST_MODEL_ALIAS"):
            mp.delenv(var, raising=False)
        with TestClient(service_app(), raise_server_exceptions=False) as c:
            yield c


def assert_names(resp, *fields):
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text[:500])
    body = resp.json()
    text = json.dumps(body)
    for f in fields:
        assert f in text, (f, body)
    assert body.get("error")


# These tests start their own service instance from the same app, so they must run before the
# module-scoped ``client`` is created (lifespans of one app must not overlap): keep them first.


@pytest.fixture
def empty_client(data_home):
    """The service over a store without any registered predictor."""
    with TestClient(service_app(), raise_server_exceptions=False) as c:
        yield c



# ------------------------------------------------------------------------------------ not ready


def test_no_champion_starts_unready_and_says_which_command(empty_client):
    c = empty_client
    assert c.get("/livez").status_code == 200
    r = c.get("/readyz")
    assert r.status_code == 503
    info = c.get("/model_info")
    assert info.status_code == 503
    body = info.json()
    assert body["ready"] is False and "maforecast bootstrap" in body["error"]
    p = c.post("/predict", json=SMALL)
    assert p.status_code == 503 and "maforecast bootstrap" in p.json()["error"]
    # bad input is still a 4xx, not masked by the 503
    assert c.post("/predict", json={**SMALL, "d_model": -1}).status_code == 400



def test_pinned_version_is_served(champion_home, monkeypatch):
    monkeypatch.setenv("MAFORECAST_MODEL_VERSION", "1")
    with TestClient(service_app(), raise_server_exceptions=False) as c:
        info = c.get("/model_info").json()
        assert info["predictor"]["model_uri"].endswith("/1")


# ------------------------------------------------------------------------------------ endpoints


def test_predict_full_answer(client):
    r = client.post("/predict?view=full", json=LLAMA_1B)
    assert r.status_code == 200, r.text[:500]
    a = r.json()
    assert a["predictor"]["name"] and a["predictor"]["version"] and a["predictor"]["alias"] == "champion"
    assert len(a["layers"]) == 16
    lf = a["layers"][0]
    for key in ("ratio_trajectory", "params", "t_emerge", "trajectory_class", "ratio_end", "steady_state", "peak_abs", "massive"):
        assert key in lf
    assert set(lf["params"]) >= {"y0", "Y_inf", "Y_inf_abs", "log10_tau_e", "p"}
    steps = [p["step"] for p in lf["ratio_trajectory"]]
    assert steps == sorted(steps) and steps[-1] == a["t_end"]
    s = a["summary"]
    assert s["n_layers"] == 16 and "largest_peak_abs" in s and "massive_layers" in s
    formats = {p["format"]: p for p in a["precision"]}
    assert set(formats) == set(FORMATS)  # every format with its scaling recipe (predictor.precision)
    assert formats["int8_per_tensor"]["target"] is True
    for p in formats.values():
        assert p["why"]
    ids = {m["id"]: m for m in a["mitigations"]}
    assert ids, "a pre-norm GLU model must get mitigations"
    assert all(len(m["citations"]) >= 1 and m["citations"][0]["arxiv"] for m in a["mitigations"])
    kv = ids.get("attn_kv_bias")
    assert kv is None or (kv["level"] == "not_recommended" and not kv["effective"])
    worse = [m for m in a["mitigations"] if m["level"] in ("strong", "moderate", "situational") and not m["effective"]]
    assert any(m["id"] == "qk_norm" for m in worse), "qk_norm's own what-if raises the FP8 risk (the issue's case)"
    ranks = [m["rank"] for m in a["mitigations"]]
    assert ranks == list(range(1, len(ranks) + 1))
    assert isinstance(a["applicability"], list)


def test_predict_requested_steps_and_cache(client):
    r1 = client.post("/predict?steps=0,1000,20000", json=SMALL)
    assert r1.status_code == 200, r1.text[:300]
    assert [p["step"] for p in r1.json()["layers"][0]["ratio_trajectory"]] == [0, 1000, 20000]
    r2 = client.post("/predict?steps=0,1000,20000", json=SMALL)
    assert r2.content == r1.content


def test_repeat_is_answered_from_the_one_answer_cache(client):
    """A repeat (even formatted differently) is the same bytes, from the engine's answer cache (no new
    entry); other steps are a new answer; bad input is never cached."""
    from service import service as svc

    cache = svc.STATE.answers._cache
    body = json.dumps({**SMALL, "name": "repeat-cache"}).encode()
    headers = {"content-type": "application/json"}
    first = client.post("/predict?steps=0,500,9000", content=body, headers=headers)
    assert first.status_code == 200, first.text[:300]
    n = len(cache)
    again = client.post("/predict?steps=0,500,9000", content=body, headers=headers)
    pretty = client.post("/predict?steps=0,500,9000", content=json.dumps(json.loads(body), indent=2), headers=headers)
    assert again.content == first.content == pretty.content and len(cache) == n
    other_steps = client.post("/predict?steps=0,500", content=body, headers=headers)
    assert [p["step"] for p in other_steps.json()["layers"][0]["ratio_trajectory"]] == [0, 500]
    assert len(cache) == n + 1
    bad = json.dumps({**SMALL, "n_heads": 7}).encode()
    for _ in range(2):
        r = client.post("/predict", content=bad, headers=headers)
        assert r.status_code == 400 and "n_heads" in r.json()["fields"]
    assert len(cache) == n + 1


def test_gpt2_style_gets_kv_bias_with_evidence(client):
    gpt2 = {**SMALL, "name": "gpt2ish", "positional_encoding": "learned", "rotary_pct": 1.0}
    a = client.post("/predict?view=full", json=gpt2).json()
    ids = {m["id"]: m for m in a["mitigations"]}
    assert ids["attn_kv_bias"]["effective"] is True
    assert "2402.17762" in {c["arxiv"] for c in ids["attn_kv_bias"]["citations"]}


def test_predict_hf_config(client):
    r = client.post("/predict_hf_config", json={"config": HF_LLAMA, "training": {"total_steps": 50000}})
    assert r.status_code == 200, r.text[:500]
    a = r.json()
    assert a["architecture_input"]["ffn_type"] == "glu" and a["t_end"] == 50000
    assert any("norm_type" in n for n in a["inferred"])
    assert_names(client.post("/predict_hf_config", json={"config": {**HF_LLAMA, "model_type": "mamba"}}), "model_type")
    assert_names(client.post("/predict_hf_config", json={"config": {"model_type": "llama"}}), "num_hidden_layers")
    assert_names(client.post("/predict_hf_config", json={"config": HF_LLAMA, "training": {"lr": 1}}), "lr")
    assert_names(client.post("/predict_hf_config", json={"config": {**HF_LLAMA, "num_hidden_layers": "many"}}), "config")
    assert_names(client.post("/predict_hf_config", json={"training": {}}), "config")
    # the user's key, not the schema's field
    r = client.post("/predict_hf_config", json={"config": {**HF_LLAMA, "tie_word_embeddings": "no"}})
    assert r.status_code == 400 and r.json()["fields"] == ["config.tie_word_embeddings"], r.text
    r = client.post("/predict_hf_config", json={"config": {**HF_LLAMA, "num_hidden_layers": 0}})
    assert r.status_code == 400 and r.json()["fields"] == ["config.num_hidden_layers"], r.text
    r = client.post("/predict_hf_config", json={"config": HF_LLAMA, "training": {"lr": 1}})
    assert r.status_code == 400 and r.json()["fields"] == ["training.lr"], r.text
    # a bare config.json gets the hint, not one "unknown field" per key
    r = client.post("/predict_hf_config", json=HF_LLAMA)
    assert r.status_code == 400 and r.json()["fields"] == ["config"] and '{"config"' in r.json()["error"], r.text
    assert len(r.json()["error"]) < 300
    # a Qwen3-MoE config maps (routed experts, QK-norm) and Gemma's embedding scale is set
    qwen3 = {**HF_LLAMA, "model_type": "qwen3_moe", "num_experts": 64, "num_experts_per_tok": 8, "moe_intermediate_size": 1024}
    r = client.post("/predict_hf_config", json={"config": qwen3})
    assert r.status_code == 200, r.text
    a = r.json()["architecture_input"]
    assert a["moe_experts"] == 64 and a["moe_active_experts"] == 8 and a["qk_norm"] is True
    r = client.post("/predict_hf_config", json={"config": {**HF_LLAMA, "model_type": "gemma2", "head_dim": 64}})
    assert r.status_code == 200 and r.json()["architecture_input"]["embedding_scale"] is True, r.text


def test_predict_batch(client):
    r = client.post("/predict_batch", json={"architectures": [SMALL, LLAMA_1B]})
    assert r.status_code == 200, r.text[:300]
    res = r.json()["results"]
    assert [x["architecture"] for x in res] == ["small", "llama-1b"]
    from service.schemas import MAX_BATCH

    assert_names(client.post("/predict_batch", json={"architectures": [SMALL] * (MAX_BATCH + 1)}), "architectures")
    assert_names(client.post("/predict_batch", json={"architectures": []}), "architectures")
    assert_names(client.post("/predict_batch", json={"architectures": [SMALL, {**SMALL, "n_heads": 7}]}), "architectures", "n_heads")


def test_written_answers_are_the_validated_schema(client):
    """/predict writes its answer from plain per-layer data without validating it (predictor.answer.Engine.write);
    the bytes must be exactly what validating them as PredictResponse and writing that back gives, and
    /predict_batch (which joins the answers' bytes) must answer the same per architecture."""
    from service.schemas import PredictResponse

    bodies = [SMALL, LLAMA_1B, {**SMALL, "name": "fp8-qk", "qk_norm": True, "precision_target": "fp8_training"}]
    singles = []
    for body in bodies:
        raw = client.post("/predict?steps=0,100,5000,20000", json=body).content
        assert PredictResponse.model_validate_json(raw).model_dump_json().encode() == raw
        singles.append(json.loads(raw))
    batch = client.post("/predict_batch", json={"architectures": bodies, "steps": [0, 100, 5000, 20000]})
    assert batch.status_code == 200, batch.text[:300]
    assert batch.json()["results"] == singles and batch.json()["predictor"] == singles[0]["predictor"]


def test_compact_answer_is_the_default_and_keeps_the_full_answers_numbers(client):
    """Issue 28: /predict answers compact by default (per-layer essentials, the formats the plan's recipe runs, the five
    best-ranked effective mitigations); ?view=full adds trajectories, every format and mitigation; ?view=summary drops
    the layers; ?layers= picks layers in any view. Every number the compact answer carries is the full answer's."""
    from predictor.precision import formats_in_use

    full, comp = client.post("/predict?view=full", json=LLAMA_1B), client.post("/predict", json=LLAMA_1B)
    assert full.status_code == comp.status_code == 200, comp.text[:300]
    f, c = full.json(), comp.json()
    assert (f["view"], c["view"]) == ("full", "compact") and c["summary"] == f["summary"]
    assert c["precision_plan"]["at_risk"] == f["precision_plan"]["at_risk"] and c["precision_plan"]["recipes"] == f["precision_plan"]["recipes"]
    essentials = lambda lf: {k: v for k, v in lf.items() if k not in ("ratio_trajectory", "params")}  # noqa: E731
    assert [essentials(lf) for lf in c["layers"]] == [essentials(lf) for lf in f["layers"]]
    assert all(lf["ratio_trajectory"] == [] and lf["params"] == {} for lf in c["layers"])
    assert all(lf["ratio_trajectory"] and lf["params"] for lf in f["layers"])
    used = set(formats_in_use(LLAMA_1B["precision_target"], c["precision_plan"]["recipe"]))
    assert {r["format"] for r in c["precision"]} == used and all(r["details"] == [] for r in c["precision"])
    by_format = {r["format"]: r for r in f["precision"]}
    assert all(r["probability"] == by_format[r["format"]]["probability"] and r["at_risk"] == by_format[r["format"]]["at_risk"]
               for r in c["precision"])
    assert [m["id"] for m in c["mitigations"]] == [m["id"] for m in f["mitigations"] if m["effective"]][:5]
    fm = {m["id"]: m for m in f["mitigations"]}
    for m in c["mitigations"]:
        assert len(m["citations"]) == 1 and m["citations"][0] == fm[m["id"]]["citations"][0]
        if m["effect"]:
            assert m["effect"]["peak_abs_ratio"] == fm[m["id"]]["effect"]["peak_abs_ratio"]
            assert m["effect"]["risk_after"] == {k: v for k, v in fm[m["id"]]["effect"]["risk_after"].items() if k in used}
    assert len(comp.content) * 3 < len(full.content)
    short = client.post("/predict?view=summary", json=LLAMA_1B).json()
    assert short["view"] == "summary" and short["layers"] == [] and {**short, "layers": c["layers"], "view": "compact"} == c
    two = client.post("/predict?layers=0,5&view=full", json=LLAMA_1B).json()
    assert [lf["layer"] for lf in two["layers"]] == [0, 5] and two["layers"][1] == f["layers"][5]
    batch = client.post("/predict_batch", json={"architectures": [SMALL, LLAMA_1B], "view": "summary"}).json()
    assert batch["results"][1]["summary"] == f["summary"] and batch["results"][0]["layers"] == []
    assert client.post("/predict_batch", json={"architectures": [LLAMA_1B]}).json()["results"][0] == c
    assert_names(client.post("/predict?view=tiny", json=LLAMA_1B), "view")
    assert_names(client.post("/predict?layers=a", json=LLAMA_1B), "layers")
    assert_names(client.post("/predict_batch", json={"architectures": [SMALL], "view": "tiny"}), "view")


def test_compare(client):
    variants = {
        "base": SMALL,
        "wide": {**SMALL, "d_model": 1024, "d_ffn": 4096},
        "glu": {**SMALL, "ffn_type": "glu", "activation": "silu"},
    }
    r = client.post("/compare", json={"variants": variants})
    assert r.status_code == 200, r.text[:300]
    c = r.json()
    assert c["baseline"] == "base" and [v["name"] for v in c["variants"]] == ["base", "wide", "glu"]
    wide = c["differences"][0]
    assert wide["variant"] == "wide" and set(wide["changed_inputs"]) == {"d_model", "d_ffn"}
    assert wide["effects"]["largest_peak_abs"][0] > 0 and wide["text"]
    assert set(c["differences"][1]["changed_inputs"]) == {"ffn_type", "activation"}
    assert_names(client.post("/compare", json={"variants": {"only": SMALL}}), "variants")
    assert_names(client.post("/compare", json={"variants": {"a": SMALL, "b": {**SMALL, "ffn_type": "moe"}}}), "ffn_type")


def test_plot_png(client):
    r = client.post("/plot", json=LLAMA_1B)
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/png")
    assert r.content[:8] == b"\x89PNG\r\n\x1a\n" and len(r.content) > 10_000
    assert_names(client.post("/plot", json={**LLAMA_1B, "n_layers": 0}), "n_layers")


def test_lineage_and_protocol_through_the_api(client):
    """A design of a known lineage names its measured members; the statistic is named; precision uses the worst
    case whatever protocol is shown (issue 25)."""
    body = {**SMALL, "n_layers": 28, "d_model": 2048, "n_heads": 16, "d_ffn": 6144, "ffn_type": "glu", "activation": "silu",
            "norm_type": "rmsnorm", "qk_norm": True, "lineage": "qwen3", "precision_target": "fp16_inference"}
    a = client.post("/predict?view=full", json=body).json()
    w = client.post("/predict?view=full", json={**body, "protocol": "worst_case"}).json()
    assert a["lineage"]["name"] == "qwen3" and "Qwen3-1.7B" in {m["model"] for m in a["lineage"]["members"]}
    assert a["summary"]["protocol"] == "seq_mean" and w["summary"]["protocol"] == "corpus_max"
    assert [r["probability"] for r in a["precision"]] == pytest.approx([r["probability"] for r in w["precision"]], rel=1e-9)
    fp16 = next(r for r in a["precision"] if r["format"] == "fp16")
    assert {m["name"]: m["probability"] is None for m in fp16["mechanisms"]}["attention_logits"]
    info = client.get("/model_info").json()["info"]
    assert "qwen3" in info["lineages"] and "Qwen3-32B" in info["lineages"]["qwen3"]


def test_model_info_and_health(client):
    r = client.get("/model_info")
    assert r.status_code == 200
    info = r.json()
    assert info["ready"] is True and info["predictor"]["alias"] == "champion"
    assert info["predictor"]["version"] and info["info"]
    assert client.get("/readyz").status_code == 200
    assert client.get("/healthz").status_code == 200
    # /metrics needs the Prometheus multiprocess directory that `bentoml serve` sets up; it is
    # checked against the real server in test_bentoml_serve_real_process


# ------------------------------------------------------------------------------------ bad input


BAD_INPUTS = [
    ({k: v for k, v in SMALL.items() if k != "d_model"}, ["d_model"]),  # missing field
    ({**SMALL, "n_layers": "twelve"}, ["n_layers"]),  # wrong type
    ({**SMALL, "n_layers": 0}, ["n_layers"]),  # zero size
    ({**SMALL, "d_model": -512}, ["d_model"]),  # negative size
    ({**SMALL, "d_ffn": 0}, ["d_ffn"]),
    ({**SMALL, "d_model": 500, "n_heads": 8}, ["d_model", "n_heads"]),  # d_model % n_heads
    ({**SMALL, "n_kv_heads": 3}, ["n_heads", "n_kv_heads"]),  # n_heads % n_kv_heads
    ({**SMALL, "n_layers": 10**6}, ["n_layers"]),  # absurd sizes
    ({**SMALL, "d_model": 2**40, "d_ffn": 2**42}, ["d_model"]),
    ({**SMALL, "learning_rate": 50.0}, ["learning_rate"]),
    ({**SMALL, "total_steps": -5}, ["total_steps"]),
    ({**SMALL, "norm_type": "batchnorm"}, ["norm_type"]),  # unknown enum
    ({**SMALL, "precision_target": "fp4"}, ["precision_target"]),
    ({**SMALL, "ffn_type": "moe"}, ["ffn_type"]),
    ({**SMALL, "heads": 8}, ["heads"]),  # unknown field
    ('{"n_layers": 6, "d_model": 1e400, "n_heads": 8, "d_ffn": 2048}', ["d_model"]),  # inf
    ([SMALL], []),  # not an object
    ("null", []),
    ({**SMALL, "n_layers": True}, ["n_layers"]),  # a boolean is not a number (lax mode made it 1 layer)
    ({**SMALL, "qk_norm": "yes"}, ["qk_norm"]),  # a string is not a boolean
    ({**SMALL, "tied_embeddings": 1}, ["tied_embeddings"]),
    ('{"n_layers": 6, "d_model": 512, "n_heads": 8, "d_ffn": 2048, "learning_rate": NaN}', ["learning_rate"]),
    ({**SMALL, "lineage": "qwen9"}, ["lineage"]),  # a lineage the served version does not hold
    ({**SMALL, "protocol": "median"}, ["protocol"]),
]


@pytest.mark.parametrize(("body", "fields"), BAD_INPUTS, ids=[f"bad{i}" for i in range(len(BAD_INPUTS))])
def test_bad_input_is_4xx_naming_the_field(client, body, fields):
    for route in ("/predict", "/plot"):
        r = client.post(route, json=body) if not isinstance(body, str) else client.post(route, content=body)
        assert_names(r, *fields)
    r = client.post("/predict_batch", json={"architectures": [body]})
    assert 400 <= r.status_code < 500


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"[1,2", b"\xff\xfe", b'{"n_layers": NaN}', b"1e999999"],
    ids=["empty", "open", "list", "binary", "nan", "huge"],
)
def test_malformed_bodies_are_4xx(client, raw):
    for route in ("/predict", "/predict_batch", "/compare", "/predict_hf_config", "/plot"):
        r = client.post(route, content=raw, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500, (route, raw, r.status_code, r.text[:200])


def test_nan_and_layers_out_of_range_are_named(client):
    r = client.post("/predict", content='{"n_layers": 6, "d_model": 512, "n_heads": 8, "d_ffn": 2048, "learning_rate": NaN}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 400 and "finite" in r.json()["error"] and "<= 1" not in r.json()["error"], r.text
    r = client.post("/predict?layers=99", json=SMALL)  # a 6-layer model has no layer 99
    assert r.status_code == 400 and r.json()["fields"] == ["layers"] and "99" in r.json()["error"], r.text
    r = client.post("/predict?view=summary&layers=0,5", json=SMALL)
    assert r.status_code == 200 and [lf["layer"] for lf in r.json()["layers"]] == [0, 5]


def test_bad_steps_query(client):
    for q in ("steps=a", "steps=-1", "steps=1," + ",".join(str(i) for i in range(600)), "steps=999999999999"):
        assert_names(client.post(f"/predict?{q}", json=SMALL), "steps")
    assert_names(client.post("/compare", json={"variants": {"a": SMALL, "b": SMALL}, "steps": [-1]}), "steps")


# ------------------------------------------------------------------------------------ fuzz

_json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8)
)
_json = st.recursive(_json_leaf, lambda ch: st.lists(ch, max_size=3) | st.dictionaries(st.text(max_size=6), ch, max_size=3), max_leaves=8)


def _arch_strategy():
    from predictor.architecture import Architecture

    fields = Architecture.model_fields

    def value_for(name):
        ann = str(fields[name].annotation)
        base = [_json_leaf]
        if "Literal" in ann:
            import typing

            args = [a for a in typing.get_args(fields[name].annotation) if a is not type(None)]
            lits = []
            for a in args:
                lits.extend(typing.get_args(a) or [a])
            base.append(st.sampled_from([x for x in lits if isinstance(x, str | int | float | bool)] or [None]))
        if "int" in ann:
            base.append(st.integers(-3, 5000))
        if "float" in ann:
            base.append(st.floats(-1, 1e6, allow_nan=False))
        return st.one_of(*base)

    valid = st.fixed_dictionaries(
        {
            "n_layers": st.integers(1, 64),
            "d_model": st.sampled_from([64, 128, 256, 512, 768, 1024, 4096]),
            "n_heads": st.sampled_from([1, 2, 4, 8, 16]),
            "d_ffn": st.integers(64, 16384),
        },
        optional={name: value_for(name) for name in fields if name not in {"n_layers", "d_model", "n_heads", "d_ffn"}},
    )
    return st.one_of(valid, st.dictionaries(st.sampled_from(sorted(fields)), _json, max_size=6), _json)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz_openapi_endpoints_never_5xx(client, data):
    """Property-based fuzz over every endpoint listed in /docs.json: no input may produce a 5xx."""
    spec_paths = _spec_paths(client)
    path = data.draw(st.sampled_from(sorted(spec_paths)))
    arch = _arch_strategy()
    if path in ("/predict", "/plot"):
        body = data.draw(arch)
    elif path == "/predict_batch":
        body = data.draw(st.one_of(st.fixed_dictionaries({"architectures": st.lists(arch, max_size=3)}), _json))
    elif path == "/compare":
        variants = st.dictionaries(st.text(max_size=5), arch, max_size=3)
        body = data.draw(st.one_of(st.fixed_dictionaries({"variants": variants}), _json))
    elif path == "/predict_hf_config":
        cfg = st.fixed_dictionaries(
            {"model_type": st.sampled_from(["llama", "gpt2", "gpt_neox", "falcon", "opt", "gemma3", "x"])},
            optional={k: _json_leaf | st.integers(1, 4096) for k in HF_LLAMA if k != "model_type"},
        )
        body = data.draw(st.one_of(st.fixed_dictionaries({"config": cfg}, optional={"training": _json}), _json))
    else:
        body = data.draw(_json)
    method = spec_paths[path]
    r = client.request(method, path, json=body) if method == "POST" else client.get(path)
    assert r.status_code < 500, (path, body, r.status_code, r.text[:300])


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_schemathesis_fuzz_of_served_openapi_never_5xx(client, mode):
    """schemathesis generates bodies from the served /docs.json (valid OpenAPI 3.0, else it refuses
    the operation) in both modes: schema-conforming and schema-violating. No answer may be a 5xx."""
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.core import NotSet

    schema = schemathesis.openapi.from_dict(client.get("/docs.json").json()).exclude(path="/metrics")
    seen: dict[str, set[int]] = {}
    for result in schema.get_all_operations():
        op = result.ok()
        if mode == "negative" and op.method.upper() != "POST":
            continue  # nothing to violate: the GET endpoints take no parameters

        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
        @given(case=op.as_strategy(generation_mode=GenerationMode(mode)))
        def call(case):
            if isinstance(case.body, NotSet):
                body = None
            else:  # negative mode may send raw bytes, possibly under another media type
                body = case.body if isinstance(case.body, bytes) else json.dumps(case.body)
            media = case.media_type or "application/json"
            r = client.request(case.method, case.formatted_path, content=body, params=case.query or None,
                               headers={"content-type": media} if body is not None else None)
            seen.setdefault(f"{case.method} {case.path}", set()).add(r.status_code)
            assert r.status_code < 500, (case.path, case.body, r.status_code, r.text[:300])

        call()
    assert {"POST /predict", "POST /compare", "POST /predict_batch", "POST /predict_hf_config", "POST /plot"} <= set(seen)


def test_rejected_bodies_log_one_info_line_not_a_traceback(client, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="bentoml._internal.server.http_app"):
        r = client.post("/predict", json={**SMALL, "d_model": 770, "n_heads": 12})
    assert r.status_code == 400
    records = [rec for rec in caplog.records if rec.name == "bentoml._internal.server.http_app"]
    assert records, "BentoML logged nothing for the rejected body"
    assert all(rec.levelno == logging.INFO and rec.exc_info is None for rec in records)
    assert any("rejected request on /predict" in rec.getMessage() and "d_model" in rec.getMessage() for rec in records)


def test_served_openapi_is_3_0_not_json_schema_2020(client):
    doc = client.get("/docs.json").json()
    assert doc["openapi"].startswith("3.0")
    text = json.dumps(doc)
    assert '{"type": "null"}' not in text and '"const"' not in text
    arch = doc["components"]["schemas"]["Architecture"]["properties"]
    assert arch["learning_rate"]["exclusiveMinimum"] is True and arch["learning_rate"]["minimum"] == 0
    assert arch["n_kv_heads"]["nullable"] is True and arch["n_kv_heads"]["type"] == "integer"
    body = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert body["total_steps"]["nullable"] is True and body["d_model"].get("nullable") is None


_SPEC: dict[str, dict[str, str]] = {}


def _spec_paths(client: TestClient) -> dict[str, str]:
    """path -> method for every API path in the service's OpenAPI document (/docs.json)."""
    if "paths" not in _SPEC:
        spec = client.get("/docs.json").json()
        _SPEC["paths"] = {
            path: ("POST" if "post" in item else "GET") for path, item in spec["paths"].items() if path != "/metrics"
        }
        assert {"/predict", "/predict_batch", "/compare", "/plot", "/predict_hf_config", "/model_info"} <= set(_SPEC["paths"])
    return _SPEC["paths"]


# ------------------------------------------------------------------------------------ CLI


def test_cli_predict_native_and_hf(champion_home, tmp_path):
    from click.testing import CliRunner

    from maforecast.cli import root

    native = tmp_path / "arch.json"
    native.write_text(json.dumps(LLAMA_1B))
    hf = tmp_path / "config.json"
    hf.write_text(json.dumps(HF_LLAMA))
    runner = CliRunner()
    r = runner.invoke(root, ["predict", str(native)], env={"COLUMNS": ""})
    assert r.exit_code == 0, r.output
    assert "per layer" in r.output and "precision risk" in r.output and "mitigations" in r.output
    assert "…" not in r.output  # piped output is wide enough: no interval cut to an ellipsis
    r = runner.invoke(root, ["predict", str(hf), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["architecture"]
    from review.inputs import detect_kind

    assert detect_kind(LLAMA_1B) == "native" and detect_kind(HF_LLAMA) == "hf"
    assert detect_kind({"config": HF_LLAMA, "training": {}}) == "hf+training"


@pytest.mark.parametrize(("doc", "named"), [
    ({**{k: v for k, v in SMALL.items() if k != "n_layers"}, "n_layer": 6}, "n_layer"),  # GPT-2's key in a native file
    ({**{k: v for k, v in SMALL.items() if k != "d_model"}, "d_modle": 512}, "d_modle"),
])
def test_cli_names_a_typo_in_a_native_file(tmp_path, doc, named):
    """A native JSON with a misspelt key is read as native and the typo is named (not taken for a GPT-2
    config.json); no predictor is needed to say so."""
    from review.inputs import load_architecture

    path = tmp_path / "arch.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(Exception) as exc:
        load_architecture(path)
    assert named in str(exc.value) and "model_type" not in str(exc.value)


def test_cli_predict_bad_file_is_one_line_error(champion_home, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**LLAMA_1B, "n_heads": 7}))
    proc = subprocess.run(
        [sys.executable, "-m", "maforecast.cli", "predict", str(bad)],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ}, timeout=120,
    )
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "n_heads" in last, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_bootstrap_second_run_changes_nothing(champion_home):
    from pipeline.bootstrap import run

    log: list[str] = []
    changed = run(echo=log.append)
    assert changed is False, log
    assert all("unchanged" in line for line in log), log


def test_bootstrap_announces_new_evidence_and_retrains_only_when_asked(champion_home):
    """New rows in the stats table (as `maforecast collect` or `monitor` add them) do not retrain behind the
    user's back: bootstrap keeps serving the champion and names the command; `--retrain` trains a challenger."""
    import pandas as pd

    from collector import store
    from maforecast.settings import stats_path
    from pipeline.bootstrap import run

    path = stats_path()
    rows = pd.DataFrame([{"model": "my-run", "step": s, "sequence": 0, "layer": k, "top1": 10.0 + s / 100, "median": 1.0,
                          "source": "collector"} for s in (0, 1000) for k in range(2)])
    store.upsert(path, rows)
    log: list[str] = []
    assert run(echo=log.append) is False, log
    assert any("--retrain" in line and "serving version" in line for line in log), log
    assert not any("registered" in line for line in log), log
    log.clear()
    assert run(echo=log.append, retrain=True) is True
    assert any(line.startswith("[2/4] fit:") and "curves fitted" in line for line in log), log
    assert any(line.startswith("[3/4] train: registered") for line in log), log


def test_relog_registers_a_version_with_an_edited_knowledge_base(champion_home, tmp_path):
    """`maforecast relog` re-logs the champion's fitted engine with an edited knowledge base, no refit: the
    new version answers with the edited entries and records the knowledge base's digest."""
    import yaml

    from predictor.architecture import Architecture
    from predictor.knowledge import kb_path
    from registry.loader import load_predictor
    from registry.training import relog

    doc = yaml.safe_load(kb_path().read_text(encoding="utf-8"))
    entry = next(e for e in doc["mitigations"] if e["id"] == "qk_norm")
    entry["name"] = "QK-norm (edited by the team)"
    edited = tmp_path / "kb.yaml"
    edited.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    before = load_predictor()
    version = relog(kb=edited)
    after = load_predictor(f"models:/maforecast-predictor/{version}")
    assert int(version) > int(before.version)
    assert after.info()["knowledge_base_digest"] != before.info()["knowledge_base_digest"]
    assert after.info()["data_digest"] == before.info()["data_digest"]  # the same fitted engine
    arch = Architecture.model_validate(LLAMA_1B)
    names = {m.id: m.name for m in after.answer(arch).mitigations}
    assert names["qk_norm"] == "QK-norm (edited by the team)"
    assert {m.id: m.name for m in before.answer(arch).mitigations}["qk_norm"] != names["qk_norm"]
    bad = tmp_path / "broken.yaml"
    bad.write_text("entries: [", encoding="utf-8")
    with pytest.raises(Exception, match="--knowledge-base"):
        relog(kb=bad)


def test_served_alias_follows_promote_without_a_restart(champion_home, monkeypatch):
    """Issue 26: /model_info kept saying the old version after `promote` until a restart. The service's state
    looks at its alias now and then (off the request path) and swaps in the version it names."""
    import mlflow

    from registry.training import relog
    from service.service import _State

    monkeypatch.setenv("MAFORECAST_RELOAD_S", "0.01")
    state = _State()
    assert state.load()
    old = state.answers.predictor.version
    new = relog()
    mlflow.MlflowClient(tracking_uri=state.tracking_uri).set_registered_model_alias("maforecast-predictor", "champion", new)
    deadline = time.monotonic() + 120
    while state.answers.predictor.version == old and time.monotonic() < deadline:
        time.sleep(0.05)
        state.watch_alias()
    assert state.answers.predictor.version == new != old


def test_bootstrap_champion_has_its_fit_run_lineage(champion_home):
    """bootstrap logs the fit run `maforecast fit` logs, and tags the trained run and version with it."""
    from maforecast.tracking import configure

    client = configure()
    mv = client.get_model_version_by_alias("maforecast-predictor", "champion")
    fit_run = client.get_run(mv.tags["fit_run_id"])
    assert client.get_experiment(fit_run.info.experiment_id).name.endswith("fitting")
    assert {d.dataset.name for d in fit_run.inputs.dataset_inputs} == {"stats", "fits"}
    train_run = client.get_run(mv.run_id)
    assert train_run.data.tags["maforecast.fit_run_id"] == fit_run.info.run_id
    # the same stats table went into both runs
    assert fit_run.data.params["stats_digest"] in {d.dataset.digest for d in fit_run.inputs.dataset_inputs}


# ------------------------------------------------------------------------------------ real server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request_count(metrics: str, endpoint: str, code: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            labels = sample.labels
            if (sample.name.endswith("request_total") and labels.get("endpoint") == endpoint
                    and labels.get("http_response_code") == code):
                total += sample.value
    return total


@pytest.mark.slow
def test_bentoml_serve_real_process(champion_home):
    port = _free_port()
    env = {**os.environ, "MAFORECAST_DATA_HOME": str(champion_home), "BENTOML_DO_NOT_TRACK": "true"}
    from service.cli import serve_command

    log = open(champion_home / "serve.log", "wb")  # noqa: SIM115 (closed below); a pipe could fill up
    proc = subprocess.Popen(
        serve_command("127.0.0.1", port), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        ready = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    ready = True
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert ready, "server did not become ready: " + (champion_home / "serve.log").read_text()[-3000:]
        answers = [httpx.post(f"{base}/predict", json=LLAMA_1B, timeout=30) for _ in range(3)]
        assert all(r.status_code == 200 and len(r.json()["layers"]) == 16 for r in answers)
        assert answers[0].content == answers[1].content == answers[2].content
        assert httpx.post(f"{base}/predict", json={**LLAMA_1B, "n_heads": 7}, timeout=30).status_code == 400
        m = httpx.get(f"{base}/metrics", timeout=10)
        assert m.status_code == 200 and "bentoml_service_request" in m.text
        # every request, repeats included, is counted by BentoML's metrics middleware
        assert _request_count(m.text, "/predict", "200") == 3, m.text[:3000]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_forecast_follows_the_design_through_the_api(client):
    """The acceptance directions of forecast engine v2, asserted on /predict answers."""
    from registry.sensitivity import sensitivity_table

    def post(arch: dict) -> dict:
        r = client.post("/predict?view=full", json=arch)
        assert r.status_code == 200, r.text[:300]
        return r.json()

    t = sensitivity_table(post).set_index("variant")
    assert t.loc["pythia-160m, 10k steps", "agrees"] == "yes"
    assert t.loc["pythia-1.4b", "ratio"] >= 5  # end ratio vs pythia-14m
    assert t.loc["Gemma-3-like", "ratio"] >= 30  # peak |a| vs OLMo-2-like
    assert t.loc["learning rate 3e-3", "agrees"] == "yes"  # emerges earlier than at 3e-4
    short = post(_pythia160m(total_steps=10000))
    assert short["t_end"] == 10000
    for lf in short["layers"]:
        assert lf["ratio_end"]["value"] == lf["ratio_trajectory"][-1]["value"] and lf["ratio_trajectory"][-1]["step"] == 10000
    answer = post({"n_layers": 24, "d_model": 2048, "n_heads": 16, "d_ffn": 8192, "precision_target": "fp8_training"})
    assert 0.0 <= answer["summary"]["p_massive"] <= 1.0
    assert all(r["probability"] is not None and 0.0 <= r["probability"] <= 1.0 for r in answer["precision"])
    assert answer["predictor"]["beats_baseline"] in (True, False) and "constant" in answer["predictor"]["held_out"]
    with_effect = [m for m in answer["mitigations"] if m["effect"]]
    assert with_effect, "mitigations that map onto fields carry a predicted effect"
    for m in with_effect:
        e = m["effect"]
        assert e["applied"] and e["peak_abs_before"]["value"] > 0 and e["peak_abs_after"]["value"] > 0
        assert set(e["risk_before"]) == set(e["risk_after"]) and m["citations"]
    psn = next(m for m in with_effect if m["id"] == "post_sublayer_norm")
    assert psn["effect"]["peak_abs_after"]["value"] < psn["effect"]["peak_abs_before"]["value"]


def _pythia160m(**extra) -> dict:
    from registry.reference import pythia_architectures

    return {**pythia_architectures()["pythia-160m"].model_dump(exclude_none=True), **extra}


# ------------------------------------------------------------------------------------ one answer


def _ranking(answer: dict) -> list[str]:
    return [m["id"] for m in answer["mitigations"]]


def _risk(answer: dict) -> dict[str, tuple]:
    return {r["format"]: (r["at_risk"], r["probability"], r["layers"]) for r in answer["precision"]}


@pytest.mark.slow
def test_mlflow_models_serve_gives_the_whole_answer(champion_home, client, spawn, tmp_path):
    """The registered model is the product: `mlflow models serve` on the champion (a real scoring server,
    run outside the repository so the version's logged code answers) gives the precision risk and the
    mitigation ranking that /predict gives; /nowcast without observations ranks as /predict does; and
    `maforecast predict --json` prints the same answer."""
    from tests.conftest import free_port, wait_http

    port = free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    # as from an activated venv: MLflow's scoring server runs `uvicorn` from PATH
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{champion_home / 'mlflow.db'}", "PYTHONPATH": "",
           "PATH": os.pathsep.join([str(mlflow_bin.parent), os.environ.get("PATH", "")])}
    proc = spawn.start([str(mlflow_bin), "models", "serve", "-m", "models:/maforecast-predictor@champion",
                        "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)], "mlflow-serve",
                       env=env, cwd=tmp_path)
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", 180, proc)
    except (TimeoutError, RuntimeError):
        pytest.fail(spawn.log_tail(proc))
    r = httpx.post(f"http://127.0.0.1:{port}/invocations",
                   json={"dataframe_records": [{"architecture": json.dumps(LLAMA_1B)}]}, timeout=60)
    assert r.status_code == 200, r.text[:2000]
    served = json.loads(r.json()["predictions"][0]["answer"])
    ours = client.post("/predict", json=LLAMA_1B).json()  # both in the default (compact) view
    assert served["view"] == ours["view"] == "compact"
    assert served["predictor"]["version"] == ours["predictor"]["version"] and served["predictor"]["alias"] == "champion"
    assert _ranking(served) == _ranking(ours) and len(_ranking(ours)) >= 3
    assert _risk(served) == _risk(ours)
    assert [m.get("effect") is not None for m in served["mitigations"]] == [m.get("effect") is not None for m in ours["mitigations"]]
    assert any(m.get("effect") for m in served["mitigations"])  # the what-ifs come with the model's answer
    # what /nowcast runs, with no observations yet (the API answers an empty list with a 400 naming it)
    from predictor.architecture import Architecture
    from registry.loader import load_predictor

    nc = json.loads(load_predictor().nowcast(Architecture.model_validate(LLAMA_1B), []).model_dump_json())
    assert _ranking(nc) == _ranking(client.post("/predict?view=full", json=LLAMA_1B).json())  # a nowcast answers in full
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(LLAMA_1B))
    cli = subprocess.run([sys.executable, "-m", "maforecast.cli", "predict", str(arch), "--json"], capture_output=True,
                         text=True, cwd=ROOT, env={**os.environ}, timeout=300)
    assert cli.returncode == 0, cli.stderr[-2000:]
    printed = json.loads(cli.stdout)
    assert _ranking(printed) == _ranking(ours) and _risk(printed) == _risk(ours)
    # an older interface is refused by MLflow's own server too, with the column it expects
    bad = httpx.post(f"http://127.0.0.1:{port}/invocations", json={"dataframe_records": [{"arch": "{}"}]}, timeout=60)
    assert 400 <= bad.status_code < 500, bad.text[:500]


def test_other_code_serves_a_version_while_it_answers_the_same(champion_home, monkeypatch):
    """Issue 26: any edit of predictor/ (a docstring) changed the code digest and made every version unservable.
    Other code serves a version while it answers the golden designs as the version's code did; code that answers
    them differently is refused in one line, naming why."""
    from registry import loader

    monkeypatch.setattr(loader, "code_digest", lambda: "0123456789abcdef")  # as after a docstring edit
    p = loader.load_predictor()
    assert p.answer(loader.Architecture.model_validate(SMALL)).layers
    monkeypatch.setattr(loader, "answer_digest", lambda answerer: "fedcba9876543210")  # a formula changed
    with pytest.raises(loader.NoChampionError) as exc:
        loader.load_predictor()
    msg = str(exc.value)
    assert "answers the golden designs differently" in msg and "fedcba9876543210" in msg and "maforecast bootstrap" in msg
    assert "\n" not in msg


# ------------------------------------------------------------------- design effects (the intervention question)
# the base design of arXiv 2603.05498's ablations (Llama-2-7B shape, its recipe), and the changes it measured
SUN2026 = {"name": "sun2026-base", "n_layers": 32, "d_model": 4096, "n_heads": 32, "d_ffn": 11008, "ffn_type": "glu",
           "activation": "silu", "norm_type": "rmsnorm", "vocab_size": 32000, "seq_len": 4096, "learning_rate": 3e-4,
           "weight_decay": 0.1, "warmup_frac": 0.04, "total_steps": 50000}
OWEN_1B = {"name": "owen-1b", "n_layers": 16, "d_model": 2048, "n_heads": 32, "d_ffn": 5632, "ffn_type": "glu",
           "activation": "silu", "norm_type": "rmsnorm", "training_tokens": 1e11}


def _effect(client, base: dict, change: dict) -> dict:
    r = client.post("/compare", json={"variants": {"base": base, "variant": {**base, **change}}})
    assert r.status_code == 200, r.text[:500]
    return r.json()["differences"][0]["effect"]


@pytest.mark.parametrize(("change", "low", "high", "source"), [
    ({"norm_placement": "sandwich"}, 0, 1, "2603.05498"),  # 3,818 -> 520
    ({"weight_decay": 0.0}, 1, None, "2603.05498"),  # 3,818 -> >12,275
    ({"norm_type": "dyt"}, 0, 1, "2603.05498"),  # 3,818 -> 153
    ({"attention_gate": True}, 0, 1, "2505.06708"),  # 1,053 -> 94 (Qwen-style; here on the Llama base)
])
def test_served_what_ifs_follow_the_controlled_evidence(client, change, low, high, source):
    """Through the served API: each controlled magnitude change of 2603.05498 / 2505.06708 has the measured
    sign, with its own 90 % interval, the evidence kind and the study it rests on."""
    eff = _effect(client, SUN2026, change)
    r = eff["peak_abs_ratio"]
    assert r["value"] > low and (high is None or r["value"] < high), (change, r)
    assert r["lo"] < r["value"] < r["hi"]
    assert eff["evidence"] == "controlled" and any(source in s for s in eff["studies"]), eff
    term = eff["terms"][0]
    assert term["field"] == next(iter(change)) and term["evidence"] == "controlled"


def test_sandwich_what_if_flags_the_association_it_overrules(client):
    """The cross-family association (Gemma's sandwich norm, large values) and the controlled ablation disagree:
    the what-if uses the controlled estimate and says so; /predict of a sandwich design names both."""
    eff = _effect(client, SUN2026, {"norm_placement": "sandwich"})
    term = eff["terms"][0]
    assert eff["disagreement"] and term["disagreement"]
    assert term["association"]["value"] > 1 > term["ratio"]["value"]
    assert "they disagree" in term["text"]
    notes = client.post("/predict", json={**SUN2026, "norm_placement": "sandwich"}).json()["notes"]
    assert any("contradicts" in n and "sandwich" in n and "Sun2026" in n for n in notes), notes


def test_kv_bias_on_a_glu_llama_is_not_a_rise(client):
    """2503.22329: a KV bias on a LLaMA-style 1B (GLU) moved the max 1,416 -> 1,512 (x1.07); on GPT-2 it removes
    massive activations. The served what-if is not a rise beyond x2 (the association alone said x4.7)."""
    eff = _effect(client, OWEN_1B, {"attention_sink": "kv_bias"})
    assert eff["peak_abs_ratio"]["value"] <= 2 and eff["peak_abs_ratio"]["lo"] < 1.07 < eff["peak_abs_ratio"]["hi"]
    assert any("2503.22329" in s for s in eff["studies"])


def test_what_if_interval_is_narrower_than_the_two_absolute_ones(client):
    """The change is known better than the level: its interval (decades) is narrower than either design's own."""
    import math

    r = client.post("/compare", json={"variants": {"base": SUN2026, "dyt": {**SUN2026, "norm_type": "dyt"}}}).json()
    eff = r["differences"][0]["effect"]["peak_abs_ratio"]
    width = math.log10(eff["hi"] / eff["lo"])
    for v in r["variants"]:
        big = v["summary"]["largest_peak_abs"]
        assert width < math.log10(big["hi"] / big["lo"])


def test_mitigation_effects_carry_their_own_interval_and_evidence(client):
    """Every mitigation with a what-if states the ratio with its interval, the evidence kind and the studies; the
    gated-attention entry rests on controlled comparisons and lowers the peak."""
    a = client.post("/predict?view=full", json=SUN2026).json()
    effects = {m["id"]: m["effect"] for m in a["mitigations"] if m["effect"]}
    assert effects
    for e in effects.values():
        assert e["evidence"] in ("controlled", "associational", "both", "time_model", "prior")
        assert e["peak_abs_ratio"]["lo"] <= e["peak_abs_ratio"]["value"] <= e["peak_abs_ratio"]["hi"]
    gate = effects["gated_attention_sdpa"]
    assert gate["evidence"] == "controlled" and gate["peak_abs_ratio"]["hi"] < 1
    assert gate["peak_abs_after"]["value"] < gate["peak_abs_before"]["value"]


LLAMA3_FP8 = {"name": "llama3-8b-like", "n_layers": 32, "d_model": 4096, "n_heads": 32, "n_kv_heads": 8, "d_ffn": 14336,
              "ffn_type": "glu", "activation": "silu", "norm_type": "rmsnorm", "vocab_size": 128256, "seq_len": 8192,
              "rope_theta": 500000, "learning_rate": 3e-4, "batch_tokens": 4_000_000, "total_steps": 250_000,
              "precision": "bf16", "precision_target": "fp8_training"}


def test_effective_follows_the_mitigations_own_what_if(client):
    """Issue 26: for a Llama-3-8B-like FP8 design qk_norm was 'moderate, effective' while its own what-if raised the
    FP8 risk, softmax_plus_one x4.7 up and effective; gated attention was listed twice."""
    a = client.post("/predict?view=full", json=LLAMA3_FP8).json()
    targets = [r["format"] for r in a["precision"] if r["target"]]
    assert targets
    seen = set()
    for m in a["mitigations"]:
        e = m["effect"]
        if e and e["peak_abs_ratio"] is not None:
            worse = e["peak_abs_ratio"]["value"] > 1 or (sum(e["risk_after"][f] for f in targets)
                                                         > sum(e["risk_before"][f] for f in targets) + 1e-9)
            if worse:
                assert not m["effective"], m["id"]
            key = repr(sorted(e["applied"].items()))
            assert key not in seen, f"the same change listed twice ({m['id']})"
            seen.add(key)
    ranks = [m["rank"] for m in a["mitigations"]]
    assert ranks == list(range(1, len(ranks) + 1))
    effective = [m["effective"] for m in a["mitigations"]]
    assert effective == sorted(effective, reverse=True)  # every effective one ranks above every other
    ids = [m["id"] for m in a["mitigations"]]
    assert "gated_attention_sdpa" in ids and "gated_attention_bondarenko" not in ids


@pytest.mark.parametrize(("field", "value"), [("seq_len", 131072), ("rope_theta", 1_000_000.0), ("precision", "fp16")])
def test_compare_of_a_change_nothing_informs_is_not_modelled(client, field, value):
    r = client.post("/compare", json={"variants": {"base": LLAMA3_FP8, "b": {**LLAMA3_FP8, field: value}}})
    assert r.status_code == 200, r.text[:300]
    d = r.json()["differences"][0]
    assert d["effect"]["evidence"] == "not_modelled" and d["effect"]["peak_abs_ratio"] is None
    assert "not modelled" in d["bottom_line"] and d["text"][1] == d["bottom_line"]


def test_compare_gives_one_bottom_line_the_intervention(client):
    r = client.post("/compare", json={"variants": {"base": LLAMA3_FP8,
                                                   "sandwich": {**LLAMA3_FP8, "norm_placement": "sandwich"}}}).json()
    d = r["differences"][0]
    ratio = d["effect"]["peak_abs_ratio"]
    assert ratio["hi"] < 1 and d["bottom_line"].startswith("bottom line: norm_placement pre -> sandwich lowers")
    assert f"x{ratio['value']:.2g}" in d["bottom_line"] and "fp8_e4m3" in d["bottom_line"]
    assert any("not the effect of the change" in t for t in d["text"])


def test_at_risk_is_the_gate_every_door_shares(client):
    """/predict's at_risk is the shared gate (predictor.precision.GATE) that the review's default fail rules read."""
    from predictor.precision import GATE

    a = client.post("/predict", json=LLAMA3_FP8).json()
    for r in a["precision"]:
        checks, threshold = GATE.get(r["format"], ((), 1.0))
        p = max((r["check_probabilities"][c] for c in checks), default=0.0)
        assert r["at_risk"] == (r["format"] in GATE and p > threshold), r["format"]


@pytest.mark.parametrize(("field", "value"), [("norm_type", "dyt"), ("attention_kind", "clipped_softmax"),
                                              ("attention_kind", "softpick"), ("attention_kind", "differential"),
                                              ("norm_gain", "single_scale"), ("attention_sink", "learned_sink")])
def test_new_schema_values_are_answered_and_named(client, field, value):
    r = client.post("/predict", json={**SMALL, field: value})
    assert r.status_code == 200, r.text[:300]
    assert_names(client.post("/predict", json={**SMALL, field: value + "x"}), field)


def test_timing_states_its_calibration_family(client):
    """An OLMo-7B-like design (another family's recipe): the answer names the family the clock is calibrated on
    and how the design departs from it, and the t_emerge interval is wider than the 0.24 decades it claimed before."""
    import math

    olmo = {"name": "olmo-7b-like", "n_layers": 32, "d_model": 4096, "n_heads": 32, "d_ffn": 11008, "ffn_type": "glu",
            "activation": "silu", "norm_type": "layernorm_nonparametric", "learning_rate": 3e-4, "batch_tokens": 4_194_304,
            "training_tokens": 2.46e12}
    a = client.post("/predict", json=olmo).json()
    note = next(n for n in a["notes"] if n.startswith("timing"))
    assert "pythia" in note and "departs" in note and "batch_tokens=4194304" in note
    mid = a["layers"][16]["t_emerge"]
    assert math.log10(mid["hi"] / mid["lo"]) > 0.4


def test_hf_configs_with_the_new_values_map(client):
    """gpt-oss (learned per-head sinks, routed experts) and DiffLlama (differential attention) map onto the schema."""
    from transformers import DiffLlamaConfig, GptOssConfig

    r = client.post("/predict_hf_config", json={"config": GptOssConfig(num_hidden_layers=4).to_dict()})
    assert r.status_code == 200, r.text[:300]
    arch = r.json()["architecture_input"]
    assert arch["attention_sink"] == "learned_sink" and arch["moe_experts"] == 128 and arch["rope_theta"] == 150000.0
    r = client.post("/predict_hf_config", json={"config": DiffLlamaConfig(num_hidden_layers=4).to_dict()})
    assert r.status_code == 200 and r.json()["architecture_input"]["attention_kind"] == "differential"


def test_plan_endpoint_writes_the_file_and_names_bad_fields(client):
    """POST /plan: the answer's precision plan as a tool's file (header: predictor version, architecture digest);
    a format the target does not use, an unknown model type or tool: 400 naming the field."""
    body = {"architecture": {**SUN2026, "precision_target": "fp8_training"}, "tool": "json", "format": "fp8_e4m3"}
    r = client.post("/plan", json=body)
    assert r.status_code == 200, r.text[:300]
    out = r.json()
    assert out["filename"] == "precision_plan.json" and out["format"] == "fp8_e4m3"
    plan = json.loads(out["content"])
    assert "architecture digest" in plan["header"][0] and "version" in plan["header"][1]
    assert plan["plan"]["breaking_checks"] == ["underflow_scaled"]
    assert_names(client.post("/plan", json={**body, "format": "int8_per_tensor"}), "format")
    assert_names(client.post("/plan", json={**body, "model_type": "bert"}), "model_type")
    assert_names(client.post("/plan", json={**body, "tool": "tensorrt"}), "tool")
    assert_names(client.post("/plan", json={**body, "architecture": {**SUN2026, "n_layers": 0}}), "n_layers")


@pytest.mark.parametrize(("field", "value"), [("n_layers", "32"), ("learning_rate", "3e-4"), ("qk_norm", "yes"),
                                              ("qk_norm", 1), ("n_layers", True)])
def test_json_numbers_and_booleans_are_strict_both_ways(client, field, value):
    """Issue 26: "n_layers": "32" was accepted while "qk_norm": "yes" was rejected."""
    assert_names(client.post("/predict", json={**SMALL, field: value}), field)


def test_a_config_json_posted_to_predict_points_to_predict_hf_config(client):
    hf = {"model_type": "llama", "hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32,
          "intermediate_size": 8192, "vocab_size": 128256, "architectures": ["LlamaForCausalLM"]}
    r = client.post("/predict", json=hf)
    assert r.status_code == 400
    assert "/predict_hf_config" in r.json()["error"]
    assert client.post("/predict_hf_config", json={"config": hf}).status_code == 200, "the door it names answers"


def test_a_change_the_forecast_reads_is_never_not_modelled(client):
    """n_layers with a stated parameter count still moves the depth profile: answered, not 'not modelled'."""
    base = {**LLAMA3_FP8, "total_params_B": 8.0}
    d = client.post("/compare", json={"variants": {"base": base, "deep": {**base, "n_layers": 40}}}).json()["differences"][0]
    assert d["effect"]["evidence"] != "not_modelled" and d["effect"]["peak_abs_ratio"] is not None
    same = client.post("/compare", json={"variants": {"base": base, "same": dict(base)}}).json()["differences"][0]
    assert same["bottom_line"].endswith("nothing to compare")


def test_every_layer_says_how_likely_it_emerges_within_the_plan(client):
    """Issue 29 (part): pythia-160m at learning rate 1e-4 answered t_emerge null with no probability."""
    slow = {"name": "p160-lr1e-4", "n_layers": 12, "d_model": 768, "n_heads": 12, "d_ffn": 3072,
            "parallel_attn_mlp": True, "rotary_pct": 0.25, "learning_rate": 1e-4, "total_steps": 143000}
    fast = {**slow, "learning_rate": 3e-4}
    a, b = (client.post("/predict", json=x).json()["layers"] for x in (slow, fast))
    for lyr in a + b:
        p = lyr["p_emerge_within_plan"]
        assert p is not None and 0.0 <= p <= 1.0
        if lyr["t_emerge"] is None:
            assert p < 0.5  # null only where emerging within the plan is the less likely outcome
    assert all(x["p_emerge_within_plan"] >= y["p_emerge_within_plan"] for x, y in zip(b, a, strict=True))
    assert max(x["p_emerge_within_plan"] for x in b) > 0.5
