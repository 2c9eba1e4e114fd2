"""Nowcast: update an architecture forecast (the prior) with a training run's own checkpoints.

The forecast engine (``predictor.engine``) models layer l at step t, in log10 units, as

    y_l(t) = y0 + (Y_l - y0) H(tau(t) / tau_e),   H(u) = u^p / (1 + u^p)

with a Gaussian prior on the per-layer asymptotes and on log10 tau_e. The prior of the asymptotes
has the engine's own structure: ``Y_l = m_l + delta_M + delta_l`` where ``delta_M ~ N(0, M_sd^2)``
is the model-level error shared by every layer (the magnitude posterior) and
``delta_l ~ N(0, d_l^2)`` the depth-profile spread (so ``sd_l^2 = M_sd^2 + d_l^2``, exactly the
engine's ``layer_curves`` sd). log10 tau_e ~ N(lt, lt_sd^2) is shared by all layers.

Observed points are ``y_obs = y_l(t) + e`` with ``e ~ N(0, SIGMA_OBS^2)``, independent:

- probe noise: the spread of a checkpoint's top1/median over probe texts is a CV of 4-7 %, about
  0.03 in log10 (``SIGMA_PROBE``);
- model misfit: the Hill curve with one shared exponent misses the measured Pythia series by an
  RMS of 0.07-0.16 log10 (``ForecastEngine.curves_[m].rmse``); ``SIGMA_MISFIT = 0.10``.

Given log10 tau_e the model is linear-Gaussian in the asymptotes, so the posterior of every
``Y_l`` (with ``delta_M`` integrated out in closed form) and the marginal likelihood of tau_e are
exact. log10 tau_e is integrated on a grid (refined around its posterior). Nothing is sampled and
nothing is optimised: the answer is deterministic. tau_e is informed by the ratio observations
(top1/median) when there are any, else by top-1 |h|; the |h| asymptotes are then updated given
tau_e the same way (top1 and the ratio move together, so using both for tau_e would count the same
information twice).

The updated interval of a layer at step t is the 90 % interval of the posterior predictive of a
measured value: the mixture over the tau_e grid of Gaussians (asymptote uncertainty times H, plus
the observation noise). With no observations the nowcast *is* the prior forecast (the engine's
``forecast``), unchanged.

Deviation: each observation is compared with the prior predictive (the engine's 90 % band widened
in quadrature by the observation noise): ``z`` is its signed distance from the prior mean in units
of that band's half-width / 1.645. A layer has ``left_band`` when its latest observation is outside
that band (|z| > 1.645); the model has left its band when any layer has.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError
from scipy.special import expit, ndtr

from predictor.architecture import Architecture, parse_architecture
from predictor.engine import QUANTITIES, Y0_DEFAULT, Z90, ForecastEngine, arch_timeline
from predictor.schemas import Forecast
from predictor.timeline import hill

SIGMA_PROBE = 0.03  # log10: probe-text noise of top1/median (CV 4-7 %)
SIGMA_MISFIT = 0.10  # log10: Hill curve vs measured Pythia series (fit RMS 0.07-0.16)
SIGMA_OBS = math.hypot(SIGMA_PROBE, SIGMA_MISFIT)
MAX_OBSERVATIONS = 200_000
GRID = 81  # log10 tau_e grid points (each pass)
P_GRID = 13  # Hill exponent grid points
FLAT_SD = 10.0  # "no prior" (data-only) sd of the asymptotes, log10


# ------------------------------------------------------------------------ request schema
class Observation(BaseModel):
    """One measured (checkpoint, layer[, probe sequence]) row: the stats-table columns."""

    model_config = ConfigDict(extra="forbid")

    step: int = Field(ge=0, le=100_000_000, description="Training step of the checkpoint.")
    layer: int = Field(ge=0, le=4095, description="Decoder layer index (0-based), < n_layers.")
    top1: float = Field(ge=0.0, allow_inf_nan=False, description="Largest |h| of the layer output.")
    median: float = Field(gt=0.0, allow_inf_nan=False, description="Median |h| of the layer output (> 0).")
    top2: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    top3: float | None = Field(default=None, ge=0.0, allow_inf_nan=False)
    sample: int | None = Field(default=None, ge=0, description="Probe sequence index; rows of one (step, layer) are averaged (Eq. 8).")


def _row_error(i: int, field: str, message: str, value) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError("observation", message), loc=("observations", i, field), input=value)


class NowcastRequest(BaseModel):
    """``POST /nowcast``: the architecture (the ``/predict`` schema) and the run's measured points."""

    model_config = ConfigDict(extra="forbid")

    architecture: Architecture
    observations: list[Observation] = Field(min_length=1, max_length=MAX_OBSERVATIONS,
                                            description="Measured rows of the run (at least one).")
    steps: list[int] | None = Field(default=None, max_length=512, description="Trajectory steps (default: log-spaced).")

    @model_validator(mode="after")
    def _rows(self) -> NowcastRequest:
        """Checks that need the architecture or several rows; each error names observations.<row>.<field>."""
        errors = check_observations(self.observations, self.architecture)
        if errors:
            raise ValidationError.from_exception_data("NowcastRequest", errors)
        if self.steps is not None:
            if not self.steps or min(self.steps) < 0 or max(self.steps) > 100_000_000:
                raise ValueError("steps: 1 to 512 integers in [0, 100000000]")
            self.steps = sorted(set(self.steps))
        return self


def check_observations(rows: Sequence[Observation], arch: Architecture, limit: int = 20) -> list[InitErrorDetails]:
    """Row errors (at most ``limit``): layer beyond n_layers, step beyond the planned end, top1 < median,
    duplicate (step, layer, sample)."""
    errors: list[InitErrorDetails] = []
    seen: dict[tuple, int] = {}
    t_end = arch.planned_steps
    for i, o in enumerate(rows):
        if o.layer >= arch.n_layers:
            errors.append(_row_error(i, "layer", f"layer {o.layer} does not exist: the architecture has n_layers={arch.n_layers} "
                                     f"(layers 0..{arch.n_layers - 1})", o.layer))
        if o.step > t_end:
            errors.append(_row_error(i, "step", f"step {o.step} is beyond the planned end of training ({t_end} steps)", o.step))
        if o.top1 < o.median:
            errors.append(_row_error(i, "top1", f"top1 ({o.top1:g}) is below the median ({o.median:g}): top1 is the largest |h|",
                                     o.top1))
        key = (o.step, o.layer, o.sample)
        if key in seen:
            errors.append(_row_error(i, "sample", f"duplicate row: (step {o.step}, layer {o.layer}, sample {o.sample}) "
                                     f"is also row {seen[key]}", o.sample))
        else:
            seen[key] = i
        if len(errors) >= limit:
            break
    return errors


def observation_frame(rows: Sequence[Observation | dict] | pd.DataFrame) -> pd.DataFrame:
    """Per (step, layer): mean top1 and mean median over samples (Eq. 8), y_abs and y_ratio in log10."""
    if isinstance(rows, pd.DataFrame):
        df = rows.copy()
    else:
        df = pd.DataFrame([r.model_dump() if isinstance(r, BaseModel) else dict(r) for r in rows])
    if not len(df):
        return pd.DataFrame(columns=["step", "layer", "top1", "median", "n", "y_abs", "y_ratio"])
    g = df.groupby(["step", "layer"], as_index=False).agg(top1=("top1", "mean"), median=("median", "mean"),
                                                           n=("top1", "size"))
    with np.errstate(divide="ignore", invalid="ignore"):
        g["y_abs"] = np.log10(g["top1"].astype(float).where(g["top1"] > 0))
        g["y_ratio"] = np.log10((g["top1"] / g["median"]).astype(float).where(g["median"] > 0))
    g["step"] = g["step"].astype(int)
    g["layer"] = g["layer"].astype(int)
    return g.sort_values(["layer", "step"]).reset_index(drop=True)


# ------------------------------------------------------------------------ result schema
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


class LayerNowcast(BaseModel):
    model_config = ConfigDict(extra="forbid")

    layer: int
    observed: list[ObservedPoint]
    deviation: float | None = Field(description="max |z| of this layer's observations against the prior (None: not observed).")
    n_outside: int = Field(description="Observations outside the prior band.")
    left_band: bool = Field(description="The latest observation of this layer is outside its prior band.")
    prior_ratio_end: float
    ratio_end: float = Field(description="Updated ratio at the planned end.")


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
    sigma_obs: float = Field(description="Observation noise used (log10): probe noise + model misfit.")
    method: str


class NowcastResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    forecast: Forecast
    layers: list[LayerNowcast]
    info: NowcastInfo


# ------------------------------------------------------------------------ the update
@dataclass
class _Quantity:
    """Prior of one quantity's asymptotes, and their posterior per tau_e grid point."""

    m: np.ndarray  # (L,) prior mean of Y_l
    M_sd: float  # shared (model-level) sd
    d_sd: np.ndarray  # (L,) per-layer sd
    mu: np.ndarray | None = None  # (L, G) posterior mean of Y_l - m_l given the grid point
    var: np.ndarray | None = None  # (L, G) posterior variance


class Posterior:
    """Exact posterior of (Y_l per layer and quantity, log10 tau_e on a grid) given observations."""

    def __init__(self, engine: ForecastEngine, arch: Architecture, obs: pd.DataFrame, sigma: float = SIGMA_OBS,
                 prior: bool = True, protocol: str | None = None, vary_p: bool = True):
        self.engine, self.arch, self.obs, self.sigma = engine, arch, obs, float(sigma)
        self.protocol = protocol
        L = arch.n_layers
        lev = engine.level(arch, protocol)
        self.q: dict[str, _Quantity] = {}
        for q in QUANTITIES:
            M, M_sd = lev[q]
            d, d_sd = engine.profile_[q].predict(L)
            if prior:
                self.q[q] = _Quantity(M + d, float(M_sd), np.asarray(d_sd, float))
            else:
                self.q[q] = _Quantity(M + d, FLAT_SD, np.full(L, FLAT_SD))
        lt, lt_sd = engine.tau_e(arch)
        self.lt_prior = (float(lt), float(lt_sd) if prior else 3.0)
        self.p = float(engine.p_)
        self.logp_prior = (math.log(self.p), p_spread(engine) if prior else 1.0) if vary_p else (math.log(self.p), 0.0)
        self.t_end = int(arch.planned_steps)
        horizon = max(float(obs["step"].max()) if len(obs) else 0.0, float(self.t_end))
        self.tl = arch_timeline(arch, engine.effects_, horizon=horizon)
        self._fit()

    # -- helpers
    def _h(self, steps: np.ndarray, lt: np.ndarray, p: np.ndarray) -> np.ndarray:
        """H at ``steps`` for every grid point (log10 tau_e, p): (G, T)."""
        tau = self.tl(np.asarray(steps, float))
        with np.errstate(divide="ignore"):
            log_u = np.log(np.maximum(tau, 0.0))[None, :] - math.log(10.0) * lt[:, None]
        return expit(p[:, None] * log_u)  # u^p / (1 + u^p) without overflow

    def _stats(self, q: str, lt: np.ndarray, p: np.ndarray):
        """Per layer and grid point: a = sum h^2 / s^2, b = sum h r / s^2, rr = sum r^2 / s^2, n (counts)."""
        col = f"y_{q}"
        L, G = self.arch.n_layers, len(lt)
        a, b, rr, n = np.zeros((L, G)), np.zeros((L, G)), np.zeros((L, G)), np.zeros(L)
        sub = self.obs[self.obs[col].notna()] if len(self.obs) else self.obs
        if not len(sub):
            return a, b, rr, n
        y0 = Y0_DEFAULT[q]
        H = self._h(sub["step"].to_numpy(float), lt, p)  # (G, N)
        layer = sub["layer"].to_numpy(int)
        m = self.q[q].m[layer]
        r = sub[col].to_numpy(float)[None, :] - y0 - (m - y0)[None, :] * H  # residual vs the prior-mean curve
        s2 = self.sigma**2
        for arr, vals in ((a, H * H / s2), (b, H * r / s2), (rr, r * r / s2)):
            np.add.at(arr, layer, vals.T)  # arr: (L, G); vals.T: (N, G)
        n += np.bincount(layer, minlength=L)
        return a, b, rr, n

    def _update(self, q: str, lt: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Conjugate update of the asymptotes (shared term integrated out) per grid point; returns the
        log marginal likelihood of the observations of ``q`` per grid point."""
        Q = self.q[q]
        a, b, rr, n = self._stats(q, lt, p)
        d2 = (Q.d_sd**2)[:, None]
        M2 = Q.M_sd**2
        one = 1.0 + a * d2
        alpha, beta = a / one, b / one
        A, B = alpha.sum(axis=0), beta.sum(axis=0)  # (G,)
        k = a + 1.0 / d2
        # delta_M | data: N(mM, vM)
        PM = 1.0 / M2 + A
        mM, vM = B / PM, 1.0 / PM
        # u_l = delta_M + delta_l | data
        Q.mu = (b + mM[None, :] / d2) / k
        w = (1.0 / d2) / k
        Q.var = 1.0 / k + w * w * vM[None, :]
        loglik = (-0.5 * rr - 0.5 * np.log(one) + b * b / (2.0 * k)).sum(axis=0)
        loglik += -0.5 * np.log1p(A * M2) + B * B / (2.0 * PM)
        return loglik - 0.5 * n.sum() * math.log(2 * math.pi * self.sigma**2)

    def _weights(self, lt: np.ndarray, p: np.ndarray) -> np.ndarray:
        (lt0, lt_sd), (lp0, lp_sd) = self.lt_prior, self.logp_prior
        has_ratio = len(self.obs) and self.obs["y_ratio"].notna().any()
        lead = "ratio" if has_ratio else "abs"
        logp = -0.5 * ((lt - lt0) / lt_sd) ** 2 + self._update(lead, lt, p)
        if lp_sd > 0:
            logp += -0.5 * ((np.log(p) - lp0) / lp_sd) ** 2
        for q in QUANTITIES:
            if q != lead:
                self._update(q, lt, p)
        w = np.exp(logp - logp.max())
        return w / w.sum()

    def _grid(self, lt_lo: float, lt_hi: float) -> tuple[np.ndarray, np.ndarray]:
        lp0, lp_sd = self.logp_prior
        lps = np.linspace(lp0 - 3 * lp_sd, lp0 + 3 * lp_sd, P_GRID) if lp_sd > 0 else np.array([lp0])
        lt, lp = np.meshgrid(np.linspace(lt_lo, lt_hi, GRID), lps, indexing="ij")
        return lt.ravel(), np.exp(lp.ravel())

    def _fit(self) -> None:
        lt0, lt_sd = self.lt_prior
        lt, p = self._grid(lt0 - 5 * lt_sd, lt0 + 5 * lt_sd)
        w = self._weights(lt, p)
        mean = float(w @ lt)
        sd = float(np.sqrt(max(w @ (lt - mean) ** 2, 0.0)))
        step = 10 * lt_sd / (GRID - 1)
        if sd < 10 * step:  # the data pinned tau_e down: refine the grid around it
            lo = max(lt0 - 5 * lt_sd, mean - 8 * max(sd, 1e-4))
            hi = min(lt0 + 5 * lt_sd, mean + 8 * max(sd, 1e-4))
            lt, p = self._grid(lo, hi)
            w = self._weights(lt, p)
        keep = w > w.max() * 1e-8
        self.grid, self.grid_p = lt[keep], p[keep]
        self.w = w[keep] / w[keep].sum()
        for Q in self.q.values():
            Q.mu, Q.var = Q.mu[:, keep], Q.var[:, keep]
        m = float(self.w @ self.grid)
        self.lt_post = (m, float(np.sqrt(max(self.w @ (self.grid - m) ** 2, 0.0))))
        self.p_post = float(np.exp(self.w @ np.log(self.grid_p)))

    # -- predictions
    def asymptotes(self, q: str) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and sd of Y_l (mixture over the grid)."""
        Q = self.q[q]
        mean_g = Q.m[:, None] + Q.mu
        mean = mean_g @ self.w
        var = (Q.var + (mean_g - mean[:, None]) ** 2) @ self.w
        return mean, np.sqrt(var)

    def predictive(self, q: str, steps: Sequence[float], noise: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Posterior predictive mean, 5 % and 95 % quantiles (log10) at ``steps``: (L, T) each."""
        Q = self.q[q]
        y0 = Y0_DEFAULT[q]
        H = self._h(np.asarray(steps, float), self.grid, self.grid_p)  # (G, T)
        rise = (Q.m[:, None] - y0 + Q.mu)  # (L, G)
        mu = y0 + rise[:, :, None] * H[None, :, :]  # (L, G, T)
        var = Q.var[:, :, None] * H[None, :, :] ** 2 + (self.sigma**2 if noise else 0.0)
        sd = np.sqrt(np.maximum(var, 1e-12))
        w = self.w[None, :, None]
        mean = (w * mu).sum(axis=1)
        lo = _mixture_quantile(mu, sd, self.w, 0.05)
        hi = _mixture_quantile(mu, sd, self.w, 0.95)
        return mean, np.minimum(lo, mean), np.maximum(hi, mean)

    def layer_curves(self, arch: Architecture, steps: np.ndarray, protocol: str | None = None) -> dict:
        """Drop-in for ``ForecastEngine.layer_curves``: the posterior in the same layout."""
        tl = arch_timeline(arch, self.engine.effects_, horizon=max(float(np.max(steps)), arch.planned_steps))
        lt, lt_sd = self.lt_post
        out = {"timeline": tl, "log_tau_e": (lt, lt_sd), "h": hill(tl(steps) / 10**lt, self.p_post)}
        for q in QUANTITIES:
            Y, sd = self.asymptotes(q)
            mean, lo, hi = self.predictive(q, steps)
            out[q] = {"Y": Y, "sd": sd, "mean": mean, "lo": lo, "hi": hi}
        return out


def p_spread(engine: ForecastEngine) -> float:
    """sd of log p across the engine's fitted checkpoint series (the prior spread of the Hill exponent)."""
    ps = [f.p for f in getattr(engine, "curves_", {}).values()]
    return float(max(np.std(np.log(ps), ddof=1), 0.2)) if len(ps) >= 3 else 0.4


def _mixture_quantile(mu: np.ndarray, sd: np.ndarray, w: np.ndarray, p: float, iters: int = 48) -> np.ndarray:
    """Quantile of a Gaussian mixture along axis 1 of (L, G, T) by bisection (vectorised)."""
    lo = (mu - 6 * sd).min(axis=1)
    hi = (mu + 6 * sd).max(axis=1)
    wb = w[None, :, None]
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        cdf = (wb * ndtr((mid[:, None, :] - mu) / sd)).sum(axis=1)
        below = cdf < p
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return 0.5 * (lo + hi)


# ------------------------------------------------------------------------ public entry points
def prior_band(engine: ForecastEngine, arch: Architecture, steps: Sequence[float], sigma: float = SIGMA_OBS,
               protocol: str | None = None) -> dict[str, np.ndarray]:
    """The engine's ratio band at ``steps`` widened in quadrature by the observation noise (log10)."""
    c = engine.layer_curves(arch, np.asarray(steps, float), protocol)["ratio"]
    mean = c["mean"]
    noise = Z90 * sigma
    return {"mean": mean, "lo": mean - np.hypot(mean - c["lo"], noise), "hi": mean + np.hypot(c["hi"] - mean, noise)}


def nowcast(engine: ForecastEngine, arch: Architecture | dict, observations: Sequence[Observation | dict] | pd.DataFrame,
            steps: list[int] | None = None, sigma: float = SIGMA_OBS, name: str = "maforecast-predictor",
            version: str | None = None, alias: str | None = None, protocol: str | None = None) -> NowcastResult:
    """The prior forecast of ``arch`` updated by ``observations`` (validated rows or a frame with
    step, layer, top1, median[, sample]). No observations: the prior forecast itself."""
    arch = parse_architecture(arch)
    n_rows = len(observations)
    obs = observation_frame(observations)
    prior_fc = engine.forecast(arch, steps, name=name, version=version, alias=alias, protocol=protocol)
    lt_prior = engine.tau_e(arch)
    if not len(obs):
        layers = [LayerNowcast(layer=lf.layer, observed=[], deviation=None, n_outside=0, left_band=False,
                               prior_ratio_end=lf.ratio_end.value, ratio_end=lf.ratio_end.value) for lf in prior_fc.layers]
        info = NowcastInfo(n_observations=0, n_rows=n_rows, steps=[], last_step=None, deviation=None, left_band=False,
                           layers_left=[], log10_tau_e_prior=list(lt_prior), log10_tau_e_posterior=list(lt_prior),
                           sigma_obs=sigma, method="prior only (no observations)")
        return NowcastResult(forecast=prior_fc, layers=layers, info=info)

    post = Posterior(engine, arch, obs, sigma=sigma, protocol=protocol)
    updated = copy.copy(engine)
    updated.layer_curves = post.layer_curves  # the engine's forecast logic on the posterior curves
    updated.quality_ = {}  # observed points make every target data-driven
    updated.p_ = post.p_post
    fc = updated.forecast(arch, steps, name=name, version=version, alias=alias, protocol=protocol)
    obs_steps = np.array(sorted(obs["step"].unique()), float)
    band = prior_band(engine, arch, obs_steps, sigma, protocol)
    u_mean, u_lo, u_hi = post.predictive("ratio", obs_steps)
    col = {s: k for k, s in enumerate(obs_steps)}
    layers = []
    for lf, pf in zip(fc.layers, prior_fc.layers, strict=True):
        li = lf.layer
        rows = obs[(obs["layer"] == li) & obs["y_ratio"].notna()].sort_values("step")
        pts = []
        for r in rows.itertuples():
            k = col[float(r.step)]
            m, lo, hi = band["mean"][li, k], band["lo"][li, k], band["hi"][li, k]
            y = float(r.y_ratio)
            z = Z90 * (y - m) / (hi - m if y >= m else m - lo)
            pts.append(ObservedPoint(step=int(r.step), observed=10**y, observed_abs=float(r.top1), prior=10**m, prior_lo=10**lo,
                                     prior_hi=10**hi, updated=10 ** u_mean[li, k], updated_lo=10 ** u_lo[li, k],
                                     updated_hi=10 ** u_hi[li, k], z=float(z), outside=bool(abs(z) > Z90)))
        dev = max((abs(p.z) for p in pts), default=None)
        layers.append(LayerNowcast(layer=li, observed=pts, deviation=dev, n_outside=sum(p.outside for p in pts),
                                   left_band=bool(pts and pts[-1].outside), prior_ratio_end=pf.ratio_end.value,
                                   ratio_end=lf.ratio_end.value))
    left = [lyr.layer for lyr in layers if lyr.left_band]
    devs = [lyr.deviation for lyr in layers if lyr.deviation is not None]
    steps_seen = sorted(int(s) for s in obs["step"].unique())
    info = NowcastInfo(
        n_observations=len(obs), n_rows=n_rows, steps=steps_seen, last_step=steps_seen[-1], deviation=max(devs) if devs else None,
        left_band=bool(left), layers_left=left, log10_tau_e_prior=list(lt_prior), log10_tau_e_posterior=list(post.lt_post),
        sigma_obs=sigma,
        method="exact Gaussian update of the per-layer asymptotes (shared model-level term integrated out) on a grid over "
               "log10 tau_e; predictive intervals include the observation noise",
    )
    note = (f"nowcast: updated with {len(obs)} observed points ({n_rows} rows) at {len(steps_seen)} steps up to step "
            f"{steps_seen[-1]}; observation noise {sigma:.3f} log10; log10 tau_e {lt_prior[0]:.2f}+-{lt_prior[1]:.2f} -> "
            f"{post.lt_post[0]:.2f}+-{post.lt_post[1]:.2f}")
    fc = fc.model_copy(update={"notes": [*fc.notes, note]})
    return NowcastResult(forecast=fc, layers=layers, info=info)


def forecast_engine_of(forecaster) -> ForecastEngine:
    """The ``ForecastEngine`` behind a loaded forecaster (its ``bundle``), or one fitted on the bundled
    reference data when the loaded predictor is not an engine (v1 bundles)."""
    for obj in (forecaster, getattr(forecaster, "bundle", None)):
        if isinstance(obj, ForecastEngine):
            return obj
    return reference_engine()


_REFERENCE: list[ForecastEngine] = []


def reference_engine() -> ForecastEngine:
    """The engine fitted on the bundled reference data (once per process)."""
    if not _REFERENCE:
        from collector.reference import load_reference_stats
        from predictor.architecture import reference_architectures
        from predictor.evidence import build_evidence

        _REFERENCE.append(ForecastEngine().fit(build_evidence(load_reference_stats(), reference_architectures())))
    return _REFERENCE[0]
