"""A design as the level model reads it: the design switches and size terms of an architecture, and its
measurement protocol, as one vector (``TERMS``). The engine's level, the clock's family check and the what-ifs all
read these vectors, many per answer: ``design_vector`` is written out once, ``DesignMemo`` keeps one call's."""

from __future__ import annotations

import math

import numpy as np

from maforecast.tables import DEFAULT_PROTOCOL, PROTOCOLS
from predictor.architecture import Architecture
from predictor.level import width_term

__all__ = [
    "DESIGN_TERMS", "DesignMemo", "FIELD_OF", "SIZE_TERMS", "SWITCHES", "TERMS", "design_vector", "switches_of",
    "with_protocol",
]

# design terms of the magnitude model: name -> (description, function of the architecture)
SWITCHES: dict[str, tuple[str, object]] = {
    "log_params": ("log10 parameters - 9 (size)", lambda a: math.log10(a.n_params()) - 9.0),
    "log_width": ("2.5 (log10 d_model - 3.5) (the size within a lineage)", lambda a: width_term(a.d_model)),
    "glu": ("gated FFN (SwiGLU/GeGLU)", lambda a: float(a.glu)),
    "rmsnorm": ("RMSNorm instead of LayerNorm", lambda a: float(a.norm_type == "rmsnorm")),
    "sandwich": ("sandwich norm (norm before and after each sublayer)", lambda a: float(a.norm_placement == "sandwich")),
    "post_sublayer": ("post-sublayer norm (OLMo-2 reordered norm)", lambda a: float(a.norm_placement == "post_sublayer")),
    "post_norm": ("post-norm (original transformer)", lambda a: float(a.norm_placement == "post")),
    "parallel": ("parallel attention + MLP block", lambda a: float(a.parallel_attn_mlp)),
    "qk_norm": ("QK-norm", lambda a: float(a.qk_norm)),
    "learned_pos": ("learned / sinusoidal absolute positions", lambda a: float(a.positional_encoding in ("learned", "sinusoidal"))),
    "no_rope_bias": ("ALiBi or no positional encoding", lambda a: float(a.positional_encoding in ("alibi", "none"))),
    "embedding_scale": ("embeddings scaled by sqrt(d_model)", lambda a: float(a.embedding_scale)),
    "moe": ("mixture-of-experts FFN", lambda a: float(a.moe)),
    "linear_attention": ("linear / hybrid linear attention", lambda a: float(a.attention_kind in ("linear", "hybrid"))),
    "sigmoid_attention": ("sigmoid attention", lambda a: float(a.attention_kind == "sigmoid")),
    "attention_gate": ("gated attention output", lambda a: float(a.attention_gate)),
    "attention_sink": ("explicit attention sink (KV bias, sink token, learned sink)", lambda a: float(a.attention_sink != "none")),
    "tied": ("tied input/output embeddings", lambda a: float(a.tied_embeddings)),
}
PROTOCOL_TERMS = tuple(f"protocol_{p}" for p in PROTOCOLS if p != DEFAULT_PROTOCOL)
TERMS = (*SWITCHES, *PROTOCOL_TERMS)
SIZE_TERMS = ("log_params", "log_width")


def design_vector(arch: Architecture, protocol: str = DEFAULT_PROTOCOL) -> np.ndarray:
    """``SWITCHES``' functions and the protocol terms of ``arch`` (one pass over its fields: the answer reads
    dozens of design vectors, ``switches_of`` is ``SWITCHES`` written out)."""
    return with_protocol(switches_of(arch), protocol)


def with_protocol(switches: list[float], protocol: str) -> np.ndarray:
    """The design vector of ``switches_of``'s values in ``protocol`` (one design read in several protocols)."""
    tail = _PROTOCOL_TAIL.get(protocol)
    if tail is None:
        tail = [float(protocol == t.removeprefix("protocol_")) for t in PROTOCOL_TERMS]
    return np.array(switches + tail, float)


def switches_of(a: Architecture) -> list[float]:
    """The values of ``SWITCHES``' functions, in its order (checked at import against the functions' names)."""
    place, pos, kind, experts = a.norm_placement, a.positional_encoding, a.attention_kind, a.moe_experts
    return [math.log10(a.n_params()) - 9.0, width_term(a.d_model), float(a.ffn_type == "glu"),
            float(a.norm_type == "rmsnorm"), float(place == "sandwich"), float(place == "post_sublayer"),
            float(place == "post"), float(a.parallel_attn_mlp), float(a.qk_norm), float(pos in ("learned", "sinusoidal")),
            float(pos in ("alibi", "none")), float(a.embedding_scale), float(bool(experts and experts > 1)),
            float(kind in ("linear", "hybrid")), float(kind == "sigmoid"), float(a.attention_gate),
            float(a.attention_sink != "none"), float(a.tied_embeddings)]


class DesignMemo:
    """What one call reads of several designs, each computed once: the design vector of an architecture in a protocol
    and the association of a change to it (what-ifs ask for the same ones again and again). Keyed by identity: the
    memo holds the architectures it has seen, so no id is reused while it lives; it lives for one call, never on the
    engine."""

    def __init__(self) -> None:
        self._vectors: dict[tuple[int, str], tuple[Architecture, np.ndarray]] = {}
        self.associations: dict[tuple, tuple[Architecture, tuple[float, float] | None]] = {}

    def vector(self, arch: Architecture, protocol: str = DEFAULT_PROTOCOL) -> np.ndarray:
        """``design_vector(arch, protocol)`` (read only: the array is shared)."""
        key = (id(arch), protocol)
        hit = self._vectors.get(key)
        if hit is None:
            hit = self._vectors[key] = (arch, design_vector(arch, protocol))
        return hit[1]


_SWITCH_ORDER = ("log_params", "log_width", "glu", "rmsnorm", "sandwich", "post_sublayer", "post_norm", "parallel",
                 "qk_norm", "learned_pos", "no_rope_bias", "embedding_scale", "moe", "linear_attention",
                 "sigmoid_attention", "attention_gate", "attention_sink", "tied")
assert tuple(SWITCHES) == _SWITCH_ORDER, "design_vector's switches_of must follow SWITCHES"
_PROTOCOL_TAIL = {p: [float(p == t.removeprefix("protocol_")) for t in PROTOCOL_TERMS] for p in PROTOCOLS}
DESIGN_TERMS = [(j, t) for j, t in enumerate(SWITCHES) if t not in SIZE_TERMS]  # (column, name): the switches
# the architecture field each switch reads
FIELD_OF = {
    "glu": "ffn_type", "rmsnorm": "norm_type", "sandwich": "norm_placement", "post_sublayer": "norm_placement",
    "post_norm": "norm_placement", "parallel": "parallel_attn_mlp", "qk_norm": "qk_norm", "learned_pos": "positional_encoding",
    "no_rope_bias": "positional_encoding", "embedding_scale": "embedding_scale", "moe": "moe_experts",
    "linear_attention": "attention_kind", "sigmoid_attention": "attention_kind", "attention_gate": "attention_gate",
    "attention_sink": "attention_sink", "tied": "tied_embeddings",
}
