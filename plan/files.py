"""The answer's precision plan as the files the tools read (``maforecast plan``, ``POST /plan``).

Each file starts with a comment naming the predictor version, the architecture digest and what each entry rests
on (the layer's probability of crossing the format's breaking limit, its forecast against the limit). Module
names come from ``plan.naming`` (read off the real ``transformers`` classes).

- ``torchao``: a Python module with ``KEEP_HIGH_PRECISION`` and ``module_filter_fn`` for
  ``torchao.float8.convert_to_float8_training(model, module_filter_fn=module_filter_fn)``;
- ``llm-compressor``: a recipe (YAML) whose ``QuantizationModifier.ignore`` lists the planned modules;
- ``megatron``: Megatron-LM arguments keeping the first/last layers in BF16 (``--first-last-layers-bf16``);
  Megatron can only keep the ends, so N and M cover the planned layers and the header names the extra ones;
- ``te-debug``: a Transformer Engine debug (nvdlfw_inspect) config logging the monitored layers' statistics;
- ``json``: the plan and the module names, for anything else.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import yaml

from maforecast.errors import UserError
from plan.naming import layer_modules
from predictor.architecture import Architecture
from predictor.response import FormatPlan, PredictResponse
from predictor.text import ranges

TOOLS = ("torchao", "llm-compressor", "megatron", "te-debug", "json")
# the formats each tool's file can express
TOOL_FORMATS = {"torchao": ("fp8_e4m3", "fp8_e5m2"), "megatron": ("fp8_e4m3", "fp8_e5m2"),
                "llm-compressor": ("int8_per_tensor", "fp8_e4m3", "fp16", "bf16"),
                "te-debug": ("fp8_e4m3", "fp8_e5m2", "fp16", "bf16", "int8_per_tensor"),
                "json": ("fp8_e4m3", "fp8_e5m2", "fp16", "bf16", "int8_per_tensor")}
LLMC_SCHEME = {"int8_per_tensor": "W8A8", "fp8_e4m3": "FP8_DYNAMIC", "fp16": "W4A16", "bf16": "W4A16"}
PLAN_FILENAMES = {"torchao": "float8_filter.py", "llm-compressor": "recipe.yaml", "megatron": "megatron_args.txt",
                  "te-debug": "te_debug.yaml", "json": "precision_plan.json"}
TE_FREQ = 100  # steps between logged statistics (TE warns that logging every step costs)


def arch_digest(arch: Architecture) -> str:
    return hashlib.sha256(arch.model_dump_json(exclude={"name"}).encode()).hexdigest()[:16]


def format_plan(answer: PredictResponse, fmt: str | None) -> FormatPlan:
    plans = {p.format: p for p in (answer.precision_plan.formats if answer.precision_plan else [])}
    if not plans:
        raise UserError(f"precision_target: {answer.precision_plan.precision_target if answer.precision_plan else '?'} "
                        "gives no format to plan for")
    if fmt is None:
        if len(plans) > 1:
            raise UserError(f"format: the precision target uses {', '.join(plans)}: name one with --format")
        fmt = next(iter(plans))
    if fmt not in plans:
        raise UserError(f"format: {fmt!r} is not a format of this precision target (it uses {', '.join(plans)})")
    return plans[fmt]


def _header(answer: PredictResponse, arch: Architecture, fp: FormatPlan, tool: str, comment: str = "#") -> list[str]:
    who = answer.predictor
    lines = [f"maforecast precision plan for {tool}: {arch.label()} (architecture digest {arch_digest(arch)})",
             f"predictor {who.name} version {who.version or '?'}{' @' + who.alias if who.alias else ''}; format {fp.format}; "
             f"precision_target {answer.precision_plan.precision_target}",
             f"{fp.why}; risk left outside the plan: {fp.residual_risk:.2f}",
             *(f"  {pl.why}" for pl in fp.keep_high_precision)]
    return [f"{comment} {x}" for x in lines]


def render(answer: PredictResponse, arch: Architecture, tool: str, fmt: str | None = None,
           model_type: str = "llama") -> str:
    if tool not in TOOLS:
        raise UserError(f"tool: {tool!r} is not one of {', '.join(TOOLS)}")
    fp = format_plan(answer, fmt)
    if fp.format not in TOOL_FORMATS[tool]:
        raise UserError(f"format: {tool} cannot express {fp.format} (it takes {', '.join(TOOL_FORMATS[tool])})")
    keep = [p.layer for p in fp.keep_high_precision]
    if not keep and tool != "te-debug" and tool != "json":
        raise UserError(f"the plan keeps no layer in high precision for {fp.format} ({fp.why}): no {tool} file to write")
    modules = layer_modules(model_type, keep)
    head = _header(answer, arch, fp, tool)
    if tool == "torchao":
        return "\n".join([*head, "# usage: convert_to_float8_training(model, module_filter_fn=module_filter_fn)",
                          "", f"KEEP_HIGH_PRECISION = frozenset({json.dumps(modules, indent=4)[:-1]}])", "", "",
                          "def module_filter_fn(module, fqn: str) -> bool:",
                          '    """True: convert this module to float8; the planned modules stay in high precision."""',
                          "    return fqn not in KEEP_HIGH_PRECISION", ""])
    if tool == "llm-compressor":
        recipe = {"quant_stage": {"quant_modifiers": {"QuantizationModifier": {
            "targets": ["Linear"], "scheme": LLMC_SCHEME[fp.format], "ignore": ["lm_head", *modules]}}}}
        return "\n".join([*head, _yaml(recipe)])
    if tool == "megatron":
        n_layers = arch.n_layers
        start = max((k + 1 for k in keep if k < n_layers / 2), default=0)
        end = max((n_layers - k for k in keep if k >= n_layers / 2), default=0)
        covered = set(range(start)) | set(range(n_layers - end, n_layers))
        extra = sorted(covered - set(keep))
        args = (f"--fp8-format hybrid --fp8-recipe tensorwise --first-last-layers-bf16 "
                f"--num-layers-at-start-in-bf16 {start} --num-layers-at-end-in-bf16 {end}")
        note = (f"# Megatron keeps only the first/last layers in BF16: {len(extra)} layer(s) beyond the plan come along "
                f"({ranges(extra)})" if extra else "# the planned layers are exactly the first/last ones")
        return "\n".join([*head, note, "# --first-last-layers-bf16 does not combine with --fp8-recipe delayed", args, ""])
    if tool == "te-debug":
        watch = fp.monitor or keep
        if not watch:
            raise UserError(f"the plan monitors no layer for {fp.format}: no te-debug file to write")
        config = {"maforecast_monitor": {"enabled": True, "layers": {
            "layer_name_regex_pattern": rf".*layers\.({'|'.join(str(k) for k in watch)})\..*"},
            "transformer_engine": {"LogTensorStats": {"enabled": True, "tensors": ["activation"],
                                                       "stats": ["max", "min", "std", "cur_amax", "dynamic_range"],
                                                       "freq": TE_FREQ}}}}
        return "\n".join([*head, f"# logs every {TE_FREQ} steps (TE: logging every step slows training)", _yaml(config)])
    return json.dumps({"header": [h[2:] for h in head], "plan": fp.model_dump(), "model_type": model_type,
                       "keep_modules": modules, "monitor_modules": layer_modules(model_type, fp.monitor)}, indent=1) + "\n"


def _yaml(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
