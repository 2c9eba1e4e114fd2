"""`maforecast fit` end to end: fits table, MLflow run with metrics, dataset inputs and plots."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
from mlflow.tracking import MlflowClient

from maforecast.tables import FitRow, read_table


def _run_cli(*args, env_home):
    import os

    env = {**os.environ, "MAFORECAST_DATA_HOME": str(env_home)}
    return subprocess.run([sys.executable, "-m", "maforecast.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def test_fit_cli_logs_table_metrics_and_plots(data_home):
    res = _run_cli("fit", "--metrics", "ratio,top1", "--jobs", "2", env_home=data_home)
    assert res.returncode == 0, res.stderr
    fits = read_table(data_home / "tables" / "fits.parquet", FitRow)
    assert set(fits["metric"]) == {"ratio", "top1"}
    client = MlflowClient(tracking_uri=f"sqlite:///{data_home / 'mlflow.db'}")
    exp = client.get_experiment_by_name("maforecast-fitting")
    assert exp is not None and exp.artifact_location.startswith((data_home / "artifacts").as_uri())
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.data.metrics["mean_r2.pythia-160m.ratio"] > 0.98
    assert "median_r2" in run.data.metrics
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "tables")}
    assert {"tables/fits.parquet", "tables/fits.csv"} <= arts
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/pythia-1b_ratio.png" in plots
    local = client.download_artifacts(run.info.run_id, "tables/fits.parquet", str(data_home / "dl"))
    pd.testing.assert_frame_equal(read_table(local, FitRow), fits)
    inputs = {d.dataset.name for d in run.inputs.dataset_inputs}
    assert {"stats", "fits"} <= inputs


def test_fit_cli_errors_are_one_line(data_home, tmp_path):
    res = _run_cli("fit", "--metrics", "ratio,bogus", "--no-mlflow", env_home=data_home)
    assert res.returncode == 2
    assert "bogus" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = _run_cli("fit", "--stats", str(tmp_path / "nope.parquet"), env_home=data_home)
    assert res.returncode == 2 and "not found" in res.stderr and "Traceback" not in res.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("model,step\nx,1\n")
    res = _run_cli("fit", "--stats", str(bad), env_home=data_home)
    assert res.returncode == 2 and "sequence" in res.stderr and "Traceback" not in res.stderr


def test_fit_killed_mid_batch_resumes_without_loss_or_duplicates(data_home, tmp_path):
    """SIGKILL `maforecast fit` after some chunks are saved; the rerun completes the table."""
    import os
    import signal
    import time

    import numpy as np

    from fitting.batch import fit_table
    from fitting.curves import eq9
    from maforecast.tables import StatsRow, conform, write_table

    steps = np.unique(np.concatenate([[0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512], np.linspace(1000, 143000, 19)]))
    rng = np.random.default_rng(0)
    frames = []
    for m in range(30):
        for layer in range(8):
            y = eq9(steps, A=50 + m, lam=0.05, gamma=0.002 * (1 + layer / 10), t0=1.0, K=10.0)
            frames.append(pd.DataFrame({"model": f"m{m}", "step": steps.astype(int), "sequence": 0, "layer": layer,
                                        "top1": y + 0.3 * rng.standard_normal(y.size), "median": 1.0, "source": "t"}))
    stats = conform(pd.concat(frames, ignore_index=True), StatsRow)
    stats_file = write_table(stats, tmp_path / "stats.parquet", StatsRow)
    out = tmp_path / "fits.parquet"
    env = {**os.environ, "MAFORECAST_DATA_HOME": str(data_home)}
    cmd = [sys.executable, "-m", "maforecast.cli", "fit", "--stats", str(stats_file), "--out", str(out), "--jobs", "1",
           "--metrics", "top1", "--no-mlflow"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    parts = []
    while time.time() < deadline and proc.poll() is None:
        parts = list(tmp_path.glob(".fit-parts-*/part-*.parquet"))
        if len(parts) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "fit finished before it could be killed; make the batch larger"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not out.exists()
    saved = sum(len(pd.read_parquet(p)) for p in tmp_path.glob(".fit-parts-*/part-*.parquet"))
    assert 0 < saved < 240
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "resuming" in res.stdout
    fits = read_table(out, FitRow)
    assert len(fits) == 240
    assert not fits.duplicated(["model", "layer", "metric"]).any()
    assert not list(tmp_path.glob(".fit-parts-*"))  # cleaned up once complete
    fresh = fit_table(stats, metrics=("top1",), n_jobs=1, progress=False)
    pd.testing.assert_frame_equal(fits, fresh)
