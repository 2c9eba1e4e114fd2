"""SIGTERM (systemd, Docker, CI) or Ctrl+C stops ``maforecast serve`` and ``maforecast ui`` with their servers
(issue 26): the server used to keep answering on its port after the ``maforecast`` process died.

Each server is started for real through the console script; only the ``maforecast`` process is signalled,
as systemd or Docker would (the test's own process group is never signalled), and within 10 s it must have
exited of that signal, its port must refuse connections and no process of its server may run.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from conftest import free_port, wait_http
from review_helpers import champion_home

ROOT = Path(__file__).resolve().parent.parent
STOP_WITHIN_S = 10.0


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAFORECAST_", "MLFLOW_TRACKING"))}
    env.update(MAFORECAST_DATA_HOME=str(home), MLFLOW_DISABLE_TELEMETRY="true", BENTOML_DO_NOT_TRACK="true",
               HF_HUB_OFFLINE="1")
    return env


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _running(procs: list[psutil.Process]) -> list[str]:
    alive = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{p.pid} {' '.join(p.cmdline()[:4])}")
        except psutil.Error:
            continue
    return alive


def _stop_and_check(spawn, proc, port: int, sig: int = signal.SIGTERM) -> float:
    """Signal the ``maforecast`` process only; assert it, its port and its server are gone within 10 s."""
    server = psutil.Process(proc.pid).children(recursive=True)
    assert server, "maforecast started no server process"
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        rc = proc.wait(timeout=STOP_WITHIN_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"maforecast still running {STOP_WITHIN_S:.0f}s after {sig!r}:\n{spawn.log_tail(proc)}") from None
    while _port_open(port) and time.monotonic() - t0 < STOP_WITHIN_S:
        time.sleep(0.1)
    took = time.monotonic() - t0
    assert not _port_open(port), f"port {port} still answers {took:.1f}s after {sig!r}:\n{spawn.log_tail(proc)}"
    assert rc == -sig, (rc, spawn.log_tail(proc))  # died of the signal, as systemd and shells expect
    assert not _running(server), _running(server)
    print(f"{sig!r}: exited, port free and server gone after {took:.1f}s")
    return took


@pytest.mark.slow
@pytest.mark.xdist_group("review")  # shares the champion that tests/test_review.py builds once per worker
def test_sigterm_stops_serve_and_frees_its_port(spawn, tmp_path_factory, migrated_mlflow_db):
    home = champion_home(tmp_path_factory, migrated_mlflow_db)
    port = free_port()
    exe = Path(sys.executable).with_name("maforecast")
    proc = spawn.start([str(exe), "serve", "--host", "127.0.0.1", "--port", str(port)], "serve", env=_env(home), cwd=ROOT)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", 180, proc)
    except (RuntimeError, TimeoutError) as exc:
        raise AssertionError(f"{exc}\n{spawn.log_tail(proc)}") from None
    _stop_and_check(spawn, proc, port)


@pytest.mark.slow
@pytest.mark.xdist_group("e2e-server")
def test_sigterm_stops_ui_and_its_job_consumers(spawn, data_home):
    """``mlflow ui`` runs uvicorn and a dozen job consumers: all of them stop."""
    port = free_port()
    exe = Path(sys.executable).with_name("maforecast")
    proc = spawn.start([str(exe), "ui", "--port", str(port)], "ui", env=_env(data_home), cwd=ROOT)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 180, proc)
    except (RuntimeError, TimeoutError) as exc:
        raise AssertionError(f"{exc}\n{spawn.log_tail(proc)}") from None
    _stop_and_check(spawn, proc, port)


FAKE_SERVER = textwrap.dedent("""
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # a worker in its own session that ignores SIGTERM too (BentoML's workers call setsid)
    listen = "import signal, socket, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " \\
             "s = socket.create_server(('127.0.0.1', int(sys.argv[1]))); print('listening', flush=True); time.sleep(600)"
    subprocess.Popen([sys.executable, "-c", "import sys; " + listen, sys.argv[1]], start_new_session=True)
    time.sleep(600)
""")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_server_that_ignores_the_signal_is_killed_after_the_grace(spawn, tmp_path, sig):
    """``maforecast.processes.run_server`` (behind serve and ui) SIGKILLs every process of a server still running after its grace,
    also one that left the process group."""
    script = tmp_path / "fake_server.py"
    script.write_text(FAKE_SERVER)
    port = free_port()
    runner = ("import os, sys; from maforecast.processes import run_server; "
              f"sys.exit(run_server([sys.executable, {str(script)!r}, {str(port)!r}], env=dict(os.environ), grace=1.0))")
    proc = spawn.start([sys.executable, "-c", runner], "runner", cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 60
    while not _port_open(port):
        assert proc.poll() is None and time.monotonic() < deadline, spawn.log_tail(proc)
        time.sleep(0.1)
    took = _stop_and_check(spawn, proc, port, sig)
    assert 1.0 <= took < 5.0 and "killing it" in spawn.log_tail(proc), (took, spawn.log_tail(proc))
