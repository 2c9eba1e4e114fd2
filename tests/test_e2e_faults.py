"""Service faults: tracking server down at startup (backoff, not ready until it can load) and
down while serving (forecasts keep working from the loaded model). Real processes only."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import free_port, server_env, stop_process, wait_http

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e-server")]

ARCH = {"name": "fault-160m", "n_layers": 12, "d_model": 768, "n_heads": 12, "d_ffn": 3072, "total_steps": 143000}


def test_tracking_server_down_at_start_then_up_then_down(sqlite_tracking_server, spawn, tmp_path):
    from service.cli import project_root, serve_command

    # a copy of the registry the shared server holds (same proxied artifact folder)
    backend = tmp_path / "mlflow.db"
    shutil.copy(Path(sqlite_tracking_server["backend"].removeprefix("sqlite:///")), backend)
    mlflow_port, port = free_port(), free_port()
    tracking = f"http://127.0.0.1:{mlflow_port}"
    env = {**server_env(tracking, tmp_path / "service-home"), "MAFORECAST_RELOAD_S": "1", "MAFORECAST_RELOAD_MAX_S": "4"}
    service = spawn.start(serve_command("127.0.0.1", port), "bentoml-serve", env=env, cwd=project_root())
    base = f"http://127.0.0.1:{port}"

    # 1. nothing listens on the tracking port: the process lives, is not ready, and says why
    wait_http(f"{base}/livez", 240, service)
    for _ in range(3):
        assert httpx.get(f"{base}/readyz", timeout=10).status_code != 200
        time.sleep(1)
    info = httpx.get(f"{base}/model_info", timeout=10)
    assert info.status_code == 503 and tracking in info.text
    # the version exists, the server is down: say so (not "run maforecast bootstrap")
    assert "does not answer" in info.json()["error"] and "bootstrap" not in info.json()["error"], info.text
    deadline = time.monotonic() + 30
    while "service not ready" not in spawn.log_tail(service, 20000) and time.monotonic() < deadline:
        time.sleep(0.5)
    log = spawn.log_tail(service, 20000)
    assert "service not ready" in log and "retrying in" in log, log[-3000:]
    assert httpx.post(f"{base}/predict", json=ARCH, timeout=30).status_code == 503

    # 2. the tracking server comes up: the backoff retry loads the champion, /readyz turns 200
    exe = Path(sys.executable).with_name("mlflow")
    mlflow_proc = spawn.start(
        [str(exe), "server", "--backend-store-uri", f"sqlite:///{backend}", "--serve-artifacts",
         "--artifacts-destination", str(sqlite_tracking_server["artifacts"]), "--host", "127.0.0.1",
         "--port", str(mlflow_port), "--workers", "1"],
        "mlflow-late",
        env={**{k: v for k, v in env.items() if k != "MLFLOW_TRACKING_URI"}, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    wait_http(f"{tracking}/health", 120, mlflow_proc)
    waited = wait_http(f"{base}/readyz", 120, service)
    r = httpx.post(f"{base}/predict", json=ARCH, timeout=120)
    assert r.status_code == 200, r.text
    print(f"ready {waited:.1f}s after the tracking server came up")

    # 3. the tracking server goes down while serving: forecasts still work (a new, uncached body)
    stop_process(mlflow_proc)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{tracking}/health", timeout=3)
    r2 = httpx.post(f"{base}/predict", json={**ARCH, "name": "other", "d_model": 1024, "n_heads": 16}, timeout=120)
    assert r2.status_code == 200, r2.text
    assert r2.json()["predictor"]["version"] == r.json()["predictor"]["version"]
    assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200
