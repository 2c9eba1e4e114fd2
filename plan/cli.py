"""``maforecast plan CONFIG --tool T``: the answer's precision plan as a file the tool reads."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from maforecast.errors import UserError
from maforecast.files import write_text_atomic
from plan.files import NAMED_TOOLS, TOOLS, check_expressible, render
from plan.naming import load_bundle
from predictor.precision import FORMATS, TARGET_FORMATS
from review.inputs import load_architecture, read_json, read_training


@click.command("plan", short_help="Write the precision plan as a file for torchao, TE, Megatron, llm-compressor, TE debug or JSON.")
@click.argument("config", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--tool", type=click.Choice(TOOLS), required=True, help="Which tool's file to write.")
@click.option("--target", "precision_target", type=click.Choice(list(TARGET_FORMATS)), default=None,
              help="Precision target (default: the architecture's precision_target).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="Format (scaling recipe) of the target to plan for (default: the recipe the plan recommends, "
              "e.g. fp8_rowwise for fp8_training).")
@click.option("--model-type", default=None,
              help="HF model type for module names (default: the config's, else llama); megatron and te-debug use none.")
@click.option("--training", "training_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="JSON object of training fields the config lacks.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None, help="File to write (default: stdout).")
@click.option("--model-uri", default=None, help="MLflow model URI (default models:/<name>@champion).")
def plan_cmd(config: Path, tool: str, precision_target: str | None, fmt: str | None, model_type: str | None,
             training_path: Path | None, out: Path | None, model_uri: str | None) -> None:
    """Write CONFIG's precision plan (the layers to keep in high precision) for TOOL."""
    training = read_training(training_path, precision_target)
    doc = read_json(config)
    mt = model_type or (doc.get("config", doc).get("model_type") if isinstance(doc, dict) else None) or "llama"
    if tool in NAMED_TOOLS and mt not in load_bundle():  # Megatron's and TE debug's files name no module
        raise UserError(f"--model-type: no module naming for {mt!r} (known: {', '.join(sorted(load_bundle()))})")
    arch, _ = load_architecture(config, training)
    check_expressible(tool, arch.precision_target, fmt)  # before the seconds MLflow takes
    # here, not at the top: MLflow takes seconds to import, and bad inputs are reported before that
    from registry.loader import load_predictor, resolve_model_uri

    answer = load_predictor(resolve_model_uri(model_uri, None, None)).answer(arch)
    text = render(answer, arch, tool, fmt, mt)
    if out is None:
        sys.stdout.write(text)
    else:
        try:
            write_text_atomic(out, text)
        except OSError as exc:
            raise UserError(f"--out {out}: cannot write ({exc.strerror or exc})") from None
        click.echo(f"wrote {out}", err=True)
