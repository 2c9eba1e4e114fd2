"""The registered model's Python side: the boundary between the predictor and everything that serves it.

Kept apart from ``registry`` so that the logged model needs only this module, the engine and
their schemas (``code_paths``: ``predictor/`` and ``maforecast/`` travel with every version), not
the training, tracking or settings code: a registered version loads in a process where the
project is not installed.

Interface (``mlflow.pyfunc.load_model(uri).predict(frame, params=...)``):

- input: a frame with a column ``architecture``, one architecture per row as the JSON of the
  ``/predict`` schema (``arch_frame`` builds it), and optionally ``what_if``: per row a JSON list of
  field changes (``[{"qk_norm": true}, {"learning_rate": 1.5e-4}]``) to forecast as well. String
  columns, not one column per field: the architecture schema validates them, and MLflow's
  per-column schema enforcement of ~40 columns cost 3.5 ms a call against 0.5 ms for one;
- ``params["output"]``:
  ``forecast`` (default): column ``forecast``, the full per-layer forecast as JSON of
  ``predictor.schemas.ForecastArrays`` (per-layer arrays; ``to_forecast()`` expands it to the per-point
  ``Forecast``, ``layer_dicts()`` to its layers as plain data), and column ``what_if``: per row the JSON list of ``predictor.schemas.EndIntervals`` of its changed
  architectures (per-layer peak |a| and ratio at the planned end, all rows' variants computed together);
  ``nowcast``: one architecture plus ``params["observations"]`` (JSON rows: step, layer, top1, median[, top2,
  top3, sample]); column ``forecast``, the updated forecast, the per-layer observed-vs-forecast and the update's
  summary as JSON (``predictor.nowcast.NowcastResult``);
  ``rows``: one row per (architecture, layer), the per-layer summary as columns (tabular consumers);
- ``params["steps"]``: comma-separated trajectory steps (default: log-spaced up to the planned end).

Everything is closed-form at request time (no refits). What a version was trained on and how it
scores held out travels as the model's metadata (``MLmodel`` ``metadata.maforecast``).
"""

from __future__ import annotations

import json

import joblib
import pandas as pd
from mlflow.pyfunc import PythonModel

from maforecast.errors import UserError
from predictor.architecture import Architecture, parse_architecture
from predictor.engine import ForecastEngine
from predictor.schemas import WHAT_IF_ENDS, Forecast

OUTPUTS = ("forecast", "nowcast", "rows")
# the version of this interface; registered versions carry it as tag ``pyfunc_interface``, and a
# champion logged with another one cannot be served (``registry.promote`` replaces it)
INTERFACE = "3"
PARAMS = {"output": "forecast", "steps": "", "observations": ""}  # the signature's params, with defaults


def arch_frame(archs: list[Architecture], what_if: list[list[dict]] | None = None) -> pd.DataFrame:
    """Architectures (and per architecture the field changes to forecast too) as the pyfunc's input frame."""
    cols = {"architecture": [a.model_dump_json() for a in archs]}
    if what_if is not None:
        cols["what_if"] = [json.dumps(w) for w in what_if]
    return pd.DataFrame(cols, dtype=object)  # Python strings: pandas 3's Arrow strings would copy each JSON in and out


def _variants(frame: pd.DataFrame, archs: list[Architecture]) -> list[list[Architecture]]:
    """Per row, its architecture with each of its ``what_if`` changes applied (validated as a whole)."""
    if "what_if" not in frame:
        return [[] for _ in archs]
    out = []
    for i, (arch, raw) in enumerate(zip(archs, frame["what_if"], strict=True)):
        changes = (json.loads(raw) if raw.strip() else []) if isinstance(raw, str) else raw if isinstance(raw, list) else []
        if not isinstance(changes, list) or not all(isinstance(c, dict) for c in changes):
            raise ValueError(f"what_if[{i}]: expected a JSON list of field changes (objects)")
        try:
            base = arch.model_dump()
            out.append([parse_architecture({**base, **c}) for c in changes])
        except (ValueError, UserError) as exc:
            raise ValueError(f"what_if[{i}]: {str(exc).splitlines()[0]}") from None
    return out


def steps_param(steps: list[int] | None) -> str:
    return ",".join(str(int(s)) for s in steps) if steps else ""


def _steps(raw: str | None) -> list[int] | None:
    return [int(s) for s in (raw or "").split(",") if s.strip()] or None


def _frame(model_input) -> pd.DataFrame:
    return model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)


def _archs(frame: pd.DataFrame) -> list[Architecture]:
    if "architecture" not in frame:
        raise ValueError("input: expected a column 'architecture' (one JSON architecture per row; see arch_frame)")
    return [parse_architecture(json.loads(a) if isinstance(a, str) else a) for a in frame["architecture"]]


class PredictorModel(PythonModel):
    """pyfunc wrapper around a fitted ``ForecastEngine`` (the ``bundle`` artifact)."""

    # The model is logged with an explicit signature; MLflow's type-hint validation wrapper (and
    # its "add type hints" warning, printed by every CLI command importing this module) is skipped.
    _skip_type_hint_validation = True

    def load_context(self, context):
        self.bundle: ForecastEngine = joblib.load(context.artifacts["bundle"])

    def predict(self, context, model_input, params=None):
        p = {**PARAMS, **(params or {})}
        output = p["output"]
        if output not in OUTPUTS:
            raise ValueError(f"params.output: one of {', '.join(OUTPUTS)}, got {output!r}")
        frame = _frame(model_input)
        archs, steps = _archs(frame), _steps(p["steps"])
        if output == "rows":
            return pd.concat([forecast_frame(self.bundle.forecast(a, steps), i) for i, a in enumerate(archs)],
                             ignore_index=True)
        if output == "nowcast":
            from predictor.nowcast import nowcast

            if len(archs) != 1:
                raise ValueError("input: output 'nowcast' takes exactly one architecture")
            rows = json.loads(p["observations"] or "[]")
            return pd.DataFrame({"forecast": [nowcast(self.bundle, archs[0], rows, steps=steps).model_dump_json()]}, dtype=object)
        variants = _variants(frame, archs)
        ends = iter(self.bundle.end_intervals_many([v for vs in variants for v in vs]))
        return pd.DataFrame({"forecast": [self.bundle.forecast_arrays(a, steps).model_dump_json() for a in archs],
                             "what_if": [WHAT_IF_ENDS.dump_json([next(ends) for _ in vs]).decode() for vs in variants]},
                            dtype=object)


def forecast_frame(fc: Forecast, index: int = 0) -> pd.DataFrame:
    rows = []
    for lf in fc.layers:
        r = {"arch_index": index, "layer": lf.layer, "trajectory_class": lf.trajectory_class, "massive": lf.massive,
             "p_massive": lf.p_massive if lf.p_massive is not None else float("nan")}
        for k in ("ratio_end", "steady_state", "peak_abs", "t_emerge", "t_peak"):
            iv = getattr(lf, k)
            r[k] = iv.value if iv else float("nan")
            r[f"{k}_lo"] = iv.lo if iv else float("nan")
            r[f"{k}_hi"] = iv.hi if iv else float("nan")
        r["trajectory"] = json.dumps([[p.step, p.value] for p in lf.ratio_trajectory])
        r["n_applicability_warnings"] = len(fc.applicability)
        rows.append(r)
    return pd.DataFrame(rows)

