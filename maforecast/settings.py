"""One place for configuration: data home, MLflow store, registry names.

Values come from environment variables prefixed ``MAFORECAST_`` (and the standard
``MLFLOW_TRACKING_URI``), so the CLI, tests, the service and subprocesses agree.
"""

from __future__ import annotations

import logging
import os
from functools import cached_property
from pathlib import Path

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from maforecast.errors import UserError

CHECKOUT = Path(__file__).resolve().parent.parent  # the source checkout, when the package runs from one


def default_data_home() -> Path:
    """Where the data lives unless ``MAFORECAST_DATA_HOME`` says: never the folder a command is run from (a
    review run from a configs folder must find the champion and leave nothing there). In a source checkout
    (``pip install -e .``, what ``make serve`` sets up) its ``.maforecast``; installed as a package, the
    user's data directory (``platformdirs``: ~/.local/share/maforecast on Linux)."""
    if (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / "maforecast" / "settings.py").is_file():
        return CHECKOUT / ".maforecast"
    import platformdirs  # only for an installed package

    return Path(platformdirs.user_data_dir("maforecast", appauthor=False))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MAFORECAST_", extra="ignore", env_ignore_empty=True)

    data_home: Path = Field(default_factory=default_data_home, description="Where tables, the SQLite store and "
                            "artifacts live (default: the checkout's .maforecast, else the user's data directory).")
    tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MAFORECAST_TRACKING_URI", "MLFLOW_TRACKING_URI"),
        description="MLflow tracking URI; default sqlite:///<data_home>/mlflow.db",
    )
    artifact_root: str | None = Field(default=None, description="Artifact location for new experiments; default <data_home>/artifacts")
    registered_model: str = "maforecast-predictor"
    model_alias: str = "champion"
    experiment_prefix: str = "maforecast"
    # the service (``maforecast serve``)
    model_uri: str | None = Field(default=None, description="Any MLflow model URI to serve (overrides alias and version).")
    model_version: str | None = Field(default=None, description="Serve this registered version instead of the alias.")
    reload_s: float = Field(default=15.0, gt=0, description="While no predictor is loaded, first retry after this many seconds.")
    reload_max_s: float = Field(default=120.0, gt=0, description="Cap of the doubling retry interval.")
    forecast_threads: int = Field(default=1, ge=1, description="Threads that compute forecasts off the event loop (1: the work holds the GIL; measured 56 vs 31 distinct forecasts/s at concurrency 8 with 4).")
    workers: int = Field(default=1, ge=1, description="BentoML worker processes: a forecast holds the GIL, so a second "
                         "process is what uses a second core (each holds its own model, ~350 MB, and loads it on its own).")
    access_log: bool = Field(default=True, description="BentoML's per-request access log.")
    trace_excluded: str = Field(default="readyz,livez,healthz,metrics,predict", description="URLs tracing skips.")
    # Hugging Face hub access (the standard variable, read here so every stage agrees)
    hf_hub_offline: bool = Field(default=False, validation_alias=AliasChoices("HF_HUB_OFFLINE"),
                                 description="No hub access: hub sources and probe sets fail with a clear error.")

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
    """Fresh settings each call: environment changes (tests, subprocesses) are honoured.

    A variable that does not parse is a ``UserError`` naming it (one line from the CLI, not a traceback).
    """
    try:
        return Settings()
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err.get("loc") else "?"
        var = name if name.isupper() else f"MAFORECAST_{name.upper()}"
        raise UserError(f"environment variable {var}={err.get('input')!r}: {err['msg']}") from None


def quiet_telemetry() -> None:
    """Switch off third-party telemetry (we never want it from this tool) and the progress bars MLflow
    draws for every artifact download, which flood non-interactive logs (``make serve``)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow's INFO lines ("Validating input example", "Updating database tables") say nothing a user acts on
    logging.getLogger("mlflow").setLevel(logging.WARNING)


def stats_path(settings: Settings | None = None) -> Path:
    """The stats table the collector and importers append to."""
    return (settings or get_settings()).tables_dir / "stats.parquet"


def architectures_path(settings: Settings | None = None) -> Path:
    """The architectures of the runs a user measured (``maforecast.architectures``): how they join the evidence."""
    return (settings or get_settings()).tables_dir / "architectures.json"


def fits_path(settings: Settings | None = None) -> Path:
    """The fits table written by ``maforecast fit``."""
    return (settings or get_settings()).tables_dir / "fits.parquet"
