"""``maforecast predict`` / ``serve`` / ``bootstrap``.

- ``predict ARCH.json``: the same forecast as ``POST /predict`` (native schema or a Hugging Face
  config.json, detected), printed as tables for people at a terminal (``--json`` for the raw answer).
- ``serve``: runs the BentoML service (``bentoml serve service.service:MAForecast``).
- ``bootstrap``: bundled reference data -> stats table -> curve fits -> trained predictor ->
  registered version -> ``champion`` alias; each stage is skipped when its inputs did not change.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from maforecast.errors import UserError

HF_KEYS = frozenset({"model_type", "num_hidden_layers", "hidden_size", "n_embd", "n_layer", "architectures"})
NATIVE_KEYS = frozenset({"n_layers", "d_model"})


def detect_kind(doc: Any) -> str:
    """'native' (the Architecture schema), 'hf' (a Hugging Face config.json), or 'hf+training'.

    ``{"config": {...}, "training": {...}}`` (the /predict_hf_config body) counts as 'hf+training'.
    """
    if not isinstance(doc, dict):
        raise UserError("the file must hold a JSON object (an architecture or a Hugging Face config.json)")
    if isinstance(doc.get("config"), dict) and set(doc) <= {"config", "training", "steps"}:
        return "hf+training"
    if set(doc) >= NATIVE_KEYS:
        return "native"
    if HF_KEYS & set(doc):
        return "hf"
    raise UserError(
        "cannot tell the schema: a native architecture needs n_layers and d_model; "
        "a Hugging Face config.json has model_type / num_hidden_layers / hidden_size"
    )


def load_architecture(path: Path, training: dict | None = None):
    """(Architecture, notes) from a native or Hugging Face JSON file."""
    from predictor.architecture import parse_architecture
    from predictor.hf_config import from_hf_config

    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"no such file: {path}") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not readable JSON ({exc})") from None
    kind = detect_kind(doc)
    if kind == "native":
        if training:
            doc = {**doc, **training}
        return parse_architecture(doc), [f"{path}: native architecture schema"]
    if kind == "hf+training":
        doc, training = doc["config"], {**(doc.get("training") or {}), **(training or {})}
    arch, notes = from_hf_config(doc, training)
    return arch, [f"{path}: Hugging Face config.json (model_type {doc.get('model_type')})", *notes]


# ------------------------------------------------------------------------------------ predict


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "-"
    if abs(x) >= 1e5 or (0 < abs(x) < 1e-2):
        return f"{x:.{digits - 1}e}"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.{digits}g}"


def _iv(iv) -> str:
    from rich.markup import escape

    if iv is None:
        return "-"
    return escape(f"{_fmt(iv.value)} [{_fmt(iv.lo)}, {_fmt(iv.hi)}]")


def _console():
    """Rich console at the terminal's width; piped output (a file, a review tool) gets 180 columns
    (or $COLUMNS) so intervals are not cut to an ellipsis at rich's default of 80."""
    from rich.console import Console

    if sys.stdout.isatty():
        return Console()
    return Console(width=int(os.environ.get("COLUMNS") or 180))


def render(answer, console=None) -> None:
    """Print a PredictResponse as rich tables."""
    from rich.markup import escape
    from rich.table import Table

    con = console or _console()
    p, s = answer.predictor, answer.summary
    con.print(
        f"[bold]{answer.architecture}[/bold]: forecast to step {answer.t_end:,} by {p.name} "
        f"version {p.version or '?'} ({p.alias or 'pinned'})"
    )
    massive = ", ".join(map(str, s.massive_layers)) or "none"
    con.print(
        f"massive layers: {massive} | earliest emergence: step {_iv(s.earliest_emergence_step)}"
        f" (layer {s.earliest_emergence_layer}) | largest peak |a|: {_iv(s.largest_peak_abs)} (layer {s.largest_peak_layer})"
        + (f" | P(massive by the end): {s.p_massive:.2f}" if s.p_massive is not None else "")
    )
    if p.beats_baseline is False:
        con.print(f"[red]warning: this predictor does not beat the constant baseline[/red] ({escape(p.held_out or '')})")

    t = Table(title="per layer: value \\[interval]", show_lines=False)
    for col in ("layer", "class", "t_emerge", "ratio at end", "steady state", "peak |a|", "P(massive)"):
        t.add_column(col, justify="right" if col not in ("class", "massive") else "left", overflow="fold")
    for lf in answer.layers:
        t.add_row(
            str(lf.layer),
            lf.trajectory_class,
            _iv(lf.t_emerge),
            _iv(lf.ratio_end),
            _iv(lf.steady_state),
            _iv(lf.peak_abs),
            ("[red]" if lf.massive else "") + (f"{lf.p_massive:.2f}" if lf.p_massive is not None else "-") + ("[/red]" if lf.massive else ""),
        )
    con.print(t)

    t = Table(title="precision risk")
    for col in ("format", "target", "at risk", "P", "layers (forecast)", "from step", "within interval", "why"):
        t.add_column(col, overflow="fold")
    for r in answer.precision:
        t.add_row(
            r.format,
            "yes" if r.target else "",
            "[red]yes[/red]" if r.at_risk else ("possible" if r.possible_layers else "no"),
            f"{r.probability:.2f}" if r.probability is not None else "-",
            _ranges(r.layers) or "-",
            _fmt(r.from_step),
            _ranges(r.possible_layers) or "-",
            escape(r.why),
        )
    con.print(t)

    if answer.applicability:
        t = Table(title="outside the predictor's training range")
        for col in ("field", "value", "seen", "message"):
            t.add_column(col, overflow="fold")
        for w in answer.applicability:
            seen = ", ".join(w.seen) if w.seen else f"{_fmt(w.train_min)} .. {_fmt(w.train_max)}"
            t.add_row(w.field, escape(str(w.value)), escape(seen), escape(w.message))
        con.print(t)

    t = Table(title="mitigations (ranked; evidence-backed)")
    for col in ("#", "level", "mitigation", "predicted effect (what-if)", "why", "layers", "cost", "citations"):
        t.add_column(col, overflow="fold")
    for m in answer.mitigations:
        color = {"strong": "green", "moderate": "cyan", "not_recommended": "red"}.get(m.level, "white")
        t.add_row(
            str(m.rank),
            f"[{color}]{m.level}[/{color}]",
            f"{m.name} ({m.id})",
            escape(m.effect.text) if m.effect else "-",
            escape(m.why),
            _ranges(m.motivating_layers) or "-",
            escape(m.cost),
            ", ".join(sorted({f"arXiv:{c.arxiv}" for c in m.citations})),
        )
    con.print(t)
    for note in [*answer.inferred, *answer.notes]:
        con.print(f"[dim]note: {escape(note)}[/dim]")


def _ranges(layers) -> str:
    from service.core import _ranges as r

    return r(layers)


@click.command("predict")
@click.argument("arch_json", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--training", "training_json", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="JSON object of training fields (learning_rate, total_steps, ...), for a config.json.")
@click.option("--steps", default=None, help="Comma-separated trajectory steps (default: log-spaced).")
@click.option("--json", "as_json", is_flag=True, help="Print the raw answer (the /predict response) as JSON.")
@click.option("--model-uri", default=None, help="MLflow model URI (default models:/<name>@champion).")
@click.option("--alias", default=None, help="Registry alias to load (default champion).")
@click.option("--version", "version", default=None, help="Registry version to load instead of an alias.")
def predict(arch_json: Path, training_json: Path | None, steps: str | None, as_json: bool,
            model_uri: str | None, alias: str | None, version: str | None) -> None:
    """Forecast ARCH_JSON (native architecture or Hugging Face config.json) and print it."""
    from service.core import load_engine
    from service.model import resolve_model_uri

    training = None
    if training_json is not None:
        try:
            training = json.loads(training_json.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"{training_json}: not readable JSON ({exc})") from None
        if not isinstance(training, dict):
            raise UserError(f"{training_json}: must hold a JSON object of training fields")
    step_list = None
    if steps:
        try:
            step_list = sorted({int(x) for x in steps.split(",") if x.strip()})
        except ValueError:
            raise UserError("--steps: expected comma-separated integers, e.g. 0,1000,143000") from None
        if not step_list or step_list[0] < 0:
            raise UserError("--steps: non-negative integers")
    arch, notes = load_architecture(arch_json, training)
    engine = load_engine(resolve_model_uri(model_uri, alias, version))
    answer = engine.predict(arch, step_list)
    answer = answer.model_copy(update={"inferred": notes[1:]})
    if as_json:
        click.echo(answer.model_dump_json(indent=2))
        return
    render(answer)


# ------------------------------------------------------------------------------------ serve


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
    from maforecast.settings import get_settings
    from service.model import resolve_model_uri

    s = get_settings()
    env.setdefault("MAFORECAST_DATA_HOME", str(s.home))
    cmd = serve_command(host, port)
    click.echo(f"serving {resolve_model_uri(model_uri, alias, version)} from {s.resolved_tracking_uri} on http://{host}:{port}", err=True)
    try:
        rc = subprocess.call(cmd, env=env, cwd=project_root())
    except KeyboardInterrupt:
        rc = 130
    if rc:
        sys.exit(rc)


def project_root() -> str:
    return str(Path(__file__).resolve().parent.parent)


def serve_command(host: str, port: int) -> list[str]:
    bentoml = Path(sys.executable).with_name("bentoml")
    head = [str(bentoml)] if bentoml.exists() else [sys.executable, "-m", "bentoml"]
    return [*head, "serve", "service.service:MAForecast", "--host", host, "--port", str(port)]


# ------------------------------------------------------------------------------------ bootstrap


@click.command("bootstrap")
@click.option("--force", is_flag=True, help="Redo every stage even if its inputs did not change.")
@click.option("--quick", is_flag=True, help="Train a small, fast predictor (demos and tests).")
def bootstrap(force: bool, quick: bool) -> None:
    """First run: import reference data, fit curves, train, register and promote a predictor.

    Idempotent: a stage whose inputs did not change since the last run is skipped (and says so).
    """
    from service.bootstrap import run

    changed = run(force=force, echo=click.echo, small=quick)
    click.echo("bootstrap: done" + ("" if changed else " (nothing changed; everything was up to date)"))
