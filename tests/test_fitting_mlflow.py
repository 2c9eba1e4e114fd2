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
