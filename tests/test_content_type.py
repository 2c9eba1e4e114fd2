"""A POST whose Content-Type is not JSON gets a 4xx naming it, never a 500 (issue 11, part 6).

BentoML hands ``multipart/form-data`` to its form parser and answers that parser's errors (no
boundary) with a 500; ``service.errors.content_type_error`` refuses such requests first.
In process (``TestClient``, no predictor needed: the check runs before the endpoint) and, marked
slow, against a real ``maforecast serve`` with a champion, under schemathesis' examples, coverage
and fuzzing phases with the ``not_a_server_error`` check.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from service.errors import content_type_error

POSTS = ("/predict", "/predict_batch", "/compare", "/predict_hf_config", "/plot")
UNSUPPORTED = (
    "multipart/form-data",
    "multipart/form-data; boundary=xyz",
    "application/x-www-form-urlencoded",
    "text/plain",
    "application/xml",
    "application/vnd.bentoml+pickle",
)
MALFORMED = ("garbage", "/json", "application/", "appli cation/json")


def _scope(content_type: str | None) -> dict:
    headers = [] if content_type is None else [(b"content-type", content_type.encode("latin-1"))]
    return {"type": "http", "method": "POST", "headers": headers}


@pytest.mark.parametrize("ct", [None, "", "application/json", "Application/JSON", "application/json; charset=utf-8"])
def test_json_or_absent_content_type_passes(ct):
    assert content_type_error(_scope(ct)) is None


@pytest.mark.parametrize("ct", UNSUPPORTED)
def test_unsupported_content_type_is_415_naming_it(ct):
    status, message = content_type_error(_scope(ct))
    assert status == 415 and repr(ct) in message and "application/json" in message


@pytest.mark.parametrize("ct", MALFORMED)
def test_malformed_content_type_is_400_naming_it(ct):
    status, message = content_type_error(_scope(ct))
    assert status == 400 and repr(ct) in message


@pytest.fixture
def client(data_home):
    """The real BentoML app in process, over an empty data home (no predictor: answers 503)."""
    from service.service import asgi_app

    with TestClient(asgi_app(), raise_server_exceptions=False) as c:
        yield c


def test_every_post_endpoint_refuses_other_content_types(client):
    for path in POSTS:
        for ct in (*UNSUPPORTED, *MALFORMED):
            r = client.post(path, content=b"{}", headers={"content-type": ct})
            assert r.status_code == (400 if ct in MALFORMED else 415), (path, ct, r.status_code, r.text[:300])
            body = r.json()
            assert ct in body["error"] and body["fields"] == ["Content-Type"], (path, ct, body)
        # JSON (or no header) still reaches BentoML: field errors for a bad body, 503 for a good one
        assert client.post(path, content=b"{}", headers={"content-type": "application/json; charset=utf-8"}).status_code == 400
        assert client.post(path, content=b"{}").status_code == 400
    ok = client.post("/predict", json={"n_layers": 2, "d_model": 64, "n_heads": 4, "d_ffn": 256})
    assert ok.status_code == 503  # passed the check; no predictor in this home
    assert client.get("/livez").status_code == 200  # GETs are not checked


@pytest.mark.slow
def test_schemathesis_all_phases_find_no_server_error(spawn, tmp_path, migrated_mlflow_db):
    """The whole API as schemathesis sees it (it found the multipart 500 in its coverage phase)."""
    from conftest import free_port, maforecast_cli, wait_http

    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(migrated_mlflow_db, home / "mlflow.db")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAFORECAST_", "MLFLOW_TRACKING"))}
    env.update(MAFORECAST_DATA_HOME=str(home), MLFLOW_DISABLE_TELEMETRY="true", BENTOML_DO_NOT_TRACK="true",
               HF_HUB_OFFLINE="1")
    maforecast_cli(["bootstrap"], env)
    port = free_port()
    exe = Path(sys.executable).with_name("maforecast")
    proc = spawn.start([str(exe), "serve", "--host", "127.0.0.1", "--port", str(port)], "serve", env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/readyz", 120, proc)
    except (RuntimeError, TimeoutError) as exc:
        raise AssertionError(f"{exc}\n{spawn.log_tail(proc)}") from None
    import httpx

    r = httpx.post(f"{base}/predict", content=b"{}", headers={"content-type": "multipart/form-data"}, timeout=30)
    assert r.status_code == 415 and "multipart/form-data" in r.json()["error"]
    st = Path(sys.executable).with_name("schemathesis")
    run = subprocess.run(
        [str(st), "run", f"{base}/docs.json", "--checks", "not_a_server_error", "--phases", "examples,coverage,fuzzing",
         "-n", "10", "--exclude-path", "/metrics", "--generation-deterministic", "--suppress-health-check", "all",
         "--no-color"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "Coverage" in run.stdout and "Fuzzing" in run.stdout
