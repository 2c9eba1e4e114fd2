"""``maforecast train`` and ``maforecast promote``."""

from __future__ import annotations

import click

from maforecast.errors import UserError
from maforecast.settings import fits_path, get_settings, stats_path


def load_training_inputs(reference: bool):
    """(fits, stats) from the data home, or fitted on the fly from the bundled reference data."""
    import pandas as pd

    from maforecast.tables import FitRow, StatsRow, read_table
    from predictor.dataset import final_model_stats, fits_from_stats, reference_stats

    s = get_settings()
    if reference:
        stats = reference_stats()
        return fits_from_stats(stats[stats["step"].notna()]), stats
    fp, sp = fits_path(s), stats_path(s)
    if not sp.exists():
        raise UserError(f"no stats table at {sp}: run `maforecast import-reference` (or use `maforecast train --reference`)")
    stats = read_table(sp, StatsRow)
    if fp.exists():
        fits = read_table(fp, FitRow)
    else:
        raise UserError(f"no fits table at {fp}: run `maforecast fit` first (or use `maforecast train --reference`)")
    if not stats["step"].isna().any():  # add the bundled steady-state rows when the table has none
        stats = pd.concat([stats, final_model_stats()], ignore_index=True)
    return fits, stats


@click.command()
@click.option("--reference", is_flag=True, help="Train on the bundled reference data (fitted on the fly).")
@click.option("--learners", default="mean,hier_mean", show_default=True,
              help="Candidate learners, chosen by nested grouped CV (also: hier_size, hier_ridge, hier_knn, ridge, rf, gbm, lgbm).")
@click.option("--n-estimators", default=100, show_default=True, type=click.IntRange(5, 5000))
@click.option("--no-register", is_flag=True, help="Log the run and model but do not register a version.")
def train(reference: bool, learners: str, n_estimators: int, no_register: bool) -> None:
    """Train the predictor, log an MLflow run and register a new version as `challenger`."""
    from predictor.model import LEARNERS
    from predictor.registry import HEADLINE_METRIC, scores_table
    from predictor.registry import train as train_fn

    names = tuple(x.strip() for x in learners.split(",") if x.strip())
    bad = [n for n in names if n not in LEARNERS]
    if bad or not names:
        raise UserError(f"unknown learner(s) {', '.join(bad) or '(none)'}; choose from {', '.join(LEARNERS)}")
    fits, stats = load_training_inputs(reference)
    res = train_fn(fits, stats, learners=names, n_estimators=n_estimators, register=not no_register)
    table = scores_table(res.bundle)
    cols = ["target", "learner", "n_models", "n_rows", "lomo_r2", "baseline_lomo_r2", "random_r2"]
    click.echo(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    click.echo(f"{HEADLINE_METRIC} = {res.metrics.get(HEADLINE_METRIC, float('nan')):.4f}  (run {res.run_id})")
    if res.version:
        click.echo(f"registered {get_settings().registered_model} version {res.version} as challenger; "
                   "`maforecast promote` makes it champion if it is better")


@click.command()
@click.option("--force", is_flag=True, help="Promote even if the challenger is not better.")
def promote(force: bool) -> None:
    """Move alias `champion` to the `challenger` version if it beats the champion."""
    from predictor.registry import promote as promote_fn

    res = promote_fn(force=force)
    click.echo(res.message)
