"""Output schemas of a forecast (pydantic), shared by predictor and service."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class Interval(BaseModel):
    """A point prediction with an interval (grouped-CV residual quantiles, nominal 90 %)."""

    model_config = ConfigDict(extra="forbid")

    value: float
    lo: float
    hi: float


class IntervalArrays(BaseModel):
    """One interval per layer, as three arrays (what-if effects read them as arrays)."""

    model_config = ConfigDict(extra="forbid")

    value: list[float]
    lo: list[float]
    hi: list[float]

    def at(self, i: int) -> Interval:
        return Interval(value=self.value[i], lo=self.lo[i], hi=self.hi[i])

    def largest(self) -> Interval:
        """The interval of the layer with the largest point value."""
        return self.at(max(range(len(self.value)), key=self.value.__getitem__))


class EndIntervals(BaseModel):
    """Per layer, peak |a| and ratio at the planned end of one what-if variant (the pyfunc's ``what_if`` output)."""

    model_config = ConfigDict(extra="forbid")

    peak_abs: IntervalArrays
    ratio_end: IntervalArrays


WHAT_IF_ENDS = TypeAdapter(list[EndIntervals])  # the pyfunc's ``what_if`` output column, one JSON array per row


class TrajectoryPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step: int = Field(ge=0)
    value: float = Field(description="Predicted ratio top1/median at this step.")
    lo: float
    hi: float


class LayerForecast(BaseModel):
    model_config = ConfigDict(extra="forbid")

    layer: int = Field(ge=0, description="Decoder layer index (0-based); output of that layer.")
    ratio_trajectory: list[TrajectoryPoint]
    params: dict[str, float] = Field(
        description="Parameters of the forecast curve y(t) = y0 + (Y_inf - y0) H(tau(t)/tau_e) in log10 units "
        "(predictor/engine.py): y0, Y_inf (ratio), Y_inf_abs, log10_tau_e, p, and the plan exponents kappa, beta."
    )
    t_emerge: Interval | None = Field(default=None, description="Step at which half of the rise is done.")
    t_peak: Interval | None = Field(default=None, description="Step of the ratio peak (early_peak layers only).")
    trajectory_class: str = Field(description="log_increase (still rising at the planned end) | plateau | early_peak")
    ratio_end: Interval = Field(description="Ratio top1/median at the end of planned training.")
    steady_state: Interval = Field(description="Ratio reached at steady state (fully trained).")
    peak_abs: Interval = Field(description="Predicted peak |a| of the layer output over training.")
    massive: bool = Field(description="|a| > 100 and > 1000 x median (Sun et al.) on the point predictions.")
    p_massive: float | None = Field(default=None, ge=0.0, le=1.0, description="Probability that the layer is massive (Sun et al.) by the planned end.")


class ApplicabilityWarning(BaseModel):
    """An input field outside what the predictor saw in training."""

    model_config = ConfigDict(extra="forbid")

    field: str
    value: float | str | bool | None
    train_min: float | None = None
    train_max: float | None = None
    # [] rather than None for numeric fields: BentoML's client cannot decode a null array
    seen: list[str] = Field(default_factory=list, description="Values seen in training (categorical fields).")
    scope: str = Field(default="all", description="'trajectory' (curve targets) or 'steady_state' (all rows).")
    message: str


class Forecast(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    predictor_name: str
    predictor_version: str | None = None
    predictor_alias: str | None = None
    architecture: str | None = Field(default=None, description="Label of the architecture forecast.")
    t_end: int = Field(description="Planned training steps the trajectory runs to.")
    layers: list[LayerForecast]
    applicability: list[ApplicabilityWarning] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    protocol: str = Field(default="seq_mean", description="Measurement protocol the magnitudes refer to (maforecast.tables.PROTOCOLS).")
    unpredictable: list[str] = Field(default_factory=list, description="Targets not predictable from the data held (shown as the constant).")
