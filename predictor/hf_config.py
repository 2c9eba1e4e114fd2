"""Build an ``Architecture`` from a Hugging Face ``config.json`` (plus a training plan).

``from_hf_config(config, training)`` returns the architecture and a list of notes naming every
field that was inferred from a model-type convention or left at a schema default. Training
fields (learning rate, batch tokens, steps, ...) are never in a config.json: they come from
``training`` or the stated defaults.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pydantic import ValidationError

from maforecast.errors import UserError
from predictor.architecture import Architecture, ArchitectureError
from predictor.lineage import infer_lineage

__all__ = ["from_hf_config"]

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
    "precision_recipe",
    "seq_len",
    "name",
    "lineage",
    "protocol",
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


_KINDS = {bool: "true or false", int: "an integer", float: "a number"}


class _Reader:
    """Reads config keys, recording which fields fell back to a convention or default and which
    config key each field came from (errors name the user's key, not the schema's field)."""

    def __init__(self, config: dict, model_type: str):
        self.c = config
        self.model_type = model_type
        self.notes: list[str] = []
        self.source: dict[str, str] = {}  # schema field -> the config.json key it was read from

    def get(self, field: str, *keys: str, default=None, required: bool = False, why: str | None = None,
            kind: type | None = None, quiet: bool = False):
        """The first of ``keys`` present in the config (as ``kind``: a boolean must be a JSON boolean,
        a number a JSON number), else ``default`` (noted)."""
        for k in keys:
            if k in self.c and self.c[k] is not None:
                self.source[field] = k
                return self._as(k, self.c[k], kind)
        if required:
            raise UserError(f"config.{keys[0]}: missing; config.json ({self.model_type}) needs it for {field}")
        if (default is not None or why) and not quiet:
            self.notes.append(f"{field}: not in config ({'/'.join(keys) or '-'}); {why or 'default'} -> {default!r}")
        return default

    def _as(self, key: str, value, kind: type | None):
        if kind is None:
            return value
        ok = (isinstance(value, bool) if kind is bool else
              isinstance(value, int | float) and not isinstance(value, bool) and (kind is float or float(value).is_integer()))
        if not ok:
            raise UserError(f"config.{key}: expected {_KINDS[kind]}, got {value!r}")
        return kind(value)

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
        "n_layers": r.get("n_layers", "num_hidden_layers", "n_layer", "num_layers", required=True, kind=int),
        "d_model": r.get("d_model", "hidden_size", "n_embd", "d_model", required=True, kind=int),
        "n_heads": r.get("n_heads", "num_attention_heads", "n_head", required=True, kind=int),
        "vocab_size": r.get("vocab_size", "vocab_size", required=True, kind=int),
    }


def _seq_len(r: _Reader, default: int = 2048) -> int:
    return r.get("seq_len", "max_position_embeddings", "n_positions", "n_ctx", default=default, why="default", kind=int)


def _gpt_neox(r: _Reader) -> dict:
    d = _common(r)
    d["d_ffn"] = r.get("d_ffn", "intermediate_size", default=4 * d["d_model"], why="4 x d_model", kind=int)
    d.update(
        ffn_type="mlp",
        activation=_activation(r, "hidden_act", default="gelu"),
        norm_type="layernorm",
        norm_placement="pre",
        parallel_attn_mlp=r.get("parallel_attn_mlp", "use_parallel_residual", default=True, why="GPT-NeoX default", kind=bool),
        positional_encoding="rotary",
        rotary_pct=r.get("rotary_pct", "rotary_pct", "partial_rotary_factor", default=0.25, why="GPT-NeoX default", kind=float),
        rope_theta=r.get("rope_theta", "rotary_emb_base", "rope_theta", default=10000.0, why="default", kind=float),
        attention_bias=r.get("attention_bias", "attention_bias", default=True, why="GPT-NeoX default", kind=bool),
        mlp_bias=r.assume("mlp_bias", True, "GPT-NeoX MLP has biases"),
        tied_embeddings=r.get("tied_embeddings", "tie_word_embeddings", default=False, why="GPT-NeoX default", kind=bool),
        seq_len=_seq_len(r),
    )
    return d


def _llama_like(r: _Reader, *, qkv_bias: tuple[bool, str] = (False, "default"), norm_placement: tuple[str, str] = (
        "pre", "pre-norm decoder"), qk_norm: tuple[bool, str] | None = None, tied: bool = False, act: str = "silu",
        ffn_key: str = "intermediate_size", act_keys: tuple[str, ...] = ("hidden_act", "hidden_activation")) -> dict:
    """Llama and its descendants; each model type states its own conventions once (one note per field)."""
    d = _common(r)
    d["n_kv_heads"] = r.get("n_kv_heads", "num_key_value_heads", default=d["n_heads"], why="same as n_heads", kind=int)
    if r.c.get("head_dim") is not None:
        d["head_dim"] = r.get("head_dim", "head_dim", kind=int)
    d["d_ffn"] = r.get("d_ffn", ffn_key, "intermediate_size", required=True, kind=int)
    d.update(
        ffn_type=r.assume("ffn_type", "glu", "gated MLP (gate_proj/up_proj)"),
        activation=_activation(r, *act_keys, default=act),
        norm_type=r.assume("norm_type", "rmsnorm", "RMSNorm"),
        norm_placement=r.assume("norm_placement", *norm_placement),
        parallel_attn_mlp=False,
        positional_encoding="rotary",
        rotary_pct=r.get("rotary_pct", "partial_rotary_factor", default=1.0, kind=float, quiet=True),
        rope_theta=r.get("rope_theta", "rope_theta", default=10000.0, why="default", kind=float),
        mlp_bias=r.get("mlp_bias", "mlp_bias", default=False, kind=bool, quiet=True),
        tied_embeddings=r.get("tied_embeddings", "tie_word_embeddings", default=tied, why=f"{r.model_type} default", kind=bool),
        seq_len=_seq_len(r, 4096),
    )
    if "attention_bias" in r.c:
        d["attention_bias"] = r.get("attention_bias", "attention_bias", kind=bool)
    else:
        d["attention_bias"] = r.assume("attention_bias", *qkv_bias) if qkv_bias[0] else r.get(
            "attention_bias", "attention_bias", default=False, why=qkv_bias[1])
    if qk_norm is not None:
        d["qk_norm"] = r.assume("qk_norm", *qk_norm)
    return d


def _moe(r: _Reader, d: dict, experts: tuple[str, ...], active: str, ffn: str | None = None) -> dict:
    """Routed experts (Mixtral, Qwen3-MoE, DeepSeek): the expert count, the experts per token, the
    per-expert FFN width."""
    d["moe_experts"] = r.get("moe_experts", *experts, required=True, kind=int)
    d["moe_active_experts"] = r.get("moe_active_experts", active, required=True, kind=int)
    if ffn and r.c.get(ffn) is not None:
        d["d_ffn"] = r.get("d_ffn", ffn, kind=int)
    return d


def _qwen2(r: _Reader) -> dict:
    return _llama_like(r, qkv_bias=(True, "Qwen2 has q/k/v biases"))


def _qwen3(r: _Reader) -> dict:
    """Qwen3: no q/k/v biases, RMSNorm on q and k per head; Qwen3-MoE adds routed experts."""
    d = _llama_like(r, qk_norm=(True, "Qwen3 normalizes q and k per head"))
    if r.model_type == "qwen3_moe":
        _moe(r, d, ("num_experts", "num_local_experts"), "num_experts_per_tok", "moe_intermediate_size")
    return d


def _mixtral(r: _Reader) -> dict:
    return _moe(r, _llama_like(r), ("num_local_experts",), "num_experts_per_tok")


def _deepseek(r: _Reader) -> dict:
    """DeepSeek-V2/V3: routed experts with a per-expert width; multi-head latent attention is read as
    standard attention with the config's head count (the schema has no latent-attention field)."""
    d = _llama_like(r)
    r.notes.append("attention: multi-head latent attention (DeepSeek) mapped onto standard attention; "
                   "its effect on massive activations is not in the evidence")
    d.pop("head_dim", None)
    return _moe(r, d, ("n_routed_experts",), "num_experts_per_tok", "moe_intermediate_size")


def _diffllama(r: _Reader) -> dict:
    """DiffLlama: Llama with differential attention (Diff Transformer, arXiv 2410.05258)."""
    d = _llama_like(r)
    d["attention_kind"] = r.assume("attention_kind", "differential", "differential attention (two softmax maps subtracted)")
    return d


def _gpt_oss(r: _Reader) -> dict:
    """gpt-oss: routed experts and a learned per-head attention sink (the attention's ``sinks`` logits)."""
    d = _moe(r, _llama_like(r, qkv_bias=(True, "gpt-oss has q/k/v/o biases")), ("num_local_experts", "num_experts"),
             "num_experts_per_tok")
    d["attention_sink"] = r.assume("attention_sink", "learned_sink", "a learned sink logit per head in every attention layer")
    return d


def _gemma(r: _Reader) -> dict:
    sandwich = r.model_type in ("gemma2", "gemma3", "gemma3_text")
    d = _llama_like(r, tied=True, act="gelu_pytorch_tanh", act_keys=("hidden_activation", "hidden_act"),
                    norm_placement=("sandwich", "pre+post norms around attention and MLP") if sandwich else ("pre", "pre-norm decoder"),
                    qk_norm=(True, "Gemma 3 uses QK-norm") if r.model_type in ("gemma3", "gemma3_text") else None)
    d["embedding_scale"] = r.assume("embedding_scale", True, "Gemma multiplies embeddings by sqrt(d_model)")
    return d


def _olmo(r: _Reader) -> dict:
    if r.model_type == "olmo":
        d = _llama_like(r)
        d["norm_type"] = r.assume("norm_type", "layernorm_nonparametric", "OLMo 1 non-parametric LayerNorm")
        return d
    return _llama_like(r, norm_placement=("post_sublayer", "OLMo 2 reordered norm x + N(f(x))"),
                       qk_norm=(True, "OLMo 2 normalizes q and k"))


def _phi(r: _Reader) -> dict:
    d = _common(r)
    d["n_kv_heads"] = r.get("n_kv_heads", "num_key_value_heads", default=d["n_heads"], why="same as n_heads", kind=int)
    d["d_ffn"] = r.get("d_ffn", "intermediate_size", "n_inner", default=4 * d["d_model"], why="4 x d_model", kind=int)
    d.update(
        ffn_type="mlp",
        activation=_activation(r, "hidden_act", "activation_function", default="gelu_new"),
        norm_type="layernorm",
        norm_placement="pre",
        parallel_attn_mlp=r.assume("parallel_attn_mlp", True, "Phi-1/2 parallel block with one LayerNorm"),
        qk_norm=r.get("qk_norm", "qk_layernorm", default=False, kind=bool, quiet=True),
        positional_encoding="rotary",
        rotary_pct=r.get("rotary_pct", "partial_rotary_factor", default=0.5, why="Phi default", kind=float),
        rope_theta=r.get("rope_theta", "rope_theta", default=10000.0, kind=float, quiet=True),
        attention_bias=True,
        mlp_bias=True,
        tied_embeddings=r.get("tied_embeddings", "tie_word_embeddings", default=False, kind=bool, quiet=True),
        seq_len=_seq_len(r),
    )
    return d


def _phi3(r: _Reader) -> dict:
    return _llama_like(r)


def _falcon(r: _Reader) -> dict:
    d = _common(r)
    if r.get("new_decoder_architecture", "new_decoder_architecture", default=False, kind=bool, quiet=True):
        kv = r.get("n_kv_heads", "num_kv_heads", default=d["n_heads"], why="same as n_heads", kind=int)
    elif r.get("multi_query", "multi_query", default=True, kind=bool, quiet=True):
        kv = r.assume("n_kv_heads", 1, "multi_query attention")
    else:
        kv = d["n_heads"]
    d["n_kv_heads"] = int(kv)
    d["d_ffn"] = r.get("d_ffn", "ffn_hidden_size", default=4 * d["d_model"], why="4 x d_model", kind=int)
    alibi = r.get("positional_encoding", "alibi", default=False, kind=bool, quiet=True)
    bias = r.get("attention_bias", "bias", default=False, kind=bool, quiet=True)
    d.update(
        ffn_type="mlp",
        activation=_activation(r, "activation", default="gelu"),
        norm_type="layernorm",
        norm_placement="pre",
        parallel_attn_mlp=r.get("parallel_attn_mlp", "parallel_attn", default=True, why="Falcon default", kind=bool),
        positional_encoding="alibi" if alibi else "rotary",
        rope_theta=None if alibi else r.get("rope_theta", "rope_theta", default=10000.0, kind=float, quiet=True),
        attention_bias=bias,
        mlp_bias=bias,
        tied_embeddings=r.get("tied_embeddings", "tie_word_embeddings", default=True, kind=bool, quiet=True),
        seq_len=_seq_len(r),
    )
    return d


def _gpt2(r: _Reader) -> dict:
    d = _common(r)
    inner = r.get("d_ffn", "n_inner", kind=int)
    d["d_ffn"] = inner if inner else r.assume("d_ffn", 4 * d["d_model"], "n_inner null means 4 x n_embd")
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
        tied_embeddings=r.get("tied_embeddings", "tie_word_embeddings", default=True, kind=bool, quiet=True),
        seq_len=_seq_len(r, 1024),
    )
    return d


def _opt(r: _Reader) -> dict:
    d = _common(r)
    d["d_ffn"] = r.get("d_ffn", "ffn_dim", required=True, kind=int)
    pre = r.get("norm_placement", "do_layer_norm_before", default=True, why="OPT default (pre-norm)", kind=bool)
    bias = r.get("attention_bias", "enable_bias", default=True, kind=bool, quiet=True)
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
        tied_embeddings=r.get("tied_embeddings", "tie_word_embeddings", default=True, kind=bool, quiet=True),
        seq_len=_seq_len(r),
    )
    return d


CONVERTERS: dict[str, Callable[[_Reader], dict]] = {
    "gpt_neox": _gpt_neox,
    "llama": _llama_like,
    "mistral": _llama_like,
    "qwen2": _qwen2,
    "qwen3": _qwen3,
    "qwen3_moe": _qwen3,
    "mixtral": _mixtral,
    "deepseek_v2": _deepseek,
    "deepseek_v3": _deepseek,
    "diffllama": _diffllama,
    "gpt_oss": _gpt_oss,
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

_TRAINING_DEFAULTS = {  # a config.json says nothing of the plan: each assumed value is named in `inferred`
    "learning_rate": "3e-4",
    "batch_tokens": "2,097,152 (Pythia)",
    "total_steps": "143,000 (Pythia) unless training_tokens is given",
    "lr_schedule": "cosine",
    "warmup_frac": "0.01",
    "weight_decay": "0.1",
    "optimizer": "adamw",
    "precision_target": "bf16",
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
    rope = config.get("rope_parameters")
    if isinstance(rope, dict) and config.get("rope_theta") is None and rope.get("rope_theta") is not None:
        config = {**config, "rope_theta": rope["rope_theta"]}  # transformers 5 writes it inside rope_parameters
    r = _Reader(config, model_type)
    fields = CONVERTERS[model_type](r)
    init = r.get("init_std", "initializer_range", kind=float)
    if init is not None:
        fields["init_std"] = init
    training = dict(training or {})
    unknown = sorted(set(training) - set(TRAINING_FIELDS))
    if unknown:
        raise UserError(f"training.{unknown[0]}: unknown training field(s): {', '.join(unknown)} "
                        f"(allowed: {', '.join(TRAINING_FIELDS)})")
    fields.update({k: v for k, v in training.items() if v is not None})
    if "lineage" not in training:  # the config names its lineage (model_type and its fingerprint)
        fields["lineage"], why = infer_lineage(config)
        r.notes.append(f"lineage: inferred from {why} -> {fields['lineage']!r} (set training.lineage to override)")
    for f, desc in _TRAINING_DEFAULTS.items():
        if f not in training and not (f == "total_steps" and "training_tokens" in training):
            r.notes.append(f"{f}: not given; default {desc} (pass it in the training block)")
    if "seq_len" not in training and "seq_len" in r.source:
        r.notes.append(f"seq_len: not given; taken from config.{r.source['seq_len']} ({fields['seq_len']:,}: the context "
                       "the model serves, not necessarily the one it trains at; pass training.seq_len)")
    fields.setdefault("name", config.get("_name_or_path") or model_type)
    try:
        arch = Architecture.model_validate(fields)
    except ValidationError as exc:
        raise ArchitectureError(_in_user_keys(exc, r.source, set(training), model_type)) from None
    return arch, _last_per_field(r.notes)


def _in_user_keys(exc: ValidationError, source: dict[str, str], training: set[str], model_type: str) -> str:
    """The validation errors under the keys the user wrote (``config.num_hidden_layers``, ``training.learning_rate``)."""
    def key(field: str) -> str:
        return f"training.{field}" if field in training else f"config.{source[field]}" if field in source else f"config ({field})"

    parts = []
    for err in exc.errors():
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        loc = [str(p) for p in err.get("loc", ())]
        if loc:
            parts.append(f"{key(loc[0])}: {msg}")
        else:  # a check across fields names them in its message: say them in the config's words
            named = [f for f in sorted(source, key=len, reverse=True) if re.search(rf"\b{f}\b", msg)]
            for f in named:
                msg = re.sub(rf"\b{f}\b", source[f], msg)
            parts.append(f"{key(named[0]) if named else 'config'}: {msg}")
    return "; ".join(parts) + f" (config.json, model_type {model_type})"


def _last_per_field(notes: list[str]) -> list[str]:
    """One note per field, the one that set its final value (a convention may override a default)."""
    last = {n.split(":", 1)[0]: i for i, n in enumerate(notes)}
    return [n for i, n in enumerate(notes) if last[n.split(":", 1)[0]] == i]
