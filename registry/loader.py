"""The one loader of a registered predictor: every consumer (the service, ``maforecast predict``,
``review``, ``monitor``) loads a version here and asks its ``predict`` for the whole answer.

A version answers with the code it was logged with: the loader refuses one whose pyfunc interface or
code digest differs from the ``predictor`` this process runs (in-process, an already imported
``predictor`` would otherwise answer in place of the logged code), with one line naming why and the
command that registers a current version.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PyFuncModel

from maforecast.errors import UserError
from maforecast.settings import get_settings
from predictor.architecture import Architecture
from predictor.engine import ForecastEngine
from predictor.pyfunc import INTERFACE, answer_digest, code_digest, steps_param
from predictor.response import CompareResponse, NowcastResponse, PredictorInfo, PredictResponse

BOOTSTRAP_HINT = "run `maforecast bootstrap` (or `maforecast train && maforecast promote`)"
# what a connection failure to a tracking server says, in MLflow's and requests' words
_UNREACHABLE = re.compile(r"Connection refused|Failed to establish|Max retries exceeded|NewConnectionError|"
                          r"Name or service not known|timed out|Connection reset|RemoteDisconnected", re.I)


class NoChampionError(UserError):
    """No usable model version at the requested alias, version or URI."""


class StoreUnreachableError(NoChampionError):
    """The tracking server does not answer: the version may well exist."""


@dataclass
class RegisteredPredictor:
    """One loaded registered version and where it came from; every method is one ``predict`` call."""

    model: PyFuncModel
    name: str
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None
    model_uri: str | None = None

    def __post_init__(self) -> None:
        self._params = {"version": self.version or "", "alias": self.alias or "", "model_uri": self.model_uri or ""}
        # MLflow's per-call input check (schema enforcement) costs ~0.4 ms of a ~2 ms answer; the
        # service and the CLI validate every architecture with the schema before it gets here, so they
        # call the logged PythonModel itself. It is the registered version's own object and code.
        self._python_model = self.model.unwrap_python_model()

    def _predict(self, archs: Sequence[Architecture], names: list[str] | None = None, **params: str) -> list[str]:
        # the validated objects as they are, in a dict of lists (``predictor.pyfunc``: no frames in process)
        rows: dict[str, list] = {"architecture": list(archs), **({"name": list(names)} if names is not None else {})}
        return list(self._python_model.predict(None, rows, params={**self._params, **params})["answer"])

    @property
    def predictor(self) -> PredictorInfo:
        return self._python_model.answerer.predictor(self.version, self.alias, self.model_uri)

    @property
    def engine(self) -> ForecastEngine:
        """The fitted engine (``maforecast monitor`` draws its prior band from it)."""
        return self._python_model.answerer.engine

    def answers_json(self, archs: Sequence[Architecture], steps: Sequence[int] | None = None, view: str | None = None,
                     layers: Sequence[int] | None = None) -> list[bytes]:
        raws = self._predict(archs, steps=steps_param(list(steps) if steps else None), view=view or "",
                             layers=",".join(map(str, layers)) if layers is not None else "")
        return [r.encode() for r in raws]

    def answers(self, archs: Sequence[Architecture], steps: Sequence[int] | None = None) -> list[PredictResponse]:
        """The full answers as objects (the CLI, the review and its report read trajectories)."""
        return [PredictResponse.model_validate_json(r) for r in self.answers_json(archs, steps, "full")]

    def answer(self, arch: Architecture, steps: Sequence[int] | None = None) -> PredictResponse:
        return self.answers([arch], steps)[0]

    def compare(self, variants: dict[str, Architecture], steps: Sequence[int] | None = None) -> CompareResponse:
        raw = self._predict(list(variants.values()), list(variants), output="compare",
                            steps=steps_param(list(steps) if steps else None))[0]
        return CompareResponse.model_validate_json(raw)

    def nowcast(self, arch: Architecture, observations: Sequence[Any], steps: Sequence[int] | None = None) -> NowcastResponse:
        rows = [o.model_dump() if hasattr(o, "model_dump") else dict(o) for o in observations]
        raw = self._predict([arch], output="nowcast", steps=steps_param(list(steps) if steps else None),
                            observations=json.dumps(rows))[0]
        return NowcastResponse.model_validate_json(raw)

    def info(self) -> dict:
        meta = dict((self.model.metadata.metadata or {}).get("maforecast") or {})
        return {"name": self.name, "version": self.version, "alias": self.alias, "run_id": self.run_id,
                "model_uri": self.model_uri, **meta}


def resolve_model_uri(model_uri: str | None = None, alias: str | None = None, version: str | None = None) -> str:
    """The model URI to load: the arguments, else ``MAFORECAST_MODEL_URI`` / ``_MODEL_VERSION`` /
    ``_MODEL_ALIAS`` (settings), else ``models:/<registered_model>@champion``."""
    s = get_settings()
    if model_uri or (not alias and not version and s.model_uri):
        return model_uri or s.model_uri
    version = version or (None if alias else s.model_version)
    if version:
        return f"models:/{s.registered_model}/{version}"
    return f"models:/{s.registered_model}@{alias or s.model_alias}"


def _load_error(exc: Exception, what: str, store: str) -> NoChampionError:
    text = str(getattr(exc, "message", None) or exc)
    if _UNREACHABLE.search(text):
        return StoreUnreachableError(f"the tracking server at {store} does not answer ({what}): start it, "
                                     "or point MLFLOW_TRACKING_URI / MAFORECAST_DATA_HOME at a reachable store")
    return NoChampionError(f"{what}: {text.splitlines()[0] if text else type(exc).__name__}; {BOOTSTRAP_HINT}")


def servable_reason(meta: dict, model: PyFuncModel | None = None) -> str | None:
    """Why this process cannot answer for a version (None: it can). Another interface never; other predictor code
    only if it answers the ``GOLDEN`` designs differently (a docstring or comment edit does not), which needs the
    loaded ``model``."""
    logged = meta.get("pyfunc_interface")
    if logged != INTERFACE:
        return f"was logged with {f'interface {logged}' if logged else 'an older interface'}, this process reads interface {INTERFACE}"
    if meta.get("code_digest") == code_digest():
        return None
    if model is not None and meta.get("answer_digest"):
        try:
            here = answer_digest(model.unwrap_python_model().answerer)
        except Exception as exc:  # an old bundle this code cannot even answer with: not servable, say why
            return f"cannot answer the golden designs with this process's predictor code ({type(exc).__name__}: {exc})"
        if here == meta["answer_digest"]:
            return None
        return (f"answers the golden designs differently with this process's predictor code (digest {here}, logged "
                f"{meta['answer_digest']})")
    return (f"was logged with other predictor code (digest {meta.get('code_digest') or 'none'}, this process runs "
            f"{code_digest()}) and no golden answers to check it by")


def check_servable(meta: dict, model_uri: str, version: str | None = None, model: PyFuncModel | None = None) -> None:
    """Refuse a version this process cannot answer with (``servable_reason``), in one line."""
    why = servable_reason(meta, model)
    if why is not None:
        label = f"predictor {model_uri}" + (f" (version {version})" if version else "")
        raise NoChampionError(f"{label} {why}; {BOOTSTRAP_HINT} to register a version of this code, or serve that "
                              "version on its own with `mlflow models serve`")


def version_servable(model_uri: str, tags: dict) -> bool:
    """Whether this process can answer for a registered version: its tags when they match this code, else its
    golden answers recomputed with this code (loads the model)."""
    if tags.get("pyfunc_interface") != INTERFACE:
        return False
    if tags.get("code_digest") == code_digest():
        return True
    try:
        model = mlflow.pyfunc.load_model(model_uri)
    except Exception:  # a version this process cannot even load is not servable by it (MLflow's or unpickling errors)
        return False
    return servable_reason((model.metadata.metadata or {}).get("maforecast") or {}, model) is None


def load_predictor(model_uri: str | None = None, tracking_uri: str | None = None) -> RegisteredPredictor:
    """Load a registered predictor (default ``models:/<registered_model>@<model_alias>``)."""
    s = get_settings()
    store = tracking_uri or s.resolved_tracking_uri
    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)
    model_uri = model_uri or resolve_model_uri()
    name, version, alias, run_id = s.registered_model, None, None, None
    m = re.fullmatch(r"models:/([^/@]+)(?:@([^/]+)|/(\d+))", model_uri)
    if m:
        client = mlflow.tracking.MlflowClient(tracking_uri=store, registry_uri=store)
        name, alias, version = m.group(1), m.group(2), m.group(3)
        what = f"alias '{alias}'" if alias else f"version {version}"
        try:
            mv = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
        except Exception as exc:  # MLflow's own error, or the HTTP client's when the server is down
            err = _load_error(exc, f"no predictor {name!r} with {what}", store)
            if isinstance(err, StoreUnreachableError):
                raise err from None
            if not isinstance(exc, MlflowException):
                raise
            raise NoChampionError(f"no predictor {name!r} with {what} in {store}: {BOOTSTRAP_HINT}") from None
        version, run_id = str(mv.version), mv.run_id
    try:
        model = mlflow.pyfunc.load_model(model_uri)
    except MlflowException as exc:
        raise _load_error(exc, f"cannot load predictor {model_uri}", store) from None
    check_servable((model.metadata.metadata or {}).get("maforecast") or {}, model_uri, version, model)
    return RegisteredPredictor(model, name=name, version=version, alias=alias, run_id=run_id, model_uri=model_uri)
