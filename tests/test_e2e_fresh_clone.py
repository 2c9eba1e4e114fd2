"""The README's two commands from a fresh clone: ``make serve`` (twice) and ``make test``.

``git clone`` of this repository's HEAD into a temp dir (so uncommitted changes are not part of
it), then, with bounded timeouts:

1. ``make serve MAFORECAST_PORT=<free port>`` in the background: a new venv, the install, the
   bootstrap from the bundled data and the API; poll ``/readyz``, POST ``/predict``, stop it.
2. ``make serve`` again: reuses the venv, the bootstrap changes nothing and says so; ready fast.
3. ``make test PYTEST_ARGS="tests/test_fitting.py"``: the test command itself works from a fresh
   clone (a subset, so the suite does not recurse into itself).

pip's cache and the configured indexes are reused, so the install takes a few minutes. The
timings are printed (run with ``-s`` to see them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from conftest import free_port, stop_process, wait_http

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e-fresh-clone")]

ROOT = Path(__file__).resolve().parent.parent
ARCH = {"name": "neox-400m", "n_layers": 24, "d_model": 1024, "n_heads": 16, "d_ffn": 4096, "total_steps": 143000}


def clean_env(port: int) -> dict:
    """The environment of a newcomer's shell: none of this session's venv, store or pytest state."""
    drop = ("MAFORECAST_", "MLFLOW_TRACKING", "PYTEST_", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "COV_CORE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    bindir = str(Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and p != bindir)
    env["MAFORECAST_PORT"] = str(port)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def serve_once(spawn, clone: Path, port: int, name: str, timeout: float) -> dict:
    """``make serve`` in the background until /readyz, one POST /predict, then stop it."""
    t0 = time.monotonic()
    proc = spawn.start(["make", "serve", f"MAFORECAST_PORT={port}"], name, cwd=clone, env=clean_env(port))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/readyz", timeout, proc)
        ready = time.monotonic() - t0
        t1 = time.perf_counter()
        r = httpx.post(f"{base}/predict", json=ARCH, timeout=60)
        first = time.perf_counter() - t1
        assert r.status_code == 200, r.text[:500]
        answer = r.json()
        assert answer["predictor"]["alias"] == "champion" and len(answer["layers"]) == ARCH["n_layers"]
    except (RuntimeError, TimeoutError) as exc:
        raise AssertionError(f"make serve: {exc}\n{spawn.log_tail(proc, 6000)}") from None
    finally:
        stop_process(proc, timeout=30)
    log = spawn.log_tail(proc, 200_000)
    return {"ready_s": round(ready, 1), "first_request_ms": round(first * 1e3, 1), "log": log}


def test_fresh_clone_make_serve_twice_and_make_test(tmp_path, spawn):
    if not shutil.which("make") or not shutil.which("git"):
        pytest.skip("make and git are needed")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)], check=True, timeout=120,
                   capture_output=True)
    assert not (clone / ".venv").exists() and not (clone / ".maforecast").exists()

    first = serve_once(spawn, clone, free_port(), "make-serve-1", timeout=1500)
    assert "bootstrap: done" in first["log"] and "[4/4] promote: promoted version 1" in first["log"], first["log"][-3000:]
    assert (clone / ".venv" / "bin" / "maforecast").exists()

    second = serve_once(spawn, clone, free_port(), "make-serve-2", timeout=300)
    log2 = second["log"]
    assert "nothing changed; everything was up to date" in log2, log2[-3000:]
    assert "pip install" not in log2 and "unchanged" in log2
    print(f"\nfresh clone make serve: ready in {first['ready_s']}s, first /predict {first['first_request_ms']} ms; "
          f"second make serve: ready in {second['ready_s']}s, first /predict {second['first_request_ms']} ms")
    assert second["ready_s"] < 120, second["ready_s"]

    t0 = time.monotonic()
    r = subprocess.run(["make", "test", "PYTEST_ARGS=tests/test_fitting.py"], cwd=clone, env=clean_env(free_port()),
                       capture_output=True, text=True, timeout=1200, stdin=subprocess.DEVNULL)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-5000:]
    assert " passed" in out and " failed" not in out, out[-3000:]
    print(f"fresh clone make test (tests/test_fitting.py): {time.monotonic() - t0:.0f}s")
