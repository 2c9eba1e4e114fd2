"""The registered model's Python side: architectures in, per-layer forecast rows out.

Kept apart from ``registry`` so that the logged model needs only this module, the engine and
their schemas (``code_paths``: ``predictor/`` and ``maforecast/`` travel with every version), not
the training, tracking or settings code: a registered version loads in a process where the
project is not installed.
"""

from __future__ import annotations

import json
import math

import joblib
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from predictor.architecture import Architecture, parse_architecture
from predictor.engine import ForecastEngine
from predictor.schemas import Forecast

ARCH_COLUMNS = tuple(Architecture.model_fields)


def arch_frame(archs: list[Architecture]) -> pd.DataFrame:
    """Architectures as a pyfunc input frame (every field concrete so the signature is complete)."""
    recs = []
    for a in archs:
        d = a.model_dump()
        d.update(
            name=a.label(), n_kv_heads=a.kv_heads, head_dim=a.head_width, total_steps=a.planned_steps,
            training_tokens=a.planned_tokens, total_params_B=a.n_params() / 1e9,
            rope_theta=a.rope_theta or 0.0, init_std=a.init_std or 0.0,
        )
        recs.append(d)
    return pd.DataFrame(recs, columns=list(ARCH_COLUMNS))


def _arch_from_record(rec: dict) -> Architecture:
    clean = {}
    for k, v in rec.items():
        if k not in ARCH_COLUMNS or v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        clean[k] = v.item() if isinstance(v, np.generic) else v
    if clean.get("rope_theta") == 0.0:
        clean["rope_theta"] = None
    if clean.get("init_std") == 0.0:
        clean["init_std"] = None
    if clean.get("total_steps") is not None and clean.get("training_tokens") is not None:
        clean.pop("training_tokens")  # steps win; tokens were derived from them
    return parse_architecture(clean)


class PredictorModel(PythonModel):
    """pyfunc wrapper: architectures (one per row) -> per-layer forecast summary rows."""

    # The model is logged with an explicit signature; MLflow's type-hint validation wrapper (and
    # its "add type hints" warning, printed by every CLI command importing this module) is skipped.
    _skip_type_hint_validation = True

    def load_context(self, context):
        self.bundle: ForecastEngine = joblib.load(context.artifacts["bundle"])

    def predict(self, context, model_input, params=None):
        frames = []
        for i, rec in enumerate(pd.DataFrame(model_input).to_dict("records")):
            fc = self.bundle.forecast(_arch_from_record(rec))
            frames.append(forecast_frame(fc, i))
        return pd.concat(frames, ignore_index=True)


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


