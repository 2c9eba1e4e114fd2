"""One place for configuration: data home, MLflow store, registry names.

Values come from environment variables prefixed ``MAFORECAST_`` (and the standard
``MLFLOW_TRACKING_URI``), so the CLI, tests, the service and subprocesses agree.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MAFORECAST_", extra="ignore")

    data_home: Path = Field(default=Path(".maforecast"), description="Where tables, the SQLite store and artifacts live.")
    tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MAFORECAST_TRACKING_URI", "MLFLOW_TRACKING_URI"),
        description="MLflow tracking URI; default sqlite:///<data_home>/mlflow.db",
    )
    artifact_root: str | None = Field(default=None, description="Artifact location for new experiments; default <data_home>/artifacts")
    registered_model: str = "maforecast-predictor"
    model_alias: str = "champion"
    experiment_prefix: str = "maforecast"

    @cached_property
    def home(self) -> Path:
        p = self.data_home.expanduser().resolve()
        p.mkdir(parents=True, exist_ok=True)
        return p

    @property
    def resolved_tracking_uri(self) -> str:
        return self.tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def uses_tracking_server(self) -> bool:
        """True for an ``http(s)://`` tracking URI (a shared ``mlflow server``)."""
        return self.resolved_tracking_uri.split(":", 1)[0].lower() in ("http", "https")

    @property
    def resolved_artifact_root(self) -> str | None:
        """Artifact root for new experiments; None lets a tracking server choose.

        Against a shared ``mlflow server`` a path on this machine would be useless to the other
        clients, so unless ``MAFORECAST_ARTIFACT_ROOT`` says otherwise the server's own default
        (``--artifacts-destination`` behind ``mlflow-artifacts:/``, or ``--default-artifact-root``)
        is used.
        """
        if self.artifact_root:
            return self.artifact_root
        if self.uses_tracking_server:
            return None
        return (self.home / "artifacts").resolve().as_uri()

    def experiment_artifact_location(self, experiment: str) -> str | None:
        root = self.resolved_artifact_root
        return f"{root.rstrip('/')}/{experiment}" if root else None

    @property
    def tables_dir(self) -> Path:
        p = self.home / "tables"
        p.mkdir(parents=True, exist_ok=True)
        return p


def get_settings() -> Settings:
    """Fresh settings each call: environment changes (tests, subprocesses) are honoured."""
    return Settings()


def quiet_telemetry() -> None:
    """Switch off third-party telemetry; we never want it from this tool."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")


def stats_path(settings: Settings | None = None) -> Path:
    """The stats table the collector and importers append to."""
    return (settings or get_settings()).tables_dir / "stats.parquet"


def fits_path(settings: Settings | None = None) -> Path:
    """The fits table written by ``maforecast fit``."""
    return (settings or get_settings()).tables_dir / "fits.parquet"
