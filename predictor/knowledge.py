"""Rule engine over the mitigation knowledge base (``maforecast/data/reference/mitigations.yaml``).

The knowledge base is parsed and its rules compiled once (``load_kb`` is cached); evaluating it for
one architecture is a few dictionary lookups. Grammar (see the YAML header)::

    rule = {all: [cond, ...]} | {any: [cond, ...]} | {none: [cond, ...]}   (keys may be combined)
    cond = {field: <name>, op: eq|ne|in|not_in|lt|le|gt|ge|contains, value: <v>}

A condition on a field the record does not have is *unknown* and never holds (so an ``all`` with an
unknown field fails, a ``none`` with one passes). Each entry's ``recommendation`` is a list of
``{when, level, why}`` branches: ``not_recommended`` wins whenever one of its branches matches (the
evidence says it fails there), otherwise the first matching branch decides. An entry whose
``applies_when`` holds but no branch matches is returned as ``informational``.

Evidence-backed only: an entry is returned only with at least one citation, i.e. an evidence item
with an arXiv id; evidence without one (blogs) is not cited.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from predictor.response import CitationOut as Citation  # one definition of a citation

__all__ = [
    "KnowledgeBase", "KnowledgeBaseError", "LEVEL_RANK", "Match", "Motivation", "compile_cond",
    "compile_rule", "evaluate", "kb_digest", "kb_path", "load_kb", "parse_kb", "rank",
]

LEVELS: tuple[str, ...] = ("strong", "moderate", "situational", "informational", "not_recommended")
LEVEL_RANK = {name: i for i, name in enumerate(LEVELS)}
CONFIDENCE_RANK = {"high": 0, "medium": 1, "low": 2}
# levels that mean "do this, it should help"
EFFECTIVE_LEVELS = frozenset({"strong", "moderate", "situational"})


class KnowledgeBaseError(ValueError):
    """The knowledge base file does not follow the grammar (a packaging bug, not a user error)."""


def kb_path() -> Path:
    return Path(str(resources.files("maforecast") / "data" / "reference" / "mitigations.yaml"))


# ---------------------------------------------------------------------------------------------
# rule compilation


def _contains(a: Any, b: Any) -> bool:
    if isinstance(a, str | list | tuple | set | frozenset | dict):
        if isinstance(a, str):
            return str(b) in a
        return b in a
    return False


def _ordered(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def f(a: Any, b: Any) -> bool:
        if isinstance(a, bool) or isinstance(b, bool):
            return False
        try:
            return bool(op(float(a), float(b)))
        except (TypeError, ValueError):
            return False

    return f


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()
    return a == b


def _in(a: Any, b: Any) -> bool:
    return isinstance(b, list | tuple | set | frozenset) and any(_eq(a, v) for v in b)


OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": _eq,
    "ne": lambda a, b: not _eq(a, b),
    "in": _in,
    "not_in": lambda a, b: isinstance(b, list | tuple | set | frozenset) and not _in(a, b),
    "lt": _ordered(operator.lt),
    "le": _ordered(operator.le),
    "gt": _ordered(operator.gt),
    "ge": _ordered(operator.ge),
    "contains": _contains,
}

Predicate = Callable[[Mapping[str, Any]], bool]


def _enum_value(v: Any) -> Any:
    """Accept enums (``StrEnum``) as their value so pydantic-dumped records compare as strings."""
    return getattr(v, "value", v)


_PLAIN = frozenset({str, bool, int, float})  # record values without an enum's ``value``


def _test(op_name: str, b: Any) -> Callable[[Any], bool]:
    """``OPS[op_name](a, b)`` as a function of ``a`` alone: what depends only on the rule's value ``b``
    (its lower case, the list's) is worked out once, at compile time; every result is ``OPS``'s."""
    if op_name == "eq":
        if isinstance(b, str):
            low = b.lower()
            return lambda a: a.lower() == low if isinstance(a, str) else a == b
        return lambda a: a == b
    if op_name == "in" and isinstance(b, list | tuple | set | frozenset):
        lows = frozenset(v.lower() for v in b if isinstance(v, str))
        others = tuple(v for v in b if not isinstance(v, str))
        if not others:
            return lambda a: a.lower() in lows if isinstance(a, str) else any(a == v for v in b)
        return lambda a: ((a.lower() in lows or any(a == v for v in others)) if isinstance(a, str)
                          else any(a == v for v in b))
    op = OPS[op_name]
    return lambda a: op(a, b)


def compile_cond(cond: Mapping[str, Any], where: str) -> tuple[Predicate, str]:
    if not isinstance(cond, Mapping) or "field" not in cond or "op" not in cond:
        raise KnowledgeBaseError(f"{where}: condition needs 'field' and 'op': {cond!r}")
    name, op_name, value = str(cond["field"]), str(cond["op"]), cond.get("value")
    if op_name not in OPS:
        raise KnowledgeBaseError(f"{where}: unknown op {op_name!r} (known: {', '.join(OPS)})")
    test = _test(op_name, value)

    def pred(record: Mapping[str, Any]) -> bool:
        a = record.get(name)
        return a is not None and test(a if type(a) in _PLAIN else _enum_value(a))

    return pred, name


def compile_rule(rule: Mapping[str, Any] | None, where: str) -> tuple[Predicate, frozenset[str]]:
    """Compile ``{all|any|none: [...]}`` (combinable; an empty or missing rule always holds)."""
    if rule is None:
        return (lambda record: True), frozenset()
    if not isinstance(rule, Mapping):
        raise KnowledgeBaseError(f"{where}: rule must be a mapping, got {rule!r}")
    unknown = set(rule) - {"all", "any", "none"}
    if unknown:
        raise KnowledgeBaseError(f"{where}: unknown rule keys {sorted(unknown)}")
    fields: set[str] = set()
    parts: dict[str, list[Predicate]] = {}
    for key in ("all", "any", "none"):
        conds = rule.get(key)
        if conds is None:
            continue
        if not isinstance(conds, list):
            raise KnowledgeBaseError(f"{where}.{key}: must be a list")
        compiled = []
        for i, c in enumerate(conds):
            pred, name = compile_cond(c, f"{where}.{key}[{i}]")
            compiled.append(pred)
            fields.add(name)
        parts[key] = compiled
    all_p, any_p, none_p = (tuple(parts.get(key, ())) for key in ("all", "any", "none"))
    if not any_p and not none_p and len(all_p) == 1:  # the common rule: one condition
        return all_p[0], frozenset(fields)

    def pred(record: Mapping[str, Any]) -> bool:
        for p in all_p:
            if not p(record):
                return False
        if any_p and not any(p(record) for p in any_p):
            return False
        return not any(p(record) for p in none_p)

    return pred, frozenset(fields)


# ---------------------------------------------------------------------------------------------
# knowledge base


@dataclass(frozen=True)
class Branch:
    when: Predicate
    level: str
    why: str


@dataclass(frozen=True)
class Entry:
    id: str
    name: str
    category: str
    mechanism: str
    changes: tuple[str, ...]
    applies: Predicate
    fields: frozenset[str]  # every field any of its rules reads
    branches: tuple[Branch, ...]
    expected_effect: dict[str, str]
    cost: str
    caveats: tuple[str, ...]
    citations: tuple[Citation, ...]
    precision_related: bool  # its rules read precision_target / predicted_peak_max

    @property
    def best_confidence(self) -> int:
        return min((CONFIDENCE_RANK.get(c.confidence, 3) for c in self.citations), default=3)


@dataclass(frozen=True)
class KnowledgeBase:
    schema_version: int
    criterion: dict[str, Any]
    entries: tuple[Entry, ...]
    dropped: tuple[str, ...] = field(default=())  # ids without any citation

    @cached_property
    def fields(self) -> frozenset[str]:
        """Every field the entries' rules read."""
        return frozenset().union(*(e.fields for e in self.entries))


def _citations(evidence: Iterable[Mapping[str, Any]]) -> tuple[Citation, ...]:
    out = []
    for ev in evidence or ():
        src = ev.get("source") or {}
        arxiv = src.get("arxiv")
        if not arxiv:
            continue
        arxiv = str(arxiv).strip()
        out.append(
            Citation(
                title=str(src.get("title", "")),
                arxiv=arxiv,
                url=f"https://arxiv.org/abs/{arxiv}",
                setting=str(ev.get("setting", "")),
                result=str(ev.get("result", "")),
                confidence=str(ev.get("confidence", "low")),
                repo=src.get("repo"),
            )
        )
    return tuple(out)


def parse_kb(doc: Mapping[str, Any]) -> KnowledgeBase:
    if not isinstance(doc, Mapping) or not isinstance(doc.get("mitigations"), list):
        raise KnowledgeBaseError("knowledge base needs a top-level 'mitigations' list")
    entries, dropped = [], []
    for raw in doc["mitigations"]:
        mid = str(raw.get("id", "?"))
        applies, fields = compile_rule(raw.get("applies_when"), f"{mid}.applies_when")
        branches = []
        fields_all = set(fields)
        for i, rec in enumerate(raw.get("recommendation") or []):
            level = str(rec.get("level"))
            if level not in LEVEL_RANK:
                raise KnowledgeBaseError(f"{mid}.recommendation[{i}]: unknown level {level!r}")
            when, f = compile_rule(rec.get("when"), f"{mid}.recommendation[{i}].when")
            fields_all |= f
            branches.append(Branch(when=when, level=level, why=str(rec.get("why", ""))))
        citations = _citations(raw.get("evidence"))
        if not citations:
            dropped.append(mid)
            continue
        caveats = raw.get("caveats") or []
        entries.append(
            Entry(
                id=mid,
                name=str(raw.get("name", mid)),
                category=str(raw.get("category", "")),
                mechanism=" ".join(str(raw.get("mechanism", "")).split()),
                changes=tuple(str(c) for c in raw.get("changes") or []),
                applies=applies,
                fields=frozenset(fields_all),
                branches=tuple(branches),
                expected_effect={str(k): str(v) for k, v in (raw.get("expected_effect") or {}).items()},
                cost=str(raw.get("cost", "not stated")),
                caveats=tuple(str(c) for c in (caveats if isinstance(caveats, list) else [caveats])),
                citations=citations,
                precision_related=bool(fields_all & {"precision_target", "predicted_peak_max"}),
            )
        )
    return KnowledgeBase(
        schema_version=int(doc.get("schema_version", 1)),
        criterion=dict(doc.get("criterion") or {}),
        entries=tuple(entries),
        dropped=tuple(dropped),
    )


@lru_cache(maxsize=4)
def load_kb(path: str | None = None) -> KnowledgeBase:
    """Parse and compile the knowledge base once per process."""
    p = Path(path) if path else kb_path()
    with p.open(encoding="utf-8") as fh:
        return parse_kb(yaml.safe_load(fh))


# ---------------------------------------------------------------------------------------------
# evaluation


@dataclass(frozen=True)
class Motivation:
    """Which layers of the forecast motivate an entry, and a sentence saying why."""

    layers: tuple[int, ...]
    text: str


@dataclass(slots=True)  # not frozen: ~18 are built per answer, and a frozen init costs 2.5x
class Match:
    entry: Entry
    level: str
    why: str
    branch_matched: bool
    unknown_fields: tuple[str, ...]  # fields the entry's rules read that the record lacks

    @property
    def effective(self) -> bool:
        return self.level in EFFECTIVE_LEVELS


def choose_level(entry: Entry, record: Mapping[str, Any]) -> tuple[str, str, bool]:
    first = None  # the first matching branch; a matching not_recommended one wins whatever its place
    for b in entry.branches:
        if b.level == "not_recommended":
            if b.when(record):
                return b.level, b.why, True
        elif first is None and b.when(record):
            first = b
    if first is not None:
        return first.level, first.why, True
    return (
        "informational",
        "the entry's rule applies, but its evidence gives no level for this configuration",
        False,
    )


def evaluate(record: Mapping[str, Any], kb: KnowledgeBase | None = None) -> list[Match]:
    """Entries whose ``applies_when`` holds for ``record``, each with its level (unranked)."""
    kb = kb or load_kb()
    missing = {f for f in kb.fields if record.get(f) is None}
    out = []
    for entry in kb.entries:
        if not entry.applies(record):
            continue
        level, why, ok = choose_level(entry, record)
        unknown = tuple(sorted(entry.fields & missing)) if missing else ()
        out.append(Match(entry=entry, level=level, why=why, branch_matched=ok, unknown_fields=unknown))
    return out


def rank(matches: Iterable[Match], motivations: Mapping[str, Motivation] | None = None) -> list[Match]:
    """Rank by level, then by whether the forecast motivates it (layers at risk), then evidence."""
    motivations = motivations or {}

    def key(m: Match) -> tuple:
        mot = motivations.get(m.entry.id)
        return (
            LEVEL_RANK[m.level],
            0 if (mot and mot.layers) else 1,
            m.entry.best_confidence,
            -len(m.entry.citations),
            m.entry.id,
        )

    return sorted(matches, key=key)


def kb_digest(path: str | Path | None = None) -> str:
    """Content digest of a knowledge-base file: a registered version records the one it answers with."""
    return hashlib.sha256(Path(path or kb_path()).read_bytes()).hexdigest()[:16]
