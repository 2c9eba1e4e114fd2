"""What a change of the design does (the intervention question), for mitigations and ``/compare``.

A change from design ``a`` to design ``b`` is split by field: a field with controlled evidence for the
change (``predictor.effects``) takes the controlled estimate; every other field goes through the
forecast engine (design terms: the cross-family association, with its posterior and the extra sd
associations deserve, ``ForecastEngine.association_sd_``; the training plan: the time model). A field
whose old value has no controlled estimate but whose new one has (LayerNorm -> DyT) goes through the
engine to the studies' base value and through the controlled estimate from there. The engine's part is
a difference of two forecasts of the *same* changed terms, so its interval is the posterior of those
terms, not two absolute intervals side by side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from operator import attrgetter
from typing import Any, NamedTuple

import numpy as np

from predictor.architecture import Architecture
from predictor.design import FIELD_OF, SIZE_TERMS, SWITCHES, TERMS, DesignMemo
from predictor.effects import BASES, Z90, Estimate
from predictor.engine import ForecastEngine
from predictor.response import Interval, TermEffect

__all__ = ["Change", "DESIGN_FIELDS", "LEVEL_FIELDS", "PLAN_FIELDS", "SIZE_FIELDS", "changes_many", "interval_data", "what_if_changes"]

SIZE_FIELDS = {"n_layers", "d_model", "n_heads", "n_kv_heads", "head_dim", "d_ffn", "vocab_size", "moe_experts",
               "moe_active_experts", "total_params_B", "tied_embeddings", "seq_len"}
DESIGN_FIELDS = set(FIELD_OF.values()) | {"activation", "norm_gain"}
WD_BASE = 0.1  # weight decay: the controlled comparison is 0.1 -> 0; between them the effect is taken linear
# what the forecast reads besides the design vector and the size: the plan's clock and the level's lineage/protocol
PLAN_FIELDS = {"total_steps", "training_tokens", "learning_rate", "lr_schedule", "warmup_frac", "batch_tokens",
               "weight_decay"}
LEVEL_FIELDS = {"lineage", "protocol"}


def not_modelled(engine: ForecastEngine, a: Architecture, fields: Sequence[str], b: Architecture | dict[str, Any],
                 memo: DesignMemo | None = None) -> list[str]:
    """The changed ``fields`` nothing in the forecast reads (rope_theta, seq_len, precision, ...): no controlled
    comparison, not the plan, and changing them alone moves neither the design vector nor the size. Such a
    change is answered as not modelled, not as a known x1. ``b``: the changed design, or its changed values by field;
    ``memo``: the calling pass's."""
    out = []
    x_a, n_a = None, None
    for f in fields:
        if f in BASES or f in PLAN_FIELDS or f in LEVEL_FIELDS or f == "n_layers":  # depth: the profile reads it
            continue
        a_f = a.model_copy(update={f: b[f] if isinstance(b, dict) else getattr(b, f)})
        if x_a is None:
            x_a, n_a = engine.design(a, memo), a.n_params()
        if a_f.n_params() == n_a and np.array_equal(engine.design(a_f), x_a):
            out.append(f)
    return out


@dataclass
class Change:
    """One change's effect in log10 (largest layer: mean, sd per quantity; per layer where the depth is kept)."""

    mean: dict[str, float]
    sd: dict[str, float]
    layers: dict[str, np.ndarray | None]
    parts: list[Term] = field(default_factory=list)  # per changed field (``terms`` writes them)
    # the 90 % interval's reach below and above the mean (log10): asymmetric where the clock's uncertainty
    # moves the change one way only (half the learning rate cannot raise the peak however fast emergence is)
    reach: dict[str, tuple[float, float]] | None = None

    # read several times per answer (each ratio asks): computed once, the parts being complete when a Change is made
    @cached_property
    def terms(self) -> list[TermEffect]:
        """The per-field terms as the answer writes them (only the effects an answer shows in full ask)."""
        return [t.effect() for t in self.parts]

    @cached_property
    def modelled(self) -> bool:
        """False when every changed field is one the forecast does not read, or nothing changed (no effect is claimed)."""
        return any(t.evidence != "not_modelled" for t in self.parts)

    @cached_property
    def evidence(self) -> str:
        if not self.modelled:
            return "not_modelled"
        kinds = {t.evidence for t in self.parts if t.evidence not in ("time_model", "prior", "not_modelled")}
        ctrl = bool(kinds & {"controlled", "controlled_direction"})
        if ctrl and "associational" in kinds:
            return "both"
        if ctrl:
            return "controlled"
        if kinds:
            return "associational"
        if any(t.evidence == "time_model" for t in self.parts):
            return "time_model"
        return "prior"  # nobody measured it: the distribution of the measured changes' effects (checked leave-one-study-out)

    @cached_property
    def studies(self) -> list[str]:
        return sorted({s for t in self.parts for s in t.studies})

    @cached_property
    def disagreement(self) -> bool:
        return any(t.disagreement for t in self.parts)

    def ratio(self, q: str) -> dict[str, float] | None:
        """after/before of quantity ``q``'s largest layer as an ``Interval``'s fields (plain data: the answer writes it)."""
        if not self.modelled:  # a change of fields the forecast does not read carries no number
            return None
        m = self.mean[q]
        dn, up = (Z90 * self.sd[q],) * 2 if self.reach is None else self.reach[q]
        return interval_data(10**m, 10 ** (m - dn), 10 ** (m + up))


def interval_data(value: float, lo: float, hi: float) -> dict[str, float]:
    """An ``Interval``'s fields as plain data (what an answer writes; validated where it is read)."""
    return {"value": float(value), "lo": float(lo), "hi": float(hi)}


def ratio_interval(mean: float, sd: float) -> Interval:
    return _interval(10**mean, 10 ** (mean - Z90 * sd), 10 ** (mean + Z90 * sd))


def _interval(value: float, lo: float, hi: float) -> Interval:
    """An ``Interval`` of three numbers (validated: pydantic-core checks three floats in about half the time
    ``model_construct`` takes to fill them in in Python)."""
    return Interval(value=float(value), lo=float(lo), hi=float(hi))


def _g(x: float) -> str:
    return f"{x:.2g}"


class Term(NamedTuple):
    """One changed field's part of a what-if, as numbers (``effect`` writes its ``TermEffect``): ``mean``/``sd`` its
    log10 effect on the largest peak |a| (``reach``: the 90 % interval's asymmetric ends), None for a field the
    forecast does not read; ``association``: the cross-family association's (mean, sd) for the same change."""

    field: str
    before: Any
    after: Any
    mean: float | None
    sd: float
    evidence: str
    studies: tuple[str, ...] = ()
    association: tuple[float, float] | None = None
    why: str = ""
    reach: tuple[float, float] | None = None

    @property
    def disagreement(self) -> bool:
        """The association lies outside the controlled 90 % interval."""
        a = self.association
        return bool(a and self.evidence.startswith("controlled") and not self.mean - Z90 * self.sd <= a[0] <= self.mean + Z90 * self.sd)

    @property
    def value(self) -> float:
        """The ratio's point value (as its ``Interval`` holds it)."""
        return float(10**self.mean)

    def effect(self) -> TermEffect:
        f, before, after = self.field, self.before, self.after
        if self.mean is None:
            return TermEffect(field=f, before=before, after=after, ratio=None, evidence="not_modelled", studies=[],
                              association=None, disagreement=False,
                              text=f"{f} {before} -> {after}: not modelled (no comparison or trained model informs it, "
                              "and the forecast does not read it): no effect is claimed")
        mean, sd, reach = self.mean, self.sd, self.reach
        iv = ratio_interval(mean, sd) if reach is None else _interval(10**mean, 10 ** (mean - reach[0]), 10 ** (mean + reach[1]))
        assoc = ratio_interval(*self.association) if self.association else None
        disagree = self.disagreement
        text = f"{f} {before} -> {after}: x{_g(iv.value)} [{_g(iv.lo)}, {_g(iv.hi)}] ({self.evidence.replace('_', ' ')}{self.why})"
        if disagree and assoc:
            text += (f"; the cross-family association says x{_g(assoc.value)} [{_g(assoc.lo)}, {_g(assoc.hi)}]: they disagree, "
                     f"the controlled estimate is used")
        # validated, not constructed: for a model this small pydantic-core is faster than model_construct's Python (the
        # intervals are kept as they are, not validated again)
        return TermEffect(field=f, before=before, after=after, ratio=iv, evidence=self.evidence, studies=list(self.studies),
                          association=assoc, disagreement=disagree, text=text)


def _term(f: str, before: Any, after: Any, mean: float, sd: float, evidence: str, studies: Sequence[str] = (),
          association: tuple[float, float] | None = None, why: str = "",
          reach: tuple[float, float] | None = None) -> Term:
    return Term(f, before, after, mean, sd, evidence, tuple(str(s) for s in studies), association, why, reach)


def _unread_term(f: str, before: Any, after: Any) -> Term:
    return Term(f, before, after, None, 0.0, "not_modelled")


def _controlled_split(engine: ForecastEngine, a: Architecture, f: str, vb: Any, memo: DesignMemo
                      ) -> tuple[Term | None, Any, Any, float, float]:
    """The controlled part of field ``f``'s change to ``vb``: (term, value the engine sees in a, in b, mean, var)."""
    ce = engine.controlled_
    va = getattr(a, f)
    if f == "weight_decay":
        e0 = ce.estimate_of("weight_decay", 0.0)
        if e0 is None or min(va, vb) >= WD_BASE:
            return None, va, vb, 0.0, 0.0
        frac = (min(va, WD_BASE) - min(vb, WD_BASE)) / WD_BASE  # share of the 0.1 -> 0 change made
        mean, sd = e0.mean * frac, e0.sd * abs(frac)
        t = _term(f, va, vb, mean, sd, "controlled", e0.studies, why=f": {frac:.0%} of the measured 0.1 -> 0 change")
        return t, max(va, WD_BASE), max(vb, WD_BASE), mean, sd**2
    if f not in BASES:
        return None, va, vb, 0.0, 0.0
    base = BASES[f]
    ra, rb = _from_base(engine, a, f, va, memo), _from_base(engine, a, f, vb, memo)
    if not any(r is not None and r[2] != "none" for r in (ra, rb)):  # nothing measured on either side
        return None, va, vb, 0.0, 0.0
    if ra is not None and rb is not None:  # both ends measured against the base (or neither known at all)
        ends, c_from, c_to = (va, va), va, vb
    elif rb is not None:  # the engine takes a to the base, the controlled estimate the base to b
        ends, c_from, c_to = (va, base), base, vb
    else:
        ends, c_from, c_to = (base, vb), va, base
    used = [r for r in (ra, rb) if r is not None]
    mean = (rb[0] if rb else 0.0) - (ra[0] if ra else 0.0)
    var = sum(r[1] for r in used)
    kinds = {r[2] for r in used} - {"none"}
    kind = next(k for k in ("prior", "controlled_direction", "controlled") if k in kinds) if kinds else "controlled"
    assoc = engine.association(_with(a, f, c_from), {f: c_to}, memo)
    ests = [r[3] for r in used if r[3] is not None]
    n = ", ".join(f"{e.n_numeric} magnitude + {e.n_direction} direction-only comparison(s)" for e in ests)
    why = f": {n}" if n else ": no comparison and no trained model varies it: the distribution of the measured changes' effects"
    t = _term(f, c_from, c_to, mean, math.sqrt(var), kind, sorted({s for e in ests for s in e.studies}), assoc, why)
    return t, ends[0], ends[1], mean, var


def _from_base(engine: ForecastEngine, arch: Architecture, f: str, v: Any, memo: DesignMemo
               ) -> tuple[float, float, str, Estimate | None] | None:
    """The effect of ``f``: base value -> ``v`` as (mean, var, evidence, estimate): the controlled estimate;
    None where none exists and the trained models vary the change (the association carries it); else the
    prior over the measured changes (an effect nobody measured is drawn from those that were)."""
    base = BASES[f]
    if v == base:
        return 0.0, 0.0, "none", None
    e = engine.controlled_.estimate_of(f, v, arch.glu)
    if e is not None:
        return e.mean, e.sd**2, "controlled_direction" if e.direction_only else "controlled", e
    if engine.association(_with(arch, f, base), {f: v}, memo) is not None:
        return None
    mu, sd = engine.controlled_.prior_of(exclude=(f, v))
    return mu, sd**2, "prior", None


def _with(arch: Architecture, f: str, v: Any) -> Architecture:
    """``arch`` with field ``f`` set to ``v`` (itself where it has that value already: no copy)."""
    return arch if getattr(arch, f) == v else arch.model_copy(update={f: v})


def changes_many(engine: ForecastEngine, pairs: Sequence[tuple[Architecture, Architecture]]) -> list[Change]:
    """The effect of turning each ``a`` into its ``b`` (see the module docstring), all pairs in one pass (its
    ``DesignMemo``: the pairs share designs, the variants of one design most of all)."""
    asked = []
    for a, b in pairs:
        va, vb = _values(a), _values(b)
        asked.append((a, {f: y for f, x, y in zip(_FIELDS, va, vb, strict=True) if x != y}, b))
    return _changes(engine, asked)


def what_if_changes(engine: ForecastEngine, asked: Sequence[tuple[Architecture, dict[str, Any]]]) -> list[Change]:
    """``changes_many`` of each design and a change of some of its fields (a mitigation's what-if): the changed
    design is built only where the engine reads it (most what-ifs are controlled estimates alone)."""
    return _changes(engine, [(a, {f: change[f] for f in sorted(change, key=_ORDER.__getitem__) if change[f] != getattr(a, f)},
                              None) for a, change in asked])


def _changes(engine: ForecastEngine, asked: Sequence[tuple[Architecture, dict[str, Any], Architecture | None]]) -> list[Change]:
    """The pass of ``changes_many``: per design ``a``, its changed values by field (in ``_FIELDS`` order) and the
    changed design where the caller has it (None: built here where the engine needs it)."""
    memo = DesignMemo()
    prepared = []
    for a, changed, b in asked:
        unread = not_modelled(engine, a, list(changed), changed, memo)
        fields = [f for f in changed if f not in unread]
        a_upd: dict[str, Any] = {}
        b_upd: dict[str, Any] = {}
        terms: list[Term] = [_unread_term(f, getattr(a, f), changed[f]) for f in unread]
        c_mean, c_var = 0.0, 0.0
        for f in fields:
            t, ea, eb, m, v = _controlled_split(engine, a, f, changed[f], memo)
            if t is None:
                continue
            terms.append(t)
            c_mean, c_var = c_mean + m, c_var + v
            a_upd[f], b_upd[f] = ea, eb
        engine_fields = [f for f in fields if a_upd.get(f, getattr(a, f)) != b_upd.get(f, changed[f])]
        # the designs the engine sees (built only where it has a part: a copy only where a value moves)
        if not engine_fields:
            a_e = b_e = a
        elif b is None:
            a_e, b_e = _updated(a, a_upd), a.model_copy(update={**changed, **b_upd})
        else:
            a_e, b_e = _updated(a, a_upd), _updated(b, b_upd)
        prepared.append((a, changed, a_e, b_e, engine_fields, terms, c_mean, c_var))
    # the engine's parts, in one batch: end values of every design the differences need, and the posterior
    # sd of every difference of design vectors
    need: dict[int, Architecture] = {}
    for _, _, a_e, b_e, ef, *_ in prepared:
        if ef:
            need[id(a_e)], need[id(b_e)] = a_e, b_e
    end_logs, designs = engine._end_logs_designs(list(need.values()), memo=memo)
    # per design, the largest layer's end value (rows: tau_e, fast, slow) and the per-layer values at tau_e
    peak = {k: {q: (logs[q].max(axis=1), logs[q][0]) for q in ("abs", "ratio")} for k, logs in zip(need, end_logs, strict=True)}
    x = dict(zip(need, designs if designs is not None else (), strict=True))
    eng = [i for i, p in enumerate(prepared) if p[4]]
    lev_sd: dict[str, np.ndarray] = {}
    n_moved = np.zeros(len(prepared))
    if eng:
        XA = np.stack([x[id(prepared[i][2])] for i in eng])
        XB = np.stack([x[id(prepared[i][3])] for i in eng])
        lev_sd = {q: engine.level_[q]._diff(XA, XB)[1] for q in ("abs", "ratio")}
        n_moved[eng] = ((XA != XB) & _ASSOCIATIONAL).sum(axis=1)
    row = {i: k for k, i in enumerate(eng)}
    out = []
    for i, (a, changed, a_e, b_e, ef, terms, c_mean, c_var) in enumerate(prepared):
        if not ef and all(t.evidence == "not_modelled" for t in terms):  # nothing the forecast reads changed: no
            out.append(Change(dict.fromkeys(_Q, 0.0), dict.fromkeys(_Q, 0.0), dict.fromkeys(_Q), terms, None))  # number
            continue
        same_depth = changed.get("n_layers", a.n_layers) == a.n_layers
        pa, pb = (peak[id(a_e)], peak[id(b_e)]) if ef else (None, None)
        mean, sd, layers, reach = {}, {}, {}, {}
        for q in _Q:
            m, sd2, down, up = c_mean, c_var, 0.0, 0.0  # down, up: how far the clock's 90 % ends move the change
            layer = np.full(a.n_layers, c_mean) if same_depth else None
            if ef:
                d = pb[q][0] - pa[q][0]  # (tau_e, fast, slow) of the largest layer
                down, up = max(float(d[0] - d.min()), 0.0), max(float(d.max() - d[0]), 0.0)
                m += float(d[0])
                sd2 += float(lev_sd[q][row[i]]) ** 2 + n_moved[i] * engine.association_sd_**2
                if same_depth:
                    layer = layer + (pb[q][1] - pa[q][1])
            half = Z90 * math.sqrt(sd2)
            reach[q] = (math.sqrt(half**2 + down**2), math.sqrt(half**2 + up**2))
            sd[q] = (reach[q][0] + reach[q][1]) / (2 * Z90)  # for risks and the ranking
            mean[q], layers[q] = m, layer
        if ef:
            own = math.sqrt(max(sd["abs"] ** 2 - c_var, 0.0))
            terms += _engine_terms(engine, a_e, b_e, ef, float(pb["abs"][0][0] - pa["abs"][0][0]), own,
                                   reach["abs"] if not any(t.mean is not None for t in terms) else None, memo)
        out.append(Change(mean, sd, layers, terms, reach))
    return out


_Q = ("abs", "ratio")
_FIELDS = tuple(f for f in Architecture.model_fields if f != "name")
_values = attrgetter(*_FIELDS)  # an architecture's values of _FIELDS, in one call (what changed is read per pair)
_ORDER = {f: i for i, f in enumerate(_FIELDS)}


def _updated(arch: Architecture, update: dict[str, Any]) -> Architecture:
    """``arch`` with ``update`` applied (itself where no value moves: no copy)."""
    moved = {f: v for f, v in update.items() if getattr(arch, f) != v}
    return arch.model_copy(update=moved) if moved else arch


# the design terms whose change is an association (not size, not the measurement protocol)
_ASSOCIATIONAL = np.array([t in SWITCHES and t not in SIZE_TERMS for t in TERMS])


def _engine_terms(engine: ForecastEngine, a: Architecture, b: Architecture, fields: list[str], mean: float,
                  sd: float, reach: tuple[float, float] | None, memo: DesignMemo) -> list[Term]:
    """The engine part in words: one term per design field (its association), the rest as one term."""
    out = []
    design = [f for f in fields if f in DESIGN_FIELDS]
    rest = [f for f in fields if f not in DESIGN_FIELDS]
    for f in design:
        assoc = engine.association(a, {f: getattr(b, f)}, memo)
        m, s = assoc if assoc else (0.0, math.sqrt(engine.association_sd_**2 + 1.0))
        s = math.sqrt(s**2 + engine.association_sd_**2)
        why = "" if assoc else ": never varied in the trained models, an unknown effect"
        out.append(_term(f, getattr(a, f), getattr(b, f), m, s, "associational", why=why))
    if rest:
        kind = "associational" if set(rest) & SIZE_FIELDS else "time_model"
        rm = mean - sum(math.log10(t.value) for t in out)
        out.append(_term("+".join(rest), "/".join(str(getattr(a, f)) for f in rest),
                         "/".join(str(getattr(b, f)) for f in rest), rm, sd, kind, reach=None if out else reach))
    return out
