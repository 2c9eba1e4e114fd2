"""The served predictor: a registered MLflow model, loaded with ``mlflow.pyfunc.load_model`` and
used only through its ``predict`` (the interface is documented in ``predictor/pyfunc.py``).

The service knows the predictor by its schemas (architecture in; forecast, intervals and nowcast
out) and nothing else: no engine, no pickle, no training code. What a version was trained on and
how it scores comes from the model's metadata and the registry.
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
from predictor.nowcast import NowcastResult
from predictor.pyfunc import INTERFACE, arch_frame, steps_param
from predictor.schemas import WHAT_IF_ENDS, EndIntervals, Forecast, ForecastArrays

BOOTSTRAP_HINT = "run `maforecast bootstrap` (or `maforecast train && maforecast promote`)"


class NoChampionError(UserError):
    """No model version carries the requested alias (or the registered model does not exist)."""


@dataclass
class RegisteredPredictor:
    """One loaded registered version and where it came from."""

    model: PyFuncModel
    name: str
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None
    model_uri: str | None = None

    def _predict(self, archs: Sequence[Architecture], what_if: list[list[dict]] | None = None, **params: str):
        return self.model.predict(arch_frame(list(archs), what_if), params=params)

    def _named(self, fc: ForecastArrays | Forecast):
        return fc.model_copy(update={"predictor_name": self.name, "predictor_version": self.version,
                                     "predictor_alias": self.alias})

    def forecast(self, arch: Architecture, steps: Sequence[int] | None = None) -> Forecast:
        return self.forecast_many([arch], steps)[0]

    def forecast_many(self, archs: Sequence[Architecture], steps: Sequence[int] | None = None) -> list[Forecast]:
        return [fc.to_forecast() for fc, _ in self.forecast_with_what_ifs(archs, None, steps)]

    def forecast_with_what_ifs(self, archs: Sequence[Architecture], what_if: list[list[dict]] | None,
                               steps: Sequence[int] | None = None) -> list[tuple[ForecastArrays, list[EndIntervals]]]:
        """One model call: per architecture its forecast (as arrays) and, per field change in ``what_if[i]``,
        the changed architecture's per-layer peak |a| and end ratio at the planned end."""
        out = self._predict(archs, what_if, output="forecast", steps=steps_param(list(steps) if steps else None))
        return [(self._named(ForecastArrays.model_validate_json(f)), WHAT_IF_ENDS.validate_json(w))
                for f, w in zip(out["forecast"], out["what_if"], strict=True)]

    def nowcast(self, arch: Architecture, observations: Sequence[Any], steps: Sequence[int] | None = None) -> NowcastResult:
        rows = [o.model_dump() if hasattr(o, "model_dump") else dict(o) for o in observations]
        raw = self._predict([arch], output="nowcast", steps=steps_param(list(steps) if steps else None),
                            observations=json.dumps(rows))["forecast"][0]
        res = NowcastResult.model_validate_json(raw)
        return res.model_copy(update={"forecast": self._named(res.forecast)})

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
        try:
            mv = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
        except MlflowException:
            what = f"alias '{alias}'" if alias else f"version {version}"
            raise NoChampionError(f"no predictor {name!r} with {what} in {store}: {BOOTSTRAP_HINT}") from None
        version, run_id = str(mv.version), mv.run_id
    try:
        model = mlflow.pyfunc.load_model(model_uri)
    except MlflowException as exc:
        raise NoChampionError(f"cannot load predictor {model_uri}: {exc.message.splitlines()[0]}; {BOOTSTRAP_HINT}") from None
    # the interface travels in the model itself, so a run or folder URI is checked as a registered version is
    logged = ((model.metadata.metadata or {}).get("maforecast") or {}).get("pyfunc_interface")
    if logged != INTERFACE:
        raise NoChampionError(f"predictor {model_uri} (version {version}) was logged with "
                              f"{f'interface {logged}' if logged else 'an older interface'}, this service reads "
                              f"interface {INTERFACE}; {BOOTSTRAP_HINT} to register a current one")
    return RegisteredPredictor(model, name=name, version=version, alias=alias, run_id=run_id, model_uri=model_uri)
