"""``POST /nowcast``: the ``/predict`` answer of an architecture, updated by a run's measured checkpoints.

The request is ``predictor.nowcast.NowcastRequest`` (architecture + observation rows); the answer
is the ``/predict`` answer (summary, per-layer trajectories, precision risk, mitigations) computed
from the updated forecast, plus ``nowcast``: per layer the observed points against the prior and
the updated forecast, a deviation score and the ``left_band`` flag.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from predictor.nowcast import LayerNowcast, NowcastInfo, NowcastRequest
from predictor.schemas import ForecastArrays
from service.core import precision_risks, recommend
from service.schemas import PredictResponse

__all__ = ["NowcastRequest", "NowcastResponse", "answer_nowcast"]


class NowcastResponse(PredictResponse):
    """The ``/predict`` answer from the updated forecast, plus what the observations did."""

    nowcast: NowcastInfo
    nowcast_layers: list[LayerNowcast] = Field(description="Per layer: observed vs prior and updated forecast, "
                                               "deviation (max |z|), left_band.")


def answer_nowcast(engine: Any, request: NowcastRequest) -> NowcastResponse:
    """``engine``: the service's ``service.core.Engine``; the update runs inside the registered model
    (its pyfunc ``predict`` with ``output="nowcast"``)."""
    arch = request.architecture
    res = engine.forecaster.nowcast(arch, request.observations, steps=request.steps)
    fc = ForecastArrays.from_forecast(res.forecast)
    risks = precision_risks(fc, arch.precision_target)
    return NowcastResponse(**engine.answer_fields(arch, fc, risks, recommend(arch, fc, risks, engine.kb)),
                           nowcast=res.info, nowcast_layers=res.layers)
