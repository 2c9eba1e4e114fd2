"""``maforecast train`` and ``maforecast promote``."""

from __future__ import annotations

import click

from maforecast.errors import UserError
from maforecast.settings import get_settings, stats_path


def load_training_stats(reference: bool):
    """The stats table of the data home (or the bundled reference data)."""
    # `maforecast --help` imports every command module: MLflow loads when the command runs
    from maforecast.tables import StatsRow, read_table
    from registry.dataset import reference_stats

    if reference:
        return reference_stats()
    sp = stats_path(get_settings())
    if not sp.exists():
        raise UserError(f"no stats table at {sp}: run `maforecast import-reference` (or use `maforecast train --reference`)")
    return read_table(sp, StatsRow)


@click.command()
@click.option("--reference", is_flag=True, help="Train on the bundled reference data instead of the data home's stats table.")
@click.option("--protocol", type=click.Choice(["seq_mean", "one_sentence", "corpus_max"]), default="seq_mean", show_default=True,
              help="Measurement protocol the served magnitudes refer to.")
@click.option("--cv", "cv", multiple=True, type=click.Choice(["lineage", "model"]), default=("lineage", "model"), show_default=True,
              help="Grouped cross-validation: a new lineage (lineage), a new member of a known lineage (model); the gate uses both.")
@click.option("--protocol-sd", type=click.FloatRange(min=0.01, max=10.0), default=0.2, show_default=True,
              help="Prior sd (decades) of the level model's protocol terms (docs/LEVEL.md): a variant to compare in the UI.")
@click.option("--no-register", is_flag=True, help="Log the run and model but do not register a version.")
def train(reference: bool, protocol: str, protocol_sd: float, cv: tuple[str, ...], no_register: bool) -> None:
    """Evaluate (grouped CV) and train the forecast engine, log an MLflow run, register it as `challenger`."""
    from registry.training import HEADLINE_METRIC, scores_table
    from registry.training import train as train_fn

    stats = load_training_stats(reference)
    res = train_fn(stats, engine_params={"protocol": protocol, "protocol_sd": protocol_sd}, register=not no_register,
                   progress=True, cv=tuple(dict.fromkeys(("lineage", "model", *cv))))
    table = scores_table(res.evaluations)
    cols = ["cv", "target", "protocol", "n_groups", "mae", "constant_mae", "sibling_mae", "coverage_90"]
    click.echo(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    click.echo(f"{HEADLINE_METRIC} = {res.metrics.get(HEADLINE_METRIC, float('nan')):+.4f} (> 0 beats the constant; run {res.run_id})")
    if res.version:
        click.echo(f"registered {get_settings().registered_model} version {res.version} as challenger; "
                   "`maforecast promote` makes it champion if it beats the constant and the champion")


@click.command()
@click.option("--force", is_flag=True, help="Promote even if the challenger is not better.")
def promote(force: bool) -> None:
    """Move alias `champion` to the `challenger` version if it beats the champion."""
    from registry.training import promote as promote_fn

    res = promote_fn(force=force)
    click.echo(res.message)


@click.command(short_help="Register a version again with an edited mitigation knowledge base (no refit).")
@click.option("--knowledge-base", "kb", type=click.Path(dir_okay=False), default=None,
              help="Knowledge-base YAML (default: the bundled maforecast/data/reference/mitigations.yaml).")
@click.option("--version", "version", default=None, help="Version whose fitted engine is reused (default: the champion).")
def relog(kb: str | None, version: str | None) -> None:
    """Register VERSION's fitted engine again with the knowledge base KB, as a new `challenger` version."""
    from registry.training import relog as relog_fn

    new = relog_fn(version, kb)
    click.echo(f"registered {get_settings().registered_model} version {new} as challenger (engine not refitted); "
               "`maforecast promote --force` makes it champion (its held-out scores are the engine's, unchanged)")


@click.command(short_help="Open the MLflow UI on the configured store (runs, registered versions, comparisons).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
def ui(host: str, port: int) -> None:
    """Run `mlflow ui` on the store this data home (or MLFLOW_TRACKING_URI) uses, and print where the
    registered model's page is (MLflow 3 opens on its GenAI view; the link goes straight to the registry)."""
    import os
    import sys
    from pathlib import Path

    # with this command's other imports: only `ui` runs a server
    from maforecast.processes import run_server

    s = get_settings()
    store = s.resolved_tracking_uri
    page = f"/#/models/{s.registered_model}"
    if store.startswith(("http://", "https://")):
        click.echo(f"the tracking server {store} serves the UI itself: open {store.rstrip('/')}{page}")
        return
    exe = Path(sys.executable).with_name("mlflow")
    cmd = [str(exe) if exe.exists() else "mlflow", "ui", "--backend-store-uri", store, "--host", host, "--port", str(port)]
    click.echo(f"MLflow UI on {store}: http://{host}:{port}{page} (Ctrl+C stops it)", err=True)
    # SIGTERM must stop mlflow's uvicorn and job consumers too, not only this process (issue 26)
    rc = run_server(cmd, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    if rc:
        sys.exit(rc)
