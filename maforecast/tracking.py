"""MLflow conventions: explicit tracking URI, per-stage experiments with explicit artifact locations."""

from __future__ import annotations

import mlflow
from mlflow.tracking import MlflowClient

from maforecast.settings import Settings, get_settings, quiet_telemetry

EXPERIMENTS = {"collection": "collection", "fitting": "fitting", "predictor": "predictor-training"}


def configure(settings: Settings | None = None) -> MlflowClient:
    """Point MLflow at the configured store (never the current directory) and return a client."""
    quiet_telemetry()
    s = settings or get_settings()
    uri = s.resolved_tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(stage: str, settings: Settings | None = None) -> str:
    """Get or create the experiment of a stage with an explicit artifact location."""
    s = settings or get_settings()
    client = configure(s)
    name = f"{s.experiment_prefix}-{EXPERIMENTS.get(stage, stage)}"
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=s.experiment_artifact_location(name))
    except mlflow.exceptions.MlflowException:
        # created concurrently by another process
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id
