"""Served precision risk against outcomes practitioners reported (``precision_outcomes.csv``).

Each row is a bundled model, a use (FP16 inference) and what happened: it broke (inf/NaN reported in an
issue tracker) or it ran fine (trained in that format, or reported fine). The served probability of the use's
format (the worst-case forecast: ``predictor.answer``) is computed for each model by an engine that never saw
the model's **lineage** (leave one lineage out, the new-lineage question), and the separation is the AUC: the
chance that a model that broke gets a higher probability than one that ran fine. In-sample probabilities (the
lineage known, as for a new size of it) are shown next to it, with the mechanism each answer names.
"""

from __future__ import annotations

import json

import pandas as pd

from collector.reference import reference_file
from predictor import knowledge as kbm
from predictor import precision as prec
from predictor.answer import Answerer
from predictor.architecture import parse_architecture
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


class _HeldOut:
    """An Answerer per lineage from the engine's parameters refitted without that lineage (and the model itself):
    the new-lineage question. Each lineage is fitted once."""

    def __init__(self, ev: Evidence, engine: ForecastEngine, kb: kbm.KnowledgeBase):
        self.ev, self.engine, self.kb = ev, engine, kb
        self.lineages = groups_of(ev, "lineage")
        self.params = {k: v for k, v in engine.get_params().items() if k != "interval_scale"}
        self.fitted: dict[str, Answerer] = {}

    def __call__(self, lineage: str, model: str | None = None) -> Answerer:
        if lineage not in self.fitted:
            drop = self.lineages.get(lineage, set()) | ({model} if model else set())
            self.fitted[lineage] = Answerer(ForecastEngine(**self.params, interval_scale=self.engine.interval_scale)
                                            .fit(self.ev.without(drop)), self.kb)
        return self.fitted[lineage]


def outcome_scores(ev: Evidence, engine: ForecastEngine, outcomes: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per outcome row: the served probability of the use's format, held out by lineage and in-sample, and
    the mechanism that carries it."""
    outcomes = load_outcomes() if outcomes is None else outcomes
    kb = kbm.load_kb()
    held = _HeldOut(ev, engine, kb)
    full = Answerer(engine, kb)
    rows = []
    for r in outcomes.to_dict("records"):
        fmt, target = USE_FORMAT[r["use"]]
        arch = ev.archs[r["model"]].model_copy(update={"precision_target": target})
        lin = lineage_of(r["model"], arch)  # a model without stats (pythia-2.8b) is still of its lineage
        h = held(lin, r["model"])
        out = next(x for x in h.answers([as_held_out(arch, h.engine)])[0].precision if x.format == fmt)
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


# ------------------------------------------------------------------ the default gate against reported outcomes

GATE_LOCI = ("modelled", "attributed")
# before issue 27 every FP8/INT8 recipe of a target was answered as its per-tensor format (the "before" gate)
PER_TENSOR = {"fp8_training": "fp8_e4m3", "fp8_inference": "fp8_e4m3", "int8_w8a8": "int8_per_tensor",
              "fp16_inference": "fp16"}  # breaks the gate can see: the mechanism it models (or the authors' attribution)


def load_gate_outcomes() -> pd.DataFrame:
    """``gate_outcomes.csv``: per report, the design (a bundled model or its sourced config), the precision target and
    recipe it ran, what happened and whether the reported locus is a mechanism the gate models."""
    return pd.read_csv(reference_file("gate_outcomes.csv"), dtype=str, keep_default_na=False)


def _gate_arch(r: dict, ev: Evidence):
    base = ev.archs[r["model"]] if r["model"] != "design" else parse_architecture(json.loads(r["design"]))
    return base.model_copy(update={"precision_target": r["target"], "precision_recipe": r["recipe"]
                                   if r["recipe"] in prec.TARGETS[r["target"]].recipes else None})


def gate_scores(ev: Evidence, engine: ForecastEngine, held_out: bool = True, outcomes: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per report: the gate's probability for the recipe that ran and its decision (``at_risk``), from the served
    engine (in-sample) and, with ``held_out``, from one that never saw the design's lineage."""
    outcomes = load_gate_outcomes() if outcomes is None else outcomes
    kb = kbm.load_kb()
    full = Answerer(engine, kb)
    held = _HeldOut(ev, engine, kb)
    rows = []
    for r in outcomes.to_dict("records"):
        arch = _gate_arch(r, ev)
        lin = arch.lineage or (lineage_of(r["model"], arch) if r["model"] != "design" else "new")
        answers = {"in_sample": full.answers([arch])[0]}
        if held_out:
            h = held(lin, r["model"] if r["model"] != "design" else None)
            answers["held_out"] = h.answers([as_held_out(arch, h.engine)])[0]
        row = {"report": r["report"], "lineage": lin, "target": r["target"], "recipe": r["recipe"], "outcome": r["outcome"],
               "locus": r["locus"], "confidence": r["confidence"]}
        old = PER_TENSOR.get(r["target"], r["recipe"])
        for k, ans in answers.items():
            by = {x.format: x for x in ans.precision}
            row[f"p_{k}"] = float(prec.gate_probability(r["recipe"], by[r["recipe"]].check_probabilities))
            row[f"fails_{k}"] = bool(ans.precision_plan.at_risk)  # the design's decision for the recipe that ran
            # the per-tensor format of the target: what the answer said of every FP8/INT8 recipe before issue 27
            row[f"p_old_{k}"] = float(prec.gate_probability(old, by[old].check_probabilities)) if old in by else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def gate_rates(scores: pd.DataFrame, col: str = "fails_in_sample") -> dict[str, float]:
    """Hit rate (reported breaks the gate fails: those of a mechanism it models, and all of them) and false-alarm
    rate (models reported fine that it fails)."""
    breaks, fine = scores[scores["outcome"] == "breaks"], scores[scores["outcome"] == "fine"]
    seen = breaks[breaks["locus"].isin(GATE_LOCI)]
    return {"n_breaks": len(breaks), "n_breaks_modelled": len(seen), "n_fine": len(fine),
            "hit_rate_modelled": float(seen[col].mean()) if len(seen) else float("nan"),
            "hit_rate_all": float(breaks[col].mean()) if len(breaks) else float("nan"),
            "false_alarm_rate": float(fine[col].mean()) if len(fine) else float("nan")}


def calibrated_threshold(scores: pd.DataFrame, recipe: str, col: str = "p_in_sample") -> float | None:
    """The gate threshold the outcomes support for ``recipe``: midway in log-odds between the lowest probability of a
    break it models and the highest probability of a fine model below it (None: no break of that recipe)."""
    import math

    d = scores[scores["recipe"] == recipe]
    low = d[(d["outcome"] == "breaks") & d["locus"].isin(GATE_LOCI)][col]
    if low.empty:
        return None
    lo = float(low.min())
    below = d[(d["outcome"] == "fine") & (d[col] < lo)][col]
    hi = float(below.max()) if len(below) else 0.0

    def logit(p: float) -> float:
        p = min(max(p, 1e-4), 1 - 1e-4)
        return math.log(p / (1 - p))

    return 1.0 / (1.0 + math.exp(-(logit(lo) + logit(hi)) / 2))
