"""``maforecast monitor RUN_DIR --arch arch.json``: is a training run on its forecast, and where is it heading?

1. The run's local checkpoints (``RUN_DIR``: one sub-folder per checkpoint, as ``maforecast
   collect``) are measured through the collector into the stats table. Checkpoints already in the
   table (same series name, probe and dtype) are skipped, so a rerun measures only new ones.
2. Every measured row of the series is an observation for the registered model's nowcast
   (``RegisteredPredictor.nowcast``: the pyfunc with ``output="nowcast"``): the ``/nowcast`` answer, a
   ``predictor.response.NowcastResponse``, i.e. the ``/predict`` answer recomputed from the architecture
   forecast (the prior) updated by the run's points, with the precision risk, the precision plan's decision
   and the mitigations, plus ``nowcast`` (what the update did) and ``nowcast_layers`` (per layer).
3. A Rich table per layer (latest observed ratio against the prior band, deviation z, updated
   end-of-training ratio, trajectory class), the next-checkpoint table, the decision for the design's
   precision target and the best-ranked effective mitigations; a PNG (observed points, prior band,
   updated band) and an MLflow run in the ``monitoring`` experiment (one run per series, resumed on
   rerun; metrics at ``step=<training step>``).
4. ``--fail-on-deviation``: exit 1 when a layer's latest observation is outside its prior band.

The prior is the registered champion (``--prior registry``), else the same answer from an
``Answerer`` over the engine fitted on the bundled reference data (``--prior reference``); ``auto``
tries the registry first.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd

from maforecast.console import console as terminal
from maforecast.errors import UserError
from maforecast.settings import get_settings
from review.inputs import load_architecture

PRIORS = ("auto", "registry", "reference")


@dataclass
class Prior:
    """Who answers the nowcast: ``nowcast(arch, observations, steps)`` gives the registered model's
    ``NowcastResponse`` (or the same answer from the reference engine); ``engine`` draws the prior band."""

    nowcast: Callable[..., Any]
    engine: Any  # predictor.engine.ForecastEngine
    source: str


@dataclass
class MonitorResult:
    result: Any  # predictor.response.NowcastResponse: the registered model's /nowcast answer
    measured: list[str]
    skipped: list[str]
    observations: pd.DataFrame
    png: Path | None
    run_id: str | None
    prior_source: str


# ------------------------------------------------------------------------ pieces
def load_prior(kind: str = "auto") -> Prior:
    """Who answers the nowcast: the registered champion, or an ``Answerer`` over the reference engine."""
    if kind not in PRIORS:
        raise UserError(f"--prior: one of {', '.join(PRIORS)}")
    # `maforecast --help` imports this module; MLflow and the engine load when a prior is needed
    from predictor.answer import Answerer
    from predictor.knowledge import load_kb
    from registry.loader import load_predictor
    from registry.reference import reference_engine

    if kind in ("auto", "registry"):
        try:
            s = get_settings()
            p = load_predictor(tracking_uri=s.resolved_tracking_uri)
            return Prior(p.nowcast, p.engine, f"registered {s.registered_model}@{s.model_alias}"
                         + (f" (version {p.version})" if p.version else ""))
        except UserError:
            if kind == "registry":
                raise
        except Exception as exc:  # no store, no champion: fall back to the bundled reference
            if kind == "registry":
                raise UserError(f"--prior registry: cannot load the champion: {type(exc).__name__}: {exc}") from None
    answerer = Answerer(reference_engine(), load_kb())
    return Prior(answerer.nowcast, answerer.engine, "engine fitted on the bundled reference data")


def observations_from_table(table: pd.DataFrame, model: str, probe_digest: str, source: str) -> pd.DataFrame:
    """The series' rows in the stats table as observation rows (step, layer, top1, median, top2, top3, sample)."""
    if not len(table):
        return pd.DataFrame(columns=["step", "layer", "top1", "median", "top2", "top3", "sample"])
    t = table[(table["model"].astype(str) == model) & (table["probe_digest"].astype(str) == probe_digest)
              & (table["source"].astype(str) == source)]
    out = pd.DataFrame({
        "step": pd.to_numeric(t["step"], errors="coerce"),
        "layer": t["layer"].astype(int),
        "top1": t["top1"].astype(float),
        "median": t["median"].astype(float),
        "top2": pd.to_numeric(t.get("top2"), errors="coerce") if "top2" in t else np.nan,
        "top3": pd.to_numeric(t.get("top3"), errors="coerce") if "top3" in t else np.nan,
        "sample": pd.to_numeric(t["sequence"], errors="coerce") if "sequence" in t else np.nan,
    })
    return out.sort_values(["step", "layer", "sample"]).reset_index(drop=True)


def validate_rows(obs: pd.DataFrame, arch) -> list:
    """Observation models for the rows; the first bad row is a one-line UserError naming row and field."""
    from pydantic import ValidationError

    # `maforecast --help` imports this module; torch and MLflow load when a run is measured
    from predictor.nowcast import Observation, check_observations

    if obs["step"].isna().any():
        raise UserError("a checkpoint of the run has no training step: name folders like step1000 / checkpoint-1000 "
                        "or put a trainer_state.json with global_step in them")
    rows = []
    for i, r in enumerate(obs.to_dict("records")):
        rec = {k: (None if isinstance(v, float) and math.isnan(v) and k in ("top2", "top3", "sample") else v)
               for k, v in r.items()}
        rec["step"], rec["layer"] = int(rec["step"]), int(rec["layer"])
        if rec["sample"] is not None:
            rec["sample"] = int(rec["sample"])
        try:
            rows.append(Observation.model_validate(rec))
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            raise UserError(f"observations[{i}].{field} (step {rec['step']}, layer {rec['layer']}): "
                            f"{err['msg'].removeprefix('Value error, ')}") from None
    errors = check_observations(rows, arch, limit=1)
    if errors:
        e = errors[0]
        _, i, field = e["loc"]
        msg = e["type"].message()
        raise UserError(f"observations[{i}].{field} (step {rows[i].step}, layer {rows[i].layer}): {msg}")
    return rows


def render_table(result, console=None) -> None:
    """The nowcast answer (a ``NowcastResponse``) for a person watching the run: per layer, the next checkpoint,
    the precision decision and the mitigations."""
    from rich.table import Table

    console = console or terminal()
    info = result.nowcast
    t = Table(title=f"{result.architecture}: {info.n_observations} points up to step {info.last_step} "
                    f"(planned {result.t_end}); top1/median, latest point per layer")
    for col, just in (("layer", "right"), ("step", "right"), ("ratio", "right"), ("prior band", "right"),
                      ("z", "right"), ("end: prior", "right"), ("end: updated", "right"),
                      ("class: plateau / peak / growth", "right"), ("status", "left")):
        t.add_column(col, justify=just, overflow="fold")
    for lyr, lf in zip(result.nowcast_layers, result.layers, strict=True):
        last = lyr.observed[-1] if lyr.observed else None
        status = "[bold red]LEFT[/]" if lyr.left_band else ("[yellow]was out[/]" if lyr.n_outside else "ok")
        if last is None:
            status = "not observed"
        t.add_row(
            str(lyr.layer),
            str(last.step) if last else "-",
            _g(last.observed) if last else "-",
            f"{_g(last.prior_lo)}-{_g(last.prior_hi)}" if last else "-",
            f"{last.z:+.1f}" if last else "-",
            _g(lyr.prior_ratio_end),
            f"{_g(lf.ratio_end.value)} ({_g(lf.ratio_end.lo)}-{_g(lf.ratio_end.hi)})",
            _classes(lyr.prior_class_probabilities, lyr.class_probabilities),
            status,
        )
    console.print(t)
    render_next(result, console)
    lt0, lt1 = info.log10_tau_e_prior, info.log10_tau_e_posterior
    console.print(f"log10 tau_e {lt0[0]:.2f}+-{lt0[1]:.2f} -> {lt1[0]:.2f}+-{lt1[1]:.2f}; "
                  f"deviation (max |z|) {info.deviation:.2f}; "
                  + (f"[bold red]layers {info.layers_left} left their band[/]" if info.left_band else "every layer within its band"))
    render_decision(result, console)


def render_decision(result, console) -> None:
    """The design's precision decision on the updated forecast, in `maforecast predict`'s words
    (``review.verdict.decision_line``), the target formats' probabilities, and the best-ranked effective mitigations."""
    from rich.markup import escape
    from rich.table import Table

    # the predictor's table of targets, the answer's ranking head and the decision's words load with the answer
    # (not when `maforecast --help` imports this module)
    from predictor.answer import TOP_MITIGATIONS
    from predictor.precision import formats_in_use
    from review.verdict import decision_line

    plan = result.precision_plan
    if plan is not None:
        console.print(decision_line(plan))
        used = formats_in_use(plan.precision_target, plan.recipe)
        risks = [r for r in result.precision if r.format in used]
        if risks:
            console.print(f"P(a breaking limit crossed by the planned end) of the formats {plan.recipe or plan.precision_target} "
                          "runs: " + ", ".join(f"{r.format} " + (f"{r.probability:.2f}" if r.probability is not None else "-")
                                               + (" [red]at risk[/red]" if r.at_risk else "") for r in risks))
    effective = [m for m in result.mitigations if m.effective]
    if not effective:
        console.print("mitigations: none effective for this design")
        return
    shown = effective[:TOP_MITIGATIONS]
    t = Table(title=(f"mitigations: the {len(shown)} best-ranked of {len(effective)} effective" if len(shown) < len(effective)
                     else f"mitigations: the {len(shown)} effective") + " (`maforecast predict` lists all, with their reasons)")
    for col in ("#", "mitigation", "level", "predicted effect (what-if on the design)"):
        t.add_column(col, justify="right" if col == "#" else "left", overflow="fold")
    for m in shown:
        t.add_row(str(m.rank), m.id, m.level, escape(m.effect.text) if m.effect else "-")
    console.print(t)


def _classes(prior: dict | None, post: dict | None) -> str:
    """'41/19/40 -> 10/84/6' (percent, plateau / early peak / growth), the most probable class in bold."""
    if not post:
        return "-"
    vals = list(post.values())
    best = max(range(len(vals)), key=vals.__getitem__)
    now = "/".join(f"[bold]{v:.0%}[/]" if i == best else f"{v:.0%}" for i, v in enumerate(vals)).replace("%", "")
    before = "/".join(f"{v:.0%}" for v in prior.values()).replace("%", "") if prior else "?"
    return f"{before} -> {now}"


def render_next(result, console) -> None:
    """Per layer: what the next checkpoint would have to read to change its most probable trajectory class."""
    from rich.table import Table

    layers = [lyr for lyr in result.nowcast_layers if lyr.next_checkpoint is not None and lyr.observed]
    if not layers:
        return
    step = layers[0].next_checkpoint.step
    t = Table(title=f"next checkpoint (step {step}): the ratio each class expects there, and the class a reading makes "
                    "most probable")
    for col in ("layer", "plateau", "early peak", "growth", "a reading of ... makes it", "low / mid / high reading ->"):
        t.add_column(col, justify="left" if col.startswith(("a ", "low")) else "right", overflow="fold")
    for lyr in layers:
        nc = lyr.next_checkpoint
        exp = [f"{_g(o.ratio.value)} ({o.probability:.0%})" if o.ratio else "-" for o in nc.by_class]
        ranges = "; ".join(f"{'<' + _g(r.ratio_hi) if r.ratio_lo is None and r.ratio_hi is not None else ''}"
                           f"{'>' + _g(r.ratio_lo) if r.ratio_hi is None and r.ratio_lo is not None else ''}"
                           f"{_g(r.ratio_lo) + '-' + _g(r.ratio_hi) if r.ratio_lo is not None and r.ratio_hi is not None else ''}"
                           f"{'any' if r.ratio_lo is None and r.ratio_hi is None else ''} {r.trajectory_class}"
                           for r in nc.most_probable_if)
        reads = "; ".join(f"{_g(s.ratio)}: " + "/".join(f"{v:.0%}" for v in s.class_probabilities.values()).replace("%", "")
                          for s in nc.if_reads)
        t.add_row(str(lyr.layer), *exp, ranges, reads)
    console.print(t)


def _g(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def plot_png(engine, arch, result, path: Path, obs_frame: pd.DataFrame) -> Path:
    """Small multiples per layer: observed ratio, prior band, updated band (log-log); the title names the layer's
    most probable trajectory class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # `maforecast --help` imports this module; torch and MLflow load when a run is measured
    # the engine loads with the prior, not when `maforecast --help` imports this module
    from predictor.engine import default_steps

    t_end = result.t_end
    steps = np.array(sorted(set(default_steps(t_end, 40)) | set(obs_frame["step"].astype(int))), float)
    steps = steps[steps > 0]
    from predictor.nowcast import prior_band  # with the prior, as above

    prior = engine.layer_curves(arch, steps)["ratio"]
    wide = prior_band(engine, arch, steps)
    upd = {lf.layer: lf for lf in result.layers}
    L = arch.n_layers
    cols = min(L, 6)
    rows = math.ceil(L / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols + 0.6, 2.2 * rows + 0.8), squeeze=False, sharex=True)
    for li in range(rows * cols):
        ax = axes.flat[li]
        if li >= L:
            ax.axis("off")
            continue
        ax.fill_between(steps, 10 ** wide["lo"][li], 10 ** wide["hi"][li], color="0.92", label="prior 90 % + noise")
        ax.fill_between(steps, 10 ** prior["lo"][li], 10 ** prior["hi"][li], color="0.75", label="prior 90 %")
        ax.plot(steps, 10 ** prior["mean"][li], color="0.45", lw=1)
        tr = [p for p in upd[li].ratio_trajectory if p.step > 0]
        ts = [p.step for p in tr]
        ax.fill_between(ts, [p.lo for p in tr], [p.hi for p in tr], color="tab:green", alpha=0.3, label="updated 90 %")
        ax.plot(ts, [p.value for p in tr], color="tab:green", lw=1.2)
        lyr = result.nowcast_layers[li]
        if lyr.observed:
            xs = [p.step for p in lyr.observed if p.step > 0]
            ys = [p.observed for p in lyr.observed if p.step > 0]
            colors = ["tab:red" if p.outside else "k" for p in lyr.observed if p.step > 0]
            ax.scatter(xs, ys, s=12, c=colors, zorder=3, label="observed")
        ax.set_xscale("log")
        ax.set_yscale("log")
        probs = lyr.class_probabilities or {}
        best = max(probs, key=probs.get) if probs else None
        ax.set_title(f"layer {li}" + (" LEFT BAND" if lyr.left_band else "")
                     + (f"\n{best.replace('_', ' ')} {probs[best]:.0%}" if best else ""), fontsize=8,
                     color="tab:red" if lyr.left_band else "k")
        ax.tick_params(labelsize=6)
        ax.axvline(t_end, color="k", lw=0.5, ls=":")
    axes.flat[0].legend(fontsize=6, loc="upper left")
    fig.suptitle(f"{result.architecture}: top1/median, observed to step {result.nowcast.last_step}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def monitor_key(model: str, run_dir: Path, probe_digest: str, source: str) -> str:
    return hashlib.sha256(f"{model}|{Path(run_dir).resolve()}|{probe_digest}|{source}".encode()).hexdigest()[:16]


def log_mlflow(key: str, model: str, arch, result, obs_frame: pd.DataFrame, png: Path | None, params: dict) -> str:
    """One MLflow run per monitored series (resumed on rerun); metrics at step=<training step>."""
    from mlflow.entities import Metric, Param

    # `maforecast --help` imports this module; torch and MLflow load when a run is measured
    from maforecast import tracking

    client = tracking.configure()
    exp = tracking.experiment_id("monitoring")
    found = client.search_runs([exp], filter_string=f"tags.`maforecast.monitor_key` = '{key}'", max_results=1)
    if found:
        run_id = found[0].info.run_id
        logged = int(found[0].data.tags.get("maforecast.logged_step", "-1"))
        client.update_run(run_id, status="RUNNING")
    else:
        run = client.create_run(exp, run_name=f"{model} monitor",
                                tags={"maforecast.monitor_key": key, "maforecast.stage": "monitoring", "maforecast.model": model})
        run_id, logged = run.info.run_id, -1
        client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
    ts = int(time.time() * 1000)
    metrics = []
    agg = obs_frame.groupby(["step", "layer"]).agg(top1=("top1", "mean"), median=("median", "mean")).reset_index()
    for r in agg[agg["step"] > logged].itertuples():
        metrics.append(Metric(f"observed_ratio/layer_{int(r.layer):02d}", float(r.top1 / r.median), ts, int(r.step)))
    info = result.nowcast
    for lyr in result.nowcast_layers:
        for p in lyr.observed:
            if p.step > logged:
                metrics.append(Metric(f"z/layer_{lyr.layer:02d}", p.z, ts, p.step))
                metrics.append(Metric(f"prior_ratio/layer_{lyr.layer:02d}", p.prior, ts, p.step))
    last = info.last_step
    plan = result.precision_plan
    if last is not None and last > logged:
        for lf in result.layers:
            metrics.append(Metric(f"nowcast_ratio_end/layer_{lf.layer:02d}", lf.ratio_end.value, ts, last))
        metrics.append(Metric("deviation_max_abs_z", float(info.deviation or 0.0), ts, last))
        metrics.append(Metric("layers_left_band", float(len(info.layers_left)), ts, last))
        metrics.append(Metric("nowcast_largest_ratio_end", max(lf.ratio_end.value for lf in result.layers), ts, last))
        metrics.append(Metric("log10_tau_e", info.log10_tau_e_posterior[0], ts, last))
        for lyr in result.nowcast_layers:
            for cls, v in (lyr.class_probabilities or {}).items():
                metrics.append(Metric(f"p_{cls}/layer_{lyr.layer:02d}", float(v), ts, last))
        # the precision decision on the updated forecast, and its target formats' probabilities
        if plan is not None:
            metrics.append(Metric("precision_at_risk", float(plan.at_risk), ts, last))
        for r in result.precision:
            if r.target and r.probability is not None:
                metrics.append(Metric(f"precision_p/{r.format}", float(r.probability), ts, last))
    for i in range(0, len(metrics), 900):
        client.log_batch(run_id, metrics=metrics[i : i + 900])
    if last is not None:
        client.set_tag(run_id, "maforecast.logged_step", str(max(last, logged)))
        client.set_tag(run_id, "maforecast.left_band", str(info.left_band).lower())
        if plan is not None:
            client.set_tag(run_id, "maforecast.precision_at_risk", str(plan.at_risk).lower())
        from predictor.answer import TOP_MITIGATIONS  # loaded with the answer, as above

        client.set_tag(run_id, "maforecast.top_mitigations",
                       ",".join([m.id for m in result.mitigations if m.effective][:TOP_MITIGATIONS]))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "nowcast.json"
        path.write_text(result.model_dump_json(indent=1, warnings=False))
        client.log_artifact(run_id, str(path))
        if png is not None and png.exists():
            client.log_artifact(run_id, str(png))
    client.set_terminated(run_id, "FINISHED")
    return run_id


# ------------------------------------------------------------------------ the flow
def run_monitor(run_dir: Path, arch_path: Path, name: str | None = None, png: Path | None = None, probe_spec: str = "default",
                n_sequences: int = 10, seq_len: int = 256, dtype: str = "float32", batch_size: int = 8, device: str = "cpu",
                out: Path | None = None, track: bool = True, prior: str = "auto", progress: bool = True,
                echo=print) -> MonitorResult:
    # `maforecast --help` imports this module; torch and MLflow load when a run is measured
    from collector import store
    from collector.run import CollectOptions, collect_series, probe_for_series
    from collector.sources import resolve_source
    from maforecast.architectures import record_architecture
    from maforecast.settings import architectures_path, get_settings, stats_path

    # the predictor too: a new lineage's name
    from predictor.architecture import LINEAGE_NEW

    run_dir = Path(run_dir).expanduser()
    if not run_dir.is_dir():
        raise UserError(f"no such run folder: {run_dir}")
    arch, _notes = load_architecture(Path(arch_path))
    checkpoints = resolve_source(str(run_dir), name=name)
    model = checkpoints[0].model
    probe = probe_for_series(checkpoints, probe_spec, n_sequences=n_sequences, seq_len=seq_len)
    options = CollectOptions(dtype=dtype, batch_size=batch_size, device=device)
    out = Path(out) if out else stats_path()
    res = collect_series(checkpoints, probe, out=out, options=options, track=False, progress=progress)
    echo(f"{model}: measured {len(res.measured)} new checkpoints, {len(res.skipped)} already in {out}")
    obs = observations_from_table(store.load(out), model, probe.digest, options.source)
    if not len(obs):
        raise UserError(f"no measured rows of {model} in {out}")
    rows = validate_rows(obs, arch)
    record_architecture(architectures_path(), model, arch.model_dump(mode="json", exclude_none=True))
    answering = load_prior(prior)
    engine = answering.engine
    if arch.lineage and arch.lineage not in engine.level_["abs"].lineages_ and arch.lineage != LINEAGE_NEW:
        echo(f"{model}: lineage {arch.lineage!r} joins the evidence at the next `maforecast bootstrap --retrain` "
             "(this nowcast's prior treats it as a new lineage)")
        arch = arch.model_copy(update={"lineage": None})
    result = answering.nowcast(arch, rows, None)  # the registered model's /nowcast answer (NowcastResponse)
    if png is None:
        png = get_settings().home / "monitor" / f"{model}.png"
    png = plot_png(engine, arch, result, png, obs)
    run_id = None
    if track:
        params = {"model": model, "run_dir": str(run_dir.resolve()), "architecture": arch.model_dump_json(exclude_none=True),
                  "probe_digest": probe.digest, "dtype": dtype, "prior": answering.source,
                  "noise": json.dumps(result.nowcast.noise)}
        run_id = log_mlflow(monitor_key(model, run_dir, probe.digest, options.source), model, arch, result, obs, png, params)
    return MonitorResult(result, res.measured, res.skipped, obs, png, run_id, answering.source)


@click.command("monitor")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--arch", "arch_path", required=True, type=click.Path(path_type=Path),
              help="The run's architecture (native schema or Hugging Face config.json), as for `maforecast predict`.")
@click.option("--name", help="Series name in the stats table (default: the run folder's name).")
@click.option("--fail-on-deviation", is_flag=True, help="Exit 1 when a layer's latest point is outside its prior 90 % band.")
@click.option("--png", type=click.Path(path_type=Path), default=None,
              help="Where to write the plot (default: <data home>/monitor/<name>.png).")
@click.option("--probe", "probe_spec", default="default", show_default=True, help="Probe text, as for `maforecast collect`.")
@click.option("--n-sequences", type=int, default=10, show_default=True)
@click.option("--seq-len", type=int, default=256, show_default=True)
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32", show_default=True)
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Stats table (default: data home).")
@click.option("--prior", type=click.Choice(PRIORS), default="auto", show_default=True,
              help="registry: the registered champion answers; reference: the engine fitted on the bundled data; "
                   "auto: the champion, else the reference.")
@click.option("--mlflow/--no-mlflow", "track", default=True, show_default=True, help="Log the monitoring run to MLflow.")
@click.option("--json", "as_json", is_flag=True, help="Print the nowcast answer (the /nowcast response) as JSON instead of the tables.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def monitor(run_dir, arch_path, name, fail_on_deviation, png, probe_spec, n_sequences, seq_len, dtype, batch_size, device,
            out, prior, track, as_json, progress) -> None:
    """Measure a run's new local checkpoints and compare the run with its forecast (nowcast).

    RUN_DIR holds one sub-folder per checkpoint (step1000, checkpoint-1000, ...). A rerun measures
    only checkpoints that are new. Exit 1 with --fail-on-deviation when a layer left its band.
    """
    mr = run_monitor(run_dir, arch_path, name=name, png=png, probe_spec=probe_spec, n_sequences=n_sequences, seq_len=seq_len,
                     dtype=dtype, batch_size=batch_size, device=device, out=out, track=track, prior=prior,
                     progress=progress, echo=lambda m: click.echo(m, err=True))
    if as_json:
        click.echo(mr.result.model_dump_json(indent=2, warnings=False))
    else:
        render_table(mr.result)
    click.echo(f"prior: {mr.prior_source}; plot: {mr.png}" + (f"; MLflow run {mr.run_id}" if mr.run_id else ""), err=True)
    if fail_on_deviation and mr.result.nowcast.left_band:
        click.echo(f"deviation: layers {mr.result.nowcast.layers_left} left their forecast band", err=True)
        sys.exit(1)
