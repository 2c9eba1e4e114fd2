"""``maforecast predict`` and ``maforecast review``: the registered model's answer for people at a
terminal (rich tables), as JSON, or as a verdict against a policy with an HTML report."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from pydantic import ValidationError

from maforecast.console import console as terminal
from maforecast.errors import UserError
from maforecast.files import write_text_atomic
from predictor.architecture import Architecture, describe_validation_error
from predictor.precision import TARGET_FORMATS
from predictor.response import VIEWS, PredictResponse
from predictor.schemas import parse_steps
from predictor.text import emergence, ranges
from review.inputs import load_architecture, load_candidates, read_training
from review.verdict import ReviewAnswer, decision_line, load_policy, review


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


def render(answer, console=None) -> None:
    """Print a PredictResponse as rich tables."""
    from rich.markup import escape
    from rich.table import Table

    con = console or terminal()
    p, s = answer.predictor, answer.summary
    con.print(
        f"[bold]{answer.architecture}[/bold]: forecast to step {answer.t_end:,} by {p.name} "
        f"version {p.version or '?'} ({p.alias or 'pinned'})"
    )
    massive = ", ".join(map(str, s.massive_layers)) or "none"
    con.print(
        f"massive layers: {massive} | earliest emergence: step {_iv(s.earliest_emergence_step)}"
        f" (layer {s.earliest_emergence_layer}) | largest peak |a| ({s.protocol}): {_iv(s.largest_peak_abs)} (layer {s.largest_peak_layer})"
        + (f" | worst case (corpus_max, what precision uses): {_iv(s.worst_case_peak_abs)}" if s.worst_case_peak_abs else "")
        + (f" | P(massive by the end): {s.p_massive:.2f}" if s.p_massive is not None else "")
    )
    if answer.lineage is not None:
        con.print(f"lineage: {escape(answer.lineage.text)}")
    if p.beats_baseline is False:
        con.print(f"[red]warning: this predictor does not beat the constant baseline[/red] ({escape(p.held_out or '')})")

    t = Table(title="per layer: value \\[interval]; curve: the forecast's shape at the planned end; class P %: plateau / "
                    "early peak / growth (predictor/trajectory.py)", show_lines=False)
    for col in ("layer", "curve", "class P %", "t_emerge", "ratio at end", "steady state", "peak |a|", "P(massive)"):
        t.add_column(col, justify="right" if col not in ("curve", "massive") else "left", overflow="fold")
    for lf in answer.layers:
        t.add_row(
            str(lf.layer),
            lf.trajectory_class,
            "/".join(f"{v:.0%}" for v in lf.class_probabilities.values()).replace("%", "") if lf.class_probabilities else "-",
            escape(emergence(lf.t_emerge, lf.p_emerge_within_plan, _fmt)),
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
            ranges(r.layers) or "-",
            _fmt(r.from_step),
            ranges(r.possible_layers) or "-",
            escape(r.why),
        )
    con.print(t)
    plan = answer.precision_plan
    if plan is not None and plan.recipes:
        t = Table(title=f"{plan.precision_target}: recipes (cheapest first; the plan's marked)")
        for col in ("recipe", "scaling", "gate", "layers kept", "in the tools"):
            t.add_column(col, overflow="fold")
        for o in plan.recipes:
            t.add_row(("* " if o.format == plan.recipe else "  ") + o.format, escape(o.label),
                      f"[red]at risk[/red] (P {o.probability:.2f})" if o.at_risk else f"passes (P {o.probability:.2f})",
                      str(o.keep), escape("; ".join(f"{k}: {v}" for k, v in o.tools.items())))
        con.print(t)
    if plan is not None:
        con.print(decision_line(plan))
    for r in answer.precision:
        if r.mechanisms:
            t = Table(title=f"{r.format}: how it breaks (P: probability by the planned end; '-': not modelled)")
            for col in ("mechanism", "P", "in format P", "why", "condition"):
                t.add_column(col, overflow="fold")
            for m in r.mechanisms:
                t.add_row(m.name, f"{m.probability:.2f}" if m.probability is not None else "-",
                          "yes" if m.in_format_probability else "no", escape(m.why), escape(m.condition))
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
            ranges(m.motivating_layers) or "-",
            escape(m.cost),
            ", ".join(sorted({f"arXiv:{c.arxiv}" for c in m.citations})),
        )
    con.print(t)
    for note in [*answer.inferred, *answer.notes]:
        con.print(f"[dim]note: {escape(note)}[/dim]")


@click.command("predict")
@click.argument("arch_json", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--training", "training_json", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="JSON object of training fields (learning_rate, total_steps, ...), for a config.json.")
@click.option("--steps", default=None, help="Comma-separated trajectory steps (default: log-spaced).")
@click.option("--json", "as_json", is_flag=True, help="Print the raw answer (the /predict response) as JSON.")
@click.option("--view", type=click.Choice(list(VIEWS)), default=None,
              help="With --json: the answer's view, as /predict's ?view= (default compact; full with --steps).")
@click.option("--model-uri", default=None, help="MLflow model URI (default models:/<name>@champion).")
@click.option("--alias", default=None, help="Registry alias to load (default champion).")
@click.option("--version", "version", default=None, help="Registry version to load instead of an alias.")
@click.option("--lineage", default=None, help="The design's lineage (overrides the file's; 'new' for a new one).")
@click.option("--protocol", default=None, type=click.Choice(["seq_mean", "typical", "one_sentence", "corpus_max", "worst_case"]),
              help="Statistic the magnitudes are shown in (precision always uses the worst case).")
def predict(arch_json: Path, training_json: Path | None, steps: str | None, as_json: bool, view: str | None,
            model_uri: str | None, alias: str | None, version: str | None, lineage: str | None, protocol: str | None) -> None:
    """Forecast ARCH_JSON (native architecture or Hugging Face config.json) and print it."""
    training = read_training(training_json, None)
    try:
        step_list = parse_steps(sorted({int(x) for x in steps.split(",") if x.strip()}), "--steps") if steps else None
    except ValueError as exc:
        raise UserError(str(exc) if str(exc).startswith("--steps") else "--steps: expected comma-separated integers, "
                        "e.g. 0,1000,143000") from None
    arch, notes = load_architecture(arch_json, training)
    override = {k: v for k, v in (("lineage", lineage), ("protocol", protocol)) if v is not None}
    if override:
        try:
            arch = Architecture.model_validate({**arch.model_dump(exclude_none=True), **override})
        except ValidationError as exc:
            raise UserError(describe_validation_error(exc)) from None
    # here, not at the top: MLflow takes seconds to import, and a bad file is reported before that
    from registry.loader import load_predictor, resolve_model_uri

    loaded = load_predictor(resolve_model_uri(model_uri, alias, version))
    if as_json:
        answer = PredictResponse.model_validate_json(loaded.answers_json([arch], step_list, view)[0])
        click.echo(answer.model_copy(update={"inferred": notes[1:]}).model_dump_json(indent=2))
        return
    render(loaded.answer(arch, step_list).model_copy(update={"inferred": notes[1:]}))





def render_table(answer: ReviewAnswer, console=None) -> None:
    from rich.markup import escape
    from rich.table import Table

    con = console or terminal()
    p = answer.predictor
    t = Table(title=f"design review: {escape(answer.policy)} | predictor {escape(str(p.get('name')))} "
              f"v{escape(str(p.get('version') or '?'))} ({escape(str(p.get('alias') or 'pinned'))})")
    for col in ("#", "candidate", "verdict", "risk", "target", "massive layers", "peak |a|", "rules broken"):
        t.add_column(col, overflow="fold", justify="right" if col in ("#", "risk", "peak |a|") else "left")
    colors = {"fail": "red", "warn": "yellow", "pass": "green"}
    for i, v in enumerate(answer.candidates, 1):
        broken = [r for r in v.results if r.status in ("fail", "warn")]
        text = "; ".join(f"[{colors[r.status]}]{escape(r.id)}[/]: {escape(r.message)}" for r in broken) or "-"
        t.add_row(str(i), escape(v.name), f"[{colors[v.status]}]{v.status.upper()}[/]", f"{v.risk:.2f}",
                  v.precision_target, f"{len(v.massive_layers)} ({ranges(v.massive_layers)})" if v.massive_layers else "0",
                  _fmt(v.largest_peak_abs), text)
    con.print(t)
    for v in answer.candidates:
        if v.change_from_first:
            con.print(f"{escape(v.name)}: {escape(v.change_from_first)}")
    n = {s: sum(v.status == s for v in answer.candidates) for s in ("pass", "warn", "fail")}
    con.print(f"{len(answer.candidates)} candidate(s): {n['pass']} pass, {n['warn']} warn, {n['fail']} fail "
              f"-> exit {answer.exit_code}")


@click.command("review", short_help="Gate candidate configs on a forecast policy; verdict table, HTML report.")
@click.argument("configs", nargs=-1, required=True)
@click.option("--policy", "policy_path", default=None, help="Policy YAML (default: rules derived from each precision_target).")
@click.option("--html", "html_path", default=None, help="Write the self-contained HTML report here.")
@click.option("--json", "json_path", default=None, help="Write the verdicts as JSON here ('-' for stdout).")
@click.option("--full", is_flag=True, help="Include each full /predict answer in the JSON.")
@click.option("--junit", "junit_path", default=None, help="Write JUnit XML here: a test case per rule per candidate.")
@click.option("--training", "training_path", default=None, help="JSON object of training fields applied to every CONFIG.")
@click.option("--precision-target", default=None,
              type=click.Choice(list(TARGET_FORMATS)), help="Override every candidate's precision_target.")
@click.option("--model-uri", default=None, help="MLflow model URI (default models:/<name>@champion).")
@click.option("--alias", default=None, help="Registry alias to load (default champion).")
@click.option("--version", "version", default=None, help="Registry version to load instead of an alias.")
def review_cmd(configs: tuple[str, ...], policy_path: str | None, html_path: str | None, json_path: str | None, full: bool,
               junit_path: str | None, training_path: str | None, precision_target: str | None, model_uri: str | None,
               alias: str | None, version: str | None) -> None:
    """Review CONFIG... (architecture JSON, HF config.json, or folders of them) against a policy.

    Exit 0: all pass (warnings allowed); 1: any fails; 2: bad input.
    """
    policy = load_policy(policy_path) if policy_path else None
    training = read_training(Path(training_path) if training_path else None, precision_target)
    candidates = load_candidates(configs, training)
    # here, not at the top: MLflow takes seconds to import, and bad inputs are reported before that
    from registry.loader import load_predictor, resolve_model_uri

    predictor = load_predictor(resolve_model_uri(model_uri, alias, version))
    answer = review(candidates, predictor, policy, full=full, policy_source=policy_path)
    if json_path == "-":
        click.echo(answer.model_dump_json(indent=2))
    else:
        render_table(answer)
        if json_path:
            _write(json_path, answer.model_dump_json(indent=2))
    if html_path:
        from review.report import render_report

        _write(html_path, render_report(candidates, answer))
    if junit_path:
        from review.junit import junit_xml  # small, but only when asked

        _write(junit_path, junit_xml(answer))
    sys.exit(answer.exit_code)


def _write(path: str, text: str) -> None:
    try:
        write_text_atomic(path, text)
    except OSError as exc:
        raise UserError(f"{path}: cannot write ({exc.strerror or exc})") from None
    click.echo(f"wrote {path}", err=True)
