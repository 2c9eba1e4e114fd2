"""Shared test fixtures: offline, telemetry off, and a fresh data home with a migrated MLflow DB.

Migrating a SQLite MLflow store takes seconds, so it is done once per session (per xdist
worker) and the file is copied into each test's own data home.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["BENTOML_DO_NOT_TRACK"] = "true"
os.environ["DO_NOT_TRACK"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("MAFORECAST_TRACKING_URI", None)


@pytest.fixture(scope="session")
def migrated_mlflow_db(tmp_path_factory):
    """An empty, fully migrated MLflow SQLite store, created once."""
    import mlflow

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{path}")
    client.search_experiments()  # runs the migrations
    return path


@pytest.fixture
def data_home(tmp_path, monkeypatch, migrated_mlflow_db):
    """A per-test data home (MAFORECAST_DATA_HOME) with its own copy of the migrated store."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(migrated_mlflow_db, home / "mlflow.db")
    monkeypatch.setenv("MAFORECAST_DATA_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    yield home
    if mlflow.active_run():
        mlflow.end_run()


# ------------------------------------------------------------------ real servers (end-to-end tests)
# Every server binds 127.0.0.1 on a free port, is started in its own process group and is killed
# (group-wide) by the fixture's finalizer; every wait is bounded.


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc, timeout: float = 15.0) -> None:
    """SIGTERM the process group, wait up to ``timeout``, then SIGKILL whatever is left of the group.

    The leader may exit while its children (mlflow's job consumers, bentoml workers) linger, so the
    final SIGKILL of the group always happens.
    """
    import contextlib
    import signal
    import subprocess

    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5.0)


def wait_http(url: str, timeout: float, proc=None, ok=(200,)) -> float:
    """Poll ``url`` until it answers one of ``ok``; returns the seconds waited. Bounded."""
    import time

    import httpx

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=2.0).status_code in ok:
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} did not answer {ok} within {timeout:.0f}s")


class Spawner:
    """Starts processes in their own session (process group) and kills them all at teardown."""

    def __init__(self, log_dir):
        self.procs: list = []
        self.log_dir = log_dir

    def start(self, cmd, name: str, **kw):
        import subprocess

        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed at teardown
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, **kw)
        proc.log_path = self.log_dir / f"{name}.log"
        proc.log_file = log
        self.procs.append(proc)
        return proc

    def log_tail(self, proc, n: int = 4000) -> str:
        try:
            return proc.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def close(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc)
            proc.log_file.close()


@pytest.fixture
def spawn(tmp_path):
    sp = Spawner(tmp_path)
    yield sp
    sp.close()


@pytest.fixture(scope="session")
def session_spawn(tmp_path_factory):
    sp = Spawner(tmp_path_factory.mktemp("proc-logs"))
    yield sp
    sp.close()


def postgres_bin() -> str | None:
    """Folder of Debian's PostgreSQL server binaries (initdb, pg_ctl), newest version first."""
    import glob
    import shutil

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: [int(x) for x in p.split("/")[4].split(".") if x.isdigit()])
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(os.path.realpath(initdb)) if initdb else None


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL cluster on 127.0.0.1 (Debian's package), run as user ``postgres``.

    Yields a SQLAlchemy URL (psycopg 3 driver) of an empty database ``mlflow``.
    """
    import shutil
    import subprocess
    import tempfile

    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not installed (`make sysdeps` installs Debian's postgresql)")
    pytest.importorskip("psycopg")
    root = os.geteuid() == 0
    if root:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("no 'postgres' system user to run the cluster as")
    # a folder the server user can reach (pytest's tmp dirs are private to root)
    base = tempfile.mkdtemp(prefix="maforecast-pg-")
    os.chmod(base, 0o755)
    data = os.path.join(base, "data")
    os.mkdir(data, 0o700)
    if root:
        os.chown(base, pw.pw_uid, pw.pw_gid)
        os.chown(data, pw.pw_uid, pw.pw_gid)
    as_user = ["runuser", "-u", "postgres", "--"] if root else []
    port = free_port()
    run = dict(check=True, capture_output=True, timeout=120, cwd=base)
    try:
        subprocess.run([*as_user, f"{bindir}/initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync",
                        "-E", "UTF8", "--locale=C"], **run)
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off -c full_page_writes=off"
        subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", data, "-o", opts, "-l", f"{base}/server.log",
                        "-w", "-t", "60", "start"], **run)
        subprocess.run([*as_user, f"{bindir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                        "mlflow"], **run)
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"starting PostgreSQL failed: {exc.stderr.decode(errors='replace')[-2000:]}") from None
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "-t", "30", "stop"],
                       capture_output=True, timeout=60, cwd=base)
        shutil.rmtree(base, ignore_errors=True)


def start_mlflow_server(spawner: Spawner, backend_uri: str, artifacts: str, name: str = "mlflow-server",
                        timeout: float = 120.0) -> str:
    """``mlflow server`` on 127.0.0.1 serving artifacts from ``artifacts``; returns its URL once healthy."""
    import sys
    from pathlib import Path

    port = free_port()
    exe = Path(sys.executable).with_name("mlflow")
    cmd = [str(exe), "server", "--backend-store-uri", backend_uri, "--serve-artifacts",
           "--artifacts-destination", artifacts, "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    # no server-side job runner: it forks a dozen huey consumers we never use (2 cores)
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = spawner.start(cmd, name, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", timeout, proc)
    except (RuntimeError, TimeoutError) as exc:
        raise RuntimeError(f"{exc}\n{spawner.log_tail(proc)}") from None
    return url


def maforecast_cli(args: list[str], env: dict, timeout: float = 600.0):
    """Run the ``maforecast`` console script as a subprocess; fail with its output on error."""
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("maforecast")
    r = subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=timeout,
                       cwd=Path(__file__).resolve().parent.parent, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise AssertionError(f"maforecast {' '.join(args)} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def server_env(tracking_url: str, home) -> dict:
    """Environment of a client of a tracking server with its own local data home (tables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAFORECAST_", "MLFLOW_TRACKING"))}
    env.update(MLFLOW_TRACKING_URI=tracking_url, MAFORECAST_DATA_HOME=str(home), MLFLOW_DISABLE_TELEMETRY="true",
               BENTOML_DO_NOT_TRACK="true", HF_HUB_OFFLINE="1")
    return env


def run_pipeline(tracking_url: str, home, trains: tuple[tuple[str, ...], ...] = ((),),
                 fit_args: tuple[str, ...] = ()) -> dict:
    """import-reference -> fit -> (train -> promote) per entry of ``trains``, through the CLI."""
    import time

    env = server_env(tracking_url, home)
    out: dict = {"env": env, "home": home, "url": tracking_url, "seconds": {}, "log": []}
    steps = [("import", ["import-reference"]), ("fit", ["fit", *fit_args])]
    for i, extra in enumerate(trains, 1):
        steps += [(f"train{i}", ["train", *extra]), (f"promote{i}", ["promote"])]
    for name, args in steps:
        t0 = time.perf_counter()
        r = maforecast_cli(args, env)
        out["seconds"][name] = round(time.perf_counter() - t0, 1)
        out["log"].append(f"$ maforecast {' '.join(args)}\n{r.stdout.strip()}")
    return out


@pytest.fixture(scope="session")
def sqlite_tracking_server(session_spawn, tmp_path_factory, migrated_mlflow_db):
    """A real ``mlflow server`` (SQLite backend, proxied artifacts) after the whole pipeline ran twice.

    Two predictor versions are registered (the second with another family weighting), so the
    registry, the UI and the service have something to compare.
    """
    import shutil

    base = tmp_path_factory.mktemp("mlflow-server-sqlite")
    shutil.copy(migrated_mlflow_db, base / "mlflow.db")
    url = start_mlflow_server(session_spawn, f"sqlite:///{base / 'mlflow.db'}", str(base / "artifacts"), "mlflow-sqlite")
    home = base / "client-home"
    home.mkdir()
    info = run_pipeline(url, home, trains=((), ("--protocol-sd", "0.5")))
    info["backend"] = f"sqlite:///{base / 'mlflow.db'}"
    info["artifacts"] = base / "artifacts"
    return info


@pytest.fixture(scope="module")
def evidence():
    """The bundled reference evidence (collector + registry.reference)."""
    from collector.reference import load_reference_stats
    from registry.reference import build_evidence, reference_architectures

    return build_evidence(load_reference_stats(), reference_architectures())


@pytest.fixture(scope="module")
def engine(evidence):
    """A ForecastEngine fitted on it with default parameters (a module may override ``engine``)."""
    from predictor.engine import ForecastEngine

    return ForecastEngine().fit(evidence)


def stand_in_posterior(engine, n_layers: int):
    """What ``predictor.nowcast.Posterior`` gives an engine to condition on (``ForecastEngine.conditioned``): the
    prior's curves, uniform trajectory classes, a different Hill exponent, so a test sees what the posterior replaces."""

    class Posterior:
        p_post = 2.5

        def class_probabilities(self):
            return np.full((n_layers, 3), 1 / 3)

        def layer_curves(self, arch, steps, protocol=None, lev=None, tl=None):
            return engine.layer_curves(arch, steps, protocol, lev, tl)

    return Posterior()
