"""MLflow conventions: explicit tracking URI, per-stage experiments with explicit artifact locations."""

from __future__ import annotations

import warnings
from pathlib import Path

import mlflow
import tenacity
from mlflow.tracking import MlflowClient

from maforecast.settings import Settings, get_settings, quiet_telemetry

EXPERIMENTS = {"collection": "collection", "fitting": "fitting", "predictor": "predictor-training"}


def configure(settings: Settings | None = None) -> MlflowClient:
    """Point MLflow at the configured store (never the current directory) and return a client."""
    quiet_telemetry()
    s = settings or get_settings()
    uri = s.resolved_tracking_uri
    ensure_store(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


_READY: set[str] = set()


def ensure_store(uri: str) -> None:
    """Create or migrate a SQLite store once, under a file lock next to the database.

    MLflow creates a missing SQLite store (all tables, via alembic) on first use, in whichever
    process gets there first. Several processes starting on one new data home each see missing
    tables and each run the migrations; the losers die with alembic or "table already exists"
    errors. Under the lock the first process creates the store; the others wait, then find it
    complete. Other stores (a tracking server, PostgreSQL) are created by whoever runs them.
    """
    if uri in _READY or not uri.startswith("sqlite:///"):
        return
    from maforecast.tables import locked

    db = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
    db.parent.mkdir(parents=True, exist_ok=True)
    with locked(db):
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.search_experiments(max_results=1)  # tracking tables: created/migrated here
        client.search_registered_models(max_results=1)  # registry store: verified on the same db
    _READY.add(uri)


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


def _transient(exc: Exception, unique_too: bool) -> bool:
    text = str(exc)
    if "database is locked" in text:
        return True
    return unique_too and any(m in text for m in ("UNIQUE constraint failed", "duplicate key value", "UniqueViolation"))


def retry_store(fn, *args, attempts: int = 8, unique_too: bool = False, **kwargs):
    """Call a store operation, retrying with jittered exponential backoff on transient contention.

    A SQLite store reports 'database is locked' while another process writes. With ``unique_too``
    a unique-constraint failure is retried as well, for check-then-insert operations that are
    safe to repeat (the second attempt finds the row a concurrent writer committed).
    """
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_random_exponential(multiplier=0.05, max=2.0),
        # MlflowException or sqlalchemy errors, depending on the layer
        retry=tenacity.retry_if_exception(lambda exc: _transient(exc, unique_too)),
        reraise=True,
    )
    return retrying(fn, *args, **kwargs)


def log_dataset(dataset, context: str, tags: dict[str, str] | None = None, run_id: str | None = None,
                client: MlflowClient | None = None, attempts: int = 8) -> None:
    """Link a dataset to a run, safe when concurrent runs log the same dataset.

    MLflow's store looks a dataset up by (experiment, name, digest) and inserts it if absent, in one
    transaction; two runs logging the same data at once both miss it and the second insert fails the
    unique constraint. Retrying finds the row the other run committed and only adds the link.
    """
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    run_id = run_id or mlflow.active_run().info.run_id
    client = client or MlflowClient()
    input_tags = [InputTag(MLFLOW_DATASET_CONTEXT, context), *(InputTag(k, str(v)) for k, v in (tags or {}).items())]
    # the dataset's schema is inferred here; it documents the table and never enforces model input, so
    # MLflow's "integer columns cannot hold missing values" hint is noise
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        entry = DatasetInput(dataset._to_mlflow_entity(), tags=input_tags)
    retry_store(client.log_inputs, run_id, datasets=[entry], attempts=attempts, unique_too=True)
