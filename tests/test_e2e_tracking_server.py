"""Shared tracking server mode, end to end, with real processes only.

A real ``mlflow server`` on 127.0.0.1 (SQLite backend, and PostgreSQL from Debian's package in a
throwaway cluster) with proxied artifacts (``--serve-artifacts --artifacts-destination``); the
whole pipeline runs through the ``maforecast`` CLI as subprocesses (import-reference -> fit ->
train -> promote) with ``MLFLOW_TRACKING_URI=http://127.0.0.1:<port>``, and the service loads its
champion from that server. Concurrent ``maforecast train`` runs against the server and against a
SQLite file must leave the registry consistent.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import maforecast_cli, run_pipeline, server_env, start_mlflow_server
from starlette.testclient import TestClient

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e-server")]

MODEL = "maforecast-predictor"
NEOX = {"name": "neox-400m", "n_layers": 24, "d_model": 1024, "n_heads": 16, "d_ffn": 4096, "total_steps": 143000}


def _client(url: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=url, registry_uri=url)


def _versions(url: str) -> dict[str, object]:
    return {str(mv.version): mv for mv in _client(url).search_model_versions(f"name='{MODEL}'")}


def _alias(url: str, alias: str) -> str:
    return str(_client(url).get_model_version_by_alias(MODEL, alias).version)


def _service_answers(monkeypatch, tmp_path: Path, url: str) -> dict:
    """The in-process service, with an empty local data home, loads the champion from ``url``."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MAFORECAST_DATA_HOME", str(tmp_path / "service-home"))
    for var in ("MAFORECAST_TRACKING_URI", "MAFORECAST_MODEL_URI", "MAFORECAST_MODEL_VERSION", "MAFORECAST_MODEL_ALIAS"):
        monkeypatch.delenv(var, raising=False)
    from service.service import asgi_app

    with TestClient(asgi_app(), raise_server_exceptions=False) as c:
        assert c.get("/readyz").status_code == 200, c.get("/model_info").text
        info = c.get("/model_info").json()
        r = c.post("/predict", json=NEOX)
        assert r.status_code == 200, r.text[:500]
        return {"info": info, "answer": r.json()}


def _assert_pipeline_state(url: str, n_versions: int) -> None:
    versions = _versions(url)
    assert sorted(versions, key=int) == [str(i) for i in range(1, n_versions + 1)]
    assert _alias(url, "challenger") == str(n_versions)
    champion = _alias(url, "champion")
    assert champion in versions
    client = _client(url)
    for mv in versions.values():
        assert mv.tags.get("data_digest") and mv.tags.get("headline_skill"), mv.tags
        run = client.get_run(mv.run_id)
        assert run.info.status == "FINISHED"
        # artifacts went through the server (proxied), not into a client-side folder
        assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri


def test_pipeline_against_sqlite_mlflow_server(sqlite_tracking_server, monkeypatch, tmp_path):
    info = sqlite_tracking_server
    url = info["url"]
    _assert_pipeline_state(url, 2)
    # the artifacts live under the server's --artifacts-destination; the client wrote none locally
    assert any(info["artifacts"].rglob("MLmodel"))
    assert not (info["home"] / "artifacts").exists()
    assert (info["home"] / "tables" / "fits.parquet").exists()
    print("pipeline seconds (sqlite server):", info["seconds"])

    from registry.loader import load_predictor

    fc = load_predictor(tracking_uri=url)
    assert fc.version == _alias(url, "champion") and fc.alias == "champion"

    got = _service_answers(monkeypatch, tmp_path, url)
    assert got["info"]["tracking_uri"] == url, got["info"]
    assert got["answer"]["predictor"]["version"] == fc.version
    assert got["answer"]["predictor"]["alias"] == "champion"
    assert len(got["answer"]["layers"]) == NEOX["n_layers"]


def test_pipeline_against_postgres_mlflow_server(postgres_url, spawn, tmp_path, monkeypatch):
    url = start_mlflow_server(spawn, postgres_url, str(tmp_path / "artifacts"), "mlflow-postgres", timeout=180)
    home = tmp_path / "client-home"
    home.mkdir()
    info = run_pipeline(url, home, trains=((),), fit_args=("--no-plots",))
    print("pipeline seconds (postgres server):", info["seconds"])
    _assert_pipeline_state(url, 1)
    assert _alias(url, "champion") == "1"
    got = _service_answers(monkeypatch, tmp_path, url)
    assert got["answer"]["predictor"]["version"] == "1"

    # the rows are really in PostgreSQL
    import psycopg

    with psycopg.connect(postgres_url.replace("postgresql+psycopg", "postgresql")) as con:
        names = [r[0] for r in con.execute("SELECT name FROM registered_models")]
        versions = con.execute("SELECT count(*) FROM model_versions WHERE name = %s", (MODEL,)).fetchone()[0]
    assert names == [MODEL] and versions == 1


# ------------------------------------------------------------------ concurrent `maforecast train`

VERSION_RE = re.compile(rf"registered {MODEL} version (\d+) as challenger")


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """Stats and fits tables of the bundled reference data (no MLflow run), to train from."""
    home = tmp_path_factory.mktemp("tables-home")
    env = server_env(f"sqlite:///{home / 'unused.db'}", home)
    maforecast_cli(["import-reference"], env)
    maforecast_cli(["fit", "--no-mlflow", "--no-plots"], env)
    return home / "tables"


def _concurrent_trains(env: dict, n: int = 3, timeout: float = 420.0) -> list[str]:
    """Start ``n`` ``maforecast train`` processes at once on one store; return their versions."""
    exe = Path(sys.executable).with_name("maforecast")
    cmd = [str(exe), "train", "--cv", "lineage"]
    root = Path(__file__).resolve().parent.parent
    procs = [subprocess.Popen(cmd, env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True) for _ in range(n)]
    deadline = time.monotonic() + timeout
    versions = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert p.returncode == 0, f"train exited {p.returncode}:\n{out[-2000:]}\n{err[-3000:]}"
            m = VERSION_RE.search(out)
            assert m, out[-2000:]
            versions.append(m.group(1))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    return versions


def _assert_registry_consistent(url: str, before: set[str], new: list[str]) -> None:
    versions = _versions(url)
    assert len(set(new)) == len(new), f"duplicate versions {new}"
    assert set(versions) == before | set(new), (sorted(versions), before, new)
    run_ids = [versions[v].run_id for v in new]
    assert len(set(run_ids)) == len(run_ids), "two versions point at one run"
    client = _client(url)
    for v in new:
        mv = versions[v]
        assert mv.status == "READY"
        assert mv.tags.get("run_id") == mv.run_id and mv.tags.get("data_digest"), mv.tags
        assert client.get_run(mv.run_id).info.status == "FINISHED"
    # the challenger alias names the newest version, whatever order the runs finished in
    assert _alias(url, "challenger") == max(versions, key=int), (_alias(url, "challenger"), sorted(versions, key=int))


def test_concurrent_train_on_mlflow_server(tables, spawn, tmp_path, migrated_mlflow_db):
    shutil.copy(migrated_mlflow_db, tmp_path / "mlflow.db")
    url = start_mlflow_server(spawn, f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "artifacts"), "mlflow-conc")
    home = tmp_path / "home"
    shutil.copytree(tables, home / "tables")
    t0 = time.perf_counter()
    new = _concurrent_trains(server_env(url, home))
    print(f"3 concurrent trains against the server: {time.perf_counter() - t0:.1f}s, versions {new}")
    _assert_registry_consistent(url, set(), new)


def test_concurrent_train_on_sqlite_file(tables, data_home):
    shutil.copytree(tables, data_home / "tables")
    env = server_env(f"sqlite:///{data_home / 'mlflow.db'}", data_home)
    t0 = time.perf_counter()
    new = _concurrent_trains(env)
    print(f"3 concurrent trains on one SQLite file: {time.perf_counter() - t0:.1f}s, versions {new}")
    _assert_registry_consistent(f"sqlite:///{data_home / 'mlflow.db'}", set(), new)
