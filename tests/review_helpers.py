"""Shared by the design-review tests: a champion data home (built once per session) and candidate configs.

The champion is a small real predictor (``pipeline.bootstrap.run()``) over the bundled
reference data, registered and promoted in a template store under the session's base temp dir;
a second module asking for it in the same session reuses the folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest


def champion_home(tmp_path_factory, migrated_mlflow_db) -> Path:
    home = tmp_path_factory.getbasetemp() / "review-champion"
    if (home / ".ready").exists():
        return home
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    shutil.copy(migrated_mlflow_db, home / "mlflow.db")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MAFORECAST_DATA_HOME", str(home))
        for var in ("MLFLOW_TRACKING_URI", "MAFORECAST_MODEL_URI", "MAFORECAST_MODEL_VERSION", "MAFORECAST_MODEL_ALIAS"):
            mp.delenv(var, raising=False)
        from pipeline.bootstrap import run

        run(echo=lambda _line: None)
    (home / ".ready").touch()
    return home


def use_home(monkeypatch, home: Path) -> None:
    monkeypatch.setenv("MAFORECAST_DATA_HOME", str(home))
    for var in ("MLFLOW_TRACKING_URI", "MAFORECAST_MODEL_URI", "MAFORECAST_MODEL_VERSION", "MAFORECAST_MODEL_ALIAS"):
        monkeypatch.delenv(var, raising=False)


def write_hf_configs(folder: Path) -> dict[str, Path]:
    """Three candidates from transformers' own config classes, saved as <name>/config.json (tiny sizes)."""
    from transformers import Gemma3TextConfig, GPTNeoXConfig, LlamaConfig

    configs = {
        "llama": LlamaConfig(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4,
                             intermediate_size=1408, vocab_size=32000, max_position_embeddings=2048),
        "neox": GPTNeoXConfig(hidden_size=512, num_hidden_layers=6, num_attention_heads=8, intermediate_size=2048,
                              vocab_size=50304, max_position_embeddings=2048),
        "gemma3": Gemma3TextConfig(hidden_size=512, num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=4,
                                   head_dim=64, intermediate_size=2048, vocab_size=32000, max_position_embeddings=4096),
    }
    out = {}
    for name, cfg in configs.items():
        cfg.save_pretrained(folder / name)
        out[name] = folder / name / "config.json"
        assert json.loads(out[name].read_text())["model_type"] in ("llama", "gpt_neox", "gemma3_text")
    return out
