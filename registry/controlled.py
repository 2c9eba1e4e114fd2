"""The what-ifs checked against the controlled comparisons: the directions table, leave-one-study-out,
and the model card's effect table (``python -m bench predictor``, the registered version's description).

Each study's base design is approximated on the schema (``STUDY_BASES``: shape, FFN, norm, recipe as the
table's ``base_model`` column states them); a comparison the schema cannot express (``other:...``) is
scored in leave-one-study-out only through the prior over changes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from predictor.architecture import Architecture
from predictor.design import SIZE_TERMS, SWITCHES, TERMS
from predictor.effects import BASES, Comparison, ControlledEffects
from predictor.engine import ASSOCIATED, ForecastEngine
from predictor.whatif import changes_many

DEAD_ZONE = 0.1  # |log10 ratio| below this reads as "no change" (a third of one run's noise, 0.27)

_LLAMA = {"ffn_type": "glu", "activation": "silu", "norm_type": "rmsnorm"}
_OPT = {"ffn_type": "mlp", "activation": "relu", "norm_type": "layernorm", "positional_encoding": "learned",
        "vocab_size": 50_272}
# study -> base-model text prefix -> the base design (approximated from controlled_effects.csv's base_model)
STUDY_BASES: dict[str, dict[str, dict[str, Any]]] = {
    "Sun2026_SpikeSparseSink": {"Llama-2-7B": {**_LLAMA, "n_layers": 32, "d_model": 4096, "n_heads": 32, "d_ffn": 11008,
                                               "vocab_size": 32_000, "seq_len": 4096, "learning_rate": 3e-4,
                                               "weight_decay": 0.1, "warmup_frac": 0.04, "total_steps": 50_000,
                                               "batch_tokens": 2_097_152}},
    "Bondarenko2023_QuantizableTransformers": {
        "BERT-base": {"n_layers": 12, "d_model": 768, "n_heads": 12, "d_ffn": 3072, "activation": "gelu",
                      "norm_type": "layernorm", "norm_placement": "post", "positional_encoding": "learned",
                      "causal_lm": False, "vocab_size": 30_522, "seq_len": 128, "learning_rate": 1e-4,
                      "weight_decay": 0.01, "total_steps": 1_000_000, "batch_tokens": 32_768},
        "OPT-125m": {**_OPT, "n_layers": 12, "d_model": 768, "n_heads": 12, "d_ffn": 3072, "seq_len": 512,
                     "learning_rate": 4e-4, "weight_decay": 0.1, "total_steps": 125_000, "batch_tokens": 98_304},
        "OPT-350m": {**_OPT, "n_layers": 24, "d_model": 1024, "n_heads": 16, "d_ffn": 4096, "seq_len": 512,
                     "total_steps": 100_000, "batch_tokens": 131_072},
        "OPT-1.3B": {**_OPT, "n_layers": 24, "d_model": 2048, "n_heads": 32, "d_ffn": 8192, "seq_len": 512,
                     "total_steps": 100_000, "batch_tokens": 131_072},
    },
    "Park2025_OutlierSafePretraining": {"1.4B LLaMA-style": {**_LLAMA, "n_layers": 24, "d_model": 2048, "n_heads": 16,
                                                             "d_ffn": 5632, "training_tokens": 1e11}},
    "Owen2025_RefinedMassiveActivations": {"LLaMA-style 1B": {**_LLAMA, "n_layers": 16, "d_model": 2048, "n_heads": 32,
                                                              "d_ffn": 5632, "training_tokens": 1e11}},
    "Qiu2025_GatedAttention": {"Qwen-style": {**_LLAMA, "n_layers": 28, "d_model": 2048, "n_heads": 16, "n_kv_heads": 8,
                                              "d_ffn": 6144, "vocab_size": 151_936, "training_tokens": 3.5e12}},
    "Zuhri2025_Softpick": {"Llama-style 340M": {**_LLAMA, "n_layers": 24, "d_model": 1024, "n_heads": 16, "d_ffn": 2816,
                                                "training_tokens": 5e10}},
    "Ye2025_DiffTransformer": {"3B": {**_LLAMA, "n_layers": 28, "d_model": 3072, "n_heads": 24, "d_ffn": 8192,
                                      "training_tokens": 3.5e11}},
}


def study_base(c: Comparison) -> Architecture | None:
    """The base design of a comparison (None where the study's base is not approximated)."""
    for prefix, fields in STUDY_BASES.get(c.study, {}).items():
        if c.base.startswith(prefix):
            extra = {"optimizer": "muon"} if "Muon" in c.base else {}
            return Architecture(name=f"{c.study.split('_')[0]} {prefix}", **fields, **extra)
    return None


def _sign(x: float) -> int:
    return 0 if abs(x) < DEAD_ZONE else int(math.copysign(1, x))


def _agrees(actual: float, mean: float, lo: float, hi: float) -> bool:
    """Same sign outside the dead zone; a 'no change' comparison agrees when the interval holds no change."""
    s = _sign(actual)
    return lo <= 0.0 <= hi if s == 0 else _sign(mean) == s


def magnitude_comparisons(ce: ControlledEffects) -> list[Comparison]:
    return [c for c in ce.comparisons_ if c.numeric]


def directions_table(answerer) -> pd.DataFrame:
    """Per controlled magnitude comparison the schema can express: the served what-if on that study's base
    design (``/compare``'s difference and, where the knowledge base proposes it, the mitigation's effect)."""
    rows = []
    for c in magnitude_comparisons(answerer.engine.controlled_):
        base = study_base(c)
        f, v = c.key
        if base is None or f.startswith("other:"):
            continue
        base = base.model_copy(update={f: BASES[f]}) if getattr(base, f) == v else base
        after = base.model_copy(update={f: v})
        cmp = answerer.compare({"base": base, "variant": after}).differences[0].effect
        r = cmp.peak_abs_ratio
        lo, hi = math.log10(r.lo), math.log10(r.hi)
        ans = answerer.answers([base])[0]
        mit = [m for m in ans.mitigations if m.effect and m.effect.applied == {f: v}]
        big = ans.summary.largest_peak_abs
        rows.append({
            "change": f"{f} {BASES[f]} -> {v}", "study": c.study.split("_")[0], "base": base.name, "metric": c.metric_class,
            "controlled": 10**c.y, "bound": {"lower": ">=", "upper": "<="}.get(c.bound, ""), "served": r.value, "lo": r.lo,
            "hi": r.hi, "evidence": cmp.evidence, "mitigation": mit[0].effect.peak_abs_ratio.value if mit else None,
            "sign_ok": _agrees(c.y, math.log10(r.value), lo, hi), "inside": c.consistent(lo, hi),
            "width": hi - lo, "absolute_width": math.log10(big.hi / big.lo),
        })
    return pd.DataFrame(rows)


def leave_one_study_out(engine: ForecastEngine) -> tuple[pd.DataFrame, dict[str, float]]:
    """Each study's magnitude comparisons predicted by the engine refitted without that study (what the
    service would have answered before the study existed): sign agreement and log10 MAE next to the
    'no effect' baseline. A change the schema cannot express falls back on the prior over changes."""
    rows = []
    comps = magnitude_comparisons(engine.controlled_)
    for study in sorted({c.study for c in comps}):
        eng = engine.without_studies((study,))
        mine = [c for c in comps if c.study == study]
        for c in mine:
            f, v = c.key
            base = study_base(c)
            if base is not None and not f.startswith("other:"):
                base = base.model_copy(update={f: BASES[f]}) if getattr(base, f) == v else base
                ch = changes_many(eng, [(base, base.model_copy(update={f: v}))])[0]
                mean, sd, how = ch.mean["abs"], ch.sd["abs"], ch.evidence
            else:
                mean, sd = eng.controlled_.prior()
                how = "prior"
            lo, hi = mean - 1.6449 * sd, mean + 1.6449 * sd
            rows.append({"study": study.split("_")[0], "change": f"{f} -> {v}", "metric": c.metric_class, "actual": c.y,
                         "bound": c.lower_bound, "predicted": mean, "lo": lo, "hi": hi, "answered_by": how,
                         "sign_ok": _agrees(c.y, mean, lo, hi), "inside": c.consistent(lo, hi),
                         "abs_err": 0.0 if c.bound and c.consistent(mean, mean) else abs(c.y - mean),
                         "no_effect_err": abs(c.y)})
    df = pd.DataFrame(rows)
    summary = {"n": len(df), "sign_agreement": float(df["sign_ok"].mean()), "mae": float(df["abs_err"].mean()),
               "no_effect_mae": float(df["no_effect_err"].mean()), "coverage_90": float(df["inside"].mean())}
    return df, summary


def effects_card(engine: ForecastEngine) -> pd.DataFrame:
    """Per design term and controlled change: effect on the largest peak |a| (x ratio) with its 90 % interval,
    the evidence kind, the studies, the families that vary the term, and where controlled and associational
    estimates disagree (the registered version's description carries this table)."""
    coef = engine.level_["abs"].coefficients()
    ce = engine.controlled_
    rows = []
    for f, v in ce.keys_:
        if f.startswith("other:"):
            continue
        e = ce.estimate(f, v)
        if e is None:
            continue
        lo, hi = e.interval
        t = ASSOCIATED.get((f, v))
        a = coef[t] if t and coef[t]["families"] else None
        rows.append({"change": f"{f} {BASES[f]} -> {v}", "effect": 10**e.mean, "lo": 10**lo, "hi": 10**hi,
                     "evidence": "controlled_direction" if e.direction_only else "controlled",
                     "studies": ", ".join(s.split("_")[0] for s in e.studies), "families": a["families"] if a else 0,
                     "association": 10 ** a["coef"] if a else None,
                     "disagree": bool(a and not lo <= a["coef"] <= hi)})
    done = {ASSOCIATED[k] for k in ASSOCIATED if ce.estimate(*k) is not None}
    for t in TERMS:
        if t in done or t not in SWITCHES or t in SIZE_TERMS or not coef[t]["families"]:
            continue
        m, s = coef[t]["coef"], math.sqrt(coef[t]["sd"] ** 2 + engine.association_sd_**2)
        rows.append({"change": SWITCHES[t][0], "effect": 10**m, "lo": 10 ** (m - 1.6449 * s), "hi": 10 ** (m + 1.6449 * s),
                     "evidence": "associational", "studies": "", "families": coef[t]["families"], "association": 10**m,
                     "disagree": False})
    return pd.DataFrame(rows)


def card_markdown(engine: ForecastEngine) -> str:
    df = effects_card(engine)
    fmt = df.assign(**{k: df[k].map(lambda x: "" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.2g}")
                       for k in ("effect", "lo", "hi", "association")})
    return fmt.to_markdown(index=False)
