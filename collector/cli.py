"""Collector subcommands: import bundled or published statistics, collect from checkpoints."""

from __future__ import annotations

from pathlib import Path

import click

from maforecast.settings import stats_path


@click.command("import-reference")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Stats table (default: data home).")
@click.option("--final-models/--no-final-models", default=True, help="Also import the 13 fully trained LLMs (2503.22329).")
@click.option("--maxact/--no-maxact", default=True, help="Also import the 19 trained LLMs of 2605.15572 (corpus_max protocol).")
def import_reference(out: Path | None, final_models: bool, maxact: bool) -> None:
    """Import the bundled reference data (Pythia checkpoints, trained LLMs) into the stats table."""
    from collector import reference, store

    out = out or stats_path()
    rows = reference.load_reference_stats(final_models=final_models, maxact=maxact, bos=None)
    written, replaced = store.upsert(out, rows)
    click.echo(f"imported {written} reference rows into {out} ({replaced} existing rows replaced)")


@click.command("import-published")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Stats table (default: data home).")
@click.option("--fits-out", type=click.Path(path_type=Path), default=None, help="Where to write the published fits.")
def import_published_cmd(root: Path, out: Path | None, fits_out: Path | None) -> None:
    """Import a downloaded copy of Aimpoint-Digital/pythia-massive-activations from ROOT."""
    from collector import store
    from collector.published import import_published

    # `maforecast --help` imports every command module: the stage loads when the command runs
    from maforecast.tables import FitRow, write_table

    stats, fits = import_published(root)
    out = out or stats_path()
    written, replaced = store.upsert(out, stats)
    click.echo(f"imported {written} stats rows from {root} into {out} ({replaced} replaced)")
    if len(fits):
        fits_out = fits_out or out.with_name("published_fits.parquet")
        write_table(fits, fits_out, FitRow)
        click.echo(f"imported {len(fits)} published fits into {fits_out}")


def _read_arch(path: Path) -> dict:
    """The run's architecture as a JSON object (validated against the schema when the predictor trains on it)."""
    import json

    from maforecast.errors import UserError  # `maforecast --help` imports this module: keep its imports light

    try:
        data = json.loads(Path(path).expanduser().read_text())
    except FileNotFoundError:
        raise UserError(f"--arch: no such file: {path}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"--arch: {path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or "n_layers" not in data:
        raise UserError(f"--arch: {path} must be an architecture JSON object (n_layers, d_model, ...)")
    return data


def _split(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


@click.command("collect")
@click.argument("source", required=False)
@click.option("--revisions", help="Comma-separated hub revisions or local checkpoint names/steps (e.g. step0,step1000).")
@click.option("--suite", help="Preset of a public checkpoint suite (see --list-suites), e.g. pythia-160m.")
@click.option("--every", type=int, default=None, help="Keep only steps that are multiples of N (plus the last).")
@click.option("--name", help="Series (model) name written to the table; default: repo or folder name.")
@click.option("--probe", "probe_spec", default="default", show_default=True,
              help="Probe text: 'default' (bundled, offline), a text file or folder, or hf:REPO (needs network).")
@click.option("--n-sequences", type=int, default=10, show_default=True, help="Number of probe windows.")
@click.option("--seq-len", type=int, default=256, show_default=True, help="Tokens per probe window.")
@click.option("--tokenizer", help="Tokenizer to build the probe with (default: the first checkpoint's).")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32", show_default=True)
@click.option("--batch-size", type=int, default=8, show_default=True, help="Probe sequences per forward pass.")
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cpu or cuda.")
@click.option("--executor", type=click.Choice(["inprocess", "ray"]), default="inprocess", show_default=True)
@click.option("--ray-address", default=None, help="Attach to an existing Ray cluster (default: start a local one).")
@click.option("--ray-num-cpus", type=int, default=None, help="CPUs of the local Ray cluster.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Stats table (default: data home).")
@click.option("--mlflow/--no-mlflow", "track", default=True, show_default=True, help="Log parent/child runs to MLflow.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option("--list-suites", is_flag=True, help="List the checkpoint suite presets and exit.")
@click.option("--arch", "arch_path", type=click.Path(path_type=Path), default=None,
              help="The run's architecture JSON (with `lineage` to name its lineage): records it so that the run joins "
              "the evidence at the next `maforecast bootstrap --retrain` (a proxy of your target design).")
def collect(source, revisions, suite, every, name, probe_spec, n_sequences, seq_len, tokenizer, dtype, batch_size,
            device, executor, ray_address, ray_num_cpus, out, track, progress, list_suites, arch_path) -> None:
    """Measure massive activations over a checkpoint series and append them to the stats table.

    SOURCE is a Hugging Face repo id (with --revisions), a local folder of checkpoints (one
    sub-folder per step), or one model folder. Re-running skips checkpoints already collected.
    """
    from collector.run import CollectOptions, collect_series, preflight, probe_for_series
    from collector.sources import load_suites, resolve_source

    if list_suites:
        for key, s in load_suites().items():
            how = "revisions from hub" if "revisions_from_hub" in s else s.get("revision_format", "")
            click.echo(f"{key:28s} {s['repo']:36s} {how}")
        return
    checkpoints = resolve_source(source, _split(revisions), suite=suite, every=every, name=name)
    arch = _read_arch(arch_path) if arch_path else None
    preflight(checkpoints)
    probe = probe_for_series(checkpoints, probe_spec, n_sequences=n_sequences, seq_len=seq_len, tokenizer=tokenizer)
    click.echo(f"{len(checkpoints)} checkpoints of {checkpoints[0].model}; probe {probe.describe()}", err=True)
    result = collect_series(
        checkpoints,
        probe,
        out=out,
        options=CollectOptions(dtype=dtype, batch_size=batch_size, device=device),
        executor=executor,
        ray_address=ray_address,
        ray_num_cpus=ray_num_cpus,
        track=track,
        progress=progress,
    )
    if arch is not None:
        from maforecast.architectures import record_architecture  # only when a run's architecture is given
        from maforecast.settings import architectures_path  # (as above)

        record_architecture(architectures_path(), checkpoints[0].model, arch)
        click.echo(f"recorded the architecture of {checkpoints[0].model} (lineage {arch.get('lineage') or 'its own'}): it joins "
                   "the evidence at the next `maforecast bootstrap --retrain`", err=True)
    run = f"; MLflow run {result.parent_run_id}" if result.parent_run_id else ""
    click.echo(
        f"collected {len(result.measured)} checkpoints ({result.rows_written} rows), skipped {len(result.skipped)} "
        f"already done, into {result.out} in {result.seconds:.1f}s{run}"
    )
