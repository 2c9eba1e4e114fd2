"""``maforecast serve``: run the REST API (``bentoml serve service.service:MAForecast``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from maforecast.processes import run_server
from maforecast.settings import get_settings


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="MAFORECAST_HOST", help="Bind address (0.0.0.0 in a container).")
@click.option("--port", default=3000, show_default=True, type=click.IntRange(1, 65535), envvar="MAFORECAST_PORT")
@click.option("--workers", default=None, type=click.IntRange(1, 64), help="Worker processes (default 1; 2 on 2 cores doubles new forecasts/s).")
@click.option("--model-uri", default=None, help="MLflow model URI to serve (overrides alias/version).")
@click.option("--alias", default=None, help="Registry alias to serve (default champion).")
@click.option("--version", "version", default=None, help="Registry version to serve instead of an alias.")
def serve(host: str, port: int, workers: int | None, model_uri: str | None, alias: str | None, version: str | None) -> None:
    """Run the REST API (BentoML). Ready once a predictor is loaded; see GET /model_info."""
    env = dict(os.environ)
    if model_uri:
        env["MAFORECAST_MODEL_URI"] = model_uri
    if alias:
        env["MAFORECAST_MODEL_ALIAS"] = alias
    if version:
        env["MAFORECAST_MODEL_VERSION"] = version
    if workers:
        env["MAFORECAST_WORKERS"] = str(workers)
    env.setdefault("BENTOML_DO_NOT_TRACK", "true")
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # resolve the store now so the server and this shell agree even if the server's cwd differs
    s = get_settings()
    env.setdefault("MAFORECAST_DATA_HOME", str(s.home))
    # here, not at the top: `maforecast --help` imports this module, and the loader imports MLflow
    from registry.loader import resolve_model_uri

    cmd = serve_command(host, port)
    click.echo(f"serving {resolve_model_uri(model_uri, alias, version)} from {s.resolved_tracking_uri} on http://{host}:{port}", err=True)
    rc = run_server(cmd, env=env, cwd=project_root())
    if rc:
        sys.exit(rc)


def project_root() -> str:
    return str(Path(__file__).resolve().parent.parent)


def serve_command(host: str, port: int) -> list[str]:
    bentoml = Path(sys.executable).with_name("bentoml")
    head = [str(bentoml)] if bentoml.exists() else [sys.executable, "-m", "bentoml"]
    return [*head, "serve", "service.service:MAForecast", "--host", host, "--port", str(port)]
