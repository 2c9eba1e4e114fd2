"""Training runs, the MLflow Model Registry, and loading a registered predictor.

``train`` builds the evidence from the stats table, evaluates the forecast engine by grouped
cross-validation (leave one lineage out, leave one model out with its lineage kept; ``registry.evaluation``), fits
the served engine, and logs one run (the evaluation table as metrics and artifact, the evidence
as a dataset input with digest) and a pyfunc model (signature, input example, explicit pip
requirements). It registers a new version of ``settings.registered_model`` whose description
says what it was trained on and how it scores next to the constant baseline, and points alias
``challenger`` at it. ``promote`` refuses a challenger that does not beat the constant on the
headline (held-out skill on the largest layer's peak |a|, the smaller of the two questions') and otherwise moves ``champion`` to
it when it beats the champion; ``force`` overrides and is recorded as a tag.
Consumers load a version with ``registry.loader`` and use its ``predict`` only. ``relog`` registers a
version's fitted engine again with an edited mitigation knowledge base, without refitting.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import joblib
import mlflow
import pandas as pd
import yaml
from mlflow.exceptions import MlflowException
from mlflow.models import MetricThreshold
from mlflow.models.evaluation import EvaluationResult
from mlflow.models.evaluation.validation import ModelValidationFailedException
from mlflow.types.schema import ColSpec, DataType, Schema
from pydantic import ValidationError

from maforecast.architectures import load_architectures
from maforecast.errors import UserError
from maforecast.settings import Settings, architectures_path, get_settings
from maforecast.tracking import configure, experiment_id, log_dataset, retry_store
from predictor.answer import Answerer
from predictor.architecture import Architecture, describe_validation_error
from predictor.engine import ForecastEngine
from predictor.evidence import Evidence
from predictor.knowledge import kb_digest, kb_path, load_kb
from predictor.pyfunc import INTERFACE as PYFUNC_INTERFACE
from predictor.pyfunc import MODEL_CODE, PredictorModel, answer_digest, arch_frame, code_digest, code_files
from predictor.pyfunc import PARAMS as PYFUNC_PARAMS
from registry.controlled import effects_card, leave_one_study_out
from registry.evaluation import Evaluation, fit_evaluated, headline, proxy_pairs, proxy_summary
from registry.loader import BOOTSTRAP_HINT, version_servable
from registry.reference import build_evidence, reference_architectures

# min over the two questions (a new member of a known lineage, a new lineage) of 1 - MAE / constant MAE on the
# held-out largest layer's peak |a|: a version is as good as its weaker answer
HEADLINE_METRIC = "headline_skill"
CHALLENGER = "challenger"
def _pinned(*names: str) -> list[str]:
    """Exact versions of what the logged model imports (the engine unpickles with these)."""
    from importlib.metadata import version

    return [f"{n}=={version(n)}" for n in names]


# what the registered model needs at load time: the engine (numpy/scipy/scikit-learn/pandas/pydantic),
# its pickle (joblib), the knowledge base (pyyaml), maforecast.tables (filelock, pyarrow) and MLflow itself
PIP_REQUIREMENTS = _pinned("mlflow", "scikit-learn", "numpy", "scipy", "pandas", "pydantic", "joblib", "pyyaml", "filelock",
                           "pyarrow")


def ship_code(tmp: Path) -> list[str]:
    """The ``code_paths`` of a version: ``predictor/`` and the ``maforecast`` modules it imports, copied
    so that exactly the files of ``predictor.pyfunc.code_digest`` travel."""
    dirs = {}
    for f in code_files():
        d = tmp / "code" / f.parent.name
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, d / f.name)
        dirs[f.parent.name] = str(d)
    return list(dirs.values())


def model_metadata(engine: ForecastEngine, kb: str | Path | None = None) -> dict:
    """What a version was trained on, answers with and how it scores held out (the model's ``metadata.maforecast``)."""
    # only finite floats: metadata must be plain JSON
    metrics = {k: float(v) for k, v in engine.metrics_.items() if isinstance(v, float) and math.isfinite(v)}
    return {
        "pyfunc_interface": PYFUNC_INTERFACE,  # checked by every consumer before it calls predict
        "code_digest": code_digest(),  # the predictor code the version answers with (registry.loader checks it)
        # what that code answers for the golden designs: another process's code that answers the same may serve it
        "answer_digest": answer_digest(Answerer(engine, load_kb(str(kb) if kb else None))),
        "data_digest": engine.data_digest_,
        "knowledge_base_digest": kb_digest(kb),
        "headline_metric": HEADLINE_METRIC,
        "metrics": metrics,
        "n_rows": {k: (int(v) if isinstance(v, (int, float)) and float(v).is_integer() else v)
                   for k, v in dict(engine.evidence_summary_).items()},
        "targets": sorted(engine.quality_),
        "beats_baseline": bool(metrics.get(HEADLINE_METRIC, float("nan")) > 0),
        "quality": engine.info()["quality"],
        # the lineages a design may name (`lineage`), each with its measured members
        "lineages": {g: sorted({m["model"] for m in ms}) for g, ms in sorted(engine.lineage_members_.items())},
        "level_model": {q: engine.level_[q].hyperparameters() for q in ("abs", "ratio")},
        "interval_scale": {k: float(v) for k, v in (engine.interval_scale or {}).items()},
        # the intervention question: each change's effect, interval, evidence (the model card's table)
        "effects": _json_rows(effects_card(engine)),
        "effects_leave_one_study_out": leave_one_study_out(engine)[1],
        "timing_calibration": {"cross_family_sd": engine.clock_model_.tau_family_sd_,
                               "onsets": [{k: v for k, v in c.items() if k != "arch"} for c in engine.clock_model_.timing_checks_]},
    }


def _json_rows(df: pd.DataFrame) -> list[dict]:
    return json.loads(df.to_json(orient="records"))


# ------------------------------------------------------------------------ training
@dataclass
class TrainResult:
    run_id: str
    version: str | None
    metrics: dict[str, float]
    bundle: ForecastEngine
    evaluations: dict[str, Evaluation]
    evidence: Evidence


def train_evidence(stats: pd.DataFrame, architectures: dict[str, Architecture] | None = None,
                   settings: Settings | None = None) -> Evidence:
    """The evidence of a stats table: the bundled architectures plus those of the runs the user measured
    (``maforecast collect --arch``, ``maforecast monitor``), each in the lineage its architecture names."""
    if architectures is None:
        architectures = {**reference_architectures(), **user_architectures(settings)}
    ev = build_evidence(stats, architectures)
    if not len(ev.layers):
        raise UserError("no usable rows in the stats table (no model with a known architecture): run `maforecast import-reference`")
    return ev


def user_architectures(settings: Settings | None = None) -> dict[str, Architecture]:
    """The recorded architectures of the user's measured runs (a record that no longer validates is named)."""
    out = {}
    for model, raw in load_architectures(architectures_path(settings or get_settings())).items():
        try:
            out[model] = Architecture.model_validate(raw)
        except ValidationError as exc:
            raise UserError(f"architectures.json: {model}: {describe_validation_error(exc)}") from None
    return out


def train(
    stats: pd.DataFrame,
    architectures: dict[str, Architecture] | None = None,
    *,
    engine_params: dict | None = None,
    register: bool = True,
    settings: Settings | None = None,
    run_name: str | None = None,
    progress: bool = False,
    cv: tuple[str, ...] = ("lineage", "model"),
) -> TrainResult:
    """Evaluate, fit and log the forecast engine; register it as a new version with alias ``challenger``."""
    s = settings or get_settings()
    ev = train_evidence(stats, architectures, s)
    engine, evals = fit_evaluated(ev, engine_params, progress=progress, cv=cv)
    pairs = proxy_pairs(ev, engine_params, scale=engine.interval_scale["abs"])
    metrics = headline(evals, proxy_summary(pairs))
    engine = engine.with_evaluation(metrics=metrics)
    data_digest = ev.digest()
    table = pd.concat([e.table() for e in evals.values()], ignore_index=True)
    client = configure(s)
    exp = experiment_id("predictor", s)
    with mlflow.start_run(experiment_id=exp, run_name=run_name or "predictor-train") as run:
        mlflow.log_params({
            "engine": "v2-structured", **{f"engine.{k}": _param(v) for k, v in engine.get_params().items()},
            "data_digest": data_digest, "headline_metric": HEADLINE_METRIC,
            **{f"evidence.{k}": v for k, v in ev.describe().items()},
            "models_without_architecture": ",".join(ev.unknown)[:480] or "-",
        })
        mlflow.log_metrics({_metric_key(k): v for k, v in metrics.items() if isinstance(v, float) and math.isfinite(v)})
        mlflow.set_tags({"maforecast.stage": "predictor", "data_digest": data_digest})
        ds = mlflow.data.from_pandas(ev.layers, name="predictor-evidence", targets=None)
        log_dataset(ds, context="training", tags={"digest": data_digest}, run_id=run.info.run_id, client=client)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            ev.layers.to_csv(tmp / "evidence_layers.csv", index=False)
            mlflow.log_artifact(str(tmp / "evidence_layers.csv"), "data")
            table.to_csv(tmp / "evaluation.csv", index=False)
            mlflow.log_artifact(str(tmp / "evaluation.csv"), "evaluation")
            for by, e in evals.items():
                e.predictions.to_csv(tmp / f"heldout_{by}.csv", index=False)
                mlflow.log_artifact(str(tmp / f"heldout_{by}.csv"), "evaluation")
            text = description(ev, table, metrics) + effects_description(engine, champion_effects(s))
            (tmp / "model_card.md").write_text(text)
            mlflow.log_artifact(str(tmp / "model_card.md"), "evaluation")
            (tmp / "engine.json").write_text(json.dumps(engine.info(), indent=1, default=float))
            mlflow.log_artifact(str(tmp / "engine.json"), "evaluation")
            from registry.plots import heldout_plot  # matplotlib only when a run is logged

            pairs.to_csv(tmp / "proxy_pairs.csv", index=False)
            mlflow.log_artifact(str(tmp / "proxy_pairs.csv"), "evaluation")
            for by, e in evals.items():
                fig = heldout_plot(e)
                fig.savefig(tmp / f"heldout_{by}.png", dpi=90)
                mlflow.log_artifact(str(tmp / f"heldout_{by}.png"), "plots")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                info = mlflow.pyfunc.log_model(
                    name="model", **pyfunc_kwargs(engine, ev.archs[sorted(set(ev.layers["model"]))[0]], tmp, settings=s))
        version = None
        if register:
            version = register_model(info.model_uri, engine, run.info.run_id, s, client, text)
    return TrainResult(run.info.run_id, version, metrics, engine, evals, ev)


def pyfunc_kwargs(engine: ForecastEngine, example_arch: Architecture, tmp: Path, kb: str | Path | None = None,
                  settings: Settings | None = None) -> dict:
    """``mlflow.pyfunc.log_model`` / ``save_model`` arguments for ``engine`` (its pickle is written to ``tmp``):
    signature with params, input example, pinned requirements, the shipped code, the knowledge base, metadata."""
    s = settings or get_settings()
    bundle_path = tmp / "bundle.joblib"
    joblib.dump(engine, bundle_path)
    kb_file = Path(kb or kb_path())
    meta = model_metadata(engine, kb_file)
    card = {"registered_model": s.registered_model, **meta}
    example = arch_frame([example_arch])
    output = PredictorModel(Answerer(engine, load_kb(str(kb_file)), card)).predict(None, example)
    signature = mlflow.models.infer_signature(example, output, params=PYFUNC_PARAMS)
    signature.inputs = Schema([ColSpec(DataType.string, "architecture"),
                               ColSpec(DataType.string, "name", required=False)])  # name: variants of output=compare
    return {"python_model": MODEL_CODE, "artifacts": {"bundle": str(bundle_path), "knowledge_base": str(kb_file)},
            "signature": signature, "input_example": example, "pip_requirements": PIP_REQUIREMENTS,
            "code_paths": ship_code(tmp), "model_config": card, "metadata": {"maforecast": meta}}


def relog(version: str | None = None, kb: str | Path | None = None, settings: Settings | None = None) -> str:
    """Register the fitted engine of ``version`` (default: the champion) again with the knowledge base ``kb``
    (default: the bundled one), without refitting: a new version, alias ``challenger``. Returns it."""
    s = settings or get_settings()
    client = configure(s)
    kb_file = Path(kb or kb_path())
    if not kb_file.is_file():
        raise UserError(f"--knowledge-base: no such file: {kb_file}")
    try:
        load_kb.__wrapped__(str(kb_file))  # parse it now: a broken file is refused before anything is logged
    except (ValueError, OSError, yaml.YAMLError) as exc:
        raise UserError(f"--knowledge-base: {kb_file}: {' '.join(str(exc).split())[:300]}") from None
    try:
        mv = (client.get_model_version(s.registered_model, str(version)) if version
              else client.get_model_version_by_alias(s.registered_model, s.model_alias))
    except MlflowException:
        raise UserError(f"no version {version or '@' + s.model_alias} of {s.registered_model!r}: {BOOTSTRAP_HINT}") from None
    path = mlflow.artifacts.download_artifacts(f"models:/{s.registered_model}/{mv.version}")
    bundles = list(Path(path).rglob("bundle.joblib"))
    if not bundles:
        raise UserError(f"version {mv.version} of {s.registered_model!r} has no engine bundle (an older interface): {BOOTSTRAP_HINT}")
    engine: ForecastEngine = joblib.load(bundles[0])
    example = reference_architectures()["pythia-160m"]
    with mlflow.start_run(experiment_id=experiment_id("predictor", s), run_name="predictor-relog") as run:
        mlflow.set_tags({"maforecast.stage": "predictor", "data_digest": engine.data_digest_,
                         "relogged_from_version": str(mv.version), "knowledge_base_digest": kb_digest(kb_file)})
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            info = mlflow.pyfunc.log_model(name="model", **pyfunc_kwargs(engine, example, Path(tmp), kb_file, s))
        text = (f"Version {mv.version}'s fitted engine (data digest {engine.data_digest_}) with the knowledge base "
                f"{kb_file.name} (digest {kb_digest(kb_file)}); not refitted.\n\n{mv.description or ''}")
        return register_model(info.model_uri, engine, run.info.run_id, s, client, text)


def _param(v) -> str:
    """A parameter as the MLflow UI shows it: JSON for structured values (not a Python repr), at most 500 characters."""
    if isinstance(v, dict | list | tuple):
        return json.dumps(v, default=lambda x: float(x) if hasattr(x, "__float__") else str(x), sort_keys=True)[:500]
    return str(v)[:500]


def _metric_key(k: str) -> str:
    return re.sub(r"[^0-9A-Za-z_\-./ ]", "_", k)


def scores_table(evals: dict[str, Evaluation]) -> pd.DataFrame:
    """The evaluation table (one row per CV scheme, target and protocol)."""
    return pd.concat([e.table() for e in evals.values()], ignore_index=True)


def description(ev: Evidence, table: pd.DataFrame, metrics: dict[str, float]) -> str:
    """What a reviewer reads on the version page of the MLflow UI."""
    d = ev.describe()
    lines = [
        f"Forecast engine v2 trained on {d['models']} models in {d.get('lineages', '?')} lineages: {d['checkpoint_models']} with "
        f"checkpoint series (Pythia), {d['trained_models']} trained LLMs ({d.get('models_one_sentence', 0)} measured as in "
        f"2503.22329, {d.get('models_corpus_max', 0)} as in 2605.15572), {d['anchors']} published anchors; data digest {ev.digest()}.",
        "",
        f"Headline ({HEADLINE_METRIC}: the smaller of the held-out skills 1 - MAE/constant on the largest layer's peak |a|, "
        f"a new member of a known lineage {metrics.get('skill_new_member', float('nan')):+.3f}, a new lineage "
        f"{metrics.get('skill_new_lineage', float('nan')):+.3f}): {metrics.get(HEADLINE_METRIC, float('nan')):+.3f} "
        f"({'beats' if metrics.get(HEADLINE_METRIC, -1) > 0 else 'does NOT beat'} the constant on both).",
        f"Proxy -> target pairs (a lineage's other members removed): MAE {metrics.get('proxy.mae', float('nan')):.3f} vs "
        f"{metrics.get('proxy.sibling_mae', float('nan')):.3f} for the proxy scaled by the size slope, 90 % coverage "
        f"{metrics.get('proxy.coverage_90', float('nan')):.0%}.",
        "",
        "| CV | target | protocol | models | MAE (log10) | constant | nearest sibling | 90 % coverage | median width |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table.to_dict("records"):
        if r["target"].startswith("peak_abs") and r["protocol"] != "all":
            continue  # per-protocol rows: in evaluation/evaluation.csv (the description has room for 5,000 characters)
        lines.append(f"| {r['cv']} | {r['target']} | {r['protocol']} | {r['n']} | {r['mae']:.3f} | {r['constant_mae']:.3f} | "
                     f"{r['sibling_mae']:.3f} | {r['coverage_90']:.0%} | {r['median_interval_width']:.2f} |")
    return "\n".join(lines)


def effects_description(engine: ForecastEngine, champion: dict[str, dict] | None = None) -> str:
    """The model card's design-effect section: per change, effect on the largest peak |a|, 90 % interval,
    evidence kind, studies, families, disagreement; leave-one-study-out; timing calibration; and the
    champion's effect next to this version's where one is registered."""
    card = effects_card(engine)
    _, loso = leave_one_study_out(engine)
    clock = engine.clock_model_
    lines = ["", "Design effects (what a change does; what-ifs, mitigations and /compare use these):", "",
             "| change | effect on largest peak abs | 90 % interval | evidence | studies | families | association | disagree |"
             + (" champion |" if champion else ""),
             "|---|---|---|---|---|---|---|---|" + ("---|" if champion else "")]
    for r in card.to_dict("records"):
        old = (champion or {}).get(r["change"], {}).get("effect")
        assoc = "" if r["association"] is None or r["association"] != r["association"] else f"x{r['association']:.2g}"
        lines.append(f"| {r['change']} | x{r['effect']:.2g} | [{r['lo']:.2g}, {r['hi']:.2g}] | {r['evidence']} | {r['studies']} | "
                     f"{r['families']} | {assoc} | {'yes' if r['disagree'] else ''} |"
                     + (f" {'x' + format(old, '.2g') if old else 'n/a'} |" if champion else ""))
    lines += ["", f"Leave one study out ({loso['n']} magnitude comparisons): sign agreement {loso['sign_agreement']:.0%}, "
              f"log10 MAE {loso['mae']:.2f} vs {loso['no_effect_mae']:.2f} for 'no effect', 90 % coverage {loso['coverage_90']:.0%}.",
              "", f"Timing: calibrated on the Pythia checkpoint series; cross-family spread {clock.tau_family_sd_:.2f} decades "
              f"from {len(clock.timing_checks_)} published onsets, "
              f"{sum(c['covered_loo'] for c in clock.timing_checks_)}/{len(clock.timing_checks_)} covered when left out."]
    return "\n".join(lines)


def champion_effects(settings: Settings | None = None) -> dict[str, dict] | None:
    """The current champion's effect table (from its metadata), by change; None without a champion."""
    s = settings or get_settings()
    try:
        meta = mlflow.models.get_model_info(f"models:/{s.registered_model}@{s.model_alias}").metadata or {}
    except (MlflowException, OSError):  # no champion (or no registry yet): nothing to compare with
        return None
    rows = (meta.get("maforecast") or {}).get("effects") or []
    return {r["change"]: r for r in rows} or None


def register_model(model_uri: str, engine: ForecastEngine, run_id: str, settings: Settings | None = None, client=None,
                   text: str | None = None) -> str:
    """Register a logged model as a new version with tags, a description and alias ``challenger``."""
    s = settings or get_settings()
    client = client or configure(s)
    m = engine.metrics_
    with contextlib.redirect_stderr(io.StringIO()):  # MLflow prints "Successfully registered ..." itself; we say it once
        mv = retry_store(mlflow.register_model, model_uri, s.registered_model, tags={"data_digest": engine.data_digest_})
    tags = {
        "data_digest": engine.data_digest_,
        "run_id": run_id,
        "engine": "v2-structured",
        "pyfunc_interface": PYFUNC_INTERFACE,
        "code_digest": code_digest(),
        "headline_metric": HEADLINE_METRIC,
        HEADLINE_METRIC: f"{m.get(HEADLINE_METRIC, float('nan')):.4f}",
        "beats_baseline": str(m.get(HEADLINE_METRIC, float("nan")) > 0).lower(),
        "peak_abs_mae_lineage_cv": f"{m.get('headline_peak_abs_mae', float('nan')):.4f}",
        "peak_abs_constant_mae_lineage_cv": f"{m.get('headline_constant_mae', float('nan')):.4f}",
    }
    for k, v in tags.items():
        retry_store(client.set_model_version_tag, s.registered_model, mv.version, k, v)
    if text:
        retry_store(client.update_model_version, s.registered_model, mv.version, description=fit_description(text))
    point_alias_at_newest(client, s.registered_model, CHALLENGER)
    return str(mv.version)


DESCRIPTION_LIMIT = 5000  # a model version's description column in MLflow's SQL stores is VARCHAR(5000)


def fit_description(text: str, limit: int = DESCRIPTION_LIMIT) -> str:
    """``text`` cut at a line to fit the registry's description column, saying where the rest is."""
    if len(text) <= limit:
        return text
    tail = "\n\n(cut to fit the registry; the full card: the run's artifact evaluation/model_card.md)"
    head = text[: limit - len(tail)]
    return head[: head.rfind("\n") if "\n" in head else len(head)] + tail


def point_alias_at_newest(client, name: str, alias: str, attempts: int = 30, settle_s: float = 0.2) -> str:
    """Point ``alias`` at the newest version of ``name``, safely under concurrent ``train`` runs.

    MLflow aliases are last-writer-wins without compare-and-set, so two runs registering v1 and v2
    at once could leave the alias on v1. Every writer therefore re-reads after writing and repeats
    until the alias names the newest version: each writer's last action is a read that confirmed
    it, so whatever the interleaving, the final state names the newest version. Sequentially this
    is simply the version just registered.
    """
    for _ in range(attempts):
        versions = retry_store(client.search_model_versions, f"name='{name}'")
        newest = str(max(int(mv.version) for mv in versions))
        try:
            current = str(retry_store(client.get_model_version_by_alias, name, alias).version)
        except MlflowException:
            current = None
        if current == newest:
            return newest
        retry_store(client.set_registered_model_alias, name, alias, newest)
        time.sleep(settle_s)
    raise MlflowException(f"alias {alias!r} of {name!r} kept moving; gave up after {attempts} attempts")


# ------------------------------------------------------------------------ promotion
@dataclass
class PromoteResult:
    promoted: bool
    message: str
    challenger: str | None
    champion_before: str | None


def _headline(client, name: str, version: str) -> float:
    mv = client.get_model_version(name, version)
    v = mv.tags.get(HEADLINE_METRIC)
    if v is None and mv.run_id:
        v = client.get_run(mv.run_id).data.metrics.get(HEADLINE_METRIC)
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


# The promotion gate, in MLflow's own terms (``mlflow.validate_evaluation_results``): the challenger's
# headline skill (1 - held-out MAE / the constant's MAE) must be above the constant's (0 by definition),
# then above the champion's. Each verdict is written on the version as a tag (``gate.constant``,
# ``gate.champion``), where MLflow users look.
GATE = {HEADLINE_METRIC: MetricThreshold(min_absolute_change=1e-9, greater_is_better=True)}


def gate(thresholds: dict[str, MetricThreshold], candidate: dict[str, float], baseline: dict[str, float]) -> str | None:
    """None when ``candidate`` passes MLflow's validation against ``baseline``, else MLflow's reason in one line."""
    if not all(math.isfinite(v) for v in (*candidate.values(), *baseline.values())):
        return "metrics missing (NaN)"
    try:
        mlflow.validate_evaluation_results(thresholds, EvaluationResult(candidate, {}), EvaluationResult(baseline, {}))
    except ModelValidationFailedException as exc:
        return " ".join(str(exc.message).split())
    return None


def servable(mv) -> bool:
    """Whether this process can answer for a registered version (``registry.loader.version_servable``)."""
    return version_servable(f"models:/{mv.name}/{mv.version}", mv.tags)


def promote(force: bool = False, settings: Settings | None = None) -> PromoteResult:
    """Point ``champion`` at the challenger if it beats the champion on the headline metric."""
    s = settings or get_settings()
    client = configure(s)
    name, champ_alias = s.registered_model, s.model_alias
    try:
        ch = client.get_model_version_by_alias(name, CHALLENGER)
    except MlflowException:
        raise UserError(f"no '{CHALLENGER}' version of {name!r}: run `maforecast train` first") from None
    try:
        champ = client.get_model_version_by_alias(name, champ_alias)
    except MlflowException:
        champ = None
    ch_score = _headline(client, name, ch.version)
    why_not = gate(GATE, {HEADLINE_METRIC: ch_score}, {HEADLINE_METRIC: 0.0})
    retry_store(client.set_model_version_tag, name, ch.version, "gate.constant", why_not or "passed")
    below = why_not is not None
    if below and not force:
        return PromoteResult(False, f"refused: challenger v{ch.version} does not beat the constant baseline "
                             f"({HEADLINE_METRIC} {ch_score:.4f}; MLflow validation: {why_not}); use --force to promote anyway",
                             str(ch.version), str(champ.version) if champ is not None else None)
    if force:
        retry_store(client.set_model_version_tag, name, ch.version, "promoted_by_force", "true" if below else "false")
    if champ is not None and champ.version == ch.version:
        return PromoteResult(False, f"version {ch.version} is already {champ_alias} ({HEADLINE_METRIC} {ch_score:.4f})", str(ch.version), str(champ.version))
    if champ is None:
        client.set_registered_model_alias(name, champ_alias, ch.version)
        return PromoteResult(True, f"promoted version {ch.version} to {champ_alias}: there was no {champ_alias} "
                             f"({HEADLINE_METRIC} {ch_score:.4f})", str(ch.version), None)
    if not servable(champ) and servable(ch):
        client.set_registered_model_alias(name, champ_alias, ch.version)
        return PromoteResult(True, f"promoted version {ch.version} to {champ_alias}: {champ_alias} v{champ.version} was "
                             f"logged with another model interface or predictor code and cannot be served by this code "
                             f"({HEADLINE_METRIC} {ch_score:.4f})", str(ch.version), str(champ.version))
    champ_score = _headline(client, name, champ.version)
    lost = (gate(GATE, {HEADLINE_METRIC: ch_score}, {HEADLINE_METRIC: champ_score}) if math.isfinite(champ_score)
            else None if math.isfinite(ch_score) else "metrics missing (NaN)")  # a champion without a score loses
    retry_store(client.set_model_version_tag, name, ch.version, "gate.champion", lost or f"passed (v{champ.version})")
    better = lost is None
    cmp = f"{HEADLINE_METRIC}: challenger v{ch.version} {ch_score:.4f} vs {champ_alias} v{champ.version} {champ_score:.4f}"
    if better or force:
        client.set_registered_model_alias(name, champ_alias, ch.version)
        why = "beats" if better else "does not beat, promoted anyway (--force)"
        return PromoteResult(True, f"promoted version {ch.version} to {champ_alias}: challenger {why} ({cmp})", str(ch.version), str(champ.version))
    return PromoteResult(False, f"kept {champ_alias} at version {champ.version}: challenger is not better ({cmp}); use --force to promote anyway",
                         str(ch.version), str(champ.version))
