"""Model lineages: the members of one recipe at several sizes (Pythia, Qwen3, Gemma-3, ...).

A lineage shares what its design switches do not say (data, recipe, tokenizer, initialisation), so a new
size of a known lineage is forecast from its measured siblings (``predictor.level``). The bundled models'
lineages are in ``maforecast/data/lineages.csv`` (with the basis of each); a measured run of your own joins
the lineage its architecture names (``Architecture.lineage``). An HF ``config.json`` names its lineage through
``model_type`` and the config's fingerprint (``infer_lineage``).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import pandas as pd

from predictor.architecture import LINEAGE_NEW, Architecture

__all__ = ["bundled_lineages", "infer_lineage", "lineage_of"]


@lru_cache(maxsize=1)
def bundled_lineages() -> dict[str, str]:
    """Bundled model name -> lineage (``maforecast/data/lineages.csv``)."""
    path = Path(str(resources.files("maforecast") / "data" / "lineages.csv"))
    t = pd.read_csv(path, dtype=str)
    return dict(zip(t["model"], t["lineage"], strict=True))


def lineage_of(model: str, arch: Architecture | None = None) -> str:
    """The lineage a measured model belongs to: its architecture's declared one, else the bundled table's,
    else its own name (a model nobody placed in a lineage is a lineage of one)."""
    if arch is not None and arch.lineage and arch.lineage != LINEAGE_NEW:
        return arch.lineage
    return bundled_lineages().get(model, model)


# model_type -> lineage, where one model_type is one lineage
_BY_TYPE = {
    "qwen2": "qwen2.5", "qwen2_5_vl": "qwen2.5", "qwen3": "qwen3", "qwen3_moe": "qwen3", "qwen3_5": "qwen3.5",
    "qwen3_5_moe": "qwen3.5", "gemma": "gemma", "gemma2": "gemma-2", "gemma3": "gemma-3", "gemma3_text": "gemma-3",
    "gpt_oss": "gpt-oss", "gpt2": "gpt2", "opt": "opt", "phi": "phi", "phi3": "phi-3", "falcon": "falcon",
    "olmo": "olmo", "olmo2": "olmo-2",
}


def infer_lineage(config: dict) -> tuple[str, str]:
    """(lineage, why) of an HF ``config.json``: ``model_type``, and for model types that several lineages
    share, the config's fingerprint (Llama 2 vs 3 by vocabulary and RoPE base; GPT-NeoX is Pythia's only with
    Pythia's vocabulary). A type no lineage in the bundled evidence has gives ``new``."""
    mt = str(config.get("model_type") or "")
    vocab, theta = config.get("vocab_size"), config.get("rope_theta")
    if mt == "llama":
        if vocab == 32000 and theta in (None, 10000, 10000.0):
            return "llama-2", f"model_type llama with vocab_size {vocab} and rope_theta {theta or 10000:g}: Llama 2's"
        if isinstance(vocab, int) and vocab >= 128_000:
            return "llama-3", f"model_type llama with vocab_size {vocab}: Llama 3's tokenizer"
        return LINEAGE_NEW, f"model_type llama with vocab_size {vocab}, rope_theta {theta}: neither Llama 2's nor Llama 3's"
    if mt == "gpt_neox":
        if vocab in (50_304, 50_277, 50_432, 50_688):
            return "pythia", f"model_type gpt_neox with vocab_size {vocab}: the Pythia suite's tokenizer"
        return LINEAGE_NEW, f"model_type gpt_neox with vocab_size {vocab}: not a Pythia vocabulary"
    if mt in _BY_TYPE:
        return _BY_TYPE[mt], f"model_type {mt}"
    return LINEAGE_NEW, f"model_type {mt or '(none)'}: no lineage in the bundled evidence"
