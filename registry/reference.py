"""The bundled reference data mapped onto the predictor's schema: the reference architectures, the
evidence the engine learns from, and an engine fitted on the bundled data (``monitor``'s fallback prior)."""

from __future__ import annotations

import math
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

import pandas as pd

from collector.reference import (
    load_controlled_effects,
    load_final_model_architectures,
    load_maxact_architectures,
    load_peer_evidence,
    load_pythia_architectures,
    load_reference_stats,
    pythia_model_name,
)
from predictor.architecture import DEFAULT_BATCH_TOKENS, Architecture
from predictor.engine import ForecastEngine
from predictor.evidence import Evidence, aggregate_evidence
from predictor.lineage import bundled_lineages


def _size_to_float(text: str) -> float:
    m = re.fullmatch(r"\s*([\d.]+)\s*([kmbt]?)\s*", str(text).lower())
    if not m:
        raise ValueError(f"cannot read size {text!r}")
    return float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}[m.group(2)]


def _first_float(text) -> float | None:
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return None
    m = re.search(r"[\d.]+", str(text))
    return float(m.group(0)) if m else None


def _bool(v) -> bool:
    return str(v).strip().lower().startswith("true")


@lru_cache(maxsize=1)
def pythia_architectures() -> dict[str, Architecture]:
    """The ten Pythia sizes (pythia_architectures.csv) keyed by stats-table model name ('pythia-14m')."""
    out: dict[str, Architecture] = {}
    for r in load_pythia_architectures().to_dict("records"):
        name = pythia_model_name(r["model"])
        out[name] = Architecture(
            name=name,
            n_layers=int(r["n_layers"]),
            d_model=int(r["d_model"]),
            n_heads=int(r["n_heads"]),
            head_dim=int(r["d_head"]),
            d_ffn=int(r["d_ff"]),
            ffn_type="mlp",
            activation="gelu",
            norm_type="layernorm",
            norm_placement="pre",
            parallel_attn_mlp=_bool(r["parallel_residual"]),
            positional_encoding="rotary",
            rotary_pct=float(r["rotary_pct"]),
            attention_bias=True,
            mlp_bias=True,
            tied_embeddings=False,
            vocab_size=50_304,
            seq_len=int(r["seq_len"]),
            learning_rate=float(r["lr_config_yml"]),
            lr_schedule="cosine",
            warmup_frac=float(r["warmup_frac"]),
            batch_tokens=DEFAULT_BATCH_TOKENS,
            total_steps=int(r["train_iters"]),
            init_std=0.02,
            weight_decay=0.1,  # "weight-decay": 0.1 in EleutherAI/pythia models/*.yml (160M, 12B checked); was 0.01
            optimizer="adam",
            precision="bf16" if str(r["precision"]).startswith("bf16") else "fp16",
        )
    return out


_FINAL_NORM_PLACEMENT = {"pre": "pre", "pre_parallel": "pre", "sandwich": "sandwich", "post_sublayer": "post_sublayer"}
_FINAL_ACT = {"silu": "silu", "gelu": "gelu", "gelu_new": "gelu_tanh", "relu": "relu"}


@lru_cache(maxsize=1)
def final_model_architectures() -> dict[str, Architecture]:
    """The 13 fully trained LLMs of final_models_architectures.csv, keyed by model name.

    Their training recipe (learning rate, batch, steps) is not in the file: those fields keep
    the schema defaults and ``training_tokens`` is set where the file states a number.
    """
    out: dict[str, Architecture] = {}
    for r in load_final_model_architectures().to_dict("records"):
        act = str(r["activation"]).split()[0]
        pe = str(r["positional_encoding"])
        rotary = "rotary" in pe
        rotary_pct = 1.0
        if rotary and "factor" in pe:
            rotary_pct = _first_float(pe.split("factor", 1)[1]) or 1.0
        tokens_t = _first_float(r["training_tokens_T"]) if "undisclosed" not in str(r["training_tokens_T"]) else None
        out[r["model"]] = Architecture(
            name=r["model"],
            n_layers=int(r["n_layers"]),
            d_model=int(r["d_model"]),
            n_heads=int(r["n_heads"]),
            n_kv_heads=int(r["n_kv_heads"]),
            head_dim=int(r["head_dim"]),
            d_ffn=int(r["d_ffn"]),
            ffn_type="glu" if _bool(r["glu"]) else "mlp",
            activation=_FINAL_ACT.get(act, "gelu_tanh" if "tanh" in str(r["activation"]) else "other"),
            norm_type=r["norm_type_enum"],
            norm_placement=_FINAL_NORM_PLACEMENT[r["norm_placement_enum"]],
            parallel_attn_mlp=_bool(r["parallel_attn_mlp"]),
            qk_norm=_bool(r["qk_norm"]),
            positional_encoding="rotary" if rotary else "learned",
            rotary_pct=rotary_pct,
            rope_theta=float(r["rope_theta"]) if rotary and not pd.isna(r["rope_theta"]) else None,
            attention_bias=_bool(r["attention_bias"]),
            mlp_bias=_bool(r["mlp_bias"]),
            tied_embeddings=_bool(r["tied_embeddings"]),
            embedding_scale=not pd.isna(r["embedding_scale"]),
            vocab_size=int(r["vocab_size"]),
            seq_len=int(r["train_context"]),
            training_tokens=tokens_t * 1e12 if tokens_t else None,
            total_params_B=float(r["n_params_B"]),
        )
    return out


def _maxact_row(r: dict) -> Architecture:
    act = str(r["activation"])
    pe = str(r["positional_encoding"])
    rotary = "rotary" in pe
    pct = 0.25 if "25%" in pe else 1.0
    kind = str(r["attention_kind"])
    moe = int(r["moe_experts"]) if not pd.isna(r["moe_experts"]) else None
    d_ffn = r["d_ffn"] if not pd.isna(r["d_ffn"]) else r["moe_d_ffn"]
    tokens_t = r["training_tokens_T"] if not pd.isna(r["training_tokens_T"]) else None
    return Architecture(
        name=r["model"],
        n_layers=int(r["n_layers"]),
        d_model=int(r["d_model"]),
        n_heads=int(r["n_heads"]),
        n_kv_heads=int(r["n_kv_heads"]),
        head_dim=int(r["head_dim"]),
        d_ffn=int(d_ffn),
        ffn_type="glu" if _bool(r["glu"]) else "mlp",
        activation="gelu_tanh" if "tanh" in act else _FINAL_ACT.get(act.split()[0], "other"),
        norm_type="rmsnorm",
        norm_placement=_FINAL_NORM_PLACEMENT[str(r["norm_placement"])],
        parallel_attn_mlp=_bool(r["parallel_attn_mlp"]),
        qk_norm=_bool(r["qk_norm"]),
        positional_encoding="rotary" if rotary else "learned",
        rotary_pct=pct,
        rope_theta=float(r["rope_theta"]) if rotary and not pd.isna(r["rope_theta"]) else None,
        attention_bias=_bool(r["attention_bias"]),
        mlp_bias=_bool(r["mlp_bias"]),
        tied_embeddings=_bool(r["tied_embeddings"]),
        embedding_scale=not pd.isna(r["embedding_scale"]),
        vocab_size=int(r["vocab_size"]),
        attention_kind="hybrid" if "hybrid" in kind else "softmax",
        attention_gate="output gate" in str(r["other_attn_stabilizer"]),
        attention_sink="learned_sink" if "attention sinks" in str(r["other_attn_stabilizer"]) else "none",
        moe_experts=moe,
        moe_active_experts=int(r["moe_active_experts"]) if moe else None,
        training_tokens=float(tokens_t) * 1e12 if tokens_t else None,
        total_params_B=float(r["total_params_B"]) if not pd.isna(r["total_params_B"]) else None,
    )


@lru_cache(maxsize=1)
def maxact_architectures() -> dict[str, Architecture]:
    """The 19 trained LLMs of maxact_architectures.csv (arXiv 2605.15572), keyed by model name."""
    return {r["model"]: _maxact_row(r) for r in load_maxact_architectures().to_dict("records")}


def reference_architectures() -> dict[str, Architecture]:
    """All bundled architectures (Pythia + both trained-LLM sets) keyed by stats-table model name, each with its
    lineage (``maforecast/data/lineages.csv``)."""
    lineages = bundled_lineages()
    archs = {**pythia_architectures(), **final_model_architectures(), **maxact_architectures()}
    return {m: a.model_copy(update={"lineage": lineages[m]}) if m in lineages else a for m, a in archs.items()}


def load_anchors() -> pd.DataFrame:
    """Model-level figures quoted from papers (``maforecast/data/anchors.csv``)."""
    return pd.read_csv(Path(str(resources.files("maforecast") / "data" / "anchors.csv")))


def build_evidence(stats: pd.DataFrame, archs: dict[str, Architecture] | None = None, peers: pd.DataFrame | None = None,
                   anchors: pd.DataFrame | None = None, controlled: pd.DataFrame | None = None) -> Evidence:
    """A stats table (any mix of sources and protocols) with the bundled architectures, peer grids, anchors
    and controlled comparisons, aggregated into the engine's evidence."""
    return aggregate_evidence(stats, reference_architectures() if archs is None else archs,
                              load_peer_evidence() if peers is None else peers, load_anchors() if anchors is None else anchors,
                              load_controlled_effects() if controlled is None else controlled)


_REFERENCE: list[ForecastEngine] = []


def reference_engine() -> ForecastEngine:
    """The engine fitted on the bundled reference data (once per process)."""
    if not _REFERENCE:
        _REFERENCE.append(ForecastEngine().fit(build_evidence(load_reference_stats())))
    return _REFERENCE[0]
