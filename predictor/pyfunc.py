"""The registered model: one MLflow ``PythonModel`` whose ``predict`` returns the whole answer.

A version is self-contained: its ``code_paths`` ship ``predictor/`` (and the three ``maforecast``
modules it imports), its artifacts the fitted engine (``bundle``) and the mitigation knowledge base
(``knowledge_base``), its ``model_config`` the version's card (registered name, held-out scores).
So ``mlflow models serve -m models:/maforecast-predictor@champion`` answers exactly what the
BentoML service, ``maforecast predict`` and ``maforecast review`` answer: they only transport it.

Interface 4 (``mlflow.pyfunc.load_model(uri).predict(frame, params=...)``):

- input: a frame with a column ``architecture``, one architecture per row as the JSON of the
  ``/predict`` schema (``arch_frame`` builds it), and for ``output="compare"`` a column ``name``. In
  process, a dict of lists with the same columns (``architecture``: validated ``Architecture`` objects
  or JSON) is answered with a dict of lists: two pandas frames cost ~0.7 ms of a ~5 ms answer;
- ``params["output"]``:
  ``answer`` (default): column ``answer``, per row the ``/predict`` answer as JSON
  (``predictor.response.PredictResponse``: forecast, summary, precision risk per format and layer,
  ranked mitigations with their predicted effects, applicability, notes);
  ``compare``: one row, the ``/compare`` answer of the rows as named variants (the first is the baseline);
  ``nowcast``: one architecture plus ``params["observations"]`` (JSON rows: step, layer, top1, median[, top2,
  top3, sample]); one row, the ``/nowcast`` answer;
  ``rows``: one row per (architecture, layer), the per-layer summary as columns (tabular consumers);
- ``params["steps"]``: comma-separated trajectory steps (default: log-spaced up to the planned end);
  ``params["view"]`` (``compact``, the default | ``full``, the default with ``steps`` | ``summary``:
  ``predictor.response.VIEW_HELP``) and
  ``params["layers"]`` (comma-separated): which layers;
- ``params["version"]``, ``["alias"]``, ``["model_uri"]``: the loaded version's identity, stated in the
  answer (the loader fills them; a model served on its own states its registered name only).

Everything is closed-form at request time (no refits).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

from predictor.answer import Answerer
from predictor.architecture import Architecture, parse_architecture
from predictor.knowledge import load_kb
from predictor.response import PredictorInfo
from predictor.schemas import Forecast, parse_steps

__all__ = [
    "GOLDEN", "INTERFACE", "MODEL_CODE", "PARAMS", "PredictorModel", "SHARED_MODULES", "answer_digest",
    "arch_frame", "code_digest", "code_files", "forecast_frame", "steps_param",
]

OUTPUTS = ("answer", "compare", "nowcast", "rows")
# the version of this interface; a registered version carries it in its metadata (``pyfunc_interface``),
# and a consumer refuses one logged with another (``maforecast bootstrap`` registers a current one)
INTERFACE = "8"  # 8: the compact answer is the default view (7: lineage and protocol in the input; lineage, worst case, FP16 mechanisms in the answer)
# the signature's params, with defaults
PARAMS = {"output": "answer", "steps": "", "observations": "", "view": "", "layers": "",
          "version": "", "alias": "", "model_uri": ""}
PACKAGE = Path(__file__).resolve().parent
# what a version ships as code: this package and the modules of ``maforecast`` it imports
SHARED_MODULES = ("__init__.py", "errors.py", "tables.py")


def code_files() -> list[Path]:
    return sorted(PACKAGE.glob("*.py")) + [PACKAGE.parent / "maforecast" / m for m in SHARED_MODULES]


def code_digest() -> str:
    """Digest of the code a version answers with: a process whose imported ``predictor`` differs from
    the version's logged code would answer with other code, so consumers compare the two."""
    h = hashlib.sha256()
    for f in code_files():
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


# Designs whose answers stand for "what this code computes": a version stays servable by a process whose code gives
# the same answers for them (a docstring or comment edit does not change them; a change of a formula does).
GOLDEN: tuple[dict, ...] = (
    {"name": "golden-neox", "n_layers": 12, "d_model": 768, "n_heads": 12, "d_ffn": 3072, "ffn_type": "mlp",
     "activation": "gelu", "norm_type": "layernorm", "parallel_attn_mlp": True, "rotary_pct": 0.25, "vocab_size": 50304,
     "seq_len": 2048, "total_steps": 143000, "precision_target": "fp16_inference"},
    {"name": "golden-llama", "n_layers": 32, "d_model": 4096, "n_heads": 32, "n_kv_heads": 8, "d_ffn": 14336,
     "ffn_type": "glu", "activation": "silu", "norm_type": "rmsnorm", "vocab_size": 128256, "seq_len": 8192,
     "learning_rate": 3e-4, "batch_tokens": 4_000_000, "total_steps": 250_000, "precision_target": "fp8_training",
     "protocol": "corpus_max"},
    {"name": "golden-gemma", "n_layers": 26, "d_model": 1152, "n_heads": 4, "n_kv_heads": 1, "d_ffn": 6912,
     "ffn_type": "glu", "activation": "gelu", "norm_type": "rmsnorm", "norm_placement": "sandwich", "qk_norm": True,
     "embedding_scale": True, "vocab_size": 262144, "seq_len": 32768, "lineage": "gemma-3",
     "precision_target": "int8_w8a8"},
)


def _rounded(x: Any) -> Any:
    """Floats to 6 significant digits: the same code on another machine's BLAS agrees to that, not to the bit."""
    if isinstance(x, float):
        return float(f"{x:.6g}")
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    return x


def answer_digest(answerer: Answerer) -> str:
    """Digest of what ``answerer`` (a version's engine and knowledge base, this process's code) answers for the
    ``GOLDEN`` designs (/predict and /compare); logged with a version and recomputed where it is loaded."""
    who = PredictorInfo(name="golden")
    archs = [parse_architecture(a) for a in GOLDEN]
    lineages = set(answerer.engine.lineage_members_)
    archs = [a.model_copy(update={"lineage": None}) if a.lineage and a.lineage not in lineages else a for a in archs]
    out = [json.loads(r) for r in answerer.answers_json(archs, who=who)]
    out.append(json.loads(answerer.compare({a.name: a for a in archs[:2]}, who=who).model_dump_json()))
    return hashlib.sha256(json.dumps(_rounded(out), sort_keys=True).encode()).hexdigest()[:16]


def arch_frame(archs: list[Architecture], names: list[str] | None = None) -> pd.DataFrame:
    """Architectures (optionally named, for ``compare``) as the pyfunc's input frame."""
    cols = {"architecture": [a.model_dump_json() for a in archs]}
    if names is not None:
        cols["name"] = list(names)
    return pd.DataFrame(cols, dtype=object)  # Python strings: pandas 3's Arrow strings would copy each JSON in and out


def steps_param(steps: list[int] | None) -> str:
    return ",".join(str(int(s)) for s in steps) if steps else ""


def _ints(raw: str | None, name: str) -> list[int] | None:
    try:
        return [int(s) for s in (raw or "").split(",") if s.strip()] or None
    except ValueError:
        raise ValueError(f"params.{name}: comma-separated integers, got {raw!r}") from None


def _archs(frame: pd.DataFrame) -> list[Architecture]:
    if "architecture" not in frame:
        raise ValueError("input: expected a column 'architecture' (one JSON architecture per row; see arch_frame)")
    return [parse_architecture(json.loads(a) if isinstance(a, str) else a) for a in frame["architecture"]]


def _frame(payload: pd.DataFrame | list | dict) -> pd.DataFrame | dict:
    """A frame, or an in-process dict of lists (``{"architecture": [...]}``) as it is."""
    if isinstance(payload, pd.DataFrame) or (isinstance(payload, dict) and isinstance(payload.get("architecture"), list)):
        return payload
    return pd.DataFrame(payload)


def _out(frame: pd.DataFrame | dict, column: dict[str, list]) -> pd.DataFrame | dict:
    """The output in the input's kind: a frame for MLflow (its serving, ``spark_udf``), else a dict of lists."""
    return pd.DataFrame(column, dtype=object) if isinstance(frame, pd.DataFrame) else column


class PredictorModel(PythonModel):
    """pyfunc around an ``Answerer``: the fitted engine, the knowledge base and the version's card."""

    # The model is logged with an explicit signature; MLflow's type-hint validation wrapper (and
    # its "add type hints" warning, printed by every CLI command importing this module) is skipped.
    _skip_type_hint_validation = True

    def __init__(self, answerer: Answerer | None = None):
        self.answerer = answerer

    def load_context(self, context):
        kb = context.artifacts.get("knowledge_base")
        self.answerer = Answerer(joblib.load(context.artifacts["bundle"]), load_kb(kb), context.model_config or {})
        self._root = Path(context.artifacts["bundle"]).parent.parent  # the model's folder (its MLmodel file)
        self._identity: tuple[str | None, str | None, str | None] | None = None
        self._identity_at = 0.0

    def identity(self) -> tuple[str | None, str | None, str | None]:
        """(version, alias, model URI) of the registered version this model is, for a caller that did not say
        (``mlflow.pyfunc.load_model("models:/...@champion")``, ``mlflow models serve``): looked up once in the
        registry by the logging run; (None, None, None) where no registry answers."""
        if self._identity is None or time.monotonic() - self._identity_at > 60.0:
            self._identity, self._identity_at = (None, None, None), time.monotonic()
            import mlflow

            if not mlflow.is_tracking_uri_set():  # no registry named: never create one where the model was copied
                return self._identity
            name = str(self.answerer.card.get("registered_model") or "maforecast-predictor")
            try:
                from mlflow import MlflowClient
                from mlflow.models import Model

                run_id = Model.load(str(self._root)).run_id
                client = MlflowClient()
                mvs = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'") if run_id else []
                # a search's versions carry no aliases: read the version itself
                mv = client.get_model_version(name, max(mvs, key=lambda m: int(m.version)).version) if mvs else None
            except Exception:  # no registry here (a copied model folder): the answer says so by nulls
                mv = None
            if mv is not None:
                aliases = list(mv.aliases or [])
                alias = "champion" if "champion" in aliases else (aliases[0] if aliases else None)
                self._identity = (str(mv.version), alias, f"models:/{name}/{mv.version}")
        return self._identity

    def predict(self, context, model_input, params=None):
        p = {**PARAMS, **(params or {})}
        output = p["output"]
        if output not in OUTPUTS:
            raise ValueError(f"params.output: one of {', '.join(OUTPUTS)}, got {output!r}")
        frame = _frame(model_input)
        archs, steps = _archs(frame), parse_steps(_ints(p["steps"], "steps"))
        a = self.answerer
        given = (p["version"] or None, p["alias"] or None, p["model_uri"] or None)
        if not any(given) and hasattr(self, "_root"):  # loaded by MLflow itself: find which version it is
            given = self.identity()
        who = a.predictor(*given)
        if output == "rows":
            return pd.concat([forecast_frame(a.engine.forecast(x, steps), i) for i, x in enumerate(archs)], ignore_index=True)
        if output == "answer":
            raws = a.answers_json(archs, steps, p["view"] or None, _ints(p["layers"], "layers"), who)
            return _out(frame, {"answer": [r.decode() for r in raws]})
        if output == "compare":
            names = [str(n) for n in frame["name"]] if "name" in frame else [f"variant_{i}" for i in range(len(archs))]
            if len(set(names)) != len(names):
                raise ValueError("name: variant names must be distinct")
            answer = a.compare(dict(zip(names, archs, strict=True)), steps, who).model_dump_json(warnings=False)
        else:
            if len(archs) != 1:
                raise ValueError("input: output 'nowcast' takes exactly one architecture")
            # warnings off: the precision details are the checks' records, written as they are (``precision_risks``)
            answer = a.nowcast(archs[0], json.loads(p["observations"] or "[]"), steps, who).model_dump_json(warnings=False)
        return _out(frame, {"answer": [answer]})


def forecast_frame(fc: Forecast, index: int = 0) -> pd.DataFrame:
    rows = []
    for lf in fc.layers:
        r = {"arch_index": index, "layer": lf.layer, "trajectory_class": lf.trajectory_class, "massive": lf.massive,
             "p_massive": lf.p_massive if lf.p_massive is not None else float("nan")}
        for k in ("ratio_end", "steady_state", "peak_abs", "t_emerge"):
            iv = getattr(lf, k)
            r[k] = iv.value if iv else float("nan")
            r[f"{k}_lo"] = iv.lo if iv else float("nan")
            r[f"{k}_hi"] = iv.hi if iv else float("nan")
        r["trajectory"] = json.dumps([[p.step, p.value] for p in lf.ratio_trajectory])
        r["n_applicability_warnings"] = len(fc.applicability)
        rows.append(r)
    return pd.DataFrame(rows)


# Models from code: a version logs this file as its model (``python_model=MODEL_CODE``) and MLflow builds
# the model by running it, so no pickled Python object travels with a version (the fitted engine is the
# ``bundle`` artifact).
MODEL_CODE = str(Path(__file__).resolve())
set_model(PredictorModel())
