"""Build an ``Architecture`` from a Hugging Face ``config.json`` (plus a training plan).

``from_hf_config(config, training)`` returns the architecture and a list of notes naming every
field that was inferred from a model-type convention or left at a schema default. Training
fields (learning rate, batch tokens, steps, ...) are never in a config.json: they come from
``training`` or the stated defaults.
"""

from __future__ import annotations

from collections.abc import Callable

from maforecast.errors import UserError
from predictor.architecture import Architecture, ArchitectureError, parse_architecture

TRAINING_FIELDS = (
    "learning_rate",
    "lr_schedule",
    "warmup_frac",
    "batch_tokens",
    "total_steps",
    "training_tokens",
    "init_std",
    "weight_decay",
    "optimizer",
    "precision",
    "precision_target",
    "seq_len",
    "name",
)

_ACT = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_python": "gelu",
    "quick_gelu": "gelu",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
    "swiglu": "silu",
}


class _Reader:
    """Reads config keys, recording which fields fell back to a convention or default."""

    def __init__(self, config: dict, model_type: str):
        self.c = config
        self.model_type = model_type
        self.notes: list[str] = []

    def get(self, field: str, *keys: str, default=None, required: bool = False, why: str | None = None):
        for k in keys:
            if k in self.c and self.c[k] is not None:
                return self.c[k]
        if required:
            raise UserError(f"config.json ({self.model_type}) lacks '{keys[0]}' needed for {field}")
        if default is not None or why:
            self.notes.append(f"{field}: not in config ({'/'.join(keys) or '-'}); {why or 'default'} -> {default!r}")
        return default

    def assume(self, field: str, value, why: str):
        self.notes.append(f"{field}: inferred from model_type {self.model_type} ({why}) -> {value!r}")
        return value


def _activation(r: _Reader, *keys: str, default: str) -> str:
    raw = r.get("activation", *keys, default=default, why="model-type default")
    act = _ACT.get(str(raw).lower())
    if act is None:
        r.notes.append(f"activation: unknown '{raw}' -> 'other'")
        return "other"
    return act


def _common(r: _Reader) -> dict:
    return {
        "n_layers": r.get("n_layers", "num_hidden_layers", "n_layer", "num_layers", required=True),
        "d_model": r.get("d_model", "hidden_size", "n_embd", "d_model", required=True),
        "n_heads": r.get("n_heads", "num_attention_heads", "n_head", required=True),
        "vocab_size": r.get("vocab_size", "vocab_size", required=True),
    }


def _seq_len(r: _Reader, default: int = 2048) -> int:
    return int(r.get("seq_len", "max_position_embeddings", "n_positions", "n_ctx", default=default, why="default"))


def _gpt_neox(r: _Reader) -> dict:
    d = _common(r)
    d["d_ffn"] = r.get("d_ffn", "intermediate_size", default=4 * d["d_model"], why="4 x d_model")
    d.update(
        ffn_type="mlp",
        activation=_activation(r, "hidden_act", default="gelu"),
        norm_type="layernorm",
        norm_placement="pre",
        parallel_attn_mlp=bool(r.get("parallel_attn_mlp", "use_parallel_residual", default=True, why="GPT-NeoX default")),
        positional_encoding="rotary",
        rotary_pct=float(r.get("rotary_pct", "rotary_pct", "partial_rotary_factor", default=0.25, why="GPT-NeoX default")),
        rope_theta=float(r.get("rope_theta", "rotary_emb_base", "rope_theta", default=10000.0, why="default")),
        attention_bias=bool(r.get("attention_bias", "attention_bias", default=True, why="GPT-NeoX default")),
        mlp_bias=r.assume("mlp_bias", True, "GPT-NeoX MLP has biases"),
        tied_embeddings=bool(r.get("tied_embeddings", "tie_word_embeddings", default=False, why="GPT-NeoX default")),
        seq_len=_seq_len(r),
    )
    return d


def _llama_like(r: _Reader, *, qkv_bias_default: bool = False) -> dict:
    d = _common(r)
    d["n_kv_heads"] = r.get("n_kv_heads", "num_key_value_heads", default=d["n_heads"], why="same as n_heads")
    if r.c.get("head_dim"):
        d["head_dim"] = int(r.c["head_dim"])
    d["d_ffn"] = r.get("d_ffn", "intermediate_size", required=True)
    d.update(
        ffn_type=r.assume("ffn_type", "glu", "gated MLP (gate_proj/up_proj)"),
        activation=_activation(r, "hidden_act", "hidden_activation", default="silu"),
        norm_type=r.assume("norm_type", "rmsnorm", "RMSNorm"),
        norm_placement=r.assume("norm_placement", "pre", "pre-norm decoder"),
        parallel_attn_mlp=False,
        positional_encoding="rotary",
        rotary_pct=float(r.c.get("partial_rotary_factor") or 1.0),
        rope_theta=float(r.get("rope_theta", "rope_theta", default=10000.0, why="default")),
        attention_bias=bool(r.get("attention_bias", "attention_bias", default=qkv_bias_default, why=f"{r.model_type} default")),
        mlp_bias=bool(r.c.get("mlp_bias", False)),
        tied_embeddings=bool(r.get("tied_embeddings", "tie_word_embeddings", default=False, why="default")),
        seq_len=_seq_len(r, 4096),
    )
    return d


def _qwen2(r: _Reader) -> dict:
    d = _llama_like(r, qkv_bias_default=True)
    if "attention_bias" not in r.c:
        d["attention_bias"] = r.assume("attention_bias", True, "Qwen2 has q/k/v biases")
    return d


def _gemma(r: _Reader) -> dict:
    d = _llama_like(r)
    d["activation"] = _activation(r, "hidden_activation", "hidden_act", default="gelu_pytorch_tanh")
    d["tied_embeddings"] = bool(r.c.get("tie_word_embeddings", True))
    if r.model_type in ("gemma2", "gemma3", "gemma3_text"):
        d["norm_placement"] = r.assume("norm_placement", "sandwich", "pre+post norms around attention and MLP")
    if r.model_type in ("gemma3", "gemma3_text"):
        d["qk_norm"] = r.assume("qk_norm", True, "Gemma 3 uses QK-norm")
    return d


def _olmo(r: _Reader) -> dict:
    d = _llama_like(r)
    if r.model_type == "olmo":
        d["norm_type"] = r.assume("norm_type", "layernorm_nonparametric", "OLMo 1 non-parametric LayerNorm")
    else:
        d["norm_placement"] = r.assume("norm_placement", "post_sublayer", "OLMo 2 reordered norm x + N(f(x))")
        d["qk_norm"] = r.assume("qk_norm", True, "OLMo 2 normalizes q and k")
    return d


def _phi(r: _Reader) -> dict:
    d = _common(r)
    d["n_kv_heads"] = r.get("n_kv_heads", "num_key_value_heads", default=d["n_heads"], why="same as n_heads")
    d["d_ffn"] = r.get("d_ffn", "intermediate_size", "n_inner", default=4 * d["d_model"], why="4 x d_model")
    d.update(
        ffn_type="mlp",
        activation=_activation(r, "hidden_act", "activation_function", default="gelu_new"),
        norm_type="layernorm",
        norm_placement="pre",
        parallel_attn_mlp=r.assume("parallel_attn_mlp", True, "Phi-1/2 parallel block with one LayerNorm"),
        qk_norm=bool(r.c.get("qk_layernorm", False)),
        positional_encoding="rotary",
        rotary_pct=float(r.get("rotary_pct", "partial_rotary_factor", default=0.5, why="Phi default")),
        rope_theta=float(r.c.get("rope_theta") or 10000.0),
        attention_bias=True,
        mlp_bias=True,
        tied_embeddings=bool(r.c.get("tie_word_embeddings", False)),
        seq_len=_seq_len(r),
    )
    return d


def _phi3(r: _Reader) -> dict:
    d = _llama_like(r)
    d["d_ffn"] = int(r.c["intermediate_size"])
    return d


def _falcon(r: _Reader) -> dict:
    d = _common(r)
    if r.c.get("new_decoder_architecture"):
        kv = r.get("n_kv_heads", "num_kv_heads", default=d["n_heads"], why="same as n_heads")
    elif r.c.get("multi_query", True):
        kv = r.assume("n_kv_heads", 1, "multi_query attention")
    else:
        kv = d["n_heads"]
    d["n_kv_heads"] = int(kv)
    d["d_ffn"] = r.get("d_ffn", "ffn_hidden_size", default=4 * d["d_model"], why="4 x d_model")
    alibi = bool(r.c.get("alibi", False))
    d.update(
        ffn_type="mlp",
        activation=_activation(r, "activation", default="gelu"),
        norm_type="layernorm",
        norm_placement="pre",
        parallel_attn_mlp=bool(r.get("parallel_attn_mlp", "parallel_attn", default=True, why="Falcon default")),
        positional_encoding="alibi" if alibi else "rotary",
        rope_theta=None if alibi else float(r.c.get("rope_theta") or 10000.0),
        attention_bias=bool(r.c.get("bias", False)),
        mlp_bias=bool(r.c.get("bias", False)),
        tied_embeddings=bool(r.c.get("tie_word_embeddings", True)),
        seq_len=_seq_len(r),
    )
    return d


def _gpt2(r: _Reader) -> dict:
    d = _common(r)
    inner = r.c.get("n_inner")
    d["d_ffn"] = int(inner) if inner else r.assume("d_ffn", 4 * d["d_model"], "n_inner null means 4 x n_embd")
    d.update(
        ffn_type="mlp",
        activation=_activation(r, "activation_function", default="gelu_new"),
        norm_type="layernorm",
        norm_placement="pre",
        parallel_attn_mlp=False,
        positional_encoding="learned",
        rope_theta=None,
        attention_bias=True,
        mlp_bias=True,
        tied_embeddings=bool(r.c.get("tie_word_embeddings", True)),
        seq_len=_seq_len(r, 1024),
    )
    return d


def _opt(r: _Reader) -> dict:
    d = _common(r)
    d["d_ffn"] = r.get("d_ffn", "ffn_dim", required=True)
    pre = bool(r.get("norm_placement", "do_layer_norm_before", default=True, why="OPT default (pre-norm)"))
    bias = bool(r.c.get("enable_bias", True))
    d.update(
        ffn_type="mlp",
        activation=_activation(r, "activation_function", default="relu"),
        norm_type="layernorm",
        norm_placement="pre" if pre else "post",
        parallel_attn_mlp=False,
        positional_encoding="learned",
        rope_theta=None,
        attention_bias=bias,
        mlp_bias=bias,
        tied_embeddings=bool(r.c.get("tie_word_embeddings", True)),
        seq_len=_seq_len(r),
    )
    return d


CONVERTERS: dict[str, Callable[[_Reader], dict]] = {
    "gpt_neox": _gpt_neox,
    "llama": _llama_like,
    "mistral": _llama_like,
    "qwen2": _qwen2,
    "gemma": _gemma,
    "gemma2": _gemma,
    "gemma3": _gemma,
    "gemma3_text": _gemma,
    "olmo": _olmo,
    "olmo2": _olmo,
    "phi": _phi,
    "phi3": _phi3,
    "falcon": _falcon,
    "gpt2": _gpt2,
    "opt": _opt,
}

_TRAINING_DEFAULTS = {
    "learning_rate": "3e-4",
    "batch_tokens": "2,097,152 (Pythia)",
    "total_steps": "143,000 (Pythia) unless training_tokens is given",
}


def from_hf_config(config: dict, training: dict | None = None) -> tuple[Architecture, list[str]]:
    """Architecture from a HF config.json dict; returns (architecture, notes on inferred/defaulted fields)."""
    if not isinstance(config, dict):
        raise UserError("config must be a JSON object (the contents of config.json)")
    model_type = str(config.get("model_type", "")).lower()
    if model_type == "gemma3" and isinstance(config.get("text_config"), dict):
        config = {**config["text_config"], "model_type": "gemma3"}
    if model_type not in CONVERTERS:
        known = ", ".join(sorted(CONVERTERS))
        raise UserError(f"unsupported model_type {model_type!r} in config.json (supported: {known})")
    r = _Reader(config, model_type)
    fields = CONVERTERS[model_type](r)
    if config.get("initializer_range"):
        fields["init_std"] = float(config["initializer_range"])
    training = dict(training or {})
    unknown = sorted(set(training) - set(TRAINING_FIELDS))
    if unknown:
        raise UserError(f"unknown training field(s): {', '.join(unknown)} (allowed: {', '.join(TRAINING_FIELDS)})")
    fields.update({k: v for k, v in training.items() if v is not None})
    for f, desc in _TRAINING_DEFAULTS.items():
        if f not in training and not (f == "total_steps" and "training_tokens" in training):
            r.notes.append(f"{f}: not given; default {desc}")
    fields.setdefault("name", config.get("_name_or_path") or model_type)
    try:
        arch = parse_architecture(fields)
    except ArchitectureError as exc:
        raise ArchitectureError(f"{exc} (from config.json, model_type {model_type})") from None
    return arch, r.notes
