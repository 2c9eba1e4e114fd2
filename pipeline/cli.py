"""``maforecast bootstrap``: the stage commands in order."""

from __future__ import annotations

import click

from pipeline.bootstrap import run


@click.command("bootstrap")
@click.option("--force", is_flag=True, help="Redo every stage even if its inputs did not change.")
@click.option("--quick", is_flag=True, help="Train a small, fast predictor (demos and tests).")
def bootstrap(force: bool, quick: bool) -> None:
    """First run: import reference data, fit curves, train, register and promote a predictor.

    Idempotent: a stage whose inputs did not change since the last run is skipped (and says so).
    """
    changed = run(force=force, echo=click.echo, small=quick)
    click.echo("bootstrap: done" + ("" if changed else " (nothing changed; everything was up to date)"))
