"""Shared test fixtures: offline, telemetry off, and a fresh data home with a migrated MLflow DB.

Migrating a SQLite MLflow store takes seconds, so it is done once per session (per xdist
worker) and the file is copied into each test's own data home.
"""

from __future__ import annotations

import os
import shutil

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
