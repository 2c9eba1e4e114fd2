"""Served precision risk against outcomes practitioners reported (``precision_outcomes.csv``).

Each row is a bundled model, a use (FP16 inference) and what happened: it broke (inf/NaN reported in an
issue tracker) or it ran fine (it was *trained* in that format). The served probability of the use's
breaking check is computed for each model by an engine that never saw the model's family (leave one family
out, as the held-out scores are), and the separation is the AUC: the chance that a model that broke gets a
higher probability than one that ran fine. In-sample probabilities are shown next to it for contrast.
"""

from __future__ import annotations

import pandas as pd

from collector.reference import reference_file
from predictor import knowledge as kbm
from predictor.answer import Answerer
from predictor.engine import ForecastEngine
from predictor.evidence import Evidence
from registry.evaluation import groups_of

USE_FORMAT = {"fp16_inference": ("fp16", "fp16_inference")}  # use -> (format, precision_target)


def load_outcomes() -> pd.DataFrame:
    return pd.read_csv(reference_file("precision_outcomes.csv"), dtype=str, keep_default_na=False)


def auc(scores_bad: list[float], scores_fine: list[float]) -> float:
    """P(a model that broke scores above one that ran fine); ties count half."""
    pairs = [(b > f) + 0.5 * (b == f) for b in scores_bad for f in scores_fine]
    return sum(pairs) / len(pairs) if pairs else float("nan")


def outcome_scores(ev: Evidence, engine: ForecastEngine, outcomes: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per outcome row: the served probability of the use's breaking limit, held out by family and in-sample."""
    outcomes = load_outcomes() if outcomes is None else outcomes
    kb = kbm.load_kb()
    families = groups_of(ev, "family")
    fam_of = {m: f for f, ms in families.items() for m in ms}
    params = {k: v for k, v in engine.get_params().items() if k != "interval_scale"}
    held: dict[str, Answerer] = {}
    full = Answerer(engine, kb)
    rows = []
    for r in outcomes.to_dict("records"):
        fmt, target = USE_FORMAT[r["use"]]
        arch = ev.archs[r["model"]].model_copy(update={"precision_target": target})
        fam = fam_of.get(r["model"], r["model"])
        if fam not in held:
            held[fam] = Answerer(ForecastEngine(**params, interval_scale=engine.interval_scale).fit(
                ev.without(families.get(fam, {r["model"]}))), kb)
        p_out = next(x.probability for x in held[fam].answers([arch])[0].precision if x.format == fmt)
        p_in = next(x.probability for x in full.answers([arch])[0].precision if x.format == fmt)
        rows.append({"model": r["model"], "use": r["use"], "outcome": r["outcome"], "p_held_out": p_out, "p_in_sample": p_in,
                     "confidence": r["confidence"], "source": r["source"]})
    return pd.DataFrame(rows)


def separation(scores: pd.DataFrame) -> dict[str, dict[str, float]]:
    out = {}
    for use, d in scores.groupby("use"):
        bad, fine = d[d["outcome"] == "breaks"], d[d["outcome"] == "fine"]
        out[use] = {"n_breaks": len(bad), "n_fine": len(fine),
                    "auc_held_out": auc(bad["p_held_out"].tolist(), fine["p_held_out"].tolist()),
                    "auc_in_sample": auc(bad["p_in_sample"].tolist(), fine["p_in_sample"].tolist())}
    return out
