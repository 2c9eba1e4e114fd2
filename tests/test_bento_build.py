"""`bentoml build` works here from bentofile.yaml, and the Bento's own source tree can serve.

The build once failed only because bentofile.yaml named a README that had been renamed; nothing
else noticed. This builds into a throwaway BENTOML_HOME and imports the service from the Bento.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bentoml_build_and_import_from_the_bento(tmp_path):
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    exe = Path(sys.executable).with_name("bentoml")
    r = subprocess.run([str(exe), "build", "--output", "tag"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    bentos = list((tmp_path / "bentoml" / "bentos" / "maforecast").glob("*/bento.yaml"))
    assert len(bentos) == 1, r.stdout[-2000:]
    bento = bentos[0].parent
    src = bento / "src"
    for rel in ("service/service.py", "registry/loader.py", "predictor/pyfunc.py", "review/report.py",
                "maforecast/data/reference/mitigations.yaml", "maforecast/data/reference/PROVENANCE.md"):
        assert (src / rel).is_file(), rel
    assert not (src / "tests").exists() and not (src / ".venv").exists()
    requirements = (bento / "env" / "python" / "requirements.txt").read_text()
    assert "bentoml==1.4.39" in requirements and "mlflow==3.17.2" in requirements and "torch" not in requirements
    # the Bento's source alone is enough to build the service (no import from the checkout)
    code = ("import sys, service.service as s; "
            "assert s.__file__.startswith(sys.argv[1]), s.__file__; print(s.MAForecast.name)")
    imp = subprocess.run([sys.executable, "-c", code, str(src)], cwd=src, env={**env, "PYTHONPATH": str(src)},
                         capture_output=True, text=True, timeout=300)
    assert imp.returncode == 0 and imp.stdout.strip().endswith("maforecast"), imp.stderr[-3000:]
