"""``maforecast bootstrap``: the stage commands in order."""

from __future__ import annotations

import click

from pipeline.bootstrap import run


@click.command("bootstrap")
@click.option("--force", is_flag=True, help="Redo every stage even if its inputs did not change.")
@click.option("--retrain", is_flag=True, help="Fit and train a challenger on new evidence (by default a servable "
              "champion keeps serving and new evidence is only announced).")
def bootstrap(force: bool, retrain: bool) -> None:
    """First run: import reference data, fit curves, train, register and promote a predictor.

    Idempotent: a stage whose inputs did not change since the last run is skipped (and says so).
    A champion logged with another model interface or predictor code is replaced (upgrading a data home).
    """
    changed = run(force=force, echo=click.echo, retrain=retrain)
    click.echo("bootstrap: done" + ("" if changed else " (nothing changed; everything was up to date)"))
