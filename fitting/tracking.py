"""Log a fit job to MLflow: fits table (artifact + dataset input), per-model mean R^2, plots."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import mlflow
import pandas as pd

from fitting.batch import summarize
from fitting.plots import save_model_plots
from maforecast import tracking
from maforecast.tables import digest


def _key(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z_\-./ ]", "_", text)


def log_fit_run(stats: pd.DataFrame, fits: pd.DataFrame, params: dict | None = None, plots: bool = True,
                run_name: str | None = None) -> str:
    """One MLflow run per fit job in the 'fitting' experiment; returns the run id."""
    exp = tracking.experiment_id("fitting")
    summary = summarize(fits) if len(fits) else pd.DataFrame()
    with mlflow.start_run(experiment_id=exp, run_name=run_name or "fit") as run:
        mlflow.log_params({"n_series": len(fits), "stats_digest": digest(stats), **(params or {})})
        for name, table, context in (("stats", stats, "input"), ("fits", fits, "output")):
            data = mlflow.data.from_pandas(table.astype(object).where(table.notna(), None), name=name, digest=digest(table))
            tracking.log_dataset(data, context=context, run_id=run.info.run_id)
        usable = fits[fits["status"].isin(["ok", "ill_conditioned"])]
        metrics = {
            "n_fitted": float(len(usable)),
            "ill_conditioned_share": float((fits["status"] == "ill_conditioned").sum() / max(len(usable), 1)),
        }
        if len(usable):
            metrics["mean_r2"] = float(usable["r2"].mean())
            metrics["median_r2"] = float(usable["r2"].median())
        for _, row in summary.iterrows():
            if pd.notna(row["mean_r2"]):
                metrics[_key(f"mean_r2.{row['model']}.{row['metric']}")] = float(row["mean_r2"])
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            fits.to_parquet(tmp / "fits.parquet", index=False)
            fits.to_csv(tmp / "fits.csv", index=False)
            if len(summary):
                summary.to_csv(tmp / "summary.csv", index=False)
            mlflow.log_artifacts(str(tmp), artifact_path="tables")
            if plots and len(fits):
                save_model_plots(stats, fits, tmp / "plots")
                mlflow.log_artifacts(str(tmp / "plots"), artifact_path="plots")
        return run.info.run_id
