"""Nowcast: update an architecture forecast (the prior) with a training run's own checkpoints.

The forecast engine (``predictor.engine``) models layer l at step t, in log10 units, as

    y_l(t) = y0 + (Y_l - y0) g(tau(t) / tau_e)

where g is one of the trajectory shapes of ``predictor.trajectory`` (a rise to a plateau, the
engine's Hill curve H(u) = u^p / (1 + u^p); an early peak that declines towards a lower steady
state; continued growth), each normalised to H at the planned end so that ``Y_l`` is the engine's
level in every class. Each layer has its own shape; the prior over shapes is the evidence's class
probability at the layer's depth, spread evenly over the class's shapes. The prior of the
asymptotes has the engine's own structure: ``Y_l = m_l + delta_M + delta_l`` where
``delta_M ~ N(0, M_sd^2)`` is the model-level error shared by every layer (the magnitude posterior)
and ``delta_l ~ N(0, d_l^2)`` the depth-profile spread (so ``sd_l^2 = M_sd^2 + d_l^2``, exactly the
engine's ``layer_curves`` sd). log10 tau_e ~ N(lt, lt_sd^2) is shared by all layers.

Observed points are ``y_obs = y_l(t) + e`` (log10 of the mean over probe sequences, Eq. 8), where
the error ``e`` of one layer's series is Gaussian with two parts (``Noise``):

- probe noise, white: the spread of a checkpoint's top1/median over probe texts is a CV of 4-7 %,
  about 0.03 in log10 (``SIGMA_PROBE``);
- model misfit, correlated along the series: the Hill curve (one time scale and one exponent for
  all layers) misses the measured Pythia series by an in-sample RMS of 0.07-0.16 log10
  (``EmergenceClock.curves_[m].rmse``), and a layer that is above its curve stays above it for a
  while. The misfit is a Gaussian process in log10(step) with sd ``SIGMA_MISFIT = 0.20`` and
  correlation length ``MISFIT_LENGTH = 0.5`` decades. The sd is about twice the in-sample RMS
  because what matters is the error when extrapolating; both values were chosen on the
  leave-one-series-out backtest (``bench/nowcast_bench.py``; docs/NOWCAST.md lists the
  alternatives measured), so that backtest is not an independent check of them.

The Hill exponent p is integrated too: log p ~ N(log p_engine, s_p^2), s_p the spread of the
exponents fitted to the engine's checkpoint series (the engine itself fixes p).

Given (log10 tau_e, p), delta_M and a layer's shape, the layer's data are linear-Gaussian in delta_l,
which integrates out exactly; given (log10 tau_e, p) and delta_M the layers are independent, each a
sum over its shapes. delta_M is integrated on ``NODES`` points per grid point, and (log10 tau_e, p)
on a grid (refined around the posterior). The run's class mix, estimated from its observed layers,
is then pooled into every layer's prior (``RUN_POOLING`` pseudo-layers of the evidence) and the
posterior computed again (empirical Bayes). Nothing is sampled and nothing is optimised: the answer
is deterministic. tau_e, p and the classes are informed by the ratio observations (top1/median) when
there are any, else by top-1 |h|; the |h| asymptotes are then updated given the grid's weights (top1
and the ratio move together, so using both for tau_e would count the same information twice).

The updated interval of a layer at step t is the 90 % interval of the posterior predictive of a
measured value: the mixture over (grid point, shape) of Gaussians (asymptote uncertainty, plus the misfit
given the layer's observed residuals, plus probe noise). Near an observed checkpoint the forecast
keeps that checkpoint's deviation from the curve; far from it, it returns to the curve. With no
observations the nowcast *is* the prior forecast (the engine's ``forecast``), unchanged.

Deviation: each observation is compared with the prior predictive (the engine's 90 % band widened
in quadrature by the observation noise): ``z`` is its signed distance from the prior mean in units
of that band's half-width / 1.645. A layer has ``left_band`` when its latest observation is outside
that band (|z| > 1.645); the model has left its band when any layer has.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError
from scipy.special import ndtr, ndtri

from predictor.architecture import Architecture, parse_architecture
from predictor.emergence_clock import QUANTITIES, Y0_DEFAULT
from predictor.engine import Z90, ForecastEngine
from predictor.schemas import (
    ClassOutlook,
    Forecast,
    Interval,
    LayerNowcast,
    NextCheckpoint,
    NowcastInfo,
    ObservedPoint,
    Scenario,
    ValueRange,
)
from predictor.timeline import arch_timeline, hill
from predictor.trajectory import CLASSES, SHAPES, as_dict, log_u_of, shape_values

__all__ = [
    "Noise", "NowcastRequest", "Observation", "Posterior", "check_observations", "nowcast",
    "observation_frame", "persistence", "prior_band", "recommend",
]

SIGMA_PROBE = 0.03  # log10: probe-text noise of top1/median (CV 4-7 %)
SIGMA_MISFIT = 0.20  # log10: misfit of the Hill curve when extrapolating (in-sample RMS 0.07-0.16), correlated
MISFIT_LENGTH = 0.5  # correlation length of the misfit, in log10 steps (decades)
SIGMA_OBS = math.hypot(SIGMA_PROBE, SIGMA_MISFIT)
MAX_OBSERVATIONS = 200_000
EARLY_STEP = 100  # points at steps <= this give a layer's start value y0 (the engine's fit_series convention)
GRID = 41  # log10 tau_e grid points (each pass)
P_GRID = 7  # Hill exponent grid points
NODES = 21  # nodes of the model-level term delta_M per grid point (0.6 sd apart: the sum is exact to ~1e-6)
NODE_SPAN, NODE_MIN_SPAN = 6.0, 0.4  # the nodes reach +-NODE_SPAN sd of its Gaussian approximation, at least +-0.4
CHUNK = 1 << 17  # elements per block of the large intermediate arrays: they stay in the cache, memory stays bounded
KEEP_MASS = 1e-4  # grid points holding less than this share of the weight together are dropped
RUN_POOLING = 3.0  # weight (in layers) of the evidence's class prior against the run's own layers
COMPONENTS = 2048  # at most this many (grid point, shape) components of a layer's predictive are kept (the heaviest) ...
COMPONENT_MASS = 1e-2  # ... enough to leave out at most this share of its weight
PRUNE_NATS = 60.0  # a grid point whose posterior is bounded below the best one's by this is not integrated ...
PRUNE_BLOCK = 8  # ... (grid points are integrated in blocks, from the highest bound down)
SERIES_TOL = 1e-15  # error of the mixture CDF's Taylor series (absolute; far below what moves a quantile by 1e-12)
SERIES_TERMS = 40  # at most this many terms; a wider bracket is evaluated directly
FLAT_SD = 10.0  # "no prior" (data-only) sd of the asymptotes, log10
# persistence (the last observed value carried forward) and when to recommend it (chosen on the tuning set:
# bench/synthetic_runs.py and pythia-14m/-160m; bench/holdout_runs.py holds the test set that played no part)
PERSIST_DRIFT = 0.30  # log10 per decade of steps ahead: the spread of persistence's error grows with the horizon
FLAT_SLOPE = 0.15  # log10 per decade: a layer whose last observed decade moved less than this looks plateau-like
FLAT_SPAN = 1.0  # decades of steps before the last checkpoint that the slope is measured over (3 points at least)
SMALL_CHANGE = 0.3  # ... or when the nowcast's change from the last value to the end is < this share of its 90 % half-width


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


def _layer_runs(obs: pd.DataFrame, col: str, mask: np.ndarray | None = None) -> tuple[np.ndarray, list[slice]]:
    """Row positions of the points of ``col`` (not NaN; where ``mask``) sorted by (layer, step), and each observed
    layer's slice of them: the per-layer loops work on arrays, not on a frame per layer."""
    ok = obs[col].notna().to_numpy() if mask is None else obs[col].notna().to_numpy() & mask
    pos = np.flatnonzero(ok)
    layer = obs["layer"].to_numpy(int)
    pos = pos[np.lexsort((obs["step"].to_numpy(float)[pos], layer[pos]))]
    cut = np.flatnonzero(np.diff(layer[pos])) + 1
    return pos, [slice(a, b) for a, b in zip(np.r_[0, cut], np.r_[cut, len(pos)], strict=True)] if len(pos) else []


# ------------------------------------------------------------------------ result schema
class NowcastResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    forecast: Forecast
    layers: list[LayerNowcast]
    info: NowcastInfo


# ------------------------------------------------------------------------ the update
@dataclass
class _Quantity:
    """Prior of one quantity's asymptotes, and their posterior per (grid point, shape)."""

    m: np.ndarray  # (L,) prior mean of Y_l
    M_sd: float  # shared (model-level) sd
    d_sd: np.ndarray  # (L,) per-layer sd
    w: np.ndarray | None = None  # (L, G, K) P(grid point, shape | data) per layer (sums to 1 per layer)
    mu: np.ndarray | None = None  # (L, G, K) posterior mean of Y_l - m_l given grid point and shape
    var: np.ndarray | None = None  # (L, G, K) posterior variance


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
class _Group:
    """The layers of one quantity observed at the same steps: they share the whitening by their noise covariance."""

    layers: np.ndarray  # (n_g,) layer indices
    steps: np.ndarray  # (n,)
    chol: np.ndarray  # (n, n) lower Cholesky factor of the noise covariance
    dy: np.ndarray  # (n_g, n) y - y0
    dy_w: np.ndarray  # (n_g, n) chol^-1 dy


@dataclass
class _Evidence:
    """One quantity's update on a grid up to the node integral: what its per-layer posterior needs. Every grid point
    is computed on its own, so any of them can be finished alone (``select``)."""

    stats: tuple[np.ndarray, np.ndarray, np.ndarray]  # (a, b, rr) of ``Posterior._stats``, (L, K, G) each
    C: np.ndarray  # (L, K, G) log of layer l's data under shape k at delta_M = 0 (delta_l integrated out) ...
    alpha: np.ndarray  # (L, K, G) ... minus alpha delta_M^2 / 2 ...
    beta: np.ndarray  # (L, K, G) ... plus beta delta_M
    k: np.ndarray  # (L, K, G) posterior precision of delta_l
    nodes: np.ndarray  # (G, J) the values of delta_M integrated over
    M_l: np.ndarray  # (L, G, J) log of layer l's data at each node, its shapes summed
    logpost: np.ndarray  # (G, J) log posterior of delta_M at the nodes (unnormalised)
    classes: np.ndarray | None = None  # (L, 3, G, J) P(class | layer l's data, node), when asked for
    C0: np.ndarray | None = None  # (L, K, G) C less the shape prior (kept for a new prior: the pooled pass) ...
    gain: np.ndarray | None = None  # (L, K, G) ... and how much higher layer l's data are at its own best delta_M

    def select(self, cols: np.ndarray) -> _Evidence:
        """The grid points ``cols``."""
        return _Evidence(tuple(s[:, :, cols] for s in self.stats), self.C[:, :, cols], self.alpha[:, :, cols],
                         self.beta[:, :, cols], self.k[:, :, cols], self.nodes[cols], self.M_l[:, cols], self.logpost[cols],
                         None if self.classes is None else self.classes[:, :, cols])

    def node_posterior(self) -> np.ndarray:
        """delta_M's posterior on the nodes, (G, J) (sums to 1 per grid point)."""
        return np.exp(self.logpost - logsumexp(self.logpost, axis=1, keepdims=True))


@dataclass
class _Components:
    """The heaviest (grid point, shape) components of each layer's predictive of a measured value at some steps
    (``Posterior.components``); their means and sds are built per block of layers (``moments``)."""

    w: np.ndarray  # (L, M) weights (sum to 1 per layer)
    idx: np.ndarray  # (L, M) component: grid point * K + shape
    rise: np.ndarray  # (L, M) its Y - y0
    var: np.ndarray  # (L, M) its posterior variance of Y
    base: np.ndarray  # (L, T) y0 plus the misfit carried over from the layer's observed residuals
    cond: np.ndarray  # (L, T) variance of a measured value given the layer's observations (misfit and probe noise)
    curves: list[np.ndarray]  # (T, G K) the shapes at the steps; per group of observed layers less the carried part
    table: np.ndarray  # (L,) each layer's entry of ``curves``

    def moments(self, rows: slice) -> tuple[np.ndarray, np.ndarray]:
        """Means and sds of the layers ``rows``, (L', T, M) each: a (layer, step)'s components are contiguous."""
        idx, table = self.idx[rows], self.table[rows]
        adj = np.empty((len(idx), self.base.shape[1], idx.shape[1]))
        for t in np.unique(table):
            sel = table == t
            adj[sel] = np.take(self.curves[t], idx[sel], axis=1).transpose(1, 0, 2)
        mus = self.rise[rows][:, None, :] * adj  # base + rise adj
        mus += self.base[rows][:, :, None]
        adj *= adj  # sqrt(max(var adj^2 + cond, 1e-12)), in place
        adj *= self.var[rows][:, None, :]
        adj += self.cond[rows][:, :, None]
        return mus, np.sqrt(np.maximum(adj, 1e-12, out=adj), out=adj)


class Posterior:
    """Exact posterior of (Y_l per layer and quantity | log10 tau_e, p, the layer's trajectory shape) and a grid
    over (log10 tau_e, p); the model-level term delta_M is integrated on nodes, each layer's shape summed."""

    def __init__(self, engine: ForecastEngine, arch: Architecture, obs: pd.DataFrame, noise: Noise | None = None,
                 prior: bool = True, protocol: str | None = None, vary_p: bool = True,
                 class_probs: np.ndarray | None = None):
        self.engine, self.arch, self.obs = engine, arch, obs
        self.noise = noise or Noise()
        self.protocol = protocol
        L = arch.n_layers
        cp = engine.class_probabilities(arch) if class_probs is None else np.broadcast_to(np.asarray(class_probs, float), (L, 3))
        self.class_prior = np.asarray(cp, float)
        self.shapes = SHAPES.subset(self.class_prior.max(axis=0)[SHAPES.cls] > 0)  # a class ruled out costs nothing
        self.log_pi = self.shapes.log_prior(self.class_prior)  # (L, K)
        lev = engine.level(arch, protocol)
        self.q: dict[str, _Quantity] = {}
        for q in QUANTITIES:
            M, M_sd = lev[q]
            d, d_sd = engine.profile_[q].predict(L)
            if prior:
                self.q[q] = _Quantity(M + d, float(M_sd), np.asarray(d_sd, float))
            else:
                self.q[q] = _Quantity(M + d, FLAT_SD, np.full(L, FLAT_SD))
        lt, lt_sd = engine.clock_model_.tau_e(arch)
        self.lt_prior = (float(lt), float(lt_sd) if prior else 3.0)
        self.p = float(engine.clock_model_.p_)
        self.logp_prior = (math.log(self.p), p_spread(engine) if prior else 1.0) if vary_p else (math.log(self.p), 0.0)
        self.t_end = int(arch.planned_steps)
        horizon = max(float(obs["step"].max()) if len(obs) else 0.0, float(self.t_end))
        self.tl = arch_timeline(arch, engine.clock_model_.effects_, horizon=horizon)
        self.tau_end = float(self.tl(np.array([float(self.t_end)]))[0])
        self.y0 = {q: self._start(q) for q in QUANTITIES}
        self.groups = {q: self._groups(q) for q in QUANTITIES}
        self.observed = {q: np.zeros(L, bool) for q in QUANTITIES}  # the layers with points of each quantity
        for q, groups in self.groups.items():
            for grp in groups:
                self.observed[q][grp.layers] = True
        self._predictive: dict[tuple[str, bytes], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # (q, steps) -> answer
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

    def _groups(self, q: str) -> list[_Group]:
        """The observed series of ``q``, the layers observed at the same steps together (one Cholesky factor each)."""
        from scipy.linalg import cholesky, solve_triangular

        pos, runs = _layer_runs(self.obs, f"y_{q}")
        layer, step = self.obs["layer"].to_numpy(int)[pos], self.obs["step"].to_numpy(float)[pos]
        y = self.obs[f"y_{q}"].to_numpy(float)[pos]
        same: dict[bytes, list[int]] = {}  # steps -> the layers' first rows
        for run in runs:
            same.setdefault(step[run].tobytes(), []).append(run.start)
        out = []
        for key, first in same.items():
            steps = np.frombuffer(key).copy()
            rows = np.array(first)[:, None] + np.arange(len(steps))[None, :]
            layers = layer[first]
            dy = y[rows] - self.y0[q][layers][:, None]
            chol = cholesky(self.noise.cov(steps), lower=True)
            out.append(_Group(layers, steps, chol, dy, solve_triangular(chol, dy.T, lower=True).T))
        return out

    def _shape(self, steps: np.ndarray, lt: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Every shape at ``steps`` for every grid point (log10 tau_e, p): (K, G, T)."""
        tau = self.tl(np.asarray(steps, float))
        return shape_values(log_u_of(tau, lt), log_u_of(np.array([self.tau_end]), lt)[:, 0], p, self.shapes)

    def _stats(self, q: str, lt: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per layer, shape and grid point, in the whitened metric: a = h'h, b = h'r, rr = r'r, with r the residual
        of the observations from the prior-mean curve of that shape: (L, K, G) each, zero for a layer without points.
        The layers of a group share h: b and rr follow from one product of h with their whitened data."""
        from scipy.linalg import solve_triangular

        L, K, G = self.arch.n_layers, self.shapes.n, len(lt)
        a, b, rr = np.zeros((L, K, G)), np.zeros((L, K, G)), np.zeros((L, K, G))
        rise = self.q[q].m - self.y0[q]  # of the prior-mean curve
        for grp in self.groups[q]:
            hw = solve_triangular(grp.chol, self._shape(grp.steps, lt, p).reshape(K * G, -1).T, lower=True)  # (n, K G)
            hh = np.einsum("nj,nj->j", hw, hw)
            dh = grp.dy_w @ hw  # (n_g, K G)
            c = rise[grp.layers][:, None]
            a[grp.layers] = hh.reshape(K, G)
            b[grp.layers] = (dh - c * hh).reshape(-1, K, G)
            rr[grp.layers] = (np.einsum("in,in->i", grp.dy_w, grp.dy_w)[:, None] - 2.0 * c * dh + c * c * hh).reshape(-1, K, G)
        return a, b, rr

    def _evidence(self, q: str, lt: np.ndarray, p: np.ndarray, prev: _Evidence | None = None, classes: bool = False,
                  log_prior: np.ndarray | None = None) -> tuple[np.ndarray, _Evidence]:
        """The log marginal likelihood of the observations of ``q`` per grid point, and what their posterior needs
        (with ``classes`` also each layer's class posterior per node, taken on the way: the run's class mix). ``prev``:
        an earlier one on the same grid, whose shape prior has changed since (its data terms are reused).

        Given delta_M the layers are independent: layer l's data under shape k is a Gaussian in delta_M times a
        constant (delta_l integrated out), summed over its shapes with their prior weights. delta_M itself is
        integrated on NODES points per grid point, placed around the Gaussian posterior of each layer's best shape.

        With the grid points' ``log_prior``, a grid point is only integrated when an upper bound of its posterior
        (each layer at its own best delta_M) is within PRUNE_NATS of the best one integrated: the others would
        get a weight below exp(-PRUNE_NATS) of the largest, which no number depends on; their loglik is -inf."""
        Q = self.q[q]
        M2 = Q.M_sd**2
        if prev is None:
            a, b, rr = stats = self._stats(q, lt, p)
            d2 = (Q.d_sd**2)[:, None, None]
            one = 1.0 + a * d2
            alpha, beta = a / one, b / one
            k = a + 1.0 / d2
            C0 = -0.5 * rr - 0.5 * np.log(one) + b * b / (2.0 * k)
            gain = np.where(alpha > 0, beta * beta / (2 * np.maximum(alpha, 1e-300)), 0.0)
        else:
            stats, alpha, beta, k, C0, gain = prev.stats, prev.alpha, prev.beta, prev.k, prev.C0, prev.gain
        C = C0 + self.log_pi[:, :, None]  # (L, K, G)
        # nodes of delta_M per grid point: around the Gaussian posterior of every layer's best shape
        peak = C + gain  # each layer at its own best delta_M
        best = np.argmax(peak, axis=1)  # (L, G)
        ab = np.take_along_axis(alpha, best[:, None, :], axis=1)[:, 0].sum(axis=0)
        bb = np.take_along_axis(beta, best[:, None, :], axis=1)[:, 0].sum(axis=0)
        P = 1.0 / M2 + ab
        centre, spread = bb / P, np.maximum(NODE_SPAN * np.sqrt(1.0 / P), NODE_MIN_SPAN)
        nodes = centre[:, None] + spread[:, None] * np.linspace(-1.0, 1.0, NODES)[None, :]  # (G, J)
        const = np.log(2 * spread / (NODES - 1)) - 0.5 * math.log(2 * math.pi * M2)
        G = len(lt)
        ev = _Evidence(stats, C, alpha, beta, k, nodes, np.full((len(C), G, NODES), -np.inf), np.full((G, NODES), -np.inf),
                       np.zeros((len(C), len(CLASSES), G, NODES)) if classes else None, C0, gain)
        loglik = np.full(G, -np.inf)
        if log_prior is None:
            self._integrate(ev, np.arange(G), self.observed[q], M2, const, loglik)
            return loglik, ev
        bound = logsumexp(peak, axis=1).sum(axis=0) + math.log(NODES) + const + log_prior  # >= log_prior + loglik
        order, top, i = np.argsort(bound)[::-1], -np.inf, 0
        while i < G and bound[order[i]] >= top - PRUNE_NATS:  # from the highest bound, in blocks
            cols = order[i:i + PRUNE_BLOCK]
            cols = cols[bound[cols] >= top - PRUNE_NATS]
            self._integrate(ev, cols, self.observed[q], M2, const, loglik)
            top, i = max(top, float(np.max(loglik[cols] + log_prior[cols]))), i + PRUNE_BLOCK
        return loglik, ev

    def _integrate(self, ev: _Evidence, cols: np.ndarray, observed: np.ndarray, M2: float, const: np.ndarray,
                   loglik: np.ndarray) -> None:
        """Fill ``ev`` (M_l, logpost, classes) and ``loglik`` at the grid points ``cols``: the node integral."""
        sub = ev.select(cols)
        if ev.classes is not None:
            runs = np.flatnonzero(np.r_[True, np.diff(self.shapes.cls) != 0])  # the shapes of a class are adjacent
        for rows, m in self._messages(sub, observed):
            top = m.max(axis=1)
            top = np.where(np.isfinite(top), top, 0.0)
            m -= top[:, None]
            np.exp(m, out=m)
            s = m.sum(axis=1)
            sub.M_l[rows] = np.log(s) + top
            if ev.classes is not None:
                for c, part in zip(self.shapes.cls[runs], np.add.reduceat(m, runs, axis=1).transpose(1, 0, 2, 3), strict=True):
                    sub.classes[rows, c] += part / s
        ev.M_l[:, cols] = sub.M_l
        ev.logpost[cols] = -0.5 * sub.nodes**2 / M2 + sub.M_l.sum(axis=0)  # (G', J)
        loglik[cols] = logsumexp(ev.logpost[cols], axis=1) + const[cols]
        if ev.classes is not None:
            ev.classes[:, :, cols] = sub.classes

    @staticmethod
    def _messages(ev: _Evidence, observed: np.ndarray, normalised: bool = False):
        """Per block of layers (rows, values): log of layer l's data under shape k at delta_M = node, (l, K, G, J);
        ``normalised``: less its log summed over the shapes (``M_l``), so that its exp is P(shape | data, node).
        A layer without points has alpha = beta = 0, the same value at every node: given once (J = 1)."""
        K, G = ev.C.shape[1:]
        for rows, x in ((np.flatnonzero(observed), ev.nodes), (np.flatnonzero(~observed), ev.nodes[:, :1])):
            size = K * G * x.shape[1]
            blocks = _blocks(len(rows), size)
            buf = np.empty(len(rows[blocks[0]]) * size) if blocks else None  # one buffer for all blocks
            for blk in blocks:
                r = rows[blk]
                m = buf[: len(r) * size].reshape(len(r), K, G, x.shape[1])
                np.multiply((0.5 * ev.alpha[r])[..., None], x, out=m)  # C + x (beta - alpha x / 2)
                np.subtract(ev.beta[r][..., None], m, out=m)
                m *= x
                m += ev.C[r][..., None]
                if normalised:
                    m -= ev.M_l[r][:, None, :, : x.shape[1]]
                yield r, m

    def _posterior(self, q: str, ev: _Evidence) -> None:
        """The posterior of the asymptotes of ``q`` per grid point and shape (``_Quantity.w/mu/var``): per layer
        P(node, shape | everything) = P(node | all layers) P(shape | layer l's data, node), the moments of delta_M
        under it, and delta_l given delta_M and the shape (Gaussian)."""
        Q = self.q[q]
        P, x = ev.node_posterior(), ev.nodes
        V = np.stack([P, P * x, P * x * x])  # summed against P(shape | data, node): weight, first and second moment
        w, w1, w2 = np.empty_like(ev.C), np.empty_like(ev.C), np.empty_like(ev.C)
        for rows, m in self._messages(ev, self.observed[q], normalised=True):
            np.exp(m, out=m)
            w[rows], w1[rows], w2[rows] = np.einsum("lkgj,vgj->vlkg", m, V if m.shape[3] == NODES else V.sum(axis=2, keepdims=True))
        e1, e2 = w1 / np.maximum(w, 1e-300), w2 / np.maximum(w, 1e-300)
        d2 = (Q.d_sd**2)[:, None, None]
        wd = (1.0 / d2) / ev.k
        Q.w = w.transpose(0, 2, 1)
        Q.mu = (wd * e1 + ev.stats[1] / ev.k).transpose(0, 2, 1)
        Q.var = (1.0 / ev.k + wd * wd * np.maximum(e2 - e1 * e1, 0.0)).transpose(0, 2, 1)

    def _weights(self, lt: np.ndarray, p: np.ndarray, prev: _Evidence | None = None,
                 classes: bool = False) -> tuple[np.ndarray, _Evidence]:
        """Posterior weights of the grid points from the lead quantity (the ratio when observed, else top-1 |h|)."""
        (lt0, lt_sd), (lp0, lp_sd) = self.lt_prior, self.logp_prior
        prior_lt = -0.5 * ((lt - lt0) / lt_sd) ** 2
        prior_p = -0.5 * ((np.log(p) - lp0) / lp_sd) ** 2 if lp_sd > 0 else 0.0
        loglik, ev = self._evidence(self.lead, lt, p, prev, classes, prior_lt + prior_p)
        logp = prior_lt + loglik
        if lp_sd > 0:
            logp += prior_p
        w = np.exp(logp - logp.max())
        return w / w.sum(), ev

    def _grid(self, lt_lo: float, lt_hi: float) -> tuple[np.ndarray, np.ndarray]:
        lp0, lp_sd = self.logp_prior
        lps = np.linspace(lp0 - 3 * lp_sd, lp0 + 3 * lp_sd, P_GRID) if lp_sd > 0 else np.array([lp0])
        lt, lp = np.meshgrid(np.linspace(lt_lo, lt_hi, GRID), lps, indexing="ij")
        return lt.ravel(), np.exp(lp.ravel())

    def _fit(self) -> None:
        """The grid's weights, then the asymptotes' posterior on the grid points that hold its weight (computed
        there only: every grid point is computed on its own)."""
        has_ratio = len(self.obs) and self.obs["y_ratio"].notna().any()
        self.lead = "ratio" if has_ratio else "abs"
        lt, p, w, ev = self._search()
        observed = np.flatnonzero(self.observed[self.lead])
        if observed.size and RUN_POOLING > 0:
            # the layers of one run tend to share their shape (Pythia-160m's middle layers move together): the run's
            # class mix, estimated from its observed layers (empirical Bayes, RUN_POOLING pseudo-layers of the
            # evidence's depth prior), becomes every layer's prior, and the posterior is computed again
            held = ev.select(np.flatnonzero(w > 0))  # a grid point without weight adds nothing to the mix
            probs = np.einsum("lcgj,gj->lc", held.classes, w[w > 0, None] * held.node_posterior())
            run_mix = probs[observed].sum(axis=0)
            pooled = (RUN_POOLING * self.class_prior + run_mix[None, :]) / (RUN_POOLING + len(observed))
            self.log_pi = self.shapes.log_prior(pooled)
            w, ev = self._weights(lt, p, ev)  # the same grid and data: only the shape prior changed
        order = np.argsort(w)[::-1]  # keep the grid points that hold all but KEEP_MASS of the weight
        keep = np.sort(order[: max(1, int(np.searchsorted(np.cumsum(w[order]), 1.0 - KEEP_MASS)) + 1)])
        self.grid, self.grid_p = lt[keep], p[keep]
        self.w = w[keep] / w[keep].sum()
        self._posterior(self.lead, ev.select(keep))
        for q in QUANTITIES:  # the other quantity's asymptotes given the grid (top1 and the ratio move together)
            if q != self.lead:
                self._posterior(q, self._evidence(q, self.grid, self.grid_p)[1])
        m = float(self.w @ self.grid)
        self.lt_post = (m, float(np.sqrt(max(self.w @ (self.grid - m) ** 2, 0.0))))
        self.p_post = float(np.exp(self.w @ np.log(self.grid_p)))

    def _search(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, _Evidence]:
        """The grid over (log10 tau_e, p) and its weights: +-5 prior sd, refined around the posterior when the
        data pinned tau_e down."""
        lt0, lt_sd = self.lt_prior
        lt, p = self._grid(lt0 - 5 * lt_sd, lt0 + 5 * lt_sd)
        w, ev = self._weights(lt, p, classes=True)
        mean = float(w @ lt)
        sd = float(np.sqrt(max(w @ (lt - mean) ** 2, 0.0)))
        step = 10 * lt_sd / (GRID - 1)
        if sd < 10 * step:
            lo = max(lt0 - 5 * lt_sd, mean - 8 * max(sd, 1e-4))
            hi = min(lt0 + 5 * lt_sd, mean + 8 * max(sd, 1e-4))
            lt, p = self._grid(lo, hi)
            w, ev = self._weights(lt, p, classes=True)
        return lt, p, w, ev

    def _joint(self, q: str) -> np.ndarray:
        """(L, G, K) weight of each (grid point, shape) per layer: the grid's weight times the layer's shape
        posterior at that grid point."""
        return self.w[None, :, None] * self.q[q].w

    # -- predictions
    def class_probabilities(self, q: str | None = None) -> np.ndarray:
        """(L, 3) posterior probability of each trajectory class per layer (of the quantity that set the clock)."""
        # clipped where made: sums of float weights reach 1.0000000000000018, which the answer's schema refuses
        return np.clip(self.shapes.class_sums(self._joint(q or self.lead).sum(axis=1)), 0.0, 1.0)

    def asymptotes(self, q: str) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and sd of Y_l (mixture over grid points and shapes)."""
        Q, W = self.q[q], self._joint(q)
        mean_c = Q.m[:, None, None] + Q.mu
        mean = (W * mean_c).sum(axis=(1, 2))
        var = (W * (Q.var + (mean_c - mean[:, None, None]) ** 2)).sum(axis=(1, 2))
        return mean, np.sqrt(var)

    def _components(self, q: str, st: np.ndarray) -> _Components:
        """The heaviest (grid point, shape) components per layer and what their moments at ``st`` need.

        Per component: y* = y0 + c'(y - y0) + (Y - y0)(h* - c'h) + e*, with c = K^-1 k* the weights of the
        layer's observed residuals in the misfit at ``st`` (near an observed checkpoint the forecast keeps
        that checkpoint's deviation from the curve; far away it returns to the curve)."""
        from scipy.linalg import cho_solve

        Q, W = self.q[q], self._joint(q)
        L, G, K, T = self.arch.n_layers, len(self.grid), self.shapes.n, len(st)
        flat = W.reshape(L, G * K)
        order = np.argsort(flat, axis=1)[:, ::-1]
        mass = np.cumsum(np.take_along_axis(flat, order, axis=1), axis=1) / flat.sum(axis=1, keepdims=True)
        M = int(min(COMPONENTS, G * K, 1 + (mass < 1.0 - COMPONENT_MASS).sum(axis=1).max()))
        idx = order[:, :M]  # (L, M)
        wts = np.take_along_axis(flat, idx, axis=1)
        wts = wts / wts.sum(axis=1, keepdims=True)
        y0 = self.y0[q]
        base, cond = np.repeat(y0[:, None], T, axis=1), np.full((L, T), self.noise.total**2)
        curves, table = [self._shape(st, self.grid, self.grid_p).transpose(2, 1, 0).reshape(T, G * K)], np.zeros(L, int)
        for grp in self.groups[q]:  # the layers of a group share the misfit's weights c and the shapes at their steps
            ks = self.noise.cross(grp.steps, st)  # (n, T)
            c = cho_solve((grp.chol, True), ks)  # (n, T)
            h_all = self._shape(grp.steps, self.grid, self.grid_p).transpose(1, 0, 2).reshape(G * K, -1)
            curves.append(curves[0] - (h_all @ c).T)
            table[grp.layers] = len(curves) - 1
            base[grp.layers] = y0[grp.layers][:, None] + grp.dy @ c
            cond[grp.layers] = np.maximum(self.noise.total**2 - (ks * c).sum(axis=0), self.noise.probe**2)
        rise = (Q.m - y0)[:, None] + np.take_along_axis(Q.mu.reshape(L, G * K), idx, axis=1)
        var = np.take_along_axis(Q.var.reshape(L, G * K), idx, axis=1)
        return _Components(wts, idx, rise, var, base, cond, curves, table)

    def components(self, q: str, steps: Sequence[float]):
        """Per layer the heaviest (grid point, shape) components of the posterior predictive of a measured value at
        ``steps``: weights (L, M), means and sds (L, M, T) in log10, and their classes (L, M)."""
        comp = self._components(q, np.asarray(steps, float))
        mus, sds = comp.moments(slice(None))
        return comp.w, mus.transpose(0, 2, 1), sds.transpose(0, 2, 1), self.shapes.cls[comp.idx % self.shapes.n]

    def predictive(self, q: str, steps: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Posterior predictive of a measured value: mean, 5 % and 95 % quantiles (log10) at ``steps``, (L, T).
        Kept per (q, steps): a forecast asks for the same curves once per protocol."""
        st = np.asarray(steps, float)
        key = (q, st.tobytes())
        if key not in self._predictive:
            comp = self._components(q, st)
            (L, M), T = comp.w.shape, len(st)
            mean, lo, hi = np.empty((L, T)), np.empty((L, T)), np.empty((L, T))
            for rows in _blocks(L, M * T, 16 * CHUNK):  # large: a block's (layer, step)s are sorted by series length
                mu, sd = comp.moments(rows)
                w = comp.w[rows]
                mean[rows] = (w[:, None, :] * mu).sum(axis=2)
                lo[rows] = _mixture_quantile(mu, sd, w, 0.05)
                hi[rows] = _mixture_quantile(mu, sd, w, 0.95)
            self._predictive[key] = (mean, np.minimum(lo, mean), np.maximum(hi, mean))
        return tuple(a.copy() for a in self._predictive[key])

    def by_class(self, q: str, step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per layer and class at one ``step``: the class's posterior probability (L, 3) and the mean and sd
        (log10) of its predictive of a measured value there (moment-matched), (L, 3) each."""
        w, mu, sd, cls = self.components(q, [step])
        mu, sd = mu[..., 0], sd[..., 0]
        L = w.shape[0]
        prob, mean, spread = self.class_probabilities(q), np.full((L, 3), np.nan), np.full((L, 3), np.nan)
        for c in range(3):
            wc = np.where(cls == c, w, 0.0)
            tot = wc.sum(axis=1)
            ok = tot > 1e-12
            m = (wc * mu).sum(axis=1) / np.maximum(tot, 1e-300)
            v = (wc * (sd**2 + (mu - m[:, None]) ** 2)).sum(axis=1) / np.maximum(tot, 1e-300)
            mean[ok, c], spread[ok, c] = m[ok], np.sqrt(v[ok])
        return prob, mean, spread

    def layer_curves(self, arch: Architecture, steps: np.ndarray, protocol: str | None = None, lev: dict | None = None,
                     tl: object | None = None) -> dict:
        """Drop-in for ``ForecastEngine.layer_curves``: the posterior in the same layout (its level is the
        observations' posterior: ``lev`` and ``tl`` are not used)."""
        tl = arch_timeline(arch, self.engine.clock_model_.effects_, horizon=max(float(np.max(steps)), arch.planned_steps))
        lt, lt_sd = self.lt_post
        out = {"timeline": tl, "log_tau_e": (lt, lt_sd), "h": hill(tl(steps) / 10**lt, self.p_post)}
        for q in QUANTITIES:
            Y, sd = self.asymptotes(q)
            mean, lo, hi = self.predictive(q, steps)
            out[q] = {"Y": Y, "sd": sd, "mean": mean, "lo": lo, "hi": hi}
        return out


def p_spread(engine: ForecastEngine) -> float:
    """sd of log p across the engine's fitted checkpoint series (the prior spread of the Hill exponent)."""
    ps = [f.p for f in engine.clock_model_.curves_.values()]
    return float(max(np.std(np.log(ps), ddof=1), 0.2)) if len(ps) >= 3 else 0.4


def logsumexp(x: np.ndarray, axis, keepdims: bool = False) -> np.ndarray:
    """log(sum(exp(x))) along ``axis`` (scipy's, without its array-API overhead on the hot path)."""
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def _blocks(n: int, per_row: int, size: int = CHUNK) -> list[slice]:
    """``n`` rows of ``per_row`` elements in blocks of about ``size`` elements (at least one row each)."""
    step = max(1, size // max(per_row, 1))
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


# Cramér's inequality |He_n(z)| phi(z) <= PHI_BOUND sqrt(n!) bounds every derivative of Phi, so with |e t| <= rho the
# terms of Phi(z + e t) after the n-th sum to at most 2 PHI_BOUND rho^(n+1) / ((n+1) sqrt(n!)) (for rho <= sqrt(n+1)/2,
# each term at most half the one before): SERIES_RHO[n] is the largest rho that n terms take to SERIES_TOL
PHI_BOUND = 1.086435 / math.sqrt(2.0 * math.pi)
_N = np.arange(SERIES_TERMS + 1)
SERIES_RHO = np.minimum((SERIES_TOL * (_N + 1) * np.exp(0.5 * np.array([math.lgamma(n + 1.0) for n in _N]))
                         / (2.0 * PHI_BOUND)) ** (1.0 / (_N + 1)), 0.5 * np.sqrt(_N + 1.0))
SERIES_SCALE = np.array([(-1) ** (n + 1) / (math.factorial(n) * math.sqrt(2.0 * math.pi)) for n in range(SERIES_TERMS + 1)])


def _mixture_cdf(mu: np.ndarray, sd: np.ndarray, w: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """The CDF of Gaussian mixtures along the last axis of (L, T, M) with weights (L, M), as a function of x (L, T)
    in [lo, hi]. Per (layer, step) it is the Taylor series about the bracket's middle c (half-width r): with z = (c -
    mu) / sd and t = r / sd, Phi(z + e t) = Phi(z) + phi(z) sum_n (-1)^(n-1) He_(n-1)(z) (e t)^n / n! for x = c + e r,
    so one ndtr per component serves every evaluation of the root search (it took one per evaluation). The series
    stops where its remainder is below SERIES_TOL; a bracket too wide for SERIES_TERMS terms is evaluated directly."""
    L, T, M = mu.shape
    c, r = (0.5 * (lo + hi)).ravel(), (0.5 * (hi - lo)).ravel()
    mu, inv = mu.reshape(L * T, M), (1.0 / sd).reshape(L * T, M)  # one row per (layer, step)
    terms = np.searchsorted(SERIES_RHO, r * inv.max(axis=1))
    pairs = np.argsort(terms, kind="stable")  # blocks of similar length
    direct = pairs[terms[pairs] > SERIES_TERMS]
    pairs = pairs[terms[pairs] <= SERIES_TERMS]
    coef = np.zeros((L * T, int(terms[pairs].max(initial=0)) + 1))
    for blk in _blocks(len(pairs), M):
        pr = pairs[blk]
        iv, wb = inv[pr], w[pr // T]
        z = (c[pr, None] - mu[pr]) * iv
        coef[pr, 0] = np.einsum("bm,bm->b", wb, ndtr(z))
        need = terms[pr]  # ascending: the rows still summing are a tail of the block
        if need[-1] == 0:
            continue
        wphi = np.exp(-0.5 * z * z)
        wphi *= wb
        cur = r[pr, None] * iv  # t^n He_(n-1)(z) for n = 1 (t = r / sd); n = 0 next
        prev, tmp = np.zeros_like(cur), np.empty_like(cur)
        t2 = cur * cur
        z *= cur  # z t
        coef[pr, 1] = SERIES_SCALE[1] * np.einsum("bm,bm->b", wphi, cur)
        for n in range(2, int(need[-1]) + 1):  # He_n = z He_(n-1) - (n-1) He_(n-2), on the rows that still need terms
            s = int(np.searchsorted(need, n))
            np.multiply(t2[s:], prev[s:], out=tmp[s:])
            tmp[s:] *= n - 2
            np.multiply(z[s:], cur[s:], out=prev[s:])
            prev[s:] -= tmp[s:]
            prev, cur = cur, prev
            coef[pr[s:], n] = SERIES_SCALE[n] * np.einsum("bm,bm->b", wphi[s:], cur[s:])
    mu_d, inv_d, w_d = mu[direct], inv[direct], w[direct // T]

    def cdf(x: np.ndarray) -> np.ndarray:
        x = x.ravel()
        e = np.where(r > 0, (x - c) / np.where(r > 0, r, 1.0), 0.0)
        out = coef[:, -1].copy()
        for n in range(coef.shape[1] - 2, -1, -1):
            out = out * e + coef[:, n]
        if direct.size:
            out[direct] = np.einsum("pm,pm->p", w_d, ndtr((x[direct, None] - mu_d) * inv_d))
        return out.reshape(L, T)

    return cdf


def _mixture_quantile(mu: np.ndarray, sd: np.ndarray, w: np.ndarray, p: float, iters: int = 10) -> np.ndarray:
    """Quantile of Gaussian mixtures along the last axis of (L, T, M) with weights (L, M), vectorised. It lies
    between the smallest and the largest of the components' own ``p`` quantiles (the bracket); regula falsi with the
    Illinois step (the retained end's value halved) narrows it to ~1e-9 in ~10 evaluations, where bisection took 24.
    A step that rounds onto an end of the bracket has converged there: it is kept (a bisection step away from the root
    there used to leave the answer up to ~1e-7 off, depending on the last bit of the CDF)."""
    own = mu + sd * float(ndtri(p))
    lo, hi = own.min(axis=2), own.max(axis=2)
    cdf = _mixture_cdf(mu, sd, w, lo, hi)

    def f(x: np.ndarray) -> np.ndarray:
        return cdf(x) - p

    flo, fhi = f(lo), f(hi)
    side = np.zeros(lo.shape, int)  # which end stayed put last time (-1 lo, +1 hi): Illinois halves its value
    for _ in range(iters):
        den = fhi - flo
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.where(den > 0, (lo * fhi - hi * flo) / den, 0.5 * (lo + hi))
        x = np.where(den > 0, np.clip(x, lo, hi), 0.5 * (lo + hi))  # rounding past an end: converged there
        fx = f(x)
        below = fx < 0
        lo, flo = np.where(below, x, lo), np.where(below, fx, flo)
        hi, fhi = np.where(below, hi, x), np.where(below, fhi, fx)
        fhi = np.where(below & (side == 1), fhi / 2, fhi)  # hi retained twice: halve its value
        flo = np.where(~below & (side == -1), flo / 2, flo)
        side = np.where(below, 1, -1)
    den = fhi - flo
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(den > 0, (lo * fhi - hi * flo) / den, 0.5 * (lo + hi))
    return np.where(den > 0, np.clip(x, lo, hi), 0.5 * (lo + hi))


# ------------------------------------------------------------------------ persistence and the recommendation
def persistence(obs: pd.DataFrame, n_layers: int, steps: Sequence[float], q: str = "ratio", noise: Noise | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each layer's last observed value carried forward to ``steps``: mean, 5 % and 95 % (log10, (L, T); NaN where a
    layer has no point). Its interval: probe noise of the last point and of the future reading, plus a drift of
    PERSIST_DRIFT log10 per decade of steps ahead."""
    probe = (noise or Noise()).probe
    col = f"y_{q}"
    st = np.asarray(steps, float)
    mean = np.full((n_layers, len(st)), np.nan)
    sd = np.full_like(mean, np.nan)
    pos, runs = _layer_runs(obs, col)
    if runs:
        last = pos[[run.stop - 1 for run in runs]]  # each layer's latest point
        layers = obs["layer"].to_numpy(int)[last]
        last_step = np.maximum(obs["step"].to_numpy(float)[last], 1.0)[:, None]
        ahead = np.log10(np.maximum(st[None, :], last_step) / last_step)
        mean[layers] = obs[col].to_numpy(float)[last][:, None]
        sd[layers] = np.sqrt(2 * probe**2 + (PERSIST_DRIFT * ahead) ** 2)
    return mean, mean - Z90 * sd, mean + Z90 * sd


def observed_slope(obs: pd.DataFrame, n_layers: int, q: str = "ratio") -> np.ndarray:
    """Per layer, the least-squares slope of its observed log10 values against log10 step over the last FLAT_SPAN
    decades before its last checkpoint (log10 per decade; NaN with fewer than 3 points there)."""
    col = f"y_{q}"
    out = np.full(n_layers, np.nan)
    pos, runs = _layer_runs(obs, col, obs["step"].to_numpy(float) > 0)
    layer, steps, y = obs["layer"].to_numpy(int)[pos], obs["step"].to_numpy(float)[pos], obs[col].to_numpy(float)[pos]
    for run in runs:
        x = np.log10(steps[run])
        sel = x >= x.max() - FLAT_SPAN
        if sel.sum() >= 3:
            out[layer[run.start]] = float(np.polyfit(x[sel], y[run][sel], 1)[0])
    return out


def recommend(obs: pd.DataFrame, n_layers: int, steps: Sequence[float], now: tuple[np.ndarray, np.ndarray, np.ndarray],
              q: str = "ratio", noise: Noise | None = None) -> dict:
    """Per layer: whether carrying the last value forward is the better bet than the nowcast, and the answer to give.

    A layer looks plateau-like when its last observed decade moved less than FLAT_SLOPE log10 per decade: the
    nowcast's shapes still extrapolate a rise, a decline or growth from the prior there. A layer also gets
    persistence when the nowcast's change from its last value to the end is below SMALL_CHANGE of its own 90 %
    half-width: the data cannot tell that change from none, and on the tuning set the last value did better on such
    layers. Where persistence is recommended the answer is the last value with the hull of both 90 % intervals
    (never narrower than persistence's)."""
    pm, plo, phi = persistence(obs, n_layers, steps, q, noise)
    slope = observed_slope(obs, n_layers, q)
    flat = np.isfinite(slope) & (np.abs(slope) < FLAT_SLOPE)
    change = np.abs(np.asarray(now[0], float)[:, -1] - pm[:, -1])
    half = 0.5 * (np.asarray(now[2], float)[:, -1] - np.asarray(now[1], float)[:, -1])
    small = change < SMALL_CHANGE * half
    use = (flat | small) & np.isfinite(pm[:, -1])
    m, lo, hi = (np.array(a, float, copy=True) for a in now)
    m[use], lo[use], hi[use] = pm[use], np.minimum(lo[use], plo[use]), np.maximum(hi[use], phi[use])
    reasons = []
    for layer in range(n_layers):
        if use[layer] and flat[layer]:
            reasons.append(f"plateau-like: the last observed decade moved {slope[layer]:+.2f} log10 per decade "
                           f"(|slope| < {FLAT_SLOPE}); carrying the last value forward is the better bet")
        elif use[layer]:
            reasons.append(f"the nowcast's change to the end ({change[layer]:.2f} log10) is within {SMALL_CHANGE:g} of its "
                           f"90 % half-width ({half[layer]:.2f}): the data cannot tell it from no change; the last value")
        elif not np.isfinite(slope[layer]):
            reasons.append("fewer than 3 observed points in the last decade of steps and a clear change forecast: "
                           "the nowcast's trajectory")
        else:
            reasons.append(f"still moving: {slope[layer]:+.2f} log10 per decade over the last observed decade "
                           f"(|slope| >= {FLAT_SLOPE}); the nowcast's trajectory")
    return {"persistence": use, "reason": reasons, "mean": m, "lo": lo, "hi": hi, "slope": slope,
            "persist": (pm, plo, phi)}


# ------------------------------------------------------------------------ public entry points
def next_checkpoint_step(observed: np.ndarray, t_end: int) -> int | None:
    """The step of the run's next checkpoint: the last one plus the last spacing (twice the last step when there is
    one), at most the planned end; None when the plan has ended."""
    last = float(observed[-1])
    if last >= t_end:
        return None
    gap = last - float(observed[-2]) if len(observed) >= 2 else last
    return int(min(last + max(gap, 1.0), t_end))


def next_checkpoint(post: Posterior, step: int, n_values: int = 241) -> list[NextCheckpoint]:
    """Per layer: each class's predictive at ``step`` and the ranges of the reading that make each class the
    most probable (``NextCheckpoint``)."""
    prob, mean, sd = post.by_class(post.lead, float(step))
    ok = np.isfinite(mean)
    lo = np.nanmin(np.where(ok, mean - 4 * sd, np.nan), axis=1)
    hi = np.nanmax(np.where(ok, mean + 4 * sd, np.nan), axis=1)
    out = []
    for layer in range(prob.shape[0]):
        v = np.linspace(lo[layer], hi[layer], n_values)
        with np.errstate(divide="ignore", invalid="ignore"):
            logp = np.where(ok[layer][None, :], np.log(prob[layer])[None, :]
                            - 0.5 * ((v[:, None] - mean[layer][None, :]) / sd[layer][None, :]) ** 2
                            - np.log(sd[layer])[None, :], -np.inf)
        post_v = np.exp(logp - logp.max(axis=1, keepdims=True))
        post_v = np.clip(post_v / post_v.sum(axis=1, keepdims=True), 0.0, 1.0)
        best = post_v.argmax(axis=1)
        ranges = []
        start = 0
        for i in range(1, n_values + 1):
            if i == n_values or best[i] != best[start]:
                c = int(best[start])
                mid = (start + i - 1) // 2
                ranges.append(ValueRange(trajectory_class=CLASSES[c], ratio_lo=None if start == 0 else float(10 ** v[start]),
                                         ratio_hi=None if i == n_values else float(10 ** v[i]),
                                         probability=float(post_v[start:i, c].max() if start == 0 or i == n_values
                                                           else post_v[mid, c])))
                start = i
        mix_cdf = (prob[layer][None, :] * np.where(ok[layer][None, :], ndtr((v[:, None] - mean[layer]) / sd[layer]), 0.0)).sum(axis=1)
        reads = []
        for qv in (0.05, 0.5, 0.95):
            i = int(np.clip(np.searchsorted(mix_cdf / max(mix_cdf[-1], 1e-300), qv), 0, n_values - 1))
            reads.append(Scenario(quantile=qv, ratio=float(10 ** v[i]), class_probabilities=as_dict(post_v[i])))
        by = [ClassOutlook(trajectory_class=c, probability=float(prob[layer, j]),
                           ratio=Interval(value=float(10 ** mean[layer, j]), lo=float(10 ** (mean[layer, j] - Z90 * sd[layer, j])),
                                          hi=float(10 ** (mean[layer, j] + Z90 * sd[layer, j]))) if ok[layer, j] else None)
              for j, c in enumerate(CLASSES)]
        out.append(NextCheckpoint(step=int(step), by_class=by, most_probable_if=ranges, if_reads=reads))
    return out


def prior_band(engine: ForecastEngine, arch: Architecture, steps: Sequence[float], noise: Noise | None = None,
               protocol: str | None = None) -> dict[str, np.ndarray]:
    """The engine's ratio band at ``steps`` widened in quadrature by the observation noise (log10)."""
    c = engine.layer_curves(arch, np.asarray(steps, float), protocol)["ratio"]
    mean = c["mean"]
    width = Z90 * (noise or Noise()).total
    return {"mean": mean, "lo": mean - np.hypot(mean - c["lo"], width), "hi": mean + np.hypot(c["hi"] - mean, width)}


_POINTS = TypeAdapter(list[ObservedPoint])


def observed_points(obs: pd.DataFrame, steps: np.ndarray, band: dict[str, np.ndarray],
                    updated: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict[int, list[ObservedPoint]]:
    """Per observed layer its points (by step): the measured ratio against the prior band and the update, both
    (L, len(steps)) in log10. Computed as arrays, the points validated as one list (pydantic-core does that faster
    than it builds them one by one, checked or not)."""
    pos, runs = _layer_runs(obs, "y_ratio")
    li, step = obs["layer"].to_numpy(int)[pos], obs["step"].to_numpy(float)[pos]
    k = np.searchsorted(steps, step)
    m, lo, hi = band["mean"][li, k], band["lo"][li, k], band["hi"][li, k]
    y = obs["y_ratio"].to_numpy(float)[pos]
    z = Z90 * (y - m) / np.where(y >= m, hi - m, m - lo)
    u_mean, u_lo, u_hi = (a[li, k] for a in updated)
    cols = {"step": step.astype(int), "observed": 10**y, "observed_abs": obs["top1"].to_numpy(float)[pos], "prior": 10**m,
            "prior_lo": 10**lo, "prior_hi": 10**hi, "updated": 10**u_mean, "updated_lo": 10**u_lo, "updated_hi": 10**u_hi,
            "z": z, "outside": np.abs(z) > Z90}
    rows = _POINTS.validate_python([dict(zip(cols, vals, strict=True)) for vals in zip(*(v.tolist() for v in cols.values()),
                                                                                       strict=True)])
    return {int(li[run.start]): rows[run] for run in runs}


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
    lt_prior = engine.clock_model_.tau_e(arch)
    if not len(obs):
        layers = [LayerNowcast(layer=lf.layer, observed=[], deviation=None, n_outside=0, left_band=False,
                               prior_ratio_end=lf.ratio_end.value, ratio_end=lf.ratio_end.value,
                               prior_class_probabilities=lf.class_probabilities, class_probabilities=lf.class_probabilities)
                  for lf in prior_fc.layers]
        info = NowcastInfo(n_observations=0, n_rows=n_rows, steps=[], last_step=None, deviation=None, left_band=False,
                           layers_left=[], log10_tau_e_prior=list(lt_prior), log10_tau_e_posterior=list(lt_prior),
                           noise=noise_info, method="prior only (no observations)")
        return NowcastResult(forecast=prior_fc, layers=layers, info=info)

    post = Posterior(engine, arch, obs, noise=noise, protocol=protocol)
    updated = engine.conditioned(post)  # the engine's forecast logic on the posterior curves
    class_post = updated.class_probabilities(arch)
    fc = updated.forecast(arch, steps, name=name, version=version, alias=alias, protocol=protocol)
    obs_steps = np.array(sorted(obs["step"].unique()), float)
    band = prior_band(engine, arch, obs_steps, noise, protocol)
    u_mean, u_lo, u_hi = post.predictive("ratio", obs_steps)
    nxt = next_checkpoint_step(obs_steps, arch.planned_steps)
    outlook = next_checkpoint(post, nxt) if nxt is not None else [None] * arch.n_layers
    end_now = tuple(np.log10(np.maximum(np.array([[getattr(lf.ratio_end, k)] for lf in fc.layers], float), 1e-300))
                    for k in ("value", "lo", "hi"))
    rec = recommend(obs, arch.n_layers, [float(arch.planned_steps)], end_now, noise=noise)
    points = observed_points(obs, obs_steps, band, (u_mean, u_lo, u_hi))
    layers = []
    for lf, pf in zip(fc.layers, prior_fc.layers, strict=True):
        li = lf.layer
        pts = points.get(li, [])
        advice = {"recommend": None, "recommend_reason": None, "persistence_ratio_end": None, "recommended_ratio_end": None}
        if pts:
            pm, plo, phi = (float(10 ** a[li, 0]) for a in rec["persist"])
            advice = {"recommend": "persistence" if rec["persistence"][li] else "nowcast", "recommend_reason": rec["reason"][li],
                      "persistence_ratio_end": Interval(value=pm, lo=plo, hi=phi),
                      "recommended_ratio_end": Interval(value=float(10 ** rec["mean"][li, 0]), lo=float(10 ** rec["lo"][li, 0]),
                                                        hi=float(10 ** rec["hi"][li, 0]))}
        dev = max((abs(p.z) for p in pts), default=None)
        layers.append(LayerNowcast(layer=li, observed=pts, deviation=dev, n_outside=sum(p.outside for p in pts),
                                   left_band=bool(pts and pts[-1].outside), prior_ratio_end=pf.ratio_end.value,
                                   ratio_end=lf.ratio_end.value, prior_class_probabilities=pf.class_probabilities,
                                   class_probabilities=lf.class_probabilities, next_checkpoint=outlook[li], **advice))
    left = [lyr.layer for lyr in layers if lyr.left_band]
    devs = [lyr.deviation for lyr in layers if lyr.deviation is not None]
    steps_seen = sorted(int(s) for s in obs["step"].unique())
    info = NowcastInfo(
        n_observations=len(obs), n_rows=n_rows, steps=steps_seen, last_step=steps_seen[-1], deviation=max(devs) if devs else None,
        left_band=bool(left), layers_left=left, log10_tau_e_prior=list(lt_prior), log10_tau_e_posterior=list(post.lt_post),
        noise=noise_info,
        method="per layer a mixture of trajectory shapes (plateau, early peak, growth; predictor/trajectory.py), each an "
               "exact Gaussian update of the asymptote given (log10 tau_e, p) and the model-level term, which is integrated "
               "on nodes; (log10 tau_e, p) on a grid; the run's class mix pooled into every layer's prior; predictive "
               "intervals are those of a measured value",
    )
    mix = class_post.mean(axis=0)
    note = ("trajectory classes (mean over layers, given the run's points): "
            + ", ".join(f"{c} {v:.0%}" for c, v in zip(CLASSES, mix, strict=True))
            + "; each layer's probabilities and what the next checkpoint would have to read to change them are in "
              "its nowcast entry")
    fc = fc.model_copy(update={"notes": [*fc.notes, note]})
    note = (f"nowcast: updated with {len(obs)} observed points ({n_rows} rows) at {len(steps_seen)} steps up to step "
            f"{steps_seen[-1]}; observation noise {noise.total:.2f} log10; log10 tau_e {lt_prior[0]:.2f}+-{lt_prior[1]:.2f} -> "
            f"{post.lt_post[0]:.2f}+-{post.lt_post[1]:.2f}")
    fc = fc.model_copy(update={"notes": [*fc.notes, note]})
    return NowcastResult(forecast=fc, layers=layers, info=info)
