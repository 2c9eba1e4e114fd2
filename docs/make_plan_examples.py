"""Regenerate the examples of docs/PLAN.md from the reference engine (``registry.reference.reference_engine``).

    python docs/make_plan_examples.py            # rewrites docs/PLAN.md's example blocks in place

Each block between ``<!-- example: NAME -->`` and ``<!-- /example -->`` is replaced by what ``plan.files.render``
writes for that example today (long blocks are cut after ``MAX_LINES`` lines, marked ``...``).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

MAX_LINES = 24
PLAN_MD = Path(__file__).resolve().parent / "PLAN.md"
# name -> (reference model, precision target, tool, format (None: the plan's recipe), model type, fence language)
EXAMPLES = {
    "recipes": ("Qwen2.5-7B", "fp8_training", None, None, "qwen2", "text"),
    "torchao": ("Qwen2.5-7B", "fp8_training", "torchao", "fp8_e4m3", "qwen2", "python"),
    "torchao-rowwise": ("Qwen2.5-7B", "fp8_training", "torchao", None, "qwen2", "python"),
    "te": ("Qwen2.5-7B", "fp8_training", "te", "fp8_block128", "qwen2", "python"),
    "megatron": ("Qwen2.5-7B", "fp8_training", "megatron", "fp8_e4m3", "qwen2", "text"),
    "te-debug": ("Qwen2.5-7B", "fp8_training", "te-debug", "fp8_e4m3", "qwen2", "yaml"),
    "llm-compressor": ("OLMo-2-1124-7B", "int8_w8a8", "llm-compressor", None, "olmo2", "yaml"),
    "llm-compressor-per-tensor": ("OLMo-2-1124-7B", "int8_w8a8", "llm-compressor", "int8_per_tensor", "olmo2", "yaml"),
    "json": ("gemma-2-2b", "fp16_inference", "json", None, "gemma2", "json"),
}


def example(name: str, answerer) -> str:
    from plan.files import render
    from registry.reference import reference_architectures

    model, target, tool, fmt, model_type, lang = EXAMPLES[name]
    arch = reference_architectures()[model].model_copy(update={"precision_target": target, "lineage": None})
    answer = answerer.answers([arch])[0]
    if tool is None:  # the recipes the answer weighs, and the one its plan is for
        plan = answer.precision_plan
        rows = [f"{o.format:<14} {'at risk' if o.at_risk else 'passes':<8} P {o.probability:.2f}  keeps {o.keep:>2} layer(s)"
                f"{'   <- the plan' if o.format == plan.recipe else ''}" for o in plan.recipes]
        text = "\n".join([f"{model} ({target}): precision_plan.recipes", *rows, f"recipe: {plan.recipe_why}"])
    else:
        text = render(answer, arch, tool, fmt, model_type).rstrip("\n")
    lines = text.splitlines()
    if len(lines) > MAX_LINES:
        lines = [*lines[:MAX_LINES], "..."]
    return f"```{lang}\n" + "\n".join(lines) + "\n```"


def main(path: Path = PLAN_MD) -> int:
    from predictor import knowledge as kbm
    from predictor.answer import Answerer
    from registry.reference import reference_engine

    answerer = Answerer(reference_engine(), kbm.load_kb())
    doc = path.read_text()

    def block(m: re.Match) -> str:
        return f"<!-- example: {m.group(1)} -->\n{example(m.group(1), answerer)}\n<!-- /example -->"

    new = re.sub(r"<!-- example: ([\w-]+) -->\n.*?<!-- /example -->", block, doc, flags=re.S)
    path.write_text(new)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
