"""Served precision risk against outcomes practitioners reported (``precision_outcomes.csv``).

Each row is a bundled model, a use (FP16 inference) and what happened: it broke (inf/NaN reported in an
issue tracker) or it ran fine (trained in that format, or reported fine). The served probability of the use's
format (the worst-case forecast: ``predictor.answer``) is computed for each model by an engine that never saw
the model's **lineage** (leave one lineage out, the new-lineage question), and the separation is the AUC: the
chance that a model that broke gets a higher probability than one that ran fine. In-sample probabilities (the
lineage known, as for a new size of it) are shown next to it, with the mechanism each answer names.
"""

from __future__ import annotations

import pandas as pd

from collector.reference import reference_file
from predictor import knowledge as kbm
from predictor.answer import Answerer
from predictor.engine import ForecastEngine
from predictor.evidence import Evidence
from predictor.lineage import lineage_of
from registry.evaluation import as_held_out, groups_of

USE_FORMAT = {"fp16_inference": ("fp16", "fp16_inference")}  # use -> (format, precision_target)


def load_outcomes() -> pd.DataFrame:
    return pd.read_csv(reference_file("precision_outcomes.csv"), dtype=str, keep_default_na=False)


def auc(scores_bad: list[float], scores_fine: list[float]) -> float:
    """P(a model that broke scores above one that ran fine); ties count half."""
    pairs = [(b > f) + 0.5 * (b == f) for b in scores_bad for f in scores_fine]
    return sum(pairs) / len(pairs) if pairs else float("nan")


def _mechanism(risk) -> str:
    ms = [m for m in risk.mechanisms if m.probability is not None and m.in_format_probability]
    top = max(ms, key=lambda m: m.probability, default=None)
    return top.name if top else "-"


def outcome_scores(ev: Evidence, engine: ForecastEngine, outcomes: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per outcome row: the served probability of the use's format, held out by lineage and in-sample, and
    the mechanism that carries it."""
    outcomes = load_outcomes() if outcomes is None else outcomes
    kb = kbm.load_kb()
    lineages = groups_of(ev, "lineage")
    params = {k: v for k, v in engine.get_params().items() if k != "interval_scale"}
    held: dict[str, Answerer] = {}
    full = Answerer(engine, kb)
    rows = []
    for r in outcomes.to_dict("records"):
        fmt, target = USE_FORMAT[r["use"]]
        arch = ev.archs[r["model"]].model_copy(update={"precision_target": target})
        lin = lineage_of(r["model"], arch)  # a model without stats (pythia-2.8b) is still of its lineage
        if lin not in held:
            held[lin] = Answerer(ForecastEngine(**params, interval_scale=engine.interval_scale).fit(
                ev.without(lineages.get(lin, set()) | {r["model"]})), kb)
        out = next(x for x in held[lin].answers([as_held_out(arch, held[lin].engine)])[0].precision if x.format == fmt)
        ins = next(x for x in full.answers([arch])[0].precision if x.format == fmt)
        rows.append({"model": r["model"], "lineage": lin, "use": r["use"], "outcome": r["outcome"],
                     "p_held_out": out.probability, "p_in_sample": ins.probability, "mechanism": _mechanism(ins),
                     "confidence": r["confidence"], "source": r["source"]})
    return pd.DataFrame(rows)


def separation(scores: pd.DataFrame) -> dict[str, dict[str, float]]:
    out = {}
    for use, d in scores.groupby("use"):
        bad, fine = d[d["outcome"] == "breaks"], d[d["outcome"] == "fine"]
        out[use] = {"n_breaks": len(bad), "n_fine": len(fine),
                    "auc_held_out": auc(bad["p_held_out"].tolist(), fine["p_held_out"].tolist()),
                    "auc_in_sample": auc(bad["p_in_sample"].tolist(), fine["p_in_sample"].tolist()),
                    "fine_below_half_in_sample": float((fine["p_in_sample"] < 0.5).mean()) if len(fine) else float("nan"),
                    "fine_below_half_held_out": float((fine["p_held_out"] < 0.5).mean()) if len(fine) else float("nan")}
    return out
