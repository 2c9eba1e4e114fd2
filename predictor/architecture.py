"""The architecture schema (DESIGN.md section 6): one pydantic model shared by predictor and service.

``Architecture`` holds the shape of a proposed transformer plus its training plan. Validation
errors name the offending field. ``kb_fields()`` maps it onto the field names that the
mitigation knowledge base (``maforecast/data/reference/mitigations.yaml``) uses, and
``n_params()`` estimates the parameter count. The bundled reference architectures are mapped onto
this schema in ``registry.reference``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from predictor.precision import TARGETS

__all__ = [
    "Architecture", "ArchitectureError", "DEFAULT_BATCH_TOKENS", "LINEAGE_NEW", "PrecisionTarget",
    "describe_validation_error", "family_of", "parse_architecture",
]

FfnType = Literal["mlp", "glu"]
Activation = Literal["gelu", "gelu_tanh", "relu", "silu", "other"]
# dyt: Dynamic Tanh (tanh(alpha x) with a gain) in place of the block norms (controlled effect: arXiv 2603.05498)
NormType = Literal["layernorm", "rmsnorm", "layernorm_nonparametric", "dyt"]
# the norms' gain: one weight per channel (usual), or one scalar per norm (OSP's SSNorm, arXiv 2506.19697)
NormGain = Literal["per_channel", "single_scale"]
# pre: x + f(N(x)); post: N(x + f(x)) (original transformer); sandwich: x + N2(f(N1(x)));
# post_sublayer: x + N(f(x)) (OLMo-2 "reordered norm").
NormPlacement = Literal["pre", "post", "sandwich", "post_sublayer"]
PositionalEncoding = Literal["rotary", "learned", "alibi", "sinusoidal", "none"]
# hybrid: linear-attention layers (e.g. Gated DeltaNet) interleaved with softmax layers (Qwen3.5)
# clipped_softmax: stretched and clipped softmax (Bondarenko et al. 2306.12929); softpick: rectified
# softmax that need not sum to one (2504.20966); differential: Diff Transformer (2410.05258)
AttentionKind = Literal["softmax", "sigmoid", "linear", "hybrid", "clipped_softmax", "softpick", "differential", "other"]
# how attention may park probability mass without a massive activation (mitigations.yaml)
AttentionSink = Literal["none", "kv_bias", "sink_token", "learned_sink", "softmax_plus_one"]
LrSchedule = Literal["cosine", "linear", "constant", "wsd", "inverse_sqrt", "other"]
Optimizer = Literal["adamw", "adam", "muon", "soap", "shampoo", "orthoadam", "other"]
TrainPrecision = Literal["fp32", "fp16", "bf16", "fp8"]
# the statistic a magnitude is reported in (maforecast.tables.PROTOCOLS; docs/LEVEL.md): the mean over probe
# sequences of each sequence's largest |h| (a typical prompt's peak), the largest |h| on one probe sentence, and
# the largest |h| over a corpus of ~17M tokens (the worst case a deployment sees: what precision risk uses)
Protocol = Literal["seq_mean", "one_sentence", "corpus_max"]
PROTOCOL_ALIASES = {"typical": "seq_mean", "mean_over_sequences": "seq_mean", "single_sentence": "one_sentence",
                    "worst_case": "corpus_max"}
LINEAGE_NEW = "new"
PrecisionTarget = Literal["bf16", "fp16_inference", "fp8_training", "fp8_inference", "nvfp4_training", "nvfp4_inference",
                          "int8_w8a8", "int4_w4a4", "w4a16", "w8a16"]

DEFAULT_BATCH_TOKENS = 2_097_152  # Pythia: 1024 sequences x 2048 tokens
DEFAULT_TOTAL_STEPS = 143_000  # Pythia's training length


class Architecture(BaseModel):
    """A proposed (or existing) decoder-only transformer and its training plan."""

    # NaN and infinities are refused by name ("Input should be a finite number"), not as "should be <= 1"
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    name: str | None = Field(default=None, max_length=200, description="Free-form label, e.g. 'my-1b-v2'.")
    # --- shape
    n_layers: int = Field(ge=1, le=1024, description="Number of decoder layers L.")
    d_model: int = Field(ge=8, le=131_072, description="Residual stream width d.")
    n_heads: int = Field(ge=1, le=4096, description="Attention (query) heads H.")
    n_kv_heads: int | None = Field(default=None, ge=1, le=4096, description="Key/value heads (GQA/MQA); default n_heads.")
    head_dim: int | None = Field(default=None, ge=1, le=4096, description="Per-head width; default d_model / n_heads.")
    d_ffn: int = Field(ge=1, le=1_048_576, description="FFN hidden width (per branch for GLU).")
    ffn_type: FfnType = Field(default="mlp", description="mlp (2 matrices) or glu (gated, 3 matrices).")
    activation: Activation = Field(default="gelu", description="FFN activation (silu + glu = SwiGLU, gelu + glu = GeGLU).")
    norm_type: NormType = Field(default="layernorm", description="Normalisation: LayerNorm, RMSNorm, LayerNorm without "
                                "weights, or DyT (tanh, no statistics).")
    norm_placement: NormPlacement = Field(default="pre", description="Where the norm sits: pre (before each sublayer), "
                                          "post (after the residual add), sandwich (both), post_sublayer (on the "
                                          "sublayer's output, before the add).")
    norm_gain: NormGain = Field(default="per_channel", description="Norm gain: per_channel weights, or single_scale (one scalar per norm).")
    parallel_attn_mlp: bool = Field(default=False, description="Attention and MLP read the same input (GPT-J/NeoX/Falcon).")
    qk_norm: bool = Field(default=False, description="Norm on queries and keys before the attention logits.")
    positional_encoding: PositionalEncoding = Field(default="rotary", description="How positions enter: rotary (RoPE), "
                                                    "learned absolute, ALiBi, sinusoidal, or none (NoPE).")
    rotary_pct: float = Field(default=1.0, gt=0.0, le=1.0, description="Fraction of head_dim that is rotated.")
    rope_theta: float | None = Field(default=10_000.0, gt=0.0, le=1e9, description="RoPE base frequency.")
    attention_bias: bool = Field(default=False, description="Biases on the Q/K/V (and output) projections.")
    mlp_bias: bool = Field(default=False, description="Biases on the MLP's linear layers.")
    tied_embeddings: bool = Field(default=False, description="Output head shares the input embedding matrix.")
    vocab_size: int = Field(default=50_304, ge=2, le=4_194_304, description="Vocabulary size (tokens).")
    seq_len: int = Field(default=2048, ge=1, le=16_777_216, description="Training context length.")
    attention_kind: AttentionKind = Field(default="softmax", description="Attention normalisation: softmax, sigmoid, "
                                          "linear, a hybrid of linear and softmax layers, or a softmax variant.")
    attention_gate: bool = Field(default=False, description="Sigmoid output gate on attention (gated attention, Qwen3.5).")
    attention_sink: AttentionSink = Field(default="none", description="Explicit attention sink: KV bias, sink token, learned per-head sink.")
    embedding_scale: bool = Field(default=False, description="Embeddings multiplied by sqrt(d_model) (Gemma).")
    moe_experts: int | None = Field(default=None, ge=1, le=4096, description="Routed experts per MoE layer (None: dense).")
    moe_active_experts: int | None = Field(default=None, ge=1, le=4096, description="Experts active per token.")
    causal_lm: bool = Field(default=True, description="Decoder-only causal language model (the evidence holds no other).")
    # --- training
    learning_rate: float = Field(default=3e-4, gt=0.0, le=1.0, description="Peak learning rate.")
    lr_schedule: LrSchedule = Field(default="cosine", description="Learning-rate schedule after warmup.")
    warmup_frac: float = Field(default=0.01, ge=0.0, lt=1.0, description="Share of the planned steps spent warming up.")
    batch_tokens: int = Field(default=DEFAULT_BATCH_TOKENS, ge=1, le=1_000_000_000, description="Tokens per optimizer step.")
    total_steps: int | None = Field(default=None, ge=1, le=100_000_000, description="Planned optimizer steps.")
    training_tokens: float | None = Field(default=None, gt=0.0, le=1e15, description="Planned training tokens.")
    init_std: float | None = Field(default=0.02, gt=0.0, le=10.0, description="Initialisation standard deviation.")
    weight_decay: float = Field(default=0.1, ge=0.0, le=10.0, description="Decoupled weight decay (AdamW's lambda).")
    optimizer: Optimizer = Field(default="adamw", description="Optimizer (muon, soap, shampoo: orthogonalising).")
    precision: TrainPrecision = Field(default="bf16", description="Training compute precision.")
    precision_target: PrecisionTarget = Field(default="bf16", description="Deployment / training precision of concern.")
    precision_recipe: str | None = Field(
        default=None, max_length=32,
        description="The scaling recipe of the precision target you will run (docs/PRECISION.md): fp8_training / "
        "fp8_inference: fp8_e4m3 (one scale per tensor), fp8_rowwise, fp8_block128, mxfp8; int8_w8a8: int8_per_tensor, "
        "int8_per_token; nvfp4_*: nvfp4. Omitted: the cheapest safe recipe the plan recommends (the coarsest scaling "
        "that passes the gate).")
    total_params_B: float | None = Field(default=None, gt=0.0, le=100_000.0, description="Known parameter count (billions).")
    # --- what the answer is about
    lineage: str | None = Field(
        default=None, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$",
        description="Model lineage the design belongs to (e.g. 'qwen3', 'llama-3', 'gemma-3', or one named in your own "
        "measured runs): its measured members set the level, size slope and clock. 'new' or omitted: a new lineage "
        "(the between-lineage spread applies). GET /model_info lists the lineages the served version holds.")
    protocol: Protocol = Field(
        default="seq_mean",
        description="Statistic the magnitudes are reported in: seq_mean (alias 'typical': mean over prompts of each "
        "prompt's largest |h|), one_sentence (largest |h| on one sentence), corpus_max (alias 'worst_case': the largest "
        "|h| over ~17M tokens). Precision risk always uses corpus_max.")

    @field_validator("name")
    @classmethod
    def _strip_name(cls, v: str | None) -> str | None:
        return v.strip() if isinstance(v, str) else v

    @model_validator(mode="before")
    @classmethod
    def _no_coercion(cls, data: Any) -> Any:
        """Booleans are not numbers and strings are neither: ``"n_layers": true`` would be a 1-layer model,
        ``"qk_norm": "yes"`` true and ``"n_layers": "32"`` 32 in pydantic's lax mode. One pass over the input
        (a validator per field would cost ~35 calls per architecture)."""
        if not isinstance(data, dict):
            return data
        if isinstance(p := data.get("protocol"), str) and p in PROTOCOL_ALIASES:
            data = {**data, "protocol": PROTOCOL_ALIASES[p]}
        kinds = _field_kinds(cls)
        errors: list[InitErrorDetails] = []
        for k, v in data.items():
            kind = kinds.get(k)
            if kind == "bool" and not isinstance(v, bool):
                errors.append(InitErrorDetails(type=PydanticCustomError(
                    "bool_type", "Input should be true or false, got {value}", {"value": repr(v)}), loc=(k,), input=v))
            elif kind == "number" and isinstance(v, bool):
                errors.append(InitErrorDetails(type=PydanticCustomError(
                    "number_type", "Input should be a number, not a boolean"), loc=(k,), input=v))
            elif kind == "number" and isinstance(v, str):  # "n_layers": "32" is as wrong as "qk_norm": "yes"
                errors.append(InitErrorDetails(type=PydanticCustomError(
                    "number_type", "Input should be a JSON number, not a string ({value})", {"value": repr(v)}), loc=(k,), input=v))
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Architecture:
        if self.precision_recipe is not None and self.precision_recipe not in (recipes := TARGETS[self.precision_target].recipes):
            raise ValueError(f"precision_recipe: {self.precision_recipe!r} is not a recipe of precision_target "
                             f"{self.precision_target} ({'its recipes: ' + ', '.join(recipes) if recipes else 'it has no choice of recipe'})")
        if self.head_dim is None and self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads}) unless head_dim is given")
        if self.n_kv_heads is not None:
            if self.n_kv_heads > self.n_heads:
                raise ValueError(f"n_kv_heads ({self.n_kv_heads}) must not exceed n_heads ({self.n_heads})")
            if self.n_heads % self.n_kv_heads:
                raise ValueError(f"n_heads ({self.n_heads}) must be divisible by n_kv_heads ({self.n_kv_heads})")
        ratio = self.d_ffn / self.d_model
        if not 0.25 <= ratio <= 64:
            raise ValueError(f"d_ffn ({self.d_ffn}) must be between 0.25x and 64x d_model ({self.d_model})")
        if self.head_dim is not None and not 0.1 <= self.head_dim * self.n_heads / self.d_model <= 10:
            raise ValueError(f"head_dim ({self.head_dim}) x n_heads is implausible for d_model ({self.d_model})")
        if self.moe_active_experts is not None and (self.moe_experts is None or self.moe_active_experts > self.moe_experts):
            raise ValueError("moe_active_experts needs moe_experts and must not exceed it")
        if self.positional_encoding != "rotary" and self.rotary_pct != 1.0:
            raise ValueError("rotary_pct is only meaningful with positional_encoding='rotary'")
        return self

    # ---------------------------------------------------------------- derived quantities
    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def head_width(self) -> int:
        return self.head_dim or self.d_model // self.n_heads

    @property
    def moe(self) -> bool:
        return bool(self.moe_experts and self.moe_experts > 1)

    @property
    def glu(self) -> bool:
        return self.ffn_type == "glu"

    @property
    def planned_steps(self) -> int:
        """Planned optimizer steps: total_steps, else training_tokens / batch_tokens, else Pythia's 143000."""
        if self.total_steps is not None:
            return int(self.total_steps)
        if self.training_tokens is not None:
            return max(1, int(round(self.training_tokens / self.batch_tokens)))
        return DEFAULT_TOTAL_STEPS

    @property
    def planned_tokens(self) -> float:
        return float(self.training_tokens) if self.training_tokens is not None else float(self.planned_steps * self.batch_tokens)

    def n_params(self) -> float:
        """Parameter count: the stated one when given, else an estimate from the shape (norms ignored)."""
        if self.total_params_B is not None:
            return self.total_params_B * 1e9
        return self.estimate_params()

    def estimate_params(self) -> float:
        d, hd = self.d_model, self.head_width
        attn = d * self.n_heads * hd * 2 + d * self.kv_heads * hd * 2
        ffn = (3 if self.glu else 2) * d * self.d_ffn * (self.moe_experts or 1)
        emb = self.vocab_size * d * (1 if self.tied_embeddings else 2)
        pos = self.seq_len * d if self.positional_encoding == "learned" else 0
        return float(self.n_layers * (attn + ffn) + emb + pos)

    @property
    def ffn_enum(self) -> str:
        act = self.activation
        if self.glu:
            return {"silu": "swiglu", "gelu": "geglu", "gelu_tanh": "geglu", "relu": "reglu"}.get(act, "glu_other")
        return {"gelu": "gelu_mlp", "gelu_tanh": "gelu_mlp", "relu": "relu_mlp", "silu": "silu_mlp"}.get(act, "other_mlp")

    @property
    def norm_placement_enum(self) -> str:
        if self.norm_placement == "pre" and self.parallel_attn_mlp:
            return "pre_parallel"
        return self.norm_placement

    def kb_fields(self) -> dict:
        """This architecture under the mitigation knowledge base's field names (mitigations.yaml header)."""
        n_b = self.n_params() / 1e9
        tokens_t = self.planned_tokens / 1e12
        return {
            "glu": self.glu,
            "norm_type_enum": self.norm_type,
            "norm_placement_enum": self.norm_placement_enum,
            "ffn_enum": self.ffn_enum,
            "qk_norm": self.qk_norm,
            "parallel_attn_mlp": self.parallel_attn_mlp,
            "tied_embeddings": self.tied_embeddings,
            "attention_kind": self.attention_kind,
            "optimizer": self.optimizer,
            "precision_target": self.precision_target,
            "causal_lm": self.causal_lm,
            "n_params_B": n_b,
            "training_tokens_T": tokens_t,
            "tokens_per_param": self.planned_tokens / self.n_params(),
        }

    def label(self) -> str:
        return self.name or f"L{self.n_layers}-d{self.d_model}-H{self.n_heads}"


# variants that share weights form one family (a unit of the level model, and what leaving "one model" out
# removes): base + instruct + VL of one Qwen2.5 size. Sizes of one recipe are a lineage (predictor.lineage).
_QWEN25 = re.compile(r"^Qwen2\.5-(?:VL-)?(\d+(?:\.\d+)?B)(?:-Instruct)?$")


def family_of(model: str) -> str:
    """The weight-sharing family of a model name (its own name unless variants share weights)."""
    if m := _QWEN25.match(model):
        return f"Qwen2.5-{m.group(1)}"
    return model


@lru_cache(maxsize=4)
def _field_kinds(model: type[BaseModel]) -> dict[str, str]:
    """field -> 'bool' | 'number' for the fields whose values must not be coerced."""
    out = {}
    for name, f in model.model_fields.items():
        args = set(get_args(f.annotation)) or {f.annotation}
        if args <= {bool, type(None)}:
            out[name] = "bool"
        elif args & {int, float} and bool not in args:
            out[name] = "number"
    return out


# -------------------------------------------------------------------- user-facing parsing
from maforecast.errors import UserError  # noqa: E402


class ArchitectureError(UserError, ValueError):
    """An architecture failed validation; the message names each bad field."""


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "architecture"
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def parse_architecture(data: dict | Architecture) -> Architecture:
    """Validate a dict into an Architecture, raising ArchitectureError (a UserError) naming the fields."""
    if isinstance(data, Architecture):
        return data
    try:
        return Architecture.model_validate(data)
    except ValidationError as exc:
        raise ArchitectureError(f"invalid architecture: {describe_validation_error(exc)}") from None
