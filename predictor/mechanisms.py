"""The ways FP16 breaks a model, each named with its own probability or stated as not modelled.

Most FP16 breaks practitioners report are not the residual stream passing 65,504 (``precision_outcomes.csv``,
61 sourced reports): attention logits computed in half precision, the MLP's gate*up product and its output, a
norm's sum of squares accumulated in FP16, backward passes. The answer names each mechanism for FP16:

- ``residual_overflow`` (modelled): some layer's worst-case |h| passes 65,504 (``predictor.precision``'s FP16
  ``overflow`` check on the corpus-maximum forecast). Counts towards P(fp16).
- ``mlp_output_overflow`` (modelled): a massive activation is written in one step by the block that creates it
  (Sun et al. 2402.17762: it appears abruptly at one layer, through its MLP), so that block's output is the jump
  of the peak between layers; P(jump > 65,504). Counts towards P(fp16) (it is never above the residual's).
- ``norm_accumulation`` (modelled, conditional): a norm's sum of squares overflows FP16 once one coordinate
  passes sqrt(65504) = 256; P(worst-case peak > 256). Only where the runtime accumulates in FP16 (HF, vLLM and
  llama.cpp upcast to FP32; ONNX Runtime's non-strict SkipSimplifiedLayerNormalization and some mobile kernels
  did not): stated, not counted.
- ``attention_logits`` and ``gate_up_product`` (not modelled): the engine forecasts the residual stream, not q/k
  norms or the MLP's inner product; each is named with the design's risk factors and the reports behind it,
  with no probability (never a silent zero).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr

from predictor.architecture import Architecture

__all__ = ["fp16_mechanisms"]

FP16_MAX = 65504.0
NORM_SQRT_LIMIT = math.sqrt(FP16_MAX)  # one coordinate whose square alone overflows an FP16 sum

# name -> (locus, modelled, counts towards P(fp16), condition, sourced reports)
FP16_MECHANISMS: dict[str, tuple[str, bool, bool, str, tuple[str, ...]]] = {
    "residual_overflow": ("residual stream (a decoder layer's output)", True, True, "any FP16 forward pass",
                          ("transformers #36822, vLLM PR #17364 (Gemma 3)", "onnxruntime-genai PR #2444 (gpt-oss)",
                           "ROCm hip-ep PR #168 (gpt-oss-120b)")),
    "mlp_output_overflow": ("the MLP output of the layer that creates the massive activation", True, True,
                            "any FP16 forward pass", ("transformers #5651 (T5 wo output 66,246)",
                                                      "transformers #12225 (Pegasus fc2 6.06e4 + residual)")),
    "norm_accumulation": ("a norm's sum of squares", True, False,
                          "only where the runtime accumulates the sum of squares in FP16 (HF, vLLM, llama.cpp upcast to FP32)",
                          ("onnxruntime SkipSimplifiedLayerNormalization fp16 (variance overflow past |x| ~ 7,600)",
                           "nntrainer ARM NEON fp16 RMSNorm", "whisper decomposed LayerNorm in ORT WebGPU")),
    "attention_logits": ("QK^T / sqrt(d) computed in half precision", False, False,
                         "kernels that form QK^T in FP16 without scaling first (eager attention); SDPA/flash kernels "
                         "accumulate in FP32", ("InternLM in HF (attention matmul, user hypothesis)",
                                                "attention-logit growth without QK-norm (2302.05442, 2309.14322)")),
    "gate_up_product": ("the MLP's gate*up product (down_proj input)", False, False, "any FP16 forward pass",
                        ("LLaMA-family checkpoint in HF: down_proj output inf at layer 30",
                         "FunctionGemma-270M (Cactus): gate projection", "gemma-4-E2B GRPO: layer-0 gate*up")),
}


def _risk_factors(arch: Architecture, name: str) -> list[str]:
    if name == "attention_logits":
        out = []
        if not arch.qk_norm:
            out.append("no QK-norm (q and k norms free to grow; 2302.05442)")
        if arch.head_width >= 128:
            out.append(f"head_dim {arch.head_width} (the dot product sums {arch.head_width} terms)")
        if arch.attention_bias:
            out.append("QKV bias")
        if arch.qk_norm:
            out.append("QK-norm bounds |q.k| by head_dim x the norms' gains: low")
        return out
    if name == "gate_up_product":
        out = ["gated FFN: the product of two projections enters down_proj"] if arch.glu else [
            "no gated FFN: one projection and an activation"]
        if arch.embedding_scale or arch.norm_placement == "sandwich":
            out.append("Gemma-style embedding scale / sandwich norms with large gains (FunctionGemma, Gemma 3 reports)")
        return out
    return []


def fp16_mechanisms(arch: Architecture, peak: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                    p_residual: float) -> list[dict]:
    """Per mechanism, a ``predictor.response.MechanismRisk`` as plain data. ``peak``/``lo``/``hi``: the worst-case
    (corpus_max) per-layer peak |a| at the planned end with its 90 % interval; ``p_residual``: the FP16
    ``overflow`` check's probability (the same formula, so the answer's numbers agree)."""
    a = np.array([peak, lo, hi], float)
    lv, llo, lhi = np.log10(np.maximum(a, 1e-300))  # at least 1e-300 (or NaN): no warning
    sd = np.maximum((lhi - llo) / (2 * 1.6448536269514722), 1e-6)
    before = np.concatenate([[0.0], a[0, :-1]])  # the previous layer's peak (point forecast)
    p_jump = float(np.max(ndtr((lv - np.log10(FP16_MAX + before)) / sd), initial=0.0))
    p_norm = float(np.max(ndtr((lv - math.log10(NORM_SQRT_LIMIT)) / sd), initial=0.0))
    probs = {"residual_overflow": p_residual, "mlp_output_overflow": min(p_jump, p_residual), "norm_accumulation": p_norm}
    out = []
    for name, (locus, modelled, counts, condition, sources) in FP16_MECHANISMS.items():
        p = probs.get(name) if modelled else None
        factors = _risk_factors(arch, name)
        why = (f"P = {p:.2f} from the worst-case forecast" + ("" if counts else f"; {condition}: not in P(fp16)")
               if p is not None else
               "not modelled: the engine forecasts the residual stream, not this quantity; "
               + (f"risk factors: {'; '.join(factors)}" if factors else "no risk factor in the design"))
        out.append({"name": name, "locus": locus, "modelled": modelled, "probability": p, "in_format_probability": counts,
                    "condition": condition, "risk_factors": factors, "sources": list(sources), "why": why})
    return out
