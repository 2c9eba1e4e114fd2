"""The whole answer of a registered version: forecast, summary, precision risk, ranked mitigations with
their predicted (what-if) effects, applicability and notes.

``Answerer`` is what the pyfunc (``predictor.pyfunc``) holds: a fitted ``ForecastEngine``, the
knowledge base logged with the version and the version's card. A new answer is computed on the
forecast's arrays (``predictor.schemas.ForecastArrays``) and written from plain per-layer data
(``Answerer.write``); consumers transport the bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np

from predictor import knowledge as kbm
from predictor import precision as prec
from predictor.architecture import Architecture
from predictor.effects import Z90
from predictor.engine import ForecastEngine
from predictor.nowcast import nowcast
from predictor.plan import precision_plan
from predictor.response import (
    VIEWS,
    ChangeEffect,
    CompareResponse,
    Difference,
    NowcastResponse,
    PrecisionPlan,
    PrecisionRisk,
    PredictorInfo,
    PredictResponse,
    Summary,
    VariantSummary,
    view_for,
)
from predictor.risk import format_probabilities_many, precision_risks
from predictor.schedule_risk import schedule_events
from predictor.schemas import ForecastArrays, Interval
from predictor.text import ranges
from predictor.whatif import Change, changes_many, interval_data, what_if_changes

__all__ = ["TOP_MITIGATIONS", "Answerer", "summarize"]

_RESPONSE_JSON = PredictResponse.__pydantic_serializer__.to_json
# the fields /predict leaves at their defaults, given to ``model_construct`` (which would otherwise
# inspect each default factory's signature on every call)
_UNSET = {"inferred": [], "architecture_input": None}

# effective mitigations the compact views keep and /compare names per variant (the ranking's head; all in the full view)
TOP_MITIGATIONS = 5

# knowledge-base entries the proposed architecture may already implement: id -> (field, value)
ALREADY_PRESENT: dict[str, tuple[str, Any]] = {
    "qk_norm": ("qk_norm", True),
    "osp_muon_ssnorm": ("optimizer", "muon"),
    "dyt": ("norm_type_enum", "dyt"),
    "softpick": ("attention_kind", "softpick"),
    "clipped_softmax": ("attention_kind", "clipped_softmax"),
}


def _g(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


# ------------------------------------------------------------------------------------ pieces


def summarize(fc: ForecastArrays, worst: ForecastArrays | None = None) -> Summary:
    """The summary of a forecast; ``worst``: the same forecast in the worst-case protocol (precision's)."""
    worst = worst or fc.worst_case()
    n, te = fc.n_layers, fc.t_emerge.value
    massive = [i for i, m in enumerate(fc.massive) if m]
    within = [te[i] is not None and te[i] <= fc.t_end for i in range(n)]  # an emergence after the plan is not its earliest
    pool = [i for i in massive if within[i]] or [i for i in range(n) if within[i]]
    earliest = min(pool, key=te.__getitem__) if pool else None
    big = max(range(n), key=fc.peak_abs.value.__getitem__)
    big_ratio = max(range(n), key=fc.ratio_end.value.__getitem__)
    return Summary(  # validated: on pydantic 2.14 faster than model_construct for a model this small (bench answer)
        n_layers=n,
        t_end=fc.t_end,
        massive_layers=massive,
        earliest_emergence_step=fc.t_emerge.at(earliest) if earliest is not None else None,
        earliest_emergence_layer=earliest,
        largest_peak_abs=fc.peak_abs.at(big),
        largest_peak_layer=big,
        largest_ratio_end=fc.ratio_end.at(big_ratio),
        largest_ratio_layer=big_ratio,
        early_peak_layers=[i for i in range(n) if fc.class_probabilities and fc.class_probabilities[i].get("early_peak", 0) > 0.5],
        p_massive=max((p for p in fc.p_massive if p is not None), default=None),
        p_emerge_within_plan=max((p for p in fc.p_emerge_within_plan or [] if p is not None), default=None),
        unpredictable=list(fc.unpredictable),
        protocol=fc.protocol,
        worst_case_peak_abs=worst.peak_abs.largest(),
    )


def in_view(fields: dict[str, Any], arch: Architecture, view: str, layers: Sequence[int] | None) -> dict[str, Any]:
    """The answer's fields as ``view`` shows them (``predictor.response.VIEW_HELP``); every number kept is the full
    answer's. The full view keeps every format's breaking per-layer records and the stated ones only for the formats
    the design runs (its recipe's: the ten formats' full records doubled the answer); the compact views keep only the
    formats the design runs, without per-layer records or sentences (their mitigations are trimmed where they are
    ranked: ``rank_mitigations``)."""
    plan = fields["precision_plan"]
    used = used_formats(arch, plan)
    out = dict(fields)
    if layers is not None or view == "summary":
        keep = set(layers or ())
        out["layers"] = [d for d in fields["layers"] if d["layer"] in keep]
    if view == "full":
        out["precision"] = [r if r.format in used else r.model_copy(update={"details": [
            d for d in r.details if prec.BREAKS[r.format, d.check]]}) for r in fields["precision"]]
        return out
    # (the answerer builds the compact views' precision without sentences, and per-layer records only where its plan reads them)
    out["precision"] = [r.model_copy(update={"details": []}) if r.details else r for r in fields["precision"] if r.format in used]
    out["precision_plan"] = plan.model_copy(update={"formats": [f for f in plan.formats if f.format in used]})
    return out


def used_formats(arch: Architecture, plan: PrecisionPlan) -> set[str]:
    """The formats the design runs (its precision target's, in the plan's recipe): what the compact views show."""
    return set(prec.formats_in_use(arch.precision_target, plan.recipe))


def kb_record(arch: Architecture, fc: ForecastArrays) -> dict[str, Any]:
    record = dict(arch.kb_fields())
    record.setdefault("predicted_peak_max", max(fc.peak_abs.value, default=None))
    return record


def _motivations(fc: ForecastArrays, risks: list[PrecisionRisk]) -> tuple[kbm.Motivation, kbm.Motivation]:
    """What motivates an entry in this forecast: (a precision-related entry's, any other's). A precision-related one
    is motivated by the layers at risk in the precision target, where there are any; else, like any other entry, by
    the layers predicted to host massive activations."""
    massive = [i for i, m in enumerate(fc.massive) if m]
    if massive:
        top = max(massive, key=fc.peak_abs.value.__getitem__)
        other = kbm.Motivation(tuple(massive), f"layers {ranges(massive)} are predicted to host massive activations"
                                               f" (largest peak |a| {_g(fc.peak_abs.value[top])} in layer {top})")
    else:
        other = kbm.Motivation((), "no layer is predicted to host massive activations; listed as prevention only")
    target_risk = [r for r in risks if r.target and r.at_risk]
    if not target_risk:
        return other, other
    layers = sorted({lyr for r in target_risk for lyr in r.layers})
    fmts = ", ".join(r.format for r in target_risk)
    return kbm.Motivation(tuple(layers), f"layers {ranges(layers)} are at risk in {fmts} (the precision target)"), other


# knowledge-base entries that map onto architecture fields: id -> the change (a function of the architecture)
WHAT_IF: dict[str, Any] = {
    "qk_norm": lambda a: {"qk_norm": True},
    "post_sublayer_norm": lambda a: {"norm_placement": "post_sublayer"},
    "attn_kv_bias": lambda a: {"attention_sink": "kv_bias"},
    "sink_token": lambda a: {"attention_sink": "sink_token"},
    "softmax_plus_one": lambda a: {"attention_sink": "softmax_plus_one"},
    "gated_attention_sdpa": lambda a: {"attention_gate": True},
    "gated_attention_bondarenko": lambda a: {"attention_gate": True},
    "sigmoid_attention": lambda a: {"attention_kind": "sigmoid"},
    "softpick": lambda a: {"attention_kind": "softpick"},
    "clipped_softmax": lambda a: {"attention_kind": "clipped_softmax"},
    "dyt": lambda a: {"norm_type": "dyt"},
    "osp_muon_ssnorm": lambda a: {"optimizer": "muon", "norm_gain": "single_scale"},
    "orthogonal_optimizers": lambda a: {"optimizer": "muon"},
    "lr_wd_schedule": lambda a: {"learning_rate": a.learning_rate / 2},
}
LEVEL_SCORE = {"strong": 2.0, "moderate": 1.0, "situational": 0.5, "informational": 0.0, "not_recommended": -1.0}


def change_key(change: dict[str, Any]) -> str:
    """One key per distinct field change (the two gated-attention entries make the same one)."""
    return repr(sorted(change.items()))


def what_if_change(entry_id: str, arch: Architecture) -> dict[str, Any] | None:
    """The schema fields a mitigation changes in this architecture (None: it maps onto none, or changes nothing)."""
    make = WHAT_IF.get(entry_id)
    if make is None:
        return None
    change = {k: v for k, v in make(arch).items() if getattr(arch, k) != v}
    return change or None


class Moved(NamedTuple):
    """A forecast's per-layer interval moved by a what-if change, as arrays (``IntervalArrays``' fields)."""

    value: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    def largest(self) -> dict[str, float]:
        """The interval of the layer with the largest point value (the first of equals, as ``IntervalArrays.largest``)."""
        i = int(np.argmax(self.value))
        return interval_data(self.value[i], self.lo[i], self.hi[i])


def after_intervals_many(fc: ForecastArrays, changes: Sequence[Change]) -> list[tuple[Moved, Moved]]:
    """Per change, the design's per-layer peak |a| and end ratio moved by it (Gaussian in log10: the interval's sd
    and the change's added in quadrature), every change in one array; a change of depth moves every layer by the
    largest layer's effect."""
    if not changes:
        return []
    moved = []
    for iv, q in ((fc.peak_abs, "abs"), (fc.ratio_end, "ratio")):
        n = len(iv.value)
        delta = np.array([ch.layers[q] if ch.layers[q] is not None and len(ch.layers[q]) == n else np.full(n, ch.mean[q])
                          for ch in changes], float)  # change x layer
        v, lo, hi = np.log10(np.maximum(np.array((iv.value, iv.lo, iv.hi), float), 1e-300))
        s = np.sqrt(((hi - lo) / (2 * Z90)) ** 2 + np.array([ch.sd[q] for ch in changes], float)[:, None] ** 2)
        c = v + delta
        moved.append(10 ** np.stack((c, c - Z90 * s, c + Z90 * s), axis=1))  # change x (value, lo, hi) x layer
    return [(Moved(*a), Moved(*r)) for a, r in zip(*moved, strict=True)]


def change_effect(ch: Change, rb: dict[str, float], ra: dict[str, float], terms: bool = True) -> dict[str, Any]:
    """The ``ChangeEffect`` fields of a change, as plain data in the model's order (``terms``: with its per-field terms)."""
    return {"peak_abs_ratio": ch.ratio("abs"), "ratio_end_ratio": ch.ratio("ratio"), "risk_before": rb, "risk_after": ra,
            "evidence": ch.evidence, "studies": ch.studies, "disagreement": ch.disagreement,
            "terms": ch.terms if terms else []}


def effect_text(applied: dict[str, Any], ch: Change, targets: set[str], rb: dict[str, float], ra: dict[str, float]) -> str:
    """A mitigation's what-if in one line: the change, the largest peak's ratio, the evidence and the target formats' risk."""
    r = ch.ratio("abs")
    what = (f"largest peak |a| x{r['value']:.2g} [{r['lo']:.2g}, {r['hi']:.2g}]" if r is not None
            else "no effect claimed: nothing measured informs this change")
    return (f"{', '.join(f'{k}={v}' for k, v in applied.items())}: {what} "
            f"({ch.evidence}{'; controlled and associational evidence disagree' if ch.disagreement else ''})"
            + (f"; risk in {', '.join(sorted(targets))} {sum(rb[f] for f in targets):.2f} -> {sum(ra[f] for f in targets):.2f}" if targets else ""))


class Effect(NamedTuple):
    """What ranking reads of one mitigation's what-if (the ``MitigationEffect`` is written for the shown ones only):
    ``predicted``: a number resting on more than the prior over measured changes (which says nothing of this design in
    particular); ``worse``: that number raises the largest peak |a| (its point value) or the target formats' risk;
    ``reduction``: ``MitigationEffect.reduction``."""

    change: dict[str, Any]
    ch: Change
    after: tuple[Moved, Moved]
    risk_after: dict[str, float]
    predicted: bool
    worse: bool
    reduction: float


def _effect(change: dict[str, Any], ch: Change, after: tuple[Moved, Moved], targets: set[str], rb: dict[str, float],
            ra: dict[str, float]) -> Effect:
    predicted = ch.modelled and ch.evidence != "prior"
    risk_up = bool(targets) and sum(ra[f] for f in targets) > sum(rb[f] for f in targets) + 1e-9
    drop = sum(rb[f] - ra[f] for f in targets) if targets else 0.0
    return Effect(change, ch, after, ra, predicted, predicted and (10 ** ch.mean["abs"] > 1.0 or risk_up),
                  -(ch.mean["abs"] + ch.sd["abs"]) + drop)


def _effect_fields(e: Effect, before: tuple[dict, dict], targets: set[str], rb: dict[str, float], text: str,
                   used: set[str] | None) -> dict[str, Any]:
    """The ``MitigationEffect`` of ``e`` as plain data in the model's order; ``used``: the compact views' formats
    (their risks only, no per-field terms), None in the full view."""
    ra = e.risk_after
    if used is not None:
        rb, ra = {k: v for k, v in rb.items() if k in used}, {k: v for k, v in ra.items() if k in used}
    return {**change_effect(e.ch, rb, ra, terms=used is None), "applied": e.change,
            "peak_abs_before": before[0], "peak_abs_after": e.after[0].largest(),
            "ratio_end_before": before[1], "ratio_end_after": e.after[1].largest(), "reduction": e.reduction, "text": text}


@dataclass
class MitigationPlan:
    """Knowledge-base matches of one answer and the what-if variants their effects need."""

    adjusted: list[kbm.Match]
    motivations: dict[str, Any]
    changes: dict[str, dict[str, Any]]  # entry id -> fields changed
    targets: set[str]
    keys: dict[str, str]  # entry id -> its change's ``change_key`` (one what-if per distinct change)

    @cached_property
    def distinct(self) -> dict[str, dict[str, Any]]:
        """Each distinct change, by key (the first entry's making it)."""
        out: dict[str, dict[str, Any]] = {}
        for k, c in self.changes.items():
            out.setdefault(self.keys[k], c)
        return out


def plan_mitigations(arch: Architecture, fc: ForecastArrays, risks: list[PrecisionRisk], kb: kbm.KnowledgeBase) -> MitigationPlan:
    """Match the knowledge base and list the what-if variants (no forecasting yet)."""
    record = kb_record(arch, fc)
    matches = kbm.evaluate(record, kb)
    precision, other = _motivations(fc, risks)
    motivations = {m.entry.id: precision if m.entry.precision_related else other for m in matches}
    adjusted: list[kbm.Match] = []
    for m in matches:
        present = ALREADY_PRESENT.get(m.entry.id)
        if present and record.get(present[0]) == present[1] and m.level != "not_recommended":
            m = kbm.Match(
                entry=m.entry,
                level="informational",
                why=f"already in the proposed architecture ({present[0]}={present[1]}); evidence: {m.why}",
                branch_matched=m.branch_matched,
                unknown_fields=m.unknown_fields,
            )
        adjusted.append(m)
    changes = {m.entry.id: c for m in adjusted if m.effective and (c := what_if_change(m.entry.id, arch))}
    return MitigationPlan(adjusted, motivations, changes, {r.format for r in risks if r.target},
                          {k: change_key(c) for k, c in changes.items()})


def rank_mitigations(fc: ForecastArrays, plan: MitigationPlan, changes: Sequence[Change],
                     afters: Sequence[tuple[Moved, Moved]], probs: Sequence[dict[str, float]],
                     used: set[str] | None = None) -> list[dict[str, Any]]:
    """The ranked mitigations as plain data in ``Mitigation``'s shape, given the what-if changes (``changes``, in
    ``plan.changes`` order), the design's values moved by each (``afters``) and ``probs``: the format risks of the
    forecast and then of each variant.

    ``effective`` and the rank follow each mitigation's own what-if where it has a number: one that raises the
    largest peak or the target formats' risk is never effective, whatever the knowledge base's level (kept, with
    its text, as context); effective ones with a predicted effect rank by it, then those the forecast cannot
    represent by their level. Entries making the same change (the two gated-attention papers) are one answer.
    ``used``: the compact views' formats: only the first ``TOP_MITIGATIONS`` effective ones (the ranks are the whole
    list's), each without its mechanism text, expected effects, caveats, per-field terms and all but the first
    citation, risks of ``used`` formats only (all of it in the full view: None)."""
    adjusted, motivations, targets = plan.adjusted, plan.motivations, plan.targets
    rb, *ra = probs
    effects = {k: _effect(c, ch, af, targets, rb, r)
               for (k, c), ch, af, r in zip(plan.changes.items(), changes, afters, ra, strict=True)}
    ranked = kbm.rank(adjusted, motivations)
    order = {m.entry.id: i for i, m in enumerate(ranked)}
    effective = {m.entry.id: m.effective and not (m.entry.id in effects and effects[m.entry.id].worse) for m in adjusted}

    def score(m: kbm.Match) -> tuple:
        e = effects.get(m.entry.id)
        number = e is not None and e.predicted
        return (not effective[m.entry.id], not number, -(e.reduction if number else LEVEL_SCORE.get(m.level, 0.0)),
                order[m.entry.id])

    ranked.sort(key=score)
    same: dict[str, list[kbm.Match]] = {}  # the entries making one change, under the first (best-ranked) of them
    for m in ranked:
        key = plan.keys.get(m.entry.id, m.entry.id)
        same.setdefault(key, []).append(m)
    compact = used is not None
    before = None
    out = []
    for i, (m, *also) in enumerate(same.values(), start=1):
        e, ok = m.entry, effective[m.entry.id]
        if compact and (len(out) == TOP_MITIGATIONS or not ok):
            break
        mot, eff, fields = motivations[e.id], effects.get(e.id), None
        why = m.why
        if eff is not None:
            before = before or (fc.peak_abs.largest().model_dump(), fc.ratio_end.largest().model_dump())
            text = effect_text(eff.change, eff.ch, targets, rb, eff.risk_after)
            fields = _effect_fields(eff, before, targets, rb, text, used)
            if m.effective and not ok:
                why = (f"its own what-if makes this design worse ({text}): not effective here; the knowledge base rates it "
                       f"{m.level}: {m.why}")
        if also:
            why += "; the same change as " + ", ".join(f"{a.entry.name} ({a.entry.id})" for a in also)
        citations = list(e.citations) + [c for a in also for c in a.entry.citations if c not in e.citations]
        out.append({"id": e.id, "name": e.name, "category": e.category, "rank": i, "level": m.level, "effective": ok,
                    "why": why, "mechanism": "" if compact else e.mechanism, "changes": list(e.changes),
                    "expected_effect": {} if compact else dict(e.expected_effect), "cost": e.cost,
                    "caveats": [] if compact else list(e.caveats), "citations": citations[:1] if compact else citations,
                    "motivating_layers": list(mot.layers), "motivation": mot.text, "unknown_fields": list(m.unknown_fields),
                    "effect": fields})
    return out


# ------------------------------------------------------------------------------------ answers


@dataclass
class _Staged:
    """One answer before its what-ifs: the forecast answered (``fc``) and the design forecast the what-if effects are
    measured against (``prior``), both in the worst case (``wf``, ``wp``), the prior's format risks, the precision
    risk and the knowledge-base matches with the distinct what-if changes the plan needs (``plan.distinct``)."""

    fc: ForecastArrays
    prior: ForecastArrays
    wf: ForecastArrays
    wp: ForecastArrays
    prior_probs: dict[str, float]
    risk: list[PrecisionRisk]
    plan: MitigationPlan


class Answerer:
    """A fitted engine, the knowledge base and the version's card: everything a whole answer needs.

    The registered model's pyfunc holds one; every entry point (``/predict``, ``/predict_batch``,
    ``/compare``, ``/nowcast``, ``maforecast predict``, the review gate) goes through it, so one
    architecture gets one answer. The what-if variants of the mitigations are forecast in-process.
    """

    def __init__(self, engine: ForecastEngine, kb: kbm.KnowledgeBase, card: dict[str, Any] | None = None):
        self.engine = engine
        self.kb = kb
        self.card = dict(card or {})
        self._info: dict[tuple, PredictorInfo] = {}

    def predictor(self, version: str | None = None, alias: str | None = None, model_uri: str | None = None) -> PredictorInfo:
        """The version's identity as the answer states it (the loader knows version, alias and URI)."""
        key = (version, alias, model_uri)
        if key not in self._info:
            c = self.card
            self._info[key] = PredictorInfo(name=str(c.get("registered_model") or "maforecast-predictor"), version=version,
                                            alias=alias, model_uri=model_uri, beats_baseline=c.get("beats_baseline"),
                                            held_out=_held_out_text(c))
        return self._info[key]

    # -- core
    def fields_many(self, archs: Sequence[Architecture], steps: Sequence[int] | None, who: PredictorInfo,
                    view: str = "full", layers: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """The answers' fields for several architectures: each one's forecast, precision risk and knowledge-base
        matches, then in one batch the what-if variants their effective mitigations need (each distinct field
        change once: the two gated-attention entries make the same one). The layers are plain data in
        ``LayerForecast``'s shape (``write`` turns the fields into the JSON)."""
        steps = list(steps) if steps else None
        staged = [self._stage(a, fc, view=view)
                  for a, fc in zip(archs, self.engine.forecast_arrays_many(archs, steps), strict=True)]
        return self._finish_many(archs, staged, who, view, layers)

    def _stage(self, arch: Architecture, fc: ForecastArrays, prior: ForecastArrays | None = None, view: str = "full") -> _Staged:
        """What an answer knows before its what-ifs: ``fc`` is what is answered (the forecast, or a nowcast's
        update), ``prior`` the design forecast the what-if effects are measured against (None: ``fc`` itself); the
        per-layer precision records only where ``view`` shows them (and the plan reads them)."""
        # precision, the what-ifs' risks and the mitigations' effects are read in the worst case (corpus_max):
        # overflow happens at the worst token a deployment sees, whatever protocol the magnitudes are shown in
        wf = fc.worst_case()
        wp = wf if prior is None else prior.worst_case()
        probs = format_probabilities_many([(wf.peak_abs, wf.ratio_end)] + ([] if prior is None else [(wp.peak_abs, wp.ratio_end)]))
        risk = precision_risks(wf, arch, probs[0], schedule_events(arch), details=view == "full")
        plan = plan_mitigations(arch, fc, risk, self.kb)
        return _Staged(fc, prior or fc, wf, wp, probs[-1], risk, plan)

    def _finish_many(self, archs: Sequence[Architecture], staged: Sequence[_Staged], who: PredictorInfo, view: str,
                     layers: Sequence[int] | None) -> list[dict[str, Any]]:
        """The staged answers' fields, their what-if variants forecast in one batch."""
        changes = iter(what_if_changes(self.engine, [(a, c) for a, st in zip(archs, staged, strict=True)
                                                     for c in st.plan.distinct.values()]))
        return [self._fields(a, st, {k: next(changes) for k in st.plan.distinct}, who, view, layers)
                for a, st in zip(archs, staged, strict=True)]

    def _fields(self, arch: Architecture, st: _Staged, changes: dict[str, Change], who: PredictorInfo,
                view: str = "full", layers: Sequence[int] | None = None) -> dict[str, Any]:
        """One answer's fields, given its stage and the effect of each distinct what-if change (by key)."""
        fc, plan = st.fc, st.plan
        keys = plan.keys
        moved = dict(zip(plan.distinct, after_intervals_many(st.wp, [changes[k] for k in plan.distinct]), strict=True))
        probs = dict(zip(plan.distinct, format_probabilities_many(list(moved.values())), strict=True))
        pplan = precision_plan(st.risk, arch.precision_target, recipe=arch.precision_recipe, details=view == "full")
        mitigations = rank_mitigations(st.wp, plan, [changes[keys[k]] for k in plan.changes],
                                       [moved[keys[k]] for k in plan.changes],
                                       [st.prior_probs] + [probs[keys[k]] for k in plan.changes],
                                       None if view == "full" else used_formats(arch, pplan))
        fields = {"predictor": who, "architecture": fc.architecture or arch.label(), "t_end": fc.t_end,
                  "summary": summarize(fc, st.wf), "layers": fc.layer_dicts(trajectory=view == "full"),
                  "precision": st.risk, "applicability": fc.applicability, "mitigations": mitigations, "notes": fc.notes,
                  "lineage": fc.lineage or st.prior.lineage, "precision_plan": pplan, "view": view}
        return in_view(fields, arch, view, layers)

    @staticmethod
    def write(fields: dict[str, Any]) -> bytes:
        """The ``PredictResponse`` JSON of the fields, written without building the ~900 per-layer objects
        that validating the layers would (they are ``ForecastArrays.layer_dicts``, already in
        ``LayerForecast``'s shape; tests check the bytes validate and dump back unchanged)."""
        return _RESPONSE_JSON(PredictResponse.model_construct(**_UNSET, **fields), warnings=False)

    def answers_json(self, archs: Sequence[Architecture], steps: Sequence[int] | None = None, view: str | None = None,
                     layers: Sequence[int] | None = None, who: PredictorInfo | None = None) -> list[bytes]:
        """The serialised answers in ``view`` (``predictor.response.VIEW_HELP``; by default compact, full where
        ``steps`` asks for trajectory points), ``layers`` picking layers in any view."""
        who = who or self.predictor()
        view = view_for(view, steps)
        if view not in VIEWS:
            raise ValueError(f"view: expected one of {', '.join(VIEWS)}, got {view!r}")
        for i, a in enumerate(archs):
            if bad := [x for x in layers or () if not 0 <= x < a.n_layers]:
                where = f"architectures[{i}] " if len(archs) > 1 else ""
                raise ValueError(f"layers: {where}has {a.n_layers} layers (0-{a.n_layers - 1}); no layer {ranges(bad)}")
        return [self.write(f) for f in self.fields_many(archs, steps, who, view, layers)]

    def answers(self, archs: Sequence[Architecture], steps: Sequence[int] | None = None,
                who: PredictorInfo | None = None, view: str = "full") -> list[PredictResponse]:
        return [PredictResponse.model_validate_json(raw) for raw in self.answers_json(archs, steps, view, who=who)]

    # -- compare
    def compare(self, variants: dict[str, Architecture], steps: Sequence[int] | None = None,
                who: PredictorInfo | None = None) -> CompareResponse:
        who = who or self.predictor()
        answers = dict(zip(variants, self.answers(list(variants.values()), steps, who), strict=True))
        names = list(variants)
        base = names[0]
        summaries = [
            VariantSummary(
                name=n,
                architecture=answers[n].architecture,
                summary=answers[n].summary,
                precision_at_risk=[r.format for r in answers[n].precision if r.at_risk],
                top_mitigations=[m.id for m in answers[n].mitigations if m.effective][:TOP_MITIGATIONS],
                applicability_fields=[w.field for w in answers[n].applicability],
            )
            for n in names
        ]
        changes = changes_many(self.engine, [(variants[base], variants[n]) for n in names[1:]])
        base_fc = self.engine.forecast_arrays(variants[base], steps).worst_case()  # risks as /predict reads them
        afters = after_intervals_many(base_fc, changes)
        rb, *ra = format_probabilities_many([(base_fc.peak_abs, base_fc.ratio_end)] + afters)
        diffs = [diff(base, variants[base], answers[base], n, variants[n], answers[n],
                      ChangeEffect.model_validate(change_effect(ch, rb, r)))
                 for n, ch, r in zip(names[1:], changes, ra, strict=True)]
        return CompareResponse(predictor=who, baseline=base, variants=summaries, differences=diffs)

    # -- nowcast
    def nowcast(self, arch: Architecture, observations: Sequence[Any], steps: Sequence[int] | None = None,
                who: PredictorInfo | None = None) -> NowcastResponse:
        """The /predict answer of the forecast updated by a run's checkpoints. Mitigations are matched on
        the updated forecast; their what-if effects are changes of the design, measured on the design's
        forecast, so with no observations the answer's mitigations are exactly /predict's."""
        who = who or self.predictor()
        steps = list(steps) if steps else None
        res = nowcast(self.engine, arch, observations, steps=steps)
        design = self.engine.forecast_arrays(arch, steps)
        fc = ForecastArrays.from_forecast(res.forecast).model_copy(
            update={"worst_case_shift": design.worst_case_shift, "lineage": design.lineage})
        # with no observations the update is the design's forecast itself
        st = self._stage(arch, fc, None if not len(observations) else design)
        fields = self._finish_many([arch], [st], who, "full", None)[0]
        return NowcastResponse(**fields, nowcast=res.info, nowcast_layers=res.layers)


def _held_out_text(info: dict) -> str | None:
    q = (info.get("quality") or {}).get("peak_abs")
    if not q:
        return None
    verdict = "beats" if info.get("beats_baseline") else "does NOT beat"
    return (f"held-out largest-layer peak |a| (leave one lineage out): MAE {q['mae']:.2f} decades vs {q['baseline_mae']:.2f} "
            f"for a constant; this predictor {verdict} the baseline")


def _iv(x: Interval | None) -> float | None:
    return None if x is None else x.value


def _change(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return f"{_g(a)} -> {_g(b)}"
    if a > 0 and b > 0:
        return f"{_g(a)} -> {_g(b)} (x{b / a:.2g})"
    return f"{_g(a)} -> {_g(b)}"


def diff(base: str, arch_a: Architecture, ans_a: PredictResponse, name: str, arch_b: Architecture, ans_b: PredictResponse,
         effect: ChangeEffect | None = None) -> Difference:
    da, db = arch_a.model_dump(exclude={"name"}), arch_b.model_dump(exclude={"name"})
    changed = {k: [da[k], db[k]] for k in da if da[k] != db[k]}
    sa, sb = ans_a.summary, ans_b.summary
    effects: dict[str, list[Any]] = {
        "n_massive_layers": [len(sa.massive_layers), len(sb.massive_layers)],
        "earliest_emergence_step": [_iv(sa.earliest_emergence_step), _iv(sb.earliest_emergence_step)],
        "largest_peak_abs": [sa.largest_peak_abs.value, sb.largest_peak_abs.value],
        "largest_ratio_end": [sa.largest_ratio_end.value, sb.largest_ratio_end.value],
        "precision_at_risk": [
            [r.format for r in ans_a.precision if r.at_risk],
            [r.format for r in ans_b.precision if r.at_risk],
        ],
    }
    what = ", ".join(f"{k} {v[0]} -> {v[1]}" for k, v in changed.items()) or "nothing (identical inputs)"
    targets = sorted(r.format for r in ans_a.precision if r.target)
    line = bottom_line(what, effect if changed else None, targets)
    text = [f"{name} vs {base}: changes {what}", line]
    if effect is not None and changed:
        if effect.disagreement:
            text.append("  controlled and associational evidence disagree for some changed field")
        text += [f"  {t.text}" for t in effect.terms]
        text.append("each variant's own forecast (a prediction from similar trained models, not the effect of the change):")
    text.append(f"massive layers: {len(sa.massive_layers)} -> {len(sb.massive_layers)}")
    text.append(f"largest peak |a|: {_change(sa.largest_peak_abs.value, sb.largest_peak_abs.value)}")
    text.append(f"largest ratio at end of training: {_change(sa.largest_ratio_end.value, sb.largest_ratio_end.value)}")
    text.append(
        f"earliest emergence step: {_change(_iv(sa.earliest_emergence_step), _iv(sb.earliest_emergence_step))}"
    )
    ra, rb = set(effects["precision_at_risk"][0]), set(effects["precision_at_risk"][1])
    if ra != rb:
        if rb - ra:
            text.append(f"newly at risk: {', '.join(sorted(rb - ra))}")
        if ra - rb:
            text.append(f"no longer at risk: {', '.join(sorted(ra - rb))}")
    wa = {w.field for w in ans_a.applicability}
    wb = {w.field for w in ans_b.applicability}
    if wb - wa:
        text.append(f"outside the predictor's training range in {name} only: {', '.join(sorted(wb - wa))}")
    return Difference(variant=name, baseline=base, changed_inputs=changed, effects=effects, effect=effect,
                      bottom_line=line, text=text)


def bottom_line(what: str, effect: ChangeEffect | None, targets: Sequence[str]) -> str:
    """One sentence a reviewer can act on: what the change does (the intervention), never the two forecasts'
    difference (which mixes in everything else that differs between similar trained models)."""
    if effect is None:
        return f"bottom line: {what}: nothing to compare"
    r = effect.peak_abs_ratio
    if r is None:
        return (f"bottom line: {what} is not modelled ({effect.evidence}): nothing measured says what it does to "
                f"massive activations, so no effect is claimed")
    risk = (f"; P(limits crossed) on the target {'format' if len(targets) == 1 else 'formats'} "
            + ", ".join(f"{f} {effect.risk_before[f]:.2f} -> {effect.risk_after[f]:.2f}" for f in targets)) if targets else ""
    way = "lowers" if r.hi < 1 else "raises" if r.lo > 1 else "may raise or lower" if r.value != 1 else "leaves"
    return (f"bottom line: {what} {way} the largest peak |a|: x{r.value:.2g} [{r.lo:.2g}, {r.hi:.2g}], "
            f"{effect.evidence} evidence{risk}")
