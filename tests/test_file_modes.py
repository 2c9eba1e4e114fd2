"""Output files (plans, review reports) are readable as the umask allows, like any file ``open()`` creates
(issue 26): ``write_text_atomic``'s temp file used to keep ``tempfile.mkstemp``'s 0600, so CI artifacts
and shared report pages could not be read. Checked in process and through ``maforecast plan --out``.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from review_helpers import champion_home

from maforecast.files import write_text_atomic

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"name": "small", "n_layers": 6, "d_model": 512, "n_heads": 8, "d_ffn": 2048}


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o027, 0o640), (0o002, 0o664)],
                         ids=["022", "077", "027", "002"])
def test_written_file_follows_the_umask(tmp_path, mask, expected):
    path = tmp_path / "report.html"
    with umask(mask):
        write_text_atomic(path, "<html></html>")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")  # what a plain open() gives under the same umask
    assert mode(path) == expected == mode(plain)
    assert path.read_text() == "<html></html>" and sorted(p.name for p in tmp_path.iterdir()) == ["plain.txt", "report.html"]


def test_rewrite_takes_the_umask_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "plan.json"
    with umask(0o077):
        write_text_atomic(path, "old")
    with umask(0o022):
        write_text_atomic(path, "new")
    assert path.read_text() == "new" and mode(path) == 0o644 and [p.name for p in tmp_path.iterdir()] == ["plan.json"]


@pytest.mark.slow
@pytest.mark.xdist_group("review")  # shares the champion that tests/test_review.py builds once per worker
def test_plan_out_is_0644_under_umask_022(tmp_path_factory, migrated_mlflow_db, tmp_path):
    """Through the real door: ``maforecast plan CONFIG --out FILE`` in a subprocess started under umask 022."""
    home = champion_home(tmp_path_factory, migrated_mlflow_db)
    config = tmp_path / "small.json"
    config.write_text(json.dumps(SMALL))
    out = tmp_path / "plan.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAFORECAST_", "MLFLOW_TRACKING"))}
    env.update(MAFORECAST_DATA_HOME=str(home), MLFLOW_DISABLE_TELEMETRY="true", BENTOML_DO_NOT_TRACK="true",
               HF_HUB_OFFLINE="1")
    exe = Path(sys.executable).with_name("maforecast")
    argv = [str(exe), "plan", str(config), "--tool", "json", "--target", "fp8_training", "--format", "fp8_e4m3",
            "--out", str(out)]
    with umask(0o022):  # inherited by the child
        r = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"wrote {out}" in r.stderr and json.loads(out.read_text())["plan"]["format"] == "fp8_e4m3"
    assert mode(out) == 0o644, oct(mode(out))
