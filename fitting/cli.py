"""``maforecast fit``: fit every series of a stats table and log the job to MLflow."""

from __future__ import annotations

from pathlib import Path

import click

from maforecast.settings import fits_path, stats_path
from maforecast.tables import METRICS, digest


@click.command("fit", short_help="Fit the Eq. 9 emergence curve to every (model, layer, metric) series.")
@click.option("--stats", "stats_file", type=click.Path(path_type=Path), default=None,
              help="Stats table (parquet/CSV). Default: the data home's table, or the bundled reference data.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Fits table to write (default: data home).")
@click.option("--metrics", default=",".join(METRICS), show_default=True, help="Comma-separated metrics to fit.")
@click.option("--jobs", type=int, default=None, help="Worker processes (default: all cores).")
@click.option("--t-end", type=float, default=None, help="Planned end of training for derived quantities.")
@click.option("--plots/--no-plots", default=True, show_default=True, help="Log per-model PNG plots.")
@click.option("--mlflow/--no-mlflow", "use_mlflow", default=True, show_default=True)
def fit(stats_file: Path | None, out: Path | None, metrics: str, jobs: int | None, t_end: float | None,
        plots: bool, use_mlflow: bool) -> None:
    """Fit the Eq. 9 emergence curve to every (model, layer, metric) series."""
    from fitting.batch import fit_table, summarize

    # `maforecast --help` imports every command module: the stage loads when the command runs
    from maforecast.errors import UserError
    from maforecast.tables import FitRow, StatsRow, locked, read_table, write_table

    chosen = tuple(m.strip() for m in metrics.split(",") if m.strip())
    bad = [m for m in chosen if m not in METRICS]
    if bad or not chosen:
        raise UserError(f"--metrics: unknown metric(s) {bad or metrics!r}; choose from {', '.join(METRICS)}")
    if jobs is not None and jobs < 1:
        raise UserError("--jobs must be >= 1")
    if stats_file is None:
        default = stats_path()
        if default.exists():
            stats_file = default
    if stats_file is not None:
        stats = read_table(stats_file, StatsRow)
        source = str(stats_file)
    else:
        from collector.reference import load_pythia_stats  # the bundled data only when no table is given

        stats = load_pythia_stats()
        source = "bundled reference data"
    if not stats["step"].notna().any():
        raise UserError(f"{source}: no rows with a training step, nothing to fit")
    click.echo(f"fitting {source}: {stats['model'].nunique()} models, {len(stats)} rows")
    import shutil

    out = out or fits_path()
    # finished chunks land here, so a killed run resumes; removed once the table is written.
    # The fits table's lock is held throughout: a concurrent fit of the same data home would
    # share (and remove) these parts and overwrite the table; it waits and then runs alone.
    parts = out.parent / f".fit-parts-{digest(stats)}"
    with locked(out, timeout=None):
        if parts.exists():
            click.echo(f"resuming from {parts}")
        fits = fit_table(stats, chosen, n_jobs=jobs, t_end=t_end, resume_dir=parts)
        write_table(fits, out, FitRow)
        shutil.rmtree(parts, ignore_errors=True)
    summary = summarize(fits)
    click.echo(summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    click.echo(f"wrote {len(fits)} fits to {out}")
    if use_mlflow:
        from fitting.tracking import log_fit_run

        run_id = log_fit_run(stats, fits, params={"metrics": ",".join(chosen), "source": source}, plots=plots)
        click.echo(f"logged MLflow run {run_id}")
