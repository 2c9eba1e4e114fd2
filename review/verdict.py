"""Design review: judge the registered model's answers for proposed architectures against a policy.

``maforecast review CONFIG... [--policy review.yaml] [--html report.html] [--json out.json]``

- Each CONFIG is read by ``review.inputs`` (native JSON, Hugging Face ``config.json``, folders).
- The answer is the registered version's (``registry.loader``), the same answer as ``maforecast
  predict``, ``POST /predict`` and ``mlflow models serve`` (``predictor.response.PredictResponse``).
- A policy is YAML validated by ``Policy`` (pydantic). Without ``--policy`` each candidate is
  checked against ``default_policy(precision_target)``.
- Exit code 0 when every candidate passes (warnings allowed), 1 when any fails, 2 on bad input
  (one line naming the file and the field).

Probabilities are the answer's own: per layer ``p_massive``; per format ``probability``, per check
``check_probabilities`` and per layer and check ``details[].probability`` (all from one formula,
``predictor.risk.layer_probabilities_many``). The review computes none of its own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from maforecast.errors import UserError
from predictor.architecture import PrecisionTarget
from predictor.precision import BREAKS, CHECKS, FORMATS, GATE, TARGETS, formats_in_use
from predictor.response import PrecisionPlan, PrecisionRisk, PredictResponse
from predictor.schemas import Interval
from predictor.text import ranges
from review.inputs import Candidate

if TYPE_CHECKING:  # the type only: importing the loader imports MLflow (seconds), which presenting needs not
    from registry.loader import RegisteredPredictor

SCHEMA_VERSION = "1.0"  # of the review JSON answer; a tool should check the major number

# the predictor's formats and checks, so a new format is added in predictor/precision.py only
Format = Literal[*FORMATS]
CheckName = Literal[*dict.fromkeys(name for checks in CHECKS.values() for name, _ in checks)]
FORMAT_CHECKS: dict[str, tuple[str, ...]] = {f: tuple(name for name, _ in checks) for f, checks in CHECKS.items()}
OVERFLOW_CHECKS = frozenset({"overflow", "overflow_unscaled"})
MASSIVE_ABS = 100.0  # Sun et al.: |a| > 100 (and > 1000 x median)
STATUS_ORDER = {"fail": 0, "warn": 1, "info": 2, "pass": 3}


# ------------------------------------------------------------------------------------ policy


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, max_length=100, description="Name printed when the rule is broken.")
    severity: Literal["fail", "warn", "info"] = Field(default="fail", description="fail: exit 1; warn: reported, exit 0; "
                                                      "info: stated in the results, never a warning.")
    targets: list[PrecisionTarget] | None = Field(
        default=None, description="Apply only to candidates with one of these precision_target values."
    )
    description: str | None = Field(default=None, max_length=500)

    def rule_id(self) -> str:
        return self.id or self.default_id()

    def default_id(self) -> str:
        return str(getattr(self, "check", "rule"))


class FormatRiskRule(_Rule):
    """Fail when the probability that a precision format's limits are crossed exceeds ``max_probability``."""

    check: Literal["format_risk"]
    format: Format
    checks: list[CheckName] | None = Field(default=None, description="Only these checks (e.g. overflow_unscaled).")
    max_probability: float = Field(ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _checks_of_format(self) -> FormatRiskRule:
        bad = [c for c in self.checks or () if c not in FORMAT_CHECKS[self.format]]
        if bad:
            raise ValueError(f"checks {bad} do not apply to {self.format} (its checks: {list(FORMAT_CHECKS[self.format])})")
        return self

    def default_id(self) -> str:
        return f"{self.format}{'.' + '+'.join(self.checks) if self.checks else ''}<={self.max_probability:g}"


class TargetRiskRule(_Rule):
    """As ``format_risk`` for every format the candidate's own precision_target uses."""

    check: Literal["target_risk"]
    max_probability: float = Field(ge=0.0, le=1.0)

    def default_id(self) -> str:
        return f"target-formats<={self.max_probability:g}"


class GateRule(_Rule):
    """Fail exactly where the registered model's answer does (``precision_plan.at_risk``): a format the plan's recipe
    uses (every format of a target without a choice of recipe) crosses a breaking limit with probability above the
    gate's threshold (``predictor.precision.GATE``)."""

    check: Literal["gate"]

    def default_id(self) -> str:
        return "precision-gate"


class MassiveLayersRule(_Rule):
    """Fail when more than ``max_layers`` layers are forecast massive (p_massive >= min_probability)."""

    check: Literal["massive_layers"]
    max_layers: int = Field(default=0, ge=0)
    min_probability: float = Field(default=0.5, gt=0.0, le=1.0)

    def default_id(self) -> str:
        return f"massive-layers<={self.max_layers}"


class PeakAbsRule(_Rule):
    """Fail when the largest forecast peak |a| (point, or ``use: hi`` for the interval's top) exceeds ``max``."""

    check: Literal["peak_abs"]
    max: float = Field(gt=0.0)
    use: Literal["value", "hi"] = "value"

    def default_id(self) -> str:
        return f"peak|a|<={self.max:g}"


class RatioEndRule(_Rule):
    """Fail when the largest ratio top1/median at the end of training exceeds ``max``."""

    check: Literal["ratio_end"]
    max: float = Field(gt=0.0)
    use: Literal["value", "hi"] = "value"

    def default_id(self) -> str:
        return f"ratio_end<={self.max:g}"


class EmergenceRule(_Rule):
    """Fail when massive activations are forecast to emerge before ``min_step``."""

    check: Literal["emergence_step"]
    min_step: float = Field(ge=0.0)

    def default_id(self) -> str:
        return f"emergence>={self.min_step:g}"


class ApplicabilityRule(_Rule):
    """Flag an architecture outside the evidence the predictor was trained on."""

    check: Literal["applicability"]
    max_warnings: int = Field(default=0, ge=0)
    fields: list[str] | None = Field(default=None, description="Count warnings on these fields only.")

    def default_id(self) -> str:
        return "within-evidence"


Rule = Annotated[
    FormatRiskRule | TargetRiskRule | GateRule | MassiveLayersRule | PeakAbsRule | RatioEndRule | EmergenceRule
    | ApplicabilityRule,
    Field(discriminator="check"),
]
RULE_KINDS = ("format_risk", "target_risk", "gate", "massive_layers", "peak_abs", "ratio_end", "emergence_step", "applicability")


class Policy(BaseModel):
    """A review policy (YAML). ``include_defaults`` adds the rules derived from each candidate's precision_target."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="policy", max_length=100)
    include_defaults: bool = Field(default=False, description="Also apply default_policy(precision_target).")
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> Policy:
        seen: set[str] = set()
        for r in self.rules:
            rid = r.rule_id()
            if rid in seen:
                raise ValueError(f"duplicate rule id {rid!r} (give each rule its own id)")
            seen.add(rid)
        if not self.rules and not self.include_defaults:
            raise ValueError("no rules (add rules, or include_defaults: true)")
        return self


def _stated(rule_id: str, fmt: str, checks: list[str]) -> dict[str, Any]:
    return {"id": rule_id, "check": "format_risk", "format": fmt, "checks": checks, "max_probability": 0.5,
            "severity": "info"}


def default_policy(precision_target: str | None) -> Policy:
    """The rules that follow from a precision target.

    - ``precision-gate`` (fail): exactly the answer's decision, ``precision_plan.at_risk``: the plan's recipe (the
      coarsest scaling that passes, or the architecture's precision_recipe) or, for a target without a choice of
      recipe, its formats, at risk by ``predictor.precision.GATE``. The gate fails only where the outcome table
      says the mechanism breaks models (docs/PRECISION.md: FP16 overflow; a per-tensor FP8 or INT8 scale that loses
      every typical value; NVFP4's block scales flushed);
    - ``info``: the stated mechanisms of the target's formats (swamping, unscaled FP8 overflow, an INT8 step above the
      median, a massive token's own row or block), and INT8 targets' massive layers: reported, never a warning;
    - ``within-evidence`` (warn): the architecture lies outside the predictor's evidence.
    """
    t = precision_target or "bf16"
    rules: list[dict[str, Any]] = [{"id": "precision-gate", "check": "gate"}]
    names = {"fp8_e4m3": "fp8-e4m3", "fp8_e5m2": "fp8-e5m2", "int8_per_tensor": "int8", "int8_per_token": "int8-per-token",
             "fp8_block128": "fp8-block128", "fp8_rowwise": "fp8-rowwise"}
    for fmt in TARGETS[t].formats if t in TARGETS else ():
        stated = [n for n, c in CHECKS[fmt] if not c.breaks]
        if not stated:
            continue
        base = names.get(fmt, fmt)
        for kind, ids in (("overflow", [n for n in stated if n.startswith("overflow")]),
                          ("", [n for n in stated if not n.startswith("overflow")])):
            if ids:
                rid = f"{base}-{kind or ids[0].replace('_', '-')}"
                rules.append(_stated(rid, fmt, ids))
    if t in ("int8_w8a8", "int4_w4a4"):
        rules.append({"id": "int8-no-massive-layers", "check": "massive_layers", "max_layers": 0, "severity": "info"})
    rules.append({"id": "within-evidence", "check": "applicability", "max_warnings": 0, "severity": "warn"})
    return Policy.model_validate({"name": f"default ({t})", "rules": rules})


def _loc(err: dict) -> str:
    parts = [str(p) for p in err.get("loc", ())]
    # drop the discriminator tag pydantic puts into the location (rules.0.format_risk.max_probability)
    parts = [p for i, p in enumerate(parts) if not (p in RULE_KINDS and i > 0 and parts[i - 1].isdigit())]
    return ".".join(parts) or "policy"


def validation_line(source: str, exc: ValidationError) -> str:
    errs = exc.errors()
    first = errs[0]
    msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
    return f"{source}: {_loc(first)}: {msg}{more}"


def load_policy(path: Path | str) -> Policy:
    """Read and validate a policy YAML; every error is a one-line UserError naming the file and field."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such policy file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the policy ({exc})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}: not valid YAML{where}: {problem}") from None
    if not isinstance(doc, dict):
        raise UserError(f"{path}: policy: expected a mapping with 'rules' (got {type(doc).__name__})")
    try:
        return Policy.model_validate(doc)
    except ValidationError as exc:
        raise UserError(validation_line(str(path), exc)) from None


# ------------------------------------------------------------------------------------ reading the answer
# Typed fields of the registered model's answer (``PredictResponse``); every probability is the answer's
# own (``predictor.risk.layer_probabilities_many``), none is recomputed here.


def decision_line(plan: PrecisionPlan) -> str:
    """The design's decision for its precision target in one line (Rich markup, the recipe's reason escaped), as
    ``maforecast predict`` and ``maforecast monitor`` print it."""
    from rich.markup import escape  # rich loads with the console that prints the line

    return (f"decision for {plan.precision_target}: {'[red]at risk[/red]' if plan.at_risk else 'passes'}"
            + (f" with {plan.recipe}: {escape(plan.recipe_why or '')}" if plan.recipe else ""))


def value(iv: Interval | None) -> float | None:
    return None if iv is None else iv.value


def format_probability(risk: PrecisionRisk, checks: Sequence[str] | None = None) -> float:
    """Probability that the format's limits (``checks`` only, if given) are crossed by the planned end."""
    if not checks:
        return risk.probability or 0.0
    return max((risk.check_probabilities.get(c, 0.0) for c in checks), default=0.0)


def layer_format_probabilities(risk: PrecisionRisk | None, checks: Sequence[str] | None = None) -> dict[int, float]:
    """layer -> probability that this format's breaking limits (``checks`` only, if given) are crossed in that
    layer. Layers not listed are below every limit within their interval."""
    out: dict[int, float] = {}
    for d in risk.details if risk is not None else ():
        if (d.check in checks) if checks else BREAKS.get((risk.format, d.check), True):
            out[d.layer] = max(out.get(d.layer, 0.0), d.probability)
    return out


def massive_probabilities(answer: PredictResponse) -> dict[int, float]:
    return {lf.layer: lf.p_massive if lf.p_massive is not None else float(lf.massive) for lf in answer.layers}


def target_formats(answer: PredictResponse, precision_target: str | None) -> list[str]:
    """The formats the design runs for its target: those of the plan's recipe (a target with a choice of recipe),
    else every format of the target."""
    recipe = answer.precision_plan.recipe if answer.precision_plan is not None else None
    return list(formats_in_use(precision_target, recipe)) or [r.format for r in answer.precision if r.target]


def risk_score(answer: PredictResponse, precision_target: str | None) -> float:
    """Largest probability of crossing a limit of a format the precision target uses (0..1)."""
    formats = set(target_formats(answer, precision_target))
    return max((format_probability(r) for r in answer.precision if r.format in formats), default=0.0)


# ------------------------------------------------------------------------------------ verdicts


class RuleResult(BaseModel):
    id: str
    check: str
    severity: Literal["fail", "warn", "info"]
    status: Literal["pass", "warn", "fail", "info", "skipped"]
    observed: Any = None
    threshold: Any = None
    source: str | None = Field(default=None, description="forecast (probability in the answer) | interval (derived)")
    message: str


class CandidateVerdict(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    name: str
    source: str
    kind: str = Field(description="native | hf | hf+training")
    architecture: str
    precision_target: str
    status: Literal["pass", "warn", "fail"]
    risk: float = Field(description="Largest probability of crossing a limit of a target format (0..1).")
    broken: list[str] = Field(description="Ids of the rules that failed or warned, failures first.")
    results: list[RuleResult]
    massive_layers: list[int]
    largest_peak_abs: float | None
    earliest_emergence_step: float | None
    precision: dict[str, dict[str, Any]] = Field(description="format -> {probability, source, at_risk, target, layers}")
    applicability: list[str] = Field(description="Fields outside the predictor's evidence.")
    top_mitigations: list[str]
    inferred: list[str] = Field(default_factory=list)
    forecast: dict[str, Any] | None = Field(default=None, description="The full /predict answer (--full).")
    change_from_first: str | None = Field(default=None, description="What changing the first candidate (in input order) "
                                          "into this one does: the registered model's /compare bottom line (the "
                                          "intervention, not the two forecasts' difference).")


class ReviewAnswer(BaseModel):
    """What ``maforecast review --json`` writes. Tools rely on: schema_version, status, exit_code,
    candidates[].{name, source, status, risk, broken, results[].{id, status, message}}."""

    model_config = ConfigDict(protected_namespaces=())

    schema_version: str = SCHEMA_VERSION
    status: Literal["pass", "warn", "fail"]
    exit_code: int
    policy: str
    predictor: dict[str, Any]
    candidates: list[CandidateVerdict]


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        if x == 0 or 1e-3 <= abs(x) < 1e5:
            return f"{x:.3g}" if abs(x) < 100 else f"{x:,.0f}"
        return f"{x:.2e}"
    return str(x)


def evaluate_rule(rule: Any, answer: PredictResponse, precision_target: str) -> RuleResult:
    rid, sev, kind = rule.rule_id(), rule.severity, rule.check

    def result(broken: bool, observed: Any, threshold: Any, message: str, source: str | None = None) -> RuleResult:
        return RuleResult(id=rid, check=kind, severity=sev, status=sev if broken else "pass", observed=observed,
                          threshold=threshold, source=source, message=message)

    if rule.targets is not None and precision_target not in rule.targets:
        return RuleResult(id=rid, check=kind, severity=sev, status="skipped", threshold=None,
                          message=f"applies to precision_target in {rule.targets}, not {precision_target}")
    precision = {r.format: r for r in answer.precision}
    summary = answer.summary
    if kind in ("format_risk", "target_risk"):
        formats = [rule.format] if kind == "format_risk" else target_formats(answer, precision_target)
        checks = getattr(rule, "checks", None)
        worst, wfmt = 0.0, None
        for f in formats:
            if f not in precision:
                continue
            p = format_probability(precision[f], checks)
            if wfmt is None or p > worst:
                worst, wfmt = p, f
        what = f"{wfmt or '/'.join(formats)}{' ' + '+'.join(checks) if checks else ''}"
        per_layer = layer_format_probabilities(precision.get(wfmt), checks) if wfmt else {}
        layers = sorted(layer for layer, p in per_layer.items() if p > rule.max_probability)
        where = f" (layers {ranges(layers)})" if layers else ""
        broken = worst > rule.max_probability
        return result(broken, round(worst, 4), rule.max_probability,
                      f"P({what} limit crossed) = {worst:.2f} {'>' if broken else '<='} {rule.max_probability:g}{where}", "forecast")
    if kind == "gate":
        plan = answer.precision_plan
        recipe = plan.recipe if plan is not None else None
        formats = [f for f in formats_in_use(precision_target, recipe) if f in precision]
        gated = [f for f in formats if f in GATE]
        probs = {f: format_probability(precision[f], list(GATE[f][0])) for f in gated}
        broken = plan.at_risk if plan is not None else any(precision[f].at_risk for f in formats)
        worst = max(gated, key=lambda f: probs[f], default=None)
        which = f"{recipe} (the plan's recipe)" if recipe else "/".join(formats) or precision_target
        if worst is None:
            msg = f"{which}: no breaking limit in the gate (its crossings are stated, not risks)"
        else:
            checks, threshold = GATE[worst]
            msg = (f"{which}: P({worst} {'+'.join(checks)}) = {probs[worst]:.2f} {'>' if broken else '<='} {threshold:g}"
                   + (f"; kept in high precision by the plan: layers {ranges([p.layer for fp in plan.formats if fp.format == worst for p in fp.keep_high_precision])}"
                      if broken and plan is not None else ""))
        others = [o for o in (plan.recipes if plan is not None else []) if o.format != recipe and o.at_risk]
        if recipe and others:
            msg += f" ({', '.join(o.format for o in others)} would fail)"
        return result(broken, round(probs[worst], 4) if worst else 0.0, GATE[worst][1] if worst else None, msg, "forecast")
    if kind == "massive_layers":
        probs = massive_probabilities(answer)
        layers = sorted(k for k, p in probs.items() if p >= rule.min_probability)
        broken = len(layers) > rule.max_layers
        text = (f"{len(layers)} layer(s) forecast massive (p >= {rule.min_probability:g}): {ranges(layers)}"
                if layers else f"no layer forecast massive (largest p_massive {max(probs.values(), default=0):.2f})")
        return result(broken, layers, rule.max_layers, f"{text}; allowed {rule.max_layers}", "forecast")
    if kind in ("peak_abs", "ratio_end"):
        iv = summary.largest_peak_abs if kind == "peak_abs" else summary.largest_ratio_end
        layer = summary.largest_peak_layer if kind == "peak_abs" else summary.largest_ratio_layer
        v = iv.hi if rule.use == "hi" else iv.value
        broken = v is not None and v > rule.max
        label = "largest peak |a|" if kind == "peak_abs" else "largest ratio at end"
        return result(broken, v, rule.max, f"{label}{' (interval top)' if rule.use == 'hi' else ''} {_fmt(v)} in layer {layer} "
                      f"{'>' if broken else '<='} {_fmt(rule.max)}")
    if kind == "emergence_step":
        massive = summary.massive_layers
        step = value(summary.earliest_emergence_step)
        broken = bool(massive) and step is not None and step < rule.min_step
        if not massive:
            msg = "no massive layer forecast, nothing emerges"
        else:
            msg = f"massive activations emerge from step {_fmt(step)} (layer {summary.earliest_emergence_layer}) {'<' if broken else '>='} {_fmt(rule.min_step)}"
        return result(broken, step, rule.min_step, msg)
    if kind == "applicability":
        fields = sorted({w.field for w in answer.applicability if rule.fields is None or w.field in rule.fields})
        broken = len(fields) > rule.max_warnings
        msg = f"outside the predictor's evidence in {', '.join(fields)}" if fields else "within the predictor's evidence"
        return result(broken, fields, rule.max_warnings, msg)
    raise UserError(f"unknown rule check {kind!r}")  # unreachable: the schema forbids it


def rules_for(policy: Policy | None, precision_target: str) -> list[Any]:
    if policy is None:
        return list(default_policy(precision_target).rules)
    rules = list(policy.rules)
    if policy.include_defaults:
        own = {r.rule_id() for r in rules}
        rules += [r for r in default_policy(precision_target).rules if r.rule_id() not in own]
    return rules


def verdict(cand: Candidate, policy: Policy | None, full: bool = False) -> CandidateVerdict:
    answer, target = cand.answer, cand.arch.precision_target
    results = [evaluate_rule(r, answer, target) for r in rules_for(policy, target)]
    statuses = {r.status for r in results}
    status = "fail" if "fail" in statuses else "warn" if "warn" in statuses else "pass"
    broken = [r.id for r in results if r.status == "fail"] + [r.id for r in results if r.status == "warn"]
    summary = answer.summary
    precision = {r.format: {"probability": round(format_probability(r), 4), "source": "forecast", "at_risk": r.at_risk,
                            "target": r.target, "layers": list(r.layers)} for r in answer.precision}
    mit = [m for m in answer.mitigations if m.effective]
    return CandidateVerdict(
        name=cand.name,
        source=cand.source,
        kind=cand.kind,
        architecture=answer.architecture or cand.arch.label(),
        precision_target=target,
        status=status,
        risk=round(risk_score(answer, target), 4),
        broken=broken,
        results=results,
        massive_layers=list(summary.massive_layers),
        largest_peak_abs=summary.largest_peak_abs.value,
        earliest_emergence_step=value(summary.earliest_emergence_step),
        precision=precision,
        applicability=sorted({w.field for w in answer.applicability}),
        top_mitigations=[m.id for m in mit[:5]],
        inferred=list(cand.inferred),
        change_from_first=cand.difference.bottom_line if cand.difference is not None else None,
        forecast=json.loads(answer.model_dump_json()) if full else None,
    )


def sort_key(v: CandidateVerdict) -> tuple:
    return (STATUS_ORDER[v.status], -v.risk, -(v.largest_peak_abs or 0.0), v.name)


def predictor_scores(info: dict | None) -> list[dict[str, Any]]:
    """Held-out scores next to the baseline's: rows {metric, value, baseline} from the registry info."""
    quality = dict((info or {}).get("quality") or {})
    if quality:  # forecast engine v2: held-out MAE (log10) per served target next to the constant's
        # peak |a| is scored on new lineages; Pythia's end ratio and emergence step, which one lineage holds, leaving
        # one model out (registry.evaluation.served_quality)
        return [{"metric": f"{t} held-out MAE ({'leave one lineage out' if t == 'peak_abs' else 'leave one model out'})",
                 "value": q.get("mae"), "baseline": q.get("baseline_mae")} for t, q in quality.items()]
    metrics = dict((info or {}).get("metrics") or {})
    headline = (info or {}).get("headline_metric") or "headline_lomo_r2"
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()

    def add(name: str) -> None:
        if name in seen or name not in metrics:
            return
        base = name.replace("lomo_", "baseline_lomo_", 1) if "baseline" not in name else None
        if name.startswith("headline_"):
            base = name.replace("headline_", "headline_baseline_", 1)
        rows.append({"metric": name, "value": metrics.get(name), "baseline": metrics.get(base) if base else None})
        seen.add(name)

    add(headline)
    for t in ("log_ratio_end", "log_steady_state", "log_peak_abs"):
        add(f"{t}.lomo_r2")
        add(f"{t}.lomo_mae")
    for k in sorted(metrics):
        if len(rows) >= 7:
            break
        if "baseline" not in k and ("lomo_r2" in k or "lomo_mae" in k) and k.replace("lomo_", "baseline_lomo_", 1) in metrics:
            add(k)
    return rows


def predictor_block(predictor: RegisteredPredictor) -> dict[str, Any]:
    p, info = predictor.predictor, predictor.info()
    return {
        "name": p.name, "version": p.version, "alias": p.alias, "model_uri": p.model_uri,
        "headline_metric": info.get("headline_metric"), "data_digest": info.get("data_digest"),
        "scores": predictor_scores(info),
    }


def review(candidates: list[Candidate], predictor: RegisteredPredictor, policy: Policy | None, full: bool = False,
           policy_source: str | None = None) -> ReviewAnswer:
    """Answer every candidate with the registered ``predictor`` and judge it; candidates come back sorted by risk."""
    for c in candidates:
        if c.answer is None:
            try:
                c.answer = predictor.answer(c.arch)
            except UserError as exc:
                raise UserError(f"{c.source}: {exc}") from None
            except (ValueError, ArithmeticError) as exc:
                raise UserError(f"{c.source}: cannot forecast this architecture: {exc}") from None
    ordered = sorted(candidates, key=lambda c: c.index)
    if len(ordered) > 1:  # the model's own /compare answer: the same bottom line as the API's
        try:
            cmp = predictor.compare({str(i): c.arch for i, c in enumerate(ordered)})
        except (ValueError, ArithmeticError) as exc:
            raise UserError(f"cannot compare the candidates: {exc}") from None
        for c, d in zip(ordered[1:], cmp.differences, strict=True):
            c.difference = d
    for c in candidates:
        c.verdict = verdict(c, policy, full)
    candidates.sort(key=lambda c: sort_key(c.verdict))
    verdicts = [c.verdict for c in candidates]
    statuses = {v.status for v in verdicts}
    status = "fail" if "fail" in statuses else "warn" if "warn" in statuses else "pass"
    name = (f"{policy.name} ({policy_source})" if policy_source else policy.name) if policy else "default (per precision_target)"
    return ReviewAnswer(status=status, exit_code=1 if status == "fail" else 0, policy=name,
                        predictor=predictor_block(predictor), candidates=verdicts)
