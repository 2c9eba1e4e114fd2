"""Load one checkpoint's config, tokenizer and model with ``transformers``, with one-line errors."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from collector.errors import CollectorError, NoModelError, UnsupportedModelError
from collector.hooks import check_decoder_only
from collector.sources import Checkpoint, has_weights, translate_hub_error

log = logging.getLogger(__name__)

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def parse_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[str(name).lower()]
    except KeyError:
        raise CollectorError(f"unknown dtype '{name}'; use float32, bfloat16 or float16") from None


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _hub_kwargs(cp: Checkpoint) -> dict:
    return {"revision": cp.revision} if cp.hub else {}


def _reraise(exc: Exception, cp: Checkpoint) -> None:
    if cp.hub:
        err = translate_hub_error(exc, cp.location, cp.revision)
        if err is not None:
            raise err from None
    msg = str(exc)
    if not cp.hub and ("Unrecognized model" in msg or "model_type" in msg):
        raise UnsupportedModelError(f"{cp.location}: config.json has no model type transformers knows ({msg.splitlines()[0]})") from None
    if not cp.hub and isinstance(exc, OSError):
        raise NoModelError(f"no loadable model in {cp.location}: {msg.splitlines()[0]}") from None
    raise exc


def load_config(cp: Checkpoint):
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(cp.location, **_hub_kwargs(cp))
    except Exception as exc:
        _reraise(exc, cp)
    check_decoder_only(config, cp.label)
    return config


def load_tokenizer(location: str, revision: str | None = None, hub: bool = False, fallbacks: tuple[str, ...] = ()):
    """The tokenizer of a checkpoint; for local folders also tries ``fallbacks`` (e.g. the series root)."""
    from transformers import AutoTokenizer

    tried = []
    for loc in (location, *fallbacks):
        try:
            return AutoTokenizer.from_pretrained(loc, **({"revision": revision} if hub else {}))
        except Exception as exc:
            if hub:
                err = translate_hub_error(exc, loc, revision)
                if err is not None:
                    raise err from None
            tried.append(loc)
    raise CollectorError(f"no tokenizer found in {', '.join(tried)}; pass --tokenizer PATH_OR_REPO")


def load_model(cp: Checkpoint, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    """Config check (decoder-only) first, then the weights; returns the model in eval mode."""
    from transformers import AutoModelForCausalLM

    config = load_config(cp)
    if not cp.hub and not has_weights(Path(cp.location)):
        raise NoModelError(f"no model weights in {cp.location} (config.json but no *.safetensors / pytorch_model.bin)")
    try:
        model = AutoModelForCausalLM.from_pretrained(cp.location, config=config, dtype=dtype, **_hub_kwargs(cp))
    except Exception as exc:
        _reraise(exc, cp)
    model.eval()
    if device != "cpu":
        model.to(device)
    return model
