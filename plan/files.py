"""The answer's precision plan as the files the tools read (``maforecast plan``, ``POST /plan``).

Each file starts with a comment naming the predictor version, the architecture digest and what each entry rests
on (the layer's probability of crossing the format's breaking limit, its forecast against the limit). Module
names come from ``plan.naming`` (read off the real ``transformers`` classes).

The recipe is written in each tool's own words (``predictor.precision.SPECS[...].tools``), for the format asked or
the recipe the plan recommends (the coarsest scaling that passes the gate). Training and inference never mix:

- ``torchao`` (training): a Python module with ``CONFIG`` (``Float8LinearConfig.from_recipe_name("tensorwise" |
  "rowwise")``), ``KEEP_HIGH_PRECISION`` and ``module_filter_fn`` for ``torchao.float8.convert_to_float8_training(
  model, config=CONFIG, module_filter_fn=module_filter_fn)``; only decoder-layer linears are converted (every FP8
  recipe keeps ``lm_head`` and the embeddings in high precision);
- ``te`` (training): a Python module with the Transformer Engine recipe object (``Float8CurrentScaling``,
  ``Float8BlockScaling``, ``MXFP8BlockScaling``, ``NVFP4BlockScaling``) and the layers to run outside it;
- ``llm-compressor`` (post-training quantization targets only): a recipe (YAML) with the scheme (``FP8``,
  ``FP8_DYNAMIC``, ``FP8_BLOCK``, ``MXFP8``, ``NVFP4``, ``W8A8``; per-tensor INT8 as a config group) whose
  ``QuantizationModifier.ignore`` lists ``lm_head`` and the planned modules;
- ``megatron`` (training): ``--fp8-format``/``--fp8-recipe`` (tensorwise, blockwise, mxfp8) or ``--fp4-format
  e2m1 --fp4-recipe nvfp4``, ``--fp8-param-gather``, and the first/last layers in BF16 (``--first-last-layers-bf16``);
  Megatron can only keep a prefix and a suffix, so N and M are the fewest layers that cover the planned ones and
  the header names the layers the flags force along (``megatron_cover``); its flags count layers, so any
  model type will do;
- ``te-debug``: a Transformer Engine debug (nvdlfw_inspect) config logging the monitored layers' statistics;
- ``json``: the plan and the module names, for anything else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import yaml

from maforecast.errors import UserError
from plan.naming import layer_container, layer_modules
from predictor.architecture import Architecture
from predictor.precision import FORMATS, GATE, SPECS, TARGETS
from predictor.response import FormatPlan, PredictResponse
from predictor.text import ranges

TOOLS = ("torchao", "te", "megatron", "llm-compressor", "te-debug", "json")
# training tools write what a training run reads; llm-compressor writes post-training quantization recipes
TOOL_USE = {"torchao": "training", "te": "training", "megatron": "training", "te-debug": "training",
            "llm-compressor": "inference", "json": None}
PLAN_FILENAMES = {"torchao": "float8_filter.py", "te": "te_recipe.py", "llm-compressor": "recipe.yaml",
                  "megatron": "megatron_args.txt", "te-debug": "te_debug.yaml", "json": "precision_plan.json"}
TE_FREQ = 100  # steps between logged statistics (TE warns that logging every step costs)
# the tools whose file names modules (plan.naming); Megatron's flags count layers, TE's recipe file lists layer
# numbers and TE debug's regex matches them, so those need no naming for the model type
NAMED_TOOLS = ("torchao", "llm-compressor", "json")
# W4A16/W8A16 targets: the weight-only scheme by the target (the activations stay in FP16/BF16)
WEIGHT_ONLY = {"w4a16": "W4A16", "w8a16": "W8A16"}


def tool_formats(tool: str) -> tuple[str, ...]:
    """The formats a tool's file can express (the formats table's own words for each tool)."""
    if tool in ("te-debug", "json"):
        return FORMATS
    return tuple(f for f, spec in SPECS.items() if tool in spec.tools)


def check_expressible(tool: str, precision_target: str, fmt: str | None = None) -> None:
    """Refuse a tool that cannot express the target or the format asked for (``fmt``, else any of the target's
    formats), naming what would work. Training and inference never mix: torchao, TE and Megatron write training
    recipes, llm-compressor post-training quantization."""
    target = TARGETS[precision_target]
    use = TOOL_USE[tool]
    if use is not None and use != target.use:
        tools = [t for t, u in TOOL_USE.items() if u == target.use and set(tool_formats(t)) & set(target.formats)]
        other = {"fp8_training": "fp8_inference", "fp8_inference": "fp8_training", "nvfp4_training": "nvfp4_inference",
                 "nvfp4_inference": "nvfp4_training"}.get(precision_target)
        tools = [t for t in tools if t != "te-debug" or any(f in GATE for f in target.formats)]  # te-debug needs a
        # gated format: it logs the layers the plan monitors
        article = "an" if target.use[0] in "aeiou" else "a"
        raise UserError(f"tool: {tool} writes {use} recipes and {precision_target} is {article} {target.use} target: use "
                        + (" or ".join(f"--tool {t}" for t in tools) or "another --target")
                        + (f" (or --target {other} for {use})" if other else ""))
    takes = tool_formats(tool)
    wanted = [fmt] if fmt else list(target.formats)
    if any(f in takes for f in wanted):
        return
    other = [f for f in target.formats if f in takes]
    targets = [t for t, spec in TARGETS.items() if set(spec.formats) & set(takes) and (use is None or spec.use == use)]
    hint = " or ".join(f"--format {f}" for f in other) if other else " or ".join(f"--target {t}" for t in targets)
    tools = [t for t in TOOLS if t != tool and any(f in tool_formats(t) for f in wanted)
             and TOOL_USE[t] in (None, target.use)]
    more = f" (or --tool {' / '.join(tools)})" if other and tools else ""
    raise UserError(f"format: {tool} cannot express {'/'.join(wanted)} (it takes {', '.join(takes)}): use {hint}{more}")


def megatron_cover(keep: Sequence[int], n_layers: int) -> tuple[int, int]:
    """(start, end) for ``--num-layers-at-{start,end}-in-bf16``: the fewest BF16 layers covering ``keep``.

    Megatron keeps only a prefix and a suffix in BF16, so what stays in FP8 is one run of consecutive layers;
    the fewest BF16 layers leave the longest run without a planned layer in FP8 (a planned block in the middle
    is covered from its nearer end). Every layer planned: (n_layers, 0), nothing left in FP8.
    """
    kept = set(keep)
    best, a = (0, 0), 0  # the longest run [a, b) of unplanned layers
    for b in range(n_layers + 1):
        if b == n_layers or b in kept:
            if b - a > best[1] - best[0]:
                best = (a, b)
            a = b + 1
    if best[0] == best[1]:
        return n_layers, 0
    return best[0], n_layers - best[1]


def arch_digest(arch: Architecture) -> str:
    return hashlib.sha256(arch.model_dump_json(exclude={"name"}).encode()).hexdigest()[:16]


def tool_recipe(answer: PredictResponse, tool: str | None) -> str | None:
    """The recipe a file for ``tool`` is written for when no format is named: the plan's recipe where the tool
    expresses it, else the cheapest safe recipe the tool does express (the plan's own rule on the tool's recipes:
    the coarsest that passes, else the fewest layers kept); None where the target has no choice of recipe."""
    plan = answer.precision_plan
    if plan is None or plan.recipe is None:
        return None
    takes = tool_formats(tool) if tool else FORMATS
    if plan.recipe in takes:
        return plan.recipe
    options = [o for o in plan.recipes if o.format in takes]
    if not options:
        return plan.recipe  # nothing the tool expresses: check_expressible names the alternatives
    safe = next((o for o in options if not o.at_risk), None)
    return (safe or min(options, key=lambda o: (o.keep, options.index(o)))).format


def format_plan(answer: PredictResponse, fmt: str | None, tool: str | None = None) -> FormatPlan:
    plans = {p.format: p for p in (answer.precision_plan.formats if answer.precision_plan else [])}
    if not plans:
        raise UserError(f"precision_target: {answer.precision_plan.precision_target if answer.precision_plan else '?'} "
                        "gives no format to plan for")
    if fmt is None:
        recipe = tool_recipe(answer, tool)
        if recipe in plans:  # a target with a choice of recipe: the plan's, or the cheapest safe one the tool has
            fmt = recipe
        elif len(plans) > 1:
            raise UserError(f"format: the precision target uses {', '.join(plans)}: name one with --format")
        else:
            fmt = next(iter(plans))
    if fmt not in plans:
        raise UserError(f"format: {fmt!r} is not a format of this precision target (it uses {', '.join(plans)})")
    return plans[fmt]


def _header(answer: PredictResponse, arch: Architecture, fp: FormatPlan, tool: str, comment: str = "#") -> list[str]:
    who = answer.predictor
    lines = [f"maforecast precision plan for {tool}: {arch.label()} (architecture digest {arch_digest(arch)})",
             f"predictor {who.name} version {who.version or '?'}{' @' + who.alias if who.alias else ''}; format {fp.format}; "
             f"precision_target {answer.precision_plan.precision_target}",
             *([f"recipe: {answer.precision_plan.recipe_why}"] if fp.format == answer.precision_plan.recipe else
               [f"recipe: {fp.format}, the cheapest safe recipe {tool} expresses (the plan's, {answer.precision_plan.recipe}, "
                f"is not in {tool})"] if answer.precision_plan.recipe and fp.format == tool_recipe(answer, tool) else []),
             f"{fp.why}; risk left outside the plan: {fp.residual_risk:.2f}",
             *(f"  {pl.why}" for pl in fp.keep_high_precision)]
    return [f"{comment} {x}" for x in lines]


def render(answer: PredictResponse, arch: Architecture, tool: str, fmt: str | None = None,
           model_type: str = "llama") -> str:
    if tool not in TOOLS:
        raise UserError(f"tool: {tool!r} is not one of {', '.join(TOOLS)}")
    fp = format_plan(answer, fmt, tool)
    check_expressible(tool, answer.precision_plan.precision_target, fp.format)
    keep = [p.layer for p in fp.keep_high_precision]
    words = SPECS[fp.format].tools.get(tool, "")
    modules = layer_modules(model_type, keep) if tool in NAMED_TOOLS else []
    head = _header(answer, arch, fp, tool)
    if tool == "torchao":
        return "\n".join([*head, "# usage: convert_to_float8_training(model, config=CONFIG, module_filter_fn=module_filter_fn)",
                          "", "from torchao.float8 import Float8LinearConfig", "", f"CONFIG = {words}",
                          f"DECODER_LAYERS = {json.dumps(layer_container(model_type))}",
                          f"KEEP_HIGH_PRECISION = frozenset({json.dumps(modules, indent=4)[:-1]}])", "", "",
                          "def module_filter_fn(module, fqn: str) -> bool:",
                          '    """True: convert this module to float8. Only decoder-layer linears are: lm_head and the',
                          '    embeddings (outside the layers) and the planned modules stay in high precision."""',
                          "    return fqn.startswith(DECODER_LAYERS) and fqn not in KEEP_HIGH_PRECISION", ""])
    if tool == "llm-compressor":
        modifier: dict[str, Any] = {"targets": ["Linear"], "ignore": ["lm_head", *modules]}
        target = answer.precision_plan.precision_target
        if target == "int4_w4a4":  # planned with the INT8 per-tensor check (INT4 is worse): no W4A4 recipe is written
            raise UserError("tool: llm-compressor: int4_w4a4 is planned with the INT8 per-tensor check, and no INT4 W4A4 "
                            "recipe is written: use --target int8_w8a8, or --tool json for the plan")
        if fp.format in ("fp16", "bf16") and target not in WEIGHT_ONLY:
            raise UserError(f"tool: llm-compressor: {target} quantizes no weights (the activations stay in {fp.format}): "
                            "use --target w4a16 or w8a16 for a weight-only recipe, or --tool json for the plan")
        if fp.format == "int8_per_tensor":  # no preset: per-channel INT8 weights, one static activation scale per tensor
            modifier = {"config_groups": {"group_0": {"targets": ["Linear"], "weights": INT8_WEIGHTS,
                                                      "input_activations": INT8_PER_TENSOR_ACT}},
                        "ignore": modifier["ignore"]}
        else:
            modifier["scheme"] = WEIGHT_ONLY.get(target, words)
        recipe = {"quant_stage": {"quant_modifiers": {"QuantizationModifier": modifier}}}
        return "\n".join([*head, _yaml(recipe)])
    if tool == "te":
        cls = words.split("(")[0]
        imports = sorted({cls, "Format"} if "Format." in words else {cls})
        return "\n".join([*head, "# usage: with te.autocast(recipe=RECIPE) (te.fp8_autocast(fp8_recipe=RECIPE) before TE 2.8)"
                           " around the decoder layers not in KEEP_HIGH_PRECISION; run those layers outside it", "",
                           f"from transformer_engine.common.recipe import {', '.join(imports)}", "",
                           f"RECIPE = {words}", f"KEEP_HIGH_PRECISION = {json.dumps(keep)}  # decoder layer indices", ""])
    if tool == "megatron":
        n_layers = arch.n_layers
        start, end = megatron_cover(keep, n_layers)
        covered = set(range(start)) | set(range(n_layers - end, n_layers))
        extra = sorted(covered - set(keep))
        args = (f"{words} --fp8-param-gather" if fp.format.startswith(("fp8", "mx")) else words) + (
            f" --first-last-layers-bf16 --num-layers-at-start-in-bf16 {start} --num-layers-at-end-in-bf16 {end}"
            if keep else "")
        if not keep:
            note = "# the plan keeps no layer in high precision: this recipe passes the gate with every layer in it"
        elif len(covered) == n_layers:
            note = (f"# the plan keeps every layer ({n_layers}) in high precision: with these flags FP8 is off for the "
                    "whole model (no layer is left to convert); train this design in BF16 or with a finer-scaled recipe")
        elif extra:
            note = (f"# unavoidable: {len(extra)} layer(s) ({ranges(extra)}) in BF16 only because Megatron's flags keep "
                    f"a prefix and a suffix, not a middle block; {start} + {end} is the fewest that cover the plan")
        else:
            note = "# the planned layers are exactly the first/last ones"
        most = max(start, end)
        pp = (f"# Megatron allows at most num_layers / pipeline-model-parallel size per end: these counts need "
              f"--pipeline-model-parallel-size <= {n_layers // most}" if most else "")
        return "\n".join([*head, note, *([pp] if pp else []),
                          "# --first-last-layers-bf16 does not combine with --fp8-recipe delayed", args, ""])
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


# llm-compressor's config-group form of per-tensor INT8 (compressed-tensors QuantizationArgs fields)
INT8_WEIGHTS = {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel", "dynamic": False}
INT8_PER_TENSOR_ACT = {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "tensor", "dynamic": False}


def _yaml(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
