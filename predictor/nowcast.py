"""Nowcast: update an architecture forecast (the prior) with a training run's own checkpoints.

The forecast engine (``predictor.engine``) models layer l at step t, in log10 units, as

    y_l(t) = y0 + (Y_l - y0) H(tau(t) / tau_e),   H(u) = u^p / (1 + u^p)

with a Gaussian prior on the per-layer asymptotes and on log10 tau_e. The prior of the asymptotes
has the engine's own structure: ``Y_l = m_l + delta_M + delta_l`` where ``delta_M ~ N(0, M_sd^2)``
is the model-level error shared by every layer (the magnitude posterior) and
``delta_l ~ N(0, d_l^2)`` the depth-profile spread (so ``sd_l^2 = M_sd^2 + d_l^2``, exactly the
engine's ``layer_curves`` sd). log10 tau_e ~ N(lt, lt_sd^2) is shared by all layers.

Observed points are ``y_obs = y_l(t) + e`` (log10 of the mean over probe sequences, Eq. 8), where
the error ``e`` of one layer's series is Gaussian with two parts (``Noise``):

- probe noise, white: the spread of a checkpoint's top1/median over probe texts is a CV of 4-7 %,
  about 0.03 in log10 (``SIGMA_PROBE``);
- model misfit, correlated along the series: the Hill curve (one time scale and one exponent for
  all layers) misses the measured Pythia series by an in-sample RMS of 0.07-0.16 log10
  (``ForecastEngine.curves_[m].rmse``), and a layer that is above its curve stays above it for a
  while. The misfit is a Gaussian process in log10(step) with sd ``SIGMA_MISFIT = 0.20`` and
  correlation length ``MISFIT_LENGTH = 0.5`` decades. The sd is about twice the in-sample RMS
  because what matters is the error when extrapolating; both values were chosen on the
  leave-one-series-out backtest (``bench/nowcast_bench.py``; docs/NOWCAST.md lists the
  alternatives measured), so that backtest is not an independent check of them.

The Hill exponent p is integrated too: log p ~ N(log p_engine, s_p^2), s_p the spread of the
exponents fitted to the engine's checkpoint series (the engine itself fixes p).

Given (log10 tau_e, p) the model is linear-Gaussian in the asymptotes, so the posterior of every
``Y_l`` (with ``delta_M`` integrated out in closed form) and the marginal likelihood of
(tau_e, p) are exact. (log10 tau_e, p) is integrated on a grid (refined around the posterior).
Nothing is sampled and nothing is optimised: the answer is deterministic. tau_e and p are
informed by the ratio observations (top1/median) when there are any, else by top-1 |h|; the |h|
asymptotes are then updated given (tau_e, p) the same way (top1 and the ratio move together, so
using both for tau_e would count the same information twice).

The updated interval of a layer at step t is the 90 % interval of the posterior predictive of a
measured value: the mixture over the grid of Gaussians (asymptote uncertainty, plus the misfit
given the layer's observed residuals, plus probe noise). Near an observed checkpoint the forecast
keeps that checkpoint's deviation from the curve; far from it, it returns to the curve. With no
observations the nowcast *is* the prior forecast (the engine's ``forecast``), unchanged.

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
from predictor.schemas import Forecast, LayerNowcast, NowcastInfo, ObservedPoint
from predictor.timeline import hill

SIGMA_PROBE = 0.03  # log10: probe-text noise of top1/median (CV 4-7 %)
SIGMA_MISFIT = 0.20  # log10: misfit of the Hill curve when extrapolating (in-sample RMS 0.07-0.16), correlated
MISFIT_LENGTH = 0.5  # correlation length of the misfit, in log10 steps (decades)
SIGMA_OBS = math.hypot(SIGMA_PROBE, SIGMA_MISFIT)
MAX_OBSERVATIONS = 200_000
EARLY_STEP = 100  # points at steps <= this give a layer's start value y0 (the engine's fit_series convention)
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


class Noise:
    """Observation error of log10 values along one layer's series: white probe noise plus a model
    misfit that is correlated between nearby checkpoints (squared-exponential in log10 step)."""

    def __init__(self, probe: float = SIGMA_PROBE, misfit: float = SIGMA_MISFIT, length: float = MISFIT_LENGTH):
        self.probe, self.misfit, self.length = float(probe), float(misfit), float(length)

    @property
    def total(self) -> float:
        return math.hypot(self.probe, self.misfit)

    def cross(self, s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
        """Covariance of the misfit between steps ``s1`` and ``s2`` (no white part)."""
        x1 = np.log10(np.maximum(np.asarray(s1, float), 1.0))
        x2 = np.log10(np.maximum(np.asarray(s2, float), 1.0))
        if self.length <= 0:
            return self.misfit**2 * (x1[:, None] == x2[None, :])
        return self.misfit**2 * np.exp(-0.5 * ((x1[:, None] - x2[None, :]) / self.length) ** 2)

    def cov(self, steps: np.ndarray) -> np.ndarray:
        return self.cross(steps, steps) + self.probe**2 * np.eye(len(steps))


@dataclass
class _Series:
    """One layer's observed series of one quantity, whitened by its noise covariance."""

    steps: np.ndarray
    dy: np.ndarray  # y - y0
    chol: np.ndarray  # lower Cholesky factor of the noise covariance
    dy_w: np.ndarray  # chol^-1 dy


class Posterior:
    """Exact posterior of (Y_l per layer and quantity | log10 tau_e, p) and a grid over (log10 tau_e, p)."""

    def __init__(self, engine: ForecastEngine, arch: Architecture, obs: pd.DataFrame, noise: Noise | None = None,
                 prior: bool = True, protocol: str | None = None, vary_p: bool = True):
        self.engine, self.arch, self.obs = engine, arch, obs
        self.noise = noise or Noise()
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
        self.y0 = {q: self._start(q) for q in QUANTITIES}
        self.series = {q: self._series(q) for q in QUANTITIES}
        self._fit()

    # -- helpers
    def _start(self, q: str) -> np.ndarray:
        """Per-layer start value y0: the mean of the layer's points at steps <= min(EARLY_STEP, 1 % of the
        plan) when it has any (as the engine does when it fits a checkpoint series), else the engine's default."""
        y0 = np.full(self.arch.n_layers, Y0_DEFAULT[q])
        col = f"y_{q}"
        if len(self.obs):
            limit = min(EARLY_STEP, 0.01 * self.t_end)
            early = self.obs[(self.obs["step"] <= limit) & self.obs[col].notna()]
            for layer, v in early.groupby("layer")[col].mean().items():
                y0[int(layer)] = float(v)
        return y0

    def _series(self, q: str) -> dict[int, _Series]:
        from scipy.linalg import cholesky, solve_triangular

        col = f"y_{q}"
        out: dict[int, _Series] = {}
        if not len(self.obs):
            return out
        sub = self.obs[self.obs[col].notna()]
        for layer, g in sub.groupby("layer"):
            g = g.sort_values("step")
            steps = g["step"].to_numpy(float)
            dy = g[col].to_numpy(float) - self.y0[q][int(layer)]
            chol = cholesky(self.noise.cov(steps), lower=True)
            out[int(layer)] = _Series(steps, dy, chol, solve_triangular(chol, dy, lower=True))
        return out

    def _h(self, steps: np.ndarray, lt: np.ndarray, p: np.ndarray) -> np.ndarray:
        """H at ``steps`` for every grid point (log10 tau_e, p): (G, T)."""
        tau = self.tl(np.asarray(steps, float))
        with np.errstate(divide="ignore"):
            log_u = np.log(np.maximum(tau, 0.0))[None, :] - math.log(10.0) * lt[:, None]
        return expit(p[:, None] * log_u)  # u^p / (1 + u^p) without overflow

    def _stats(self, q: str, lt: np.ndarray, p: np.ndarray):
        """Per layer and grid point, in the whitened metric: a = h'h, b = h'r, rr = r'r, with r the residual
        of the observations from the prior-mean curve."""
        from scipy.linalg import solve_triangular

        L, G = self.arch.n_layers, len(lt)
        a, b, rr = np.zeros((L, G)), np.zeros((L, G)), np.zeros((L, G))
        m = self.q[q].m
        for layer, s in self.series[q].items():
            hw = solve_triangular(s.chol, self._h(s.steps, lt, p).T, lower=True)  # (n, G)
            rw = s.dy_w[:, None] - (m[layer] - self.y0[q][layer]) * hw
            a[layer], b[layer], rr[layer] = (hw * hw).sum(axis=0), (hw * rw).sum(axis=0), (rw * rw).sum(axis=0)
        return a, b, rr

    def _update(self, q: str, lt: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Conjugate update of the asymptotes (shared term integrated out) per grid point; returns the
        log marginal likelihood of the observations of ``q`` per grid point."""
        Q = self.q[q]
        a, b, rr = self._stats(q, lt, p)
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
        return loglik  # up to a constant (the noise determinants do not depend on the grid)

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

    def predictive(self, q: str, steps: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Posterior predictive of a measured value: mean, 5 % and 95 % quantiles (log10) at ``steps``, (L, T).

        Per grid point and layer: y* = y0 + c'(y - y0) + (Y - y0)(h* - c'h) + e*, with c = K^-1 k* the
        weights of the layer's observed residuals in the misfit at ``steps`` (near an observed checkpoint
        the forecast keeps that checkpoint's deviation from the curve; far away it returns to the curve)."""
        from scipy.linalg import cho_solve

        Q = self.q[q]
        y0 = self.y0[q][:, None]  # (L, 1)
        st = np.asarray(steps, float)
        Hs = self._h(st, self.grid, self.grid_p)  # (G, T)
        L, G, T = self.arch.n_layers, len(self.grid), len(st)
        base = np.broadcast_to(y0[:, :, None], (L, 1, T)).copy()
        adj = np.broadcast_to(Hs[None, :, :], (L, G, T)).copy()
        cond = np.full((L, 1, T), self.noise.total**2)
        for layer, s in self.series[q].items():
            ks = self.noise.cross(s.steps, st)  # (n, T)
            c = cho_solve((s.chol, True), ks)  # (n, T)
            base[layer, 0] = y0[layer, 0] + c.T @ s.dy
            adj[layer] = Hs - self._h(s.steps, self.grid, self.grid_p) @ c
            cond[layer, 0] = np.maximum(self.noise.total**2 - (ks * c).sum(axis=0), self.noise.probe**2)
        rise = Q.m[:, None] - y0 + Q.mu  # (L, G)
        mu = base + rise[:, :, None] * adj
        sd = np.sqrt(np.maximum(Q.var[:, :, None] * adj**2 + cond, 1e-12))
        mean = (self.w[None, :, None] * mu).sum(axis=1)
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
def prior_band(engine: ForecastEngine, arch: Architecture, steps: Sequence[float], noise: Noise | None = None,
               protocol: str | None = None) -> dict[str, np.ndarray]:
    """The engine's ratio band at ``steps`` widened in quadrature by the observation noise (log10)."""
    c = engine.layer_curves(arch, np.asarray(steps, float), protocol)["ratio"]
    mean = c["mean"]
    width = Z90 * (noise or Noise()).total
    return {"mean": mean, "lo": mean - np.hypot(mean - c["lo"], width), "hi": mean + np.hypot(c["hi"] - mean, width)}


def nowcast(engine: ForecastEngine, arch: Architecture | dict, observations: Sequence[Observation | dict] | pd.DataFrame,
            steps: list[int] | None = None, noise: Noise | None = None, name: str = "maforecast-predictor",
            version: str | None = None, alias: str | None = None, protocol: str | None = None) -> NowcastResult:
    """The prior forecast of ``arch`` updated by ``observations`` (validated rows or a frame with
    step, layer, top1, median[, sample]). No observations: the prior forecast itself."""
    arch = parse_architecture(arch)
    noise = noise or Noise()
    noise_info = {"probe": noise.probe, "misfit": noise.misfit, "length_decades": noise.length}
    n_rows = len(observations)
    obs = observation_frame(observations)
    prior_fc = engine.forecast(arch, steps, name=name, version=version, alias=alias, protocol=protocol)
    lt_prior = engine.tau_e(arch)
    if not len(obs):
        layers = [LayerNowcast(layer=lf.layer, observed=[], deviation=None, n_outside=0, left_band=False,
                               prior_ratio_end=lf.ratio_end.value, ratio_end=lf.ratio_end.value) for lf in prior_fc.layers]
        info = NowcastInfo(n_observations=0, n_rows=n_rows, steps=[], last_step=None, deviation=None, left_band=False,
                           layers_left=[], log10_tau_e_prior=list(lt_prior), log10_tau_e_posterior=list(lt_prior),
                           noise=noise_info, method="prior only (no observations)")
        return NowcastResult(forecast=prior_fc, layers=layers, info=info)

    post = Posterior(engine, arch, obs, noise=noise, protocol=protocol)
    updated = copy.copy(engine)
    updated.layer_curves = post.layer_curves  # the engine's forecast logic on the posterior curves
    updated.quality_ = {}  # observed points make every target data-driven
    updated.p_ = post.p_post
    fc = updated.forecast(arch, steps, name=name, version=version, alias=alias, protocol=protocol)
    obs_steps = np.array(sorted(obs["step"].unique()), float)
    band = prior_band(engine, arch, obs_steps, noise, protocol)
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
        noise=noise_info,
        method="exact Gaussian update of the per-layer asymptotes (model-level term integrated out) given (log10 tau_e, p), "
               "integrated over a grid of (log10 tau_e, p); predictive intervals are those of a measured value",
    )
    note = (f"nowcast: updated with {len(obs)} observed points ({n_rows} rows) at {len(steps_seen)} steps up to step "
            f"{steps_seen[-1]}; observation noise {noise.total:.2f} log10; log10 tau_e {lt_prior[0]:.2f}+-{lt_prior[1]:.2f} -> "
            f"{post.lt_post[0]:.2f}+-{post.lt_post[1]:.2f}")
    fc = fc.model_copy(update={"notes": [*fc.notes, note]})
    return NowcastResult(forecast=fc, layers=layers, info=info)
