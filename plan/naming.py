"""Module names per Hugging Face model type, read off the real ``transformers`` classes, never typed by hand.

``discover(model_type)`` builds a tiny model of that type on the meta device and lists the linear modules of
one decoder layer as templates (``model.layers.{i}.mlp.down_proj``). ``python -m plan.naming`` writes them
for every mapped type to ``maforecast/data/module_names.json``, so the plan command needs neither torch nor a
model at run time; ``tests/test_plan.py`` checks the bundle against the classes again.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from functools import lru_cache
from importlib import resources
from pathlib import Path

from maforecast.errors import UserError

# the HF model types whose architectures the project maps (predictor.hf_config)
MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "gpt_neox", "olmo2", "gpt2",
               "falcon", "phi3", "mixtral", "qwen3_moe")
_TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 128, "max_position_embeddings": 64, "pad_token_id": 0,
         "num_local_experts": 2, "num_experts": 2, "num_experts_per_tok": 1, "moe_intermediate_size": 32}
_LAYER = re.compile(r"^(?P<prefix>.+?)\.(?P<i>\d+)\.(?P<rest>.+)$")


def discover(model_type: str) -> dict:
    """{"prefix": "model.layers.{i}.", "linear": [...]} from a tiny real model of ``model_type``."""
    import torch  # the collect extra: only to regenerate or check the bundle
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    cfg = AutoConfig.for_model(model_type)
    for k, v in _TINY.items():
        if hasattr(cfg, k) or k in getattr(cfg, "attribute_map", {}):
            with contextlib.suppress(AttributeError):  # a derived field (Falcon's head_dim) follows from the others
                setattr(cfg, k, v)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    prefixes, linear = set(), []
    for name, mod in model.named_modules():
        m = _LAYER.match(name)
        if not isinstance(mod, torch.nn.Linear | Conv1D) or not m or m["i"] != "0":
            continue
        prefixes.add(m["prefix"])
        linear.append(m["rest"])
    if len(prefixes) != 1:
        raise RuntimeError(f"{model_type}: expected one decoder-layer container, found {sorted(prefixes)}")
    return {"prefix": prefixes.pop() + ".{i}.", "linear": sorted(linear)}


def bundle_path() -> Path:
    return Path(str(resources.files("maforecast") / "data" / "module_names.json"))


@lru_cache(maxsize=1)
def load_bundle() -> dict[str, dict]:
    return json.loads(bundle_path().read_text())["model_types"]


def _naming(model_type: str) -> dict:
    names = load_bundle()
    if model_type not in names:
        raise UserError(f"model_type: no module naming for {model_type!r} (known: {', '.join(sorted(names))})")
    return names[model_type]


def layer_modules(model_type: str, layers: list[int]) -> list[str]:
    """The fully qualified names of the linear modules of ``layers`` in a ``model_type`` model."""
    t = _naming(model_type)
    return [t["prefix"].format(i=i) + rest for i in layers for rest in t["linear"]]


def layer_container(model_type: str) -> str:
    """The decoder layers' container (``model.layers.``): a module outside it (``lm_head``, the embeddings)
    is no decoder layer, so an FP8 plan never converts it."""
    return _naming(model_type)["prefix"].split("{i}", 1)[0]


def main() -> None:
    import transformers

    out = {"generated_by": "python -m plan.naming", "transformers": transformers.__version__,
           "model_types": {mt: discover(mt) for mt in MODEL_TYPES}}
    bundle_path().write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {bundle_path()} ({len(out['model_types'])} model types)", file=sys.stderr)


if __name__ == "__main__":
    main()
