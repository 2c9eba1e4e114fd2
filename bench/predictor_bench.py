"""Forecast engine v2 on models it never saw: ``python -m bench predictor``.

Prints (1) the evaluation as the product is used, each next to a predict-the-constant baseline and the nearest
measured sibling: (a) a new member of a known lineage (leave one model out, its lineage kept), (b) a new lineage
(leave one lineage out), the proxy -> target pairs, and the in-sample fit of every trained model; (2) the
sensitivity table (one input changed at a time, the direction the evidence expects, and whether the forecast
agrees); (3) the design effects (the intervention question): the directions table, leave one study out, the
model card's effect table and the timing calibration; (4) FP16 outcomes: the served probability of each
reported break or fine run, held out by lineage; (5) the targets, met or not. Everything is computed in this
run on the bundled reference data (about 2 min on 2 cores).
"""

from __future__ import annotations

import argparse
import time
import warnings

import pandas as pd

warnings.simplefilter("ignore")

TARGETS = ("issue 25: in-sample every model within 0.5 decades; (a) MAE <= 0.35 and below constant and sibling; (b) MAE <= 0.6 "
           "and below constant; proxy pairs MAE <= 0.3, covered; coverage 85-95 %; median width (a) <= 1.5, (b) <= 2.5 decades; "
           "FP16 AUC >= 0.85 held out, corpus max > 65,504 -> P >= 0.5, fine < 0.5")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def in_sample(engine, ev) -> pd.DataFrame:
    """Every measured model's largest-layer level, in its own protocol, against the served level (the engine
    that saw it: the fit to its own evidence)."""
    import math

    lv = engine.levels_table_
    rows = []
    for r in lv[lv["quantity"] == "abs"].to_dict("records"):
        m, _ = engine.level(ev.archs[r["model"]], r["protocol"])["abs"]
        rows.append({"model": r["model"], "lineage": r["lineage"], "protocol": r["protocol"], "measured": 10 ** r["Y"],
                     "served": 10**m, "x": 10 ** (m - r["Y"]), "abs_log10_error": abs(m - r["Y"])})
    out = pd.DataFrame(rows).sort_values("abs_log10_error", ascending=False)
    assert all(math.isfinite(v) for v in out["served"])
    return out


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    from collector.reference import load_reference_stats
    from registry.evaluation import CV, fit_evaluated, proxy_pairs, proxy_summary
    from registry.reference import build_evidence, reference_architectures
    from registry.sensitivity import sensitivity_table

    t0 = time.perf_counter()
    ev = build_evidence(load_reference_stats(), reference_architectures())
    engine, evals = fit_evaluated(ev, progress=False)
    pairs = proxy_pairs(ev, scale=engine.interval_scale["abs"])
    took = time.perf_counter() - t0
    print(f"evidence: {ev.describe()}")
    print(f"level model (abs): {engine.level_['abs'].hyperparameters()}; interval scales {engine.interval_scale}")
    table = pd.concat([e.table() for e in evals.values()], ignore_index=True)
    cols = ["cv", "target", "protocol", "n", "mae", "constant_mae", "sibling_mae", "mae_where_sibling", "coverage_90",
            "median_interval_width"]
    print("\nheld-out scores (log10 units; each model once; constant = the training part's lineage-weighted mean of the "
          "same protocol; sibling = the nearest measured member of the lineage moved by the within-lineage size slope; "
          "mae_where_sibling = this predictor on the models that have a sibling)")
    for by, what in CV.items():
        print(f"  leave one {by} out: {what}")
    print(table[cols].to_markdown(index=False, floatfmt=".3f"))
    print(f"(evaluation + fit: {took:.1f} s)")
    ps = proxy_summary(pairs)
    print("\nproxy -> target (the lineage's other members removed; the target forecast from the proxy's measured data alone)")
    print(pairs.drop(columns=["proxy", "target"]).to_markdown(index=False, floatfmt=".3f"))
    print(f"summary: {ps}")
    ins = in_sample(engine, ev)
    print("\nin-sample: every measured model's largest-layer peak |a| in its own protocol (served / measured)")
    print(ins.to_markdown(index=False, floatfmt=",.3g"))
    sens = sensitivity_table(engine.forecast)
    show = sens[["variant", "largest peak |a|", "largest ratio at end", "earliest emergence step", "vs", "quantity", "ratio",
                 "expected", "agrees"]]
    print("\nsensitivity (the forecast served by this engine; ratio = variant / reference on the named quantity)")
    print(show.to_markdown(index=False, floatfmt=",.4g"))
    effects_rows = design_effects(engine)
    outcome_rows = precision_outcomes(ev, engine)
    a = evals["model"].table().set_index(["target", "protocol"]).loc[("peak_abs", "all")]
    b = evals["lineage"].table().set_index(["target", "protocol"]).loc[("peak_abs", "all")]
    print("\ntargets (" + TARGETS + ")")
    rows = [
        ("in-sample: every model within 0.5 decades", f"max {ins['abs_log10_error'].max():.2f} ({ins.iloc[0]['model']})",
         bool(ins["abs_log10_error"].max() <= 0.5)),
        ("(a) new member: MAE <= 0.35", a["mae"], a["mae"] <= 0.35),
        ("(a) below the constant", f"{a['mae']:.3f} vs {a['constant_mae']:.3f}", a["mae"] < a["constant_mae"]),
        ("(a) below the nearest sibling", f"{a['mae_where_sibling']:.3f} vs {a['sibling_mae']:.3f}",
         a["mae_where_sibling"] < a["sibling_mae"]),
        ("(b) new lineage: MAE <= 0.6", b["mae"], b["mae"] <= 0.6),
        ("(b) below the constant", f"{b['mae']:.3f} vs {b['constant_mae']:.3f}", b["mae"] < b["constant_mae"]),
        ("proxy -> target: MAE <= 0.3", ps.get("mae"), ps.get("mae", 9) <= 0.3),
        ("proxy -> target: 90 % intervals cover them", ps.get("coverage_90"), ps.get("coverage_90", 0) == 1.0),
        ("(a) 90 % coverage in [0.85, 0.95]", a["coverage_90"], 0.85 <= a["coverage_90"] <= 0.95),
        ("(b) 90 % coverage in [0.85, 0.95]", b["coverage_90"], 0.85 <= b["coverage_90"] <= 0.95),
        ("(a) median 90 % width <= 1.5 decades", a["median_interval_width"], a["median_interval_width"] <= 1.5),
        ("(b) median 90 % width <= 2.5 decades", b["median_interval_width"], b["median_interval_width"] <= 2.5),
        *[(f"sensitivity: {r['variant']}", r["ratio"], r["agrees"] == "yes") for r in sens.to_dict("records") if r["vs"]],
        *effects_rows,
        *outcome_rows,
    ]
    print(pd.DataFrame(rows, columns=["target", "measured", "met"]).to_markdown(index=False, floatfmt=".3f"))


def precision_outcomes(ev, engine) -> list[tuple[str, object, bool]]:
    """Print the served risk against reported outcomes (held out by family); return the target rows."""
    from registry.outcomes import outcome_scores, separation

    s = outcome_scores(ev, engine)
    print("\nprecision outcomes (maforecast/data/reference/precision_outcomes.csv): P of the use's format (worst case), "
          "from an engine that never saw the model's lineage, and in-sample (the lineage known), with the mechanism")
    print(s.drop(columns=["source"]).to_markdown(index=False, floatfmt=".3f"))
    sep = separation(s)
    print(f"separation (AUC: a model that broke scores above one that ran fine): {sep}")
    lv = engine.levels_table_
    over = lv[(lv["quantity"] == "abs") & (lv["protocol"] == "corpus_max") & (lv["Y"] > 4.8162)]["model"].tolist()
    p_over = s[s["model"].isin(over)]
    fine = s[s["outcome"] == "fine"]
    return [
        *[(f"{use}: held-out AUC >= 0.85 ({v['n_breaks']} broke vs {v['n_fine']} fine)", f"{v['auc_held_out']:.2f} "
           f"(in-sample {v['auc_in_sample']:.2f})", v["auc_held_out"] >= 0.85) for use, v in sep.items()],
        (f"corpus max > 65,504 ({', '.join(over)}): P >= 0.5 in-sample", ", ".join(f"{p:.2f}" for p in p_over["p_in_sample"]),
         bool((p_over["p_in_sample"] >= 0.5).all())),
        ("... and held out by lineage", ", ".join(f"{p:.2f}" for p in p_over["p_held_out"]), bool((p_over["p_held_out"] >= 0.5).all())),
        ("models reported fine: P < 0.5 in-sample", f"max {fine['p_in_sample'].max():.2f}", bool((fine["p_in_sample"] < 0.5).all())),
        ("... and held out by lineage", f"max {fine['p_held_out'].max():.2f}", bool((fine["p_held_out"] < 0.5).all())),
    ]


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
    clock_rows = clock_table(engine)

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
        *clock_rows,
    ]


def clock_table(engine) -> list[tuple[str, object, bool]]:
    """Print the clocks compared leaving one family out (issue 29) and the served clock's onsets; return the targets."""
    from predictor.clock import CANDIDATE_TEXT

    clock = engine.clock_model_
    t = pd.DataFrame(clock.clock_table_)
    t.insert(1, "what", t["clock"].map(CANDIDATE_TEXT))
    print(f"\ntiming: clocks compared leaving one family out over the published onsets (served: {clock.clock_}; families: "
          f"{', '.join(clock.clock_families_)}; between-family sd {clock.tau_family_sd_:.2f} decades). previous = the "
          "calibration before issue 29 (tau_e from the Pythia series, the other onsets' RMS as the cross-family spread); "
          "rms_error = RMS over families of the decades from the served onset to the bracket's centre; width in decades")
    print(t.to_markdown(index=False, floatfmt=".3g"))
    print(f"\nthe served clock ({clock.clock_}): each published onset served by the calibration without its family")
    print(pd.DataFrame([{k: v for k, v in c.items() if k not in ("arch", "source")} for c in clock.timing_checks_]).to_markdown(
        index=False, floatfmt=".3g"))
    print("left out: " + "; ".join(f"{r['model'][:40]}: {r['why']}" for r in clock.onsets_left_out_))
    served = t[(t["clock"] == clock.clock_) & (t["calibration"] == "across families")].iloc[0]
    before = t[(t["clock"] == "lr_integral") & (t["calibration"].str.startswith("previous"))].iloc[0]
    return [
        ("timing: onsets covered left out by family >= 80 % (before: lr_integral, previous)",
         f"{served['coverage']:.2f} (before {before['coverage']:.2f})", bool(served["coverage"] >= 0.8)),
        ("timing: median 90 % onset width <= 1.2 decades", f"{served['median_width']:.2f} (before {before['median_width']:.2f})",
         bool(served["median_width"] <= 1.2)),
        ("timing: OLMo onsets covered with OLMo left out", f"{served['olmo_covered']} (before {before['olmo_covered']})",
         served["olmo_covered"].split("/")[0] == served["olmo_covered"].split("/")[1]),
    ]


if __name__ == "__main__":
    main()
