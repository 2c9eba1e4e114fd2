"""Concurrent writers of one data home: no row lost, no traceback (issue 11, store safety).

The stats and fits tables are rewritten whole (read, merge, rename), so every writer holds the
table's file lock (``maforecast.tables.locked``) from the read to the rename; a new SQLite MLflow
store is created under a lock next to the database (``maforecast.tracking.ensure_store``).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from collector import store
from maforecast.tables import StatsRow, TableError, locked, read_table

N_WORKERS, N_UPSERTS, N_ROWS = 8, 5, 20


def _rows(worker: int, k: int) -> pd.DataFrame:
    return pd.DataFrame({
        "model": f"m{worker}", "step": k, "sequence": 0, "layer": range(N_ROWS), "top1": 2.0, "median": 1.0,
        "revision": f"step{k}", "probe_digest": "d", "source": "test",
    })


def _upsert_worker(path: str, worker: int, barrier, errors) -> None:
    barrier.wait()
    for k in range(N_UPSERTS):
        try:
            store.upsert(Path(path), _rows(worker, k))
        except Exception as exc:  # reported to the parent, which fails the test
            errors.put(f"worker {worker}: {type(exc).__name__}: {exc}")


def test_concurrent_upserts_keep_every_row(tmp_path):
    """8 processes x 5 upserts of 20 rows on disjoint keys, started together: all 800 rows present.

    Without the lock the same run keeps 100-140 of the 800 rows and raises in 10-16 upserts
    (they rename each other's shared temp file away).
    """
    path = tmp_path / "stats.parquet"
    ctx = mp.get_context("fork")
    barrier, errors = ctx.Barrier(N_WORKERS), ctx.Queue()
    procs = [ctx.Process(target=_upsert_worker, args=(str(path), w, barrier, errors)) for w in range(N_WORKERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert all(p.exitcode == 0 for p in procs)
    failed = []
    while not errors.empty():
        failed.append(errors.get())
    assert not failed, failed
    table = read_table(path, StatsRow)
    assert len(table) == N_WORKERS * N_UPSERTS * N_ROWS
    assert table.groupby("model").size().to_dict() == {f"m{w}": N_UPSERTS * N_ROWS for w in range(N_WORKERS)}


def _rewrite_until(path: str, stop) -> None:
    from maforecast.tables import write_table

    base, i = read_table(path, StatsRow), 0
    while not stop.is_set():
        i += 1  # a table of another size each time: the new file's pages differ from the old one's
        write_table(base.sample(frac=0.4 + (i % 6) / 10, replace=True, random_state=i), path, StatsRow)


def test_reads_without_the_lock_never_see_a_mix_of_two_files(tmp_path):
    """Readers do not take the lock (a collector's summary, the predictor's import); a writer renames its new
    table over the path meanwhile. Read by path, pyarrow opened the file twice and mixed one file's footer
    with the other's pages ("Page was smaller than expected"; 4 errors in the first 83 reads here, and a
    traceback in the collectors' test below); read through one open file, 400 reads see whole tables."""
    path = tmp_path / "stats.parquet"
    store.upsert(path, pd.concat([_rows(w, k) for w in range(10) for k in range(10)], ignore_index=True))
    ctx = mp.get_context("fork")
    stop = ctx.Event()
    writer = ctx.Process(target=_rewrite_until, args=(str(path), stop))
    writer.start()
    try:
        sizes = {len(read_table(path, StatsRow)) for _ in range(400)}
    finally:
        stop.set()
        writer.join(timeout=60)
    assert writer.exitcode == 0 and len(sizes) > 1  # the table did change under the reads


def _hold(path: str, ready, release) -> None:
    with locked(path):
        ready.set()
        release.wait(30)


def test_lock_is_reentrant_and_times_out_naming_the_lock(tmp_path):
    path = tmp_path / "fits.parquet"
    with locked(path), locked(path):  # re-entrant within a process (upsert holds it around write_table)
        pass
    ctx = mp.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(path), ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(TableError, match=r"\.fits\.parquet\.lock"), locked(path, timeout=0.2):
            pass
    finally:
        release.set()
        holder.join(30)
    with locked(path, timeout=5):  # released by the holder
        pass


# ------------------------------------------------------------------------------ real commands


def _env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAFORECAST_", "MLFLOW_TRACKING"))}
    env.update(MAFORECAST_DATA_HOME=str(home), HF_HUB_OFFLINE="1", MLFLOW_DISABLE_TELEMETRY="true",
               BENTOML_DO_NOT_TRACK="true", TOKENIZERS_PARALLELISM="false")
    return env


def _run_concurrently(commands: list[list[str]], home: Path, logs: Path, timeout: float = 300.0) -> list[str]:
    """Start every ``maforecast`` command at once; return their stderr after all exited 0."""
    exe = Path(sys.executable).with_name("maforecast")
    procs = []
    for i, args in enumerate(commands):
        err = open(logs / f"cmd{i}.err", "w+")  # noqa: SIM115 - closed below
        out = open(logs / f"cmd{i}.out", "w+")  # noqa: SIM115
        procs.append((args, subprocess.Popen([str(exe), *args], env=_env(home), stdout=out, stderr=err,
                                             stdin=subprocess.DEVNULL, start_new_session=True), out, err))
    deadline = time.monotonic() + timeout
    stderrs = []
    try:
        for args, proc, out, err in procs:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            out.seek(0)
            err.seek(0)
            text = err.read()
            assert proc.returncode == 0, f"maforecast {' '.join(args)} exited {proc.returncode}:\n{out.read()[-2000:]}\n{text[-3000:]}"
            assert "Traceback" not in text, f"maforecast {' '.join(args)}:\n{text[-3000:]}"
            stderrs.append(text)
    finally:
        for _, proc, out, err in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
            out.close()
            err.close()
    return stderrs


SERIES = ("s1", "s2", "s3")
N_SEQ = 3


def _collects(series) -> list[list[str]]:
    return [["collect", str(series["neox"]), "--name", name, "--probe", str(series["probe"]), "--n-sequences",
             str(N_SEQ), "--seq-len", "12", "--batch-size", "3", "--no-progress"] for name in SERIES]


def _check(home: Path, expected_other: dict[str, int]) -> None:
    from mlflow.tracking import MlflowClient

    table = read_table(home / "tables" / "stats.parquet", StatsRow)
    per_series = 3 * N_SEQ * 3  # 3 checkpoints x probe windows x 3 layers of tiny-neox
    counts = table.groupby("source").size().to_dict()
    collected = table[table["source"] == "collector"].groupby("model").size().to_dict()
    assert collected == dict.fromkeys(SERIES, per_series)
    for source, n in expected_other.items():
        assert counts.get(source) == n, (source, counts)
    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("maforecast-collection")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`maforecast.stage` = 'collection'")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert sorted(r.data.tags["maforecast.model"] for r in parents) == list(SERIES)
    assert all(r.info.status == "FINISHED" for r in runs)


@pytest.fixture(scope="module")
def series():
    from collector_helpers import build_series

    return build_series()


@pytest.mark.slow
def test_collectors_and_reference_import_on_a_fresh_home(series, tmp_path):
    """A data home with no tables and no MLflow store: all four commands create them at once."""
    from collector import reference

    home = tmp_path / "home"
    logs = tmp_path / "logs"
    logs.mkdir()
    _run_concurrently([*_collects(series), ["import-reference"]], home, logs)
    _check(home, {
        reference.PYTHIA_SOURCE: len(reference.load_pythia_stats()),
        reference.FINAL_SOURCE: len(reference.load_final_model_stats(bos=None)) + len(reference.load_final_model_seq_mean_stats()),
    })


@pytest.mark.slow
def test_collectors_and_published_import_on_an_existing_home(series, tmp_path, migrated_mlflow_db):
    """A data home with a migrated store and a stats table: concurrent writers keep the old rows too."""
    import shutil

    from test_reference_data import _write_published

    from collector.published import SOURCE
    home = tmp_path / "home"
    (home / "tables").mkdir(parents=True)
    shutil.copy(migrated_mlflow_db, home / "mlflow.db")
    old = pd.concat([_rows(w, k) for w in range(3) for k in range(2)], ignore_index=True)
    store.upsert(home / "tables" / "stats.parquet", old)
    _write_published(tmp_path / "published", True)
    logs = tmp_path / "logs"
    logs.mkdir()
    _run_concurrently([*_collects(series), ["import-published", str(tmp_path / "published")]], home, logs)
    _check(home, {"test": len(old), SOURCE: 3 * 3 * 6})
    assert len(pd.read_parquet(home / "tables" / "published_fits.parquet")) == 6


def test_output_files_are_written_whole(tmp_path):
    """`maforecast plan --out` and `maforecast review --html/--json/--junit` write through write_text_atomic:
    threads writing one file leave one writer's whole text and no temp file; a failed write keeps the old file."""
    from concurrent.futures import ThreadPoolExecutor

    from maforecast.files import write_text_atomic

    path = tmp_path / "plan.json"
    texts = [str(i) * 200_000 for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda t: write_text_atomic(path, t), texts))
    assert path.read_text() in texts and [p.name for p in tmp_path.iterdir()] == ["plan.json"]
    with pytest.raises(TypeError):
        write_text_atomic(path, 12345)  # not text: the write fails after the temp file exists
    assert path.read_text() in texts and [p.name for p in tmp_path.iterdir()] == ["plan.json"]
