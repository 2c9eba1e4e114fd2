"""End to end: collect a tiny local series, fit it with ``maforecast fit``, read the fits back from MLflow."""

from __future__ import annotations

import pandas as pd
import pytest

pytest.importorskip("fitting.batch")


def test_collect_then_fit_reads_fits_from_mlflow(data_home, tmp_path, capsys):
    import mlflow
    from collector_helpers import LONG_STEPS, PROBE_TEXT, build_long_series
    from mlflow.tracking import MlflowClient

    from maforecast.cli import main
    from maforecast.settings import stats_path
    from maforecast.tables import FitRow, StatsRow, conform, read_table, stats_with_ratio

    root = build_long_series()
    probe = tmp_path / "probe.txt"
    probe.write_text(PROBE_TEXT)
    main(["collect", str(root), "--probe", str(probe), "--n-sequences", "4", "--seq-len", "16", "--no-progress"])
    stats = read_table(stats_path(), StatsRow)
    assert sorted(stats["step"].unique()) == list(LONG_STEPS)
    assert len(stats_with_ratio(stats)) == len(LONG_STEPS) * 2

    capsys.readouterr()
    main(["fit", "--stats", str(stats_path()), "--jobs", "1", "--no-plots"])
    assert "logged MLflow run" in capsys.readouterr().out

    client = MlflowClient()
    exp = client.get_experiment_by_name("maforecast-fitting")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    local = mlflow.artifacts.download_artifacts(run_id=runs[0].info.run_id, artifact_path="tables/fits.parquet", dst_path=str(tmp_path))
    fits = conform(pd.read_parquet(local), FitRow)
    assert set(fits["model"]) == {"tiny-neox-long"}
    assert sorted(fits["layer"].unique()) == [0, 1]
    assert set(fits["metric"]) == {"ratio", "top1", "median"}
    assert (fits["n_points"] == len(LONG_STEPS)).all()
    assert fits["status"].notna().all()
    assert fits["status"].isin(["ok", "ill_conditioned"]).any()
