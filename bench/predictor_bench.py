"""Forecast engine v2 on models it never saw: ``python -m bench predictor``.

Prints (1) the grouped evaluation, leave one family out and leave one model out: held-out MAE in
log10 units next to the predict-the-constant baseline and today's v1 learner, with 90 % interval
coverage; (2) the sensitivity table (one input changed at a time, the direction the evidence
expects, and whether the forecast agrees); (3) the targets of the issue, met or not. Everything
is computed in this run on the bundled reference data (about 30 s on 2 cores).
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
    ]
    print(pd.DataFrame(rows, columns=["target", "measured", "met"]).to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
