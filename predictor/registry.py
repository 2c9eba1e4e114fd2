"""Registry API (contract for the service): load a registered predictor and forecast with it.

Full implementation follows; names and signatures here are stable.
"""

from __future__ import annotations

from maforecast.errors import UserError


class NoChampionError(UserError):
    """No model version carries the requested alias (or the registered model does not exist)."""


def load_forecaster(model_uri: str | None = None, tracking_uri: str | None = None):
    raise NoChampionError("no predictor is registered yet: run `maforecast bootstrap` (or `maforecast train && maforecast promote`)")
