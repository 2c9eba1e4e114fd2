"""Output schemas of a forecast (pydantic), and the one check of requested trajectory steps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ApplicabilityWarning", "ClassOutlook", "EmergenceArrays", "Forecast", "ForecastArrays", "Interval", "IntervalArrays",
    "LayerForecast", "LayerNowcast", "MAX_STEP", "MAX_STEPS", "NextCheckpoint", "NowcastInfo",
    "ObservedPoint", "Scenario", "TrajectoryArrays", "ValueRange", "parse_steps",
]

MAX_STEPS = 512  # requested trajectory steps per forecast
MAX_STEP = 100_000_000


def parse_steps(steps: Sequence[int] | None, field: str = "steps") -> list[int] | None:
    """Requested trajectory steps, sorted and unique (None: the default log-spaced steps). The API's
    body and query, the CLI and the pyfunc all check steps here."""
    if steps is None:
        return None
    if not steps:
        raise ValueError(f"{field}: must not be empty (omit it for the default log-spaced steps)")
    if len(steps) > MAX_STEPS:
        raise ValueError(f"{field}: at most {MAX_STEPS} steps")
    if any(isinstance(s, bool) or not 0 <= s <= MAX_STEP for s in steps):
        raise ValueError(f"{field}: integers in [0, {MAX_STEP}]")
    return sorted({int(s) for s in steps})


class Interval(BaseModel):
    """A point prediction with an interval (grouped-CV residual quantiles, nominal 90 %)."""

    model_config = ConfigDict(extra="forbid")

    value: float
    lo: float
    hi: float


class EmergenceInterval(Interval):
    """t_emerge: an interval of steps whose ends may lie after the planned end (the curve continued at the schedule's
    last learning rate, up to ten plans; an end beyond that is given as ten plans: read "later than")."""

    value_after_plan: bool = Field(default=False, description="The point value lies after the planned end.")
    hi_after_plan: bool = Field(default=False, description="The interval's upper end lies after the planned end.")


class IntervalArrays(BaseModel):
    """One interval per layer, as three arrays (what-if effects read them as arrays)."""

    model_config = ConfigDict(extra="forbid")

    value: list[float]
    lo: list[float]
    hi: list[float]

    def at(self, i: int) -> Interval:
        # validated, not constructed: pydantic-core checks three floats in about half the time model_construct takes
        return Interval(value=self.value[i], lo=self.lo[i], hi=self.hi[i])

    def dicts(self) -> list[dict]:
        """Per layer, the ``Interval`` as plain data."""
        return [{"value": v, "lo": lo, "hi": hi} for v, lo, hi in zip(self.value, self.lo, self.hi, strict=True)]

    def largest(self) -> Interval:
        """The interval of the layer with the largest point value (the first such layer)."""
        return self.at(self.value.index(max(self.value)))


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
    t_emerge: EmergenceInterval | None = Field(
        default=None, description="First step with half of the rise from f(0) to the steady state done (independent of "
        "where the plan stops), with its 90 % interval; any end may lie after the planned end (value_after_plan, "
        "hi_after_plan: the curve continued at the schedule's last learning rate, up to ten plans; an end beyond that "
        "is given as ten plans). None only where the ratio does not rise. See p_emerge_within_plan.")
    p_emerge_within_plan: float | None = Field(default=None, ge=0.0, le=1.0, description="Probability that the layer "
                                               "emerges (t_emerge) before the planned end, from the clock's uncertainty; "
                                               "0 where the forecast ratio does not rise.")
    trajectory_class: str = Field(description="log_increase (the point forecast still rising over the plan's last "
                                  "doubling) | plateau. The forecast curve rises monotonically, so it never peaks inside "
                                  "the plan: the chance of a peak and decline is class_probabilities' early_peak.")
    class_probabilities: dict[str, float] | None = Field(
        default=None, description="Probability of each trajectory class (predictor/trajectory.py): plateau (rise to a "
        "steady state), early_peak (rise, peak, decline towards a lower steady state), growth (keeps rising). A forecast: "
        "the evidence's frequency at this depth; a nowcast: updated by how well each class explains the run's points.")
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


class OptionalIntervalArrays(BaseModel):
    """``IntervalArrays`` where a layer may have no value (``None`` in all three: e.g. no emergence)."""

    model_config = ConfigDict(extra="forbid")

    value: list[float | None]
    lo: list[float | None]
    hi: list[float | None]

    def at(self, i: int) -> Interval | None:
        return None if self.value[i] is None else Interval(value=self.value[i], lo=self.lo[i], hi=self.hi[i])

    def dicts(self) -> list[dict | None]:
        return [None if v is None else {"value": v, "lo": lo, "hi": hi}
                for v, lo, hi in zip(self.value, self.lo, self.hi, strict=True)]


class EmergenceArrays(OptionalIntervalArrays):
    """t_emerge per layer (``EmergenceInterval``): the flags say which ends lie after the planned end."""

    value_after_plan: list[bool] | None = None
    hi_after_plan: list[bool] | None = None

    def _flags(self, i: int) -> dict[str, bool]:
        return {"value_after_plan": bool(self.value_after_plan[i]) if self.value_after_plan else False,
                "hi_after_plan": bool(self.hi_after_plan[i]) if self.hi_after_plan else False}

    def at(self, i: int) -> EmergenceInterval | None:
        return None if self.value[i] is None else EmergenceInterval(value=self.value[i], lo=self.lo[i], hi=self.hi[i],
                                                                     **self._flags(i))

    def dicts(self) -> list[dict | None]:
        return [None if v is None else {"value": v, "lo": lo, "hi": hi, **self._flags(i)}
                for i, (v, lo, hi) in enumerate(zip(self.value, self.lo, self.hi, strict=True))]


class TrajectoryArrays(BaseModel):
    """Every layer's ratio trajectory at the same steps: value, lo and hi as layer x step matrices."""

    model_config = ConfigDict(extra="forbid")

    steps: list[int]
    value: list[list[float]]
    lo: list[list[float]]
    hi: list[list[float]]


class ForecastArrays(BaseModel):
    """A ``Forecast`` with its per-layer values as arrays: what the registered model returns.

    The per-point ``Forecast`` of 24 layers is ~900 objects; this is a dozen arrays, cheap to write,
    read and compute on. ``layer_dicts`` gives the layers in ``LayerForecast``'s shape as plain data
    (what an answer writes), ``to_forecast`` the ``Forecast`` itself, ``from_forecast`` the way back.
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    predictor_name: str
    predictor_version: str | None = None
    predictor_alias: str | None = None
    architecture: str | None = None
    t_end: int
    trajectory: TrajectoryArrays
    params: dict[str, list[float]] = Field(description="LayerForecast.params, one list per parameter.")
    t_emerge: EmergenceArrays
    p_emerge_within_plan: list[float | None] | None = None
    trajectory_class: list[str]
    class_probabilities: list[dict[str, float]] | None = None
    ratio_end: IntervalArrays
    steady_state: IntervalArrays
    peak_abs: IntervalArrays
    massive: list[bool]
    p_massive: list[float | None]
    applicability: list[ApplicabilityWarning] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    protocol: str = "seq_mean"
    unpredictable: list[str] = Field(default_factory=list)
    worst_case_shift: dict[str, list[float]] | None = Field(
        default=None, description="quantity (abs, ratio) -> [mean, extra sd] (log10) from this protocol's level to "
        "corpus_max's (what moves a nowcast's update to the worst case).")
    worst_case_arrays: dict | None = Field(
        default=None, description="trajectory, ratio_end, steady_state, peak_abs forecast directly in corpus_max "
        "(None: this forecast is corpus_max, or an update that moves by worst_case_shift).")
    lineage: dict | None = Field(default=None, description="predictor.response.LineageInfo as plain data.")

    @property
    def n_layers(self) -> int:
        return len(self.trajectory_class)

    def worst_case(self) -> ForecastArrays:
        """The same forecast in the worst-case protocol (corpus_max): forecast directly where the engine made it
        (``worst_case_arrays``: every door gets the same precision answer whatever protocol it shows), else every
        magnitude moved by ``worst_case_shift`` (a nowcast's update). Itself when already corpus_max."""
        if self.protocol == "corpus_max":
            return self
        if self.worst_case_arrays:
            w = self.worst_case_arrays
            return self.model_copy(update={
                "protocol": "corpus_max", "trajectory": TrajectoryArrays.model_construct(**w["trajectory"]),
                **{k: IntervalArrays.model_construct(**w[k]) for k in ("ratio_end", "steady_state", "peak_abs")}})
        shift = self.worst_case_shift
        if not shift:
            return self
        (ma, sa), (mr, sr) = shift["abs"], shift["ratio"]

        def moved(iv, m: float, s: float):
            v, lo, hi = (np.log10(np.maximum(np.asarray(x, float), 1e-300)) for x in (iv.value, iv.lo, iv.hi))
            half = np.sqrt(((hi - lo) / 2) ** 2 + (Z90 * s) ** 2)
            return {"value": (10 ** (v + m)).tolist(), "lo": (10 ** (v + m - half)).tolist(), "hi": (10 ** (v + m + half)).tolist()}

        tr = self.trajectory
        rows = [moved(IntervalArrays.model_construct(value=v, lo=lo, hi=hi), mr, sr)
                for v, lo, hi in zip(tr.value, tr.lo, tr.hi, strict=True)]
        traj = TrajectoryArrays.model_construct(steps=tr.steps, value=[r["value"] for r in rows], lo=[r["lo"] for r in rows],
                                                hi=[r["hi"] for r in rows])
        return self.model_copy(update={
            "protocol": "corpus_max", "trajectory": traj,
            "peak_abs": IntervalArrays.model_construct(**moved(self.peak_abs, ma, sa)),
            "ratio_end": IntervalArrays.model_construct(**moved(self.ratio_end, mr, sr)),
            "steady_state": IntervalArrays.model_construct(**moved(self.steady_state, mr, sr))})

    def layer_dicts(self, trajectory: bool = True) -> list[dict]:
        """The layers as plain data in ``LayerForecast``'s shape and field order; without ``trajectory`` (the compact
        answer) no per-step points and no curve parameters are built (empty)."""
        tr, steps = self.trajectory, self.trajectory.steps
        names = list(self.params) if trajectory else []
        params = list(zip(*self.params.values(), strict=True)) if names else [()] * self.n_layers
        emerge = self.t_emerge.dicts()
        ratio_end, steady, peak_abs = self.ratio_end.dicts(), self.steady_state.dicts(), self.peak_abs.dicts()
        n = self.n_layers
        p_emerge = self.p_emerge_within_plan or [None] * n
        probs = self.class_probabilities or [None] * n
        classes, massive, p_massive = self.trajectory_class, self.massive, self.p_massive
        return [
            {"layer": i,
             "ratio_trajectory": [{"step": s, "value": v, "lo": lo, "hi": hi}
                                  for s, v, lo, hi in zip(steps, tr.value[i], tr.lo[i], tr.hi[i], strict=True)] if trajectory else [],
             "params": dict(zip(names, params[i], strict=True)), "t_emerge": emerge[i],
             "p_emerge_within_plan": p_emerge[i], "trajectory_class": classes[i], "class_probabilities": probs[i],
             "ratio_end": ratio_end[i], "steady_state": steady[i], "peak_abs": peak_abs[i], "massive": massive[i],
             "p_massive": p_massive[i]}
            for i in range(n)
        ]

    def to_forecast(self) -> Forecast:
        head = self.model_dump(exclude={*_PER_LAYER, "worst_case_shift", "worst_case_arrays", "lineage"})
        return Forecast.model_validate({**head, "layers": self.layer_dicts()})

    @classmethod
    def from_forecast(cls, fc: Forecast) -> ForecastArrays:
        """The arrays of a forecast whose layers share their trajectory steps (every forecast of this project)."""
        ls = fc.layers
        steps = [p.step for p in ls[0].ratio_trajectory] if ls else []
        if any([p.step for p in lf.ratio_trajectory] != steps for lf in ls):
            raise ValueError("layers: ForecastArrays needs the same trajectory steps in every layer")

        def ivs(name: str) -> dict[str, list]:
            return {k: [getattr(getattr(lf, name), k) if getattr(lf, name) is not None else None for lf in ls]
                    for k in ("value", "lo", "hi")}

        return cls(
            **fc.model_dump(exclude={"layers"}),
            trajectory={"steps": steps, **{k: [[getattr(p, k) for p in lf.ratio_trajectory] for lf in ls]
                                           for k in ("value", "lo", "hi")}},
            params={k: [lf.params[k] for lf in ls] for k in (ls[0].params if ls else {})},
            **{k: ivs(k) for k in ("t_emerge", "ratio_end", "steady_state", "peak_abs")} | {"t_emerge": {
                **ivs("t_emerge"), **{f: [bool(getattr(lf.t_emerge, f, False)) for lf in ls]
                                      for f in ("value_after_plan", "hi_after_plan")}}},
            trajectory_class=[lf.trajectory_class for lf in ls], massive=[lf.massive for lf in ls],
            class_probabilities=None if any(lf.class_probabilities is None for lf in ls)
            else [lf.class_probabilities for lf in ls],
            p_massive=[lf.p_massive for lf in ls],
            p_emerge_within_plan=None if any(lf.p_emerge_within_plan is None for lf in ls)
            else [lf.p_emerge_within_plan for lf in ls],
        )


Z90 = 1.6448536269514722
_PER_LAYER = ("trajectory", "params", "t_emerge", "p_emerge_within_plan", "trajectory_class", "class_probabilities", "ratio_end", "steady_state",
              "peak_abs", "massive", "p_massive")


# ------------------------------------------------------------------------ nowcast (predictor.nowcast)
class ObservedPoint(BaseModel):
    """One observed (step, layer): measured ratio vs the prior and the updated forecast at that step."""

    model_config = ConfigDict(extra="forbid")

    step: int
    observed: float = Field(description="Measured top1/median (mean over samples).")
    observed_abs: float = Field(description="Measured top-1 |h| (mean over samples).")
    prior: float = Field(description="Prior (architecture) forecast of the ratio at this step.")
    prior_lo: float = Field(description="Prior 90 % band widened by the observation noise.")
    prior_hi: float
    updated: float = Field(description="Updated (nowcast) forecast of the ratio at this step.")
    updated_lo: float
    updated_hi: float
    z: float = Field(description="Signed deviation from the prior in units of its sd (|z| > 1.645: outside the band).")
    outside: bool = Field(description="Outside the prior band.")


class ClassOutlook(BaseModel):
    """One trajectory class at the next checkpoint: how probable it is now, and the ratio it expects there."""

    model_config = ConfigDict(extra="forbid")

    trajectory_class: str
    probability: float = Field(ge=0.0, le=1.0)
    ratio: Interval | None = Field(description="90 % predictive of the ratio measured at the next checkpoint if the "
                                   "layer follows this class (None: the class has no weight left).")


class ValueRange(BaseModel):
    """A range of the next checkpoint's ratio and the class that would then be the most probable."""

    model_config = ConfigDict(extra="forbid")

    trajectory_class: str
    ratio_lo: float | None = Field(description="None: no lower end.")
    ratio_hi: float | None = Field(description="None: no upper end.")
    probability: float = Field(description="The class's probability at the range's middle (its largest, for an open end).")


class Scenario(BaseModel):
    """A possible reading of the next checkpoint and the class probabilities it would leave."""

    model_config = ConfigDict(extra="forbid")

    quantile: float
    ratio: float
    class_probabilities: dict[str, float]


class NextCheckpoint(BaseModel):
    """What the next checkpoint would have to read to change the layer's class probabilities.

    Each class's predictive of the next measured ratio is summarised as a Gaussian in log10 (moment-matched);
    a reading v turns the probabilities into P(class) N(v; class mean, class sd), normalised."""

    model_config = ConfigDict(extra="forbid")

    step: int
    by_class: list[ClassOutlook]
    most_probable_if: list[ValueRange] = Field(description="Ranges of the next ratio and the class each makes the most probable.")
    if_reads: list[Scenario] = Field(description="The class probabilities after a reading at the 5 %, 50 % and 95 % points "
                                     "of the next checkpoint's predictive.")


class LayerNowcast(BaseModel):
    model_config = ConfigDict(extra="forbid")

    layer: int
    observed: list[ObservedPoint]
    deviation: float | None = Field(description="max |z| of this layer's observations against the prior (None: not observed).")
    n_outside: int = Field(description="Observations outside the prior band.")
    left_band: bool = Field(description="The latest observation of this layer is outside its prior band.")
    prior_ratio_end: float
    ratio_end: float = Field(description="Updated ratio at the planned end.")
    prior_class_probabilities: dict[str, float] | None = Field(
        default=None, description="Trajectory-class probabilities before the run's points (the evidence at this depth).")
    class_probabilities: dict[str, float] | None = Field(
        default=None, description="Trajectory-class probabilities given the run's points (predictor/trajectory.py).")
    next_checkpoint: NextCheckpoint | None = Field(default=None, description="What the next checkpoint would have to read "
                                                   "to change the class probabilities (None: the plan has ended).")
    recommend: str | None = Field(default=None, description="Which forecast of this layer to trust: 'nowcast' (its "
                                  "trajectory) or 'persistence' (the last observed value carried forward; a plateau-like "
                                  "layer, or a nowcast change the data cannot tell from none). None: not observed.")
    recommend_reason: str | None = Field(default=None, description="One line: why.")
    persistence_ratio_end: Interval | None = Field(default=None, description="The last observed ratio carried forward to "
                                                   "the planned end, with persistence's 90 % interval.")
    recommended_ratio_end: Interval | None = Field(default=None, description="The answer at the planned end: the nowcast's "
                                                   "ratio_end and 90 % interval, or where persistence is recommended the last "
                                                   "value with the hull of both intervals (never narrower than persistence's).")


class NowcastInfo(BaseModel):
    """What the update did (model-level)."""

    model_config = ConfigDict(extra="forbid")

    n_observations: int = Field(description="Observed (step, layer) points after averaging samples.")
    n_rows: int
    steps: list[int] = Field(description="Observed steps.")
    last_step: int | None
    deviation: float | None = Field(description="max over layers of the layer deviation (|z|).")
    left_band: bool = Field(description="Some layer's latest observation is outside its prior band.")
    layers_left: list[int]
    log10_tau_e_prior: list[float] = Field(description="[mean, sd]")
    log10_tau_e_posterior: list[float] = Field(description="[mean, sd]")
    noise: dict[str, float] = Field(description="Observation noise (log10): white probe noise, correlated model misfit "
                                    "and its correlation length in decades of steps.")
    method: str
