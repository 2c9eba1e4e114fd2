"""How the forecast responds to each input, next to the sign the evidence says it should have.

``VARIANTS`` changes one thing at a time on a 24-layer, 2048-wide base (the table of the
"forecast engine v2" issue) plus the four acceptance comparisons. ``sensitivity_table`` runs
any forecaster (the engine, a served model, or the API through a callable) and marks whether
the direction agrees with the cited evidence.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from registry.reference import pythia_architectures

BASE = {"name": "base", "n_layers": 24, "d_model": 2048, "n_heads": 16, "d_ffn": 8192, "total_steps": 143000,
        "learning_rate": 3e-4}


def _pythia(size: str, **extra) -> dict:
    a = pythia_architectures()[f"pythia-{size}"].model_dump(exclude_none=True)
    a.update(extra)
    return a


GLU_RMS = {"ffn_type": "glu", "norm_type": "rmsnorm", "d_ffn": 5632}
# name -> (architecture, compared with, quantity, expected sign of log(variant/reference), evidence)
VARIANTS: dict[str, tuple[dict, str | None, str, int, str]] = {
    "base": (BASE, None, "", 0, ""),
    "6 layers, width 256": ({**BASE, "n_layers": 6, "d_model": 256, "n_heads": 4, "d_ffn": 1024}, "base", "peak", -1,
                            "size: Pythia 14M ~83 vs 1.4B ~2,350 end ratio (2508.03616 Fig. 3)"),
    "80 layers, width 8192": ({**BASE, "n_layers": 80, "d_model": 8192, "n_heads": 64, "d_ffn": 32768}, "base", "peak", 1,
                              "size (2508.03616 Fig. 3)"),
    "QK-norm": ({**BASE, "qk_norm": True}, "base", "peak", 0, "QK-norm alone: mixed evidence (Qwen3 vs Qwen2.5)"),
    "sandwich norm": ({**BASE, "norm_placement": "sandwich"}, "base", "peak", 1, "prediction, not intervention: Gemma-2/3 (sandwich) peaks 1e3-8e5 vs pre-norm 2e2-2e3; "
                      "changing a design to sandwich lowers it (controlled, 2603.05498; docs/EFFECTS.md)"),
    "post-sublayer norm": ({**BASE, "norm_placement": "post_sublayer"}, "base", "peak", -1, "OLMo-2 (post-sublayer + QK-norm) peak 34"),
    "total_steps 10,000": ({**BASE, "total_steps": 10000}, "base", "ratio_end", -1, "the trajectory is still rising at 10k steps (Pythia)"),
    "learning rate 3e-3": ({**BASE, "learning_rate": 3e-3}, "base", "emerge", -1,
                           "Gu et al. 2410.10781 Table 9: lower lr delays sink emergence"),
    "learning rate 1e-4": ({**BASE, "learning_rate": 1e-4}, "base", "emerge", 1, "Gu et al. 2410.10781 Table 9"),
    "batch 8M tokens": ({**BASE, "batch_tokens": 8_388_608}, "base", "emerge", 0, "Gu et al. Table 10: batch size has no effect"),
    "weight decay 0.5": ({**BASE, "weight_decay": 0.5}, "base", "emerge", -1, "Gu et al. Table 2: sink strongest at wd 0.5"),
    "warmup 20 %": ({**BASE, "warmup_frac": 0.2}, "base", "emerge", 1, "a longer warmup spends steps at a low lr (Table 9 via the schedule)"),
    # the acceptance comparisons
    "pythia-160m, 10k steps": (_pythia("160m", name="pythia-160m-10k", total_steps=10000), "pythia-160m, 143k steps", "ratio_end", -1,
                               "the 160m trajectory rises through 8k-60k steps (pythia_stats_more)"),
    "pythia-160m, 143k steps": (_pythia("160m", name="pythia-160m-143k"), None, "", 0, ""),
    "pythia-14m": (_pythia("14m"), None, "", 0, ""),
    "pythia-1.4b": (_pythia("1.4b"), "pythia-14m", "ratio_end", 1, "x5 or more: ~83 vs ~2,350 (2508.03616 Fig. 3)"),
    # the trained models' levels are their lineages' (a design switch alone says little across lineages): these
    # two are members of the OLMo-2 and Gemma-3 lineages
    "OLMo-2-like": ({**BASE, **GLU_RMS, "name": "olmo2-like", "activation": "silu", "norm_placement": "post_sublayer", "qk_norm": True,
                     "lineage": "olmo-2"}, None, "", 0, ""),
    "Gemma-3-like": ({**BASE, **GLU_RMS, "name": "gemma3-like", "activation": "gelu_tanh", "norm_placement": "sandwich", "qk_norm": True,
                      "embedding_scale": True, "lineage": "gemma-3"},
                     "OLMo-2-like", "peak", 1, "x30 or more: Gemma-3 98,000-778,000 vs OLMo-2 34 (2503.22329)"),
}
MOVE = 0.01  # the smallest change of the compared quantity that counts as a direction
ACCEPTANCE = {  # variant -> minimum ratio variant/reference (None: direction only)
    "pythia-160m, 10k steps": None,
    "pythia-1.4b": 5.0,
    "Gemma-3-like": 30.0,
    "learning rate 3e-3": None,
}


def summary_of(answer) -> dict[str, float]:
    """Largest peak |a|, largest end ratio, earliest emergence step of a Forecast (or /predict JSON)."""
    layers = answer["layers"] if isinstance(answer, dict) else [lf.model_dump() for lf in answer.layers]
    peak = max(lf["peak_abs"]["value"] for lf in layers)
    ratio = max(lf["ratio_end"]["value"] for lf in layers)
    em = [lf["t_emerge"]["value"] for lf in layers if lf.get("t_emerge")]
    traj_end = max(lf["ratio_trajectory"][-1]["value"] for lf in layers)
    return {"peak": peak, "ratio_end": ratio, "emerge": min(em) if em else float("nan"), "trajectory_at_t_end": traj_end}


def sensitivity_table(forecast: Callable[[dict], object]) -> pd.DataFrame:
    """One row per variant: summary quantities, the compared quantity's ratio and whether its sign agrees."""
    got = {name: summary_of(forecast(arch)) for name, (arch, *_rest) in VARIANTS.items()}
    rows = []
    for name, (_arch, ref, qty, sign, why) in VARIANTS.items():
        s = got[name]
        row = {"variant": name, "largest peak |a|": s["peak"], "largest ratio at end": s["ratio_end"],
               "earliest emergence step": s["emerge"], "vs": ref or "", "quantity": qty, "ratio": float("nan"),
               "expected": {1: "up", -1: "down", 0: "~"}.get(sign, ""), "agrees": "", "evidence": why}
        if ref:
            r = s[qty] / got[ref][qty]
            row["ratio"] = r
            need = ACCEPTANCE.get(name)
            if sign == 0:
                ok = 0.5 <= r <= 2.0
            elif need:
                ok = r >= need
            else:  # a direction is a move of at least MOVE (a ratio of 1 - 1e-8 is no move: it once passed as "down")
                ok = r > 1.0 + MOVE if sign > 0 else r < 1.0 - MOVE
            row["agrees"] = "yes" if ok else "NO"
        rows.append(row)
    return pd.DataFrame(rows)
