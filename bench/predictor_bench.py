"""Forecast engine v2 on models it never saw: ``python -m bench predictor``.

Prints (1) the grouped evaluation, leave one family out and leave one model out: held-out MAE in
log10 units next to the predict-the-constant baseline and today's v1 learner, with 90 % interval
coverage; (2) the sensitivity table (one input changed at a time, the direction the evidence
expects, and whether the forecast agrees); (3) the design effects (the intervention question): the
directions table (each controlled magnitude comparison against the served what-if on that study's base
design), leave one study out, the model card's effect table and the timing calibration; (4) the targets,
met or not. Everything is computed in this run on the bundled reference data (about 40 s on 2 cores).
"""

from __future__ import annotations

import argparse
import time
import warnings

import pandas as pd

warnings.simplefilter("ignore")

TARGETS = "held-out peak |a| MAE < 0.5 and < 0.75x constant; every served target beats the constant; coverage 80-95 %"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family-weight", default="inverse", choices=["inverse", "sqrt", "none"])
    args = ap.parse_args()
    from collector.reference import load_reference_stats
    from registry.evaluation import fit_evaluated
    from registry.reference import build_evidence, reference_architectures
    from registry.sensitivity import sensitivity_table

    t0 = time.perf_counter()
    ev = build_evidence(load_reference_stats(), reference_architectures())
    engine, evals = fit_evaluated(ev, {"family_weight": args.family_weight}, progress=False)
    took = time.perf_counter() - t0
    print(f"evidence: {ev.describe()}")
    table = pd.concat([e.table() for e in evals.values()], ignore_index=True)
    cols = ["cv", "target", "protocol", "n", "n_groups", "mae", "constant_mae", "v1_mae", "ratio_to_constant", "coverage_90",
            "median_interval_width"]
    print("\nheld-out scores (log10 units; constant = training part's family-weighted mean of the same protocol; "
          "v1 = mean level + shared depth profile)")
    print(table[cols].to_markdown(index=False, floatfmt=".3f"))
    print(f"(evaluation + fit: {took:.1f} s)")
    sens = sensitivity_table(engine.forecast)
    show = sens[["variant", "largest peak |a|", "largest ratio at end", "earliest emergence step", "vs", "quantity", "ratio",
                 "expected", "agrees"]]
    print("\nsensitivity (the forecast served by this engine; ratio = variant / reference on the named quantity)")
    print(show.to_markdown(index=False, floatfmt=",.4g"))
    effects_rows = design_effects(engine)
    outcome_rows = precision_outcomes(ev, engine)
    q = evals["family"].quality()
    fam = evals["family"].table().set_index(["target", "protocol"])
    pk_layer = fam.loc[("peak_abs per layer", "all")]
    pk_model = fam.loc[("peak_abs", "all")]
    print("\ntargets (" + TARGETS + ")")
    rows = [
        ("peak |a| per layer, MAE < 0.5", pk_layer["mae"], pk_layer["mae"] < 0.5),
        ("peak |a| per layer, < 0.75x constant", pk_layer["ratio_to_constant"], pk_layer["ratio_to_constant"] < 0.75),
        ("largest-layer peak |a|, MAE < 0.5", pk_model["mae"], pk_model["mae"] < 0.5),
        ("largest-layer peak |a|, < 0.75x constant", pk_model["ratio_to_constant"], pk_model["ratio_to_constant"] < 0.75),
        *[(f"{t} beats the constant (else served as 'not predictable')", f"{v.mae:.3f} vs {v.baseline_mae:.3f}", v.predictable)
          for t, v in q.items()],
        *[(f"{t} 90 % coverage in [0.80, 0.95]", v.coverage, 0.8 <= (v.coverage or 0) <= 0.95) for t, v in q.items()],
        *[(f"sensitivity: {r['variant']}", r["ratio"], r["agrees"] == "yes") for r in sens.to_dict("records") if r["vs"]],
        *effects_rows,
        *outcome_rows,
    ]
    print(pd.DataFrame(rows, columns=["target", "measured", "met"]).to_markdown(index=False, floatfmt=".3f"))


def precision_outcomes(ev, engine) -> list[tuple[str, object, bool]]:
    """Print the served risk against reported outcomes (held out by family); return the target rows."""
    from registry.outcomes import outcome_scores, separation

    s = outcome_scores(ev, engine)
    print("\nprecision outcomes (maforecast/data/reference/precision_outcomes.csv): P of the use's breaking limit, "
          "from an engine that never saw the model's family, and in-sample")
    print(s.drop(columns=["source"]).to_markdown(index=False, floatfmt=".3f"))
    sep = separation(s)
    print(f"separation (AUC: a model that broke scores above one that ran fine): {sep}")
    return [(f"{use}: held-out AUC > 0.5 ({v['n_breaks']} broke vs {v['n_fine']} fine)", f"{v['auc_held_out']:.2f} "
             f"(in-sample {v['auc_in_sample']:.2f})", v["auc_held_out"] > 0.5) for use, v in sep.items()]


def design_effects(engine) -> list[tuple[str, object, bool]]:
    """Print the intervention tables; return their target rows."""
    from predictor.answer import Answerer
    from predictor.knowledge import load_kb
    from registry.controlled import card_markdown, directions_table, leave_one_study_out

    d = directions_table(Answerer(engine, load_kb()))
    print("\ndirections (each controlled magnitude comparison; served = /compare's what-if on that study's base design, "
          "x after/before of the largest peak |a| with its own 90 % interval; mitigation = the same change as a ranked "
          "mitigation's effect where the knowledge base proposes it; width = decades of the what-if interval vs the "
          "base's absolute interval)")
    print(d.to_markdown(index=False, floatfmt=".3g"))
    loso, summ = leave_one_study_out(engine)
    print("\nleave one study out (the engine refitted without the study; log10 of the largest |h|; "
          "answered_by: the evidence left for that change)")
    print(loso.to_markdown(index=False, floatfmt=".3f"))
    print(f"summary: {summ}")
    print("\nmodel card: design effects (effect on the largest peak |a|, 90 % interval, evidence)")
    print(card_markdown(engine))
    print(f"\ntiming: cross-family spread {engine.tau_family_sd_:.2f} decades (added to tau_e of designs outside the calibration family)")
    print(pd.DataFrame([{k: v for k, v in c.items() if k != "arch"} for c in engine.timing_checks_]).to_markdown(
        index=False, floatfmt=".3g"))

    def served(change: str, base_prefix: str = "") -> float:
        row = d[d["change"].str.startswith(change) & d["base"].str.contains(base_prefix)]
        return float(row["served"].iloc[0]) if len(row) else float("nan")

    return [
        ("what-if sandwich norm < 1 (2603.05498: x0.14)", served("norm_placement"), served("norm_placement") < 1),
        ("what-if weight decay 0 > 1 (2603.05498: >= x3.2)", served("weight_decay"), served("weight_decay") > 1),
        ("what-if DyT < 1 (2603.05498: x0.04)", served("norm_type"), served("norm_type") < 1),
        ("what-if gated attention < 1 (2505.06708: x0.09)", served("attention_gate", "Qwen"), served("attention_gate", "Qwen") < 1),
        ("what-if KV bias on LLaMA-1B not above x2 (2503.22329: x1.07)", served("attention_sink", "LLaMA-style 1B"),
         served("attention_sink", "LLaMA-style 1B") <= 2),
        ("directions: every served sign agrees", f"{int(d['sign_ok'].sum())}/{len(d)}", bool(d["sign_ok"].all())),
        ("directions: controlled value inside the 90 % what-if interval", f"{int(d['inside'].sum())}/{len(d)}", bool(d["inside"].all())),
        ("directions: what-if interval narrower than the absolute one", f"{int((d['width'] < d['absolute_width']).sum())}/{len(d)}",
         bool((d["width"] < d["absolute_width"]).all())),
        ("leave one study out: sign agreement >= 80 %", summ["sign_agreement"], summ["sign_agreement"] >= 0.8),
        ("leave one study out: MAE below 'no effect'", f"{summ['mae']:.3f} vs {summ['no_effect_mae']:.3f}",
         summ["mae"] < summ["no_effect_mae"]),
        ("timing: published onsets covered when left out", f"{sum(c['covered_loo'] for c in engine.timing_checks_)}/"
         f"{len(engine.timing_checks_)}", all(c["covered_loo"] for c in engine.timing_checks_)),
    ]


if __name__ == "__main__":
    main()
