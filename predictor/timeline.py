"""The time axis of a forecast: a training plan -> effective time, and the emergence curve on it.

Why: emergence is not a function of the raw step. Gu et al. (arXiv 2410.10781, Table 9) trained
one 60M model at four learning rates and several lengths: at 20k steps the sink metric falls
from 32.2 (lr 8e-4) to 2.9 (lr 1e-4), and doubling the steps at half the learning rate does not
catch up. Their batch-size grid (Table 10: 0.25M-2M tokens per step at a fixed 20k steps) shows
no effect, and weight decay acts as an inverted U (Table 2). We therefore measure progress in
*effective time*

    tau(t) = integral_0^t (lr(s) / LR_REF)^kappa * (B / B_REF)^beta * g_wd(wd) ds

where lr(s) is the planned schedule (warmup, then cosine / linear / constant / WSD / inverse
sqrt), and fit kappa, beta and g_wd to those grids (``fit_plan_effects``). The emergence curve
of a layer in log10 units is a Hill function of u = tau / tau_e:

    y(t) = y0 + (Y_inf - y0) * H(u),   H(u) = u^p / (1 + u^p)

so y(t_end) is the curve at the planned end, shorter plans stop lower, and a lower learning rate
or a heavier weight decay moves the emergence later. ``tau_e`` (the effective time of half the
log rise) depends on model size and is learned from the Pythia checkpoints (``engine``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from predictor.architecture import Architecture

__all__ = ["PlanEffects", "Timeline", "arch_timeline", "fit_plan_effects", "hill", "hill_inverse"]

LR_REF = 3e-4  # effective time is counted in steps at this peak learning rate
B_REF = 2_097_152  # ... and this batch (Pythia: 1024 x 2048 tokens)
WD_REF = 0.1
MIN_LR_RATIO = 0.1  # cosine/linear decay to 10 % of the peak (Pythia, most LLM recipes)
GRID = 1024
REF_STEPS = 143_000  # the "fraction" clocks count the planned run in units of Pythia's 143,000 steps
# the clocks time can be counted in (``predictor.clock`` chooses one by leave-one-family-out error); each is in
# units that equal Pythia-160m's optimizer steps at its learning rate and batch where that makes sense
CLOCKS: dict[str, str] = {
    "steps": "optimizer steps",
    "tokens": "tokens seen, in steps of 2,097,152 tokens (B_REF)",
    "fraction": "fraction of the planned run, x 143,000",
    "lr_integral": "effective time: integral of (lr(s)/3e-4)^kappa (B/2M)^beta g(wd) ds over the planned schedule",
    "lr_fraction": "the effective time's rate (peak lr, batch, weight decay, schedule) over the fraction of the planned run",
    "lr_plan": "effective time with its rate divided by (planned steps / 143,000)^g, g chosen by the data (g = 0: "
               "lr_integral, g = 1: lr_fraction)",
}


def lr_shape(s: np.ndarray, t_total: float, schedule: str, warmup_frac: float) -> np.ndarray:
    """Learning rate at steps ``s`` as a fraction of the peak, for a plan of ``t_total`` steps."""
    s = np.asarray(s, float)
    w = max(warmup_frac, 0.0) * t_total
    warm = np.clip(s / w, 0.0, 1.0) if w > 0 else np.ones_like(s)
    p = np.clip((s - w) / max(t_total - w, 1.0), 0.0, 1.0)
    if schedule == "constant":
        decay = np.ones_like(s)
    elif schedule == "linear":
        decay = 1.0 - (1.0 - MIN_LR_RATIO) * p
    elif schedule == "wsd":  # warmup-stable-decay: flat, then a linear cool-down over the last 10 %
        decay = np.where(p < 0.9, 1.0, 1.0 - (1.0 - MIN_LR_RATIO) * (p - 0.9) / 0.1)
    elif schedule == "inverse_sqrt":
        decay = np.sqrt(np.maximum(w, 1000.0) / np.maximum(s, np.maximum(w, 1000.0)))
    else:  # cosine and "other"
        decay = MIN_LR_RATIO + (1.0 - MIN_LR_RATIO) * 0.5 * (1.0 + np.cos(math.pi * p))
    return warm * decay


@dataclass(frozen=True)
class PlanEffects:
    """Exponents of the effective-time integrand, fitted to peer grids (``fit_plan_effects``)."""

    kappa: float  # learning-rate exponent
    beta: float  # batch exponent (tokens per step)
    wd_grid: tuple[tuple[float, float], ...]  # (log10(wd + 1e-3), log10 g_wd) knots, g_wd(WD_REF) = 1
    sink_exponent: float  # b in sink ~ tau^b (how the peer metric maps to time)
    n_rows: int
    source: str
    clock: str = "lr_integral"  # what time is counted in (CLOCKS); the exponents above apply to the lr clocks only
    plan_exponent: float = 1.0  # the "lr_plan" clock: the rate is divided by (planned steps / REF_STEPS)^plan_exponent

    def wd_factor(self, wd: float) -> float:
        x = math.log10(max(wd, 0.0) + 1e-3)
        xs, ys = zip(*self.wd_grid, strict=True)
        return float(10.0 ** np.interp(x, xs, ys))

    def rate(self, lr: float, batch_tokens: float, wd: float) -> float:
        """Effective time per step at the peak learning rate (before the schedule's shape)."""
        return (lr / LR_REF) ** self.kappa * (batch_tokens / B_REF) ** self.beta * self.wd_factor(wd)


def _value(v) -> float:
    return float(str(v).split()[0].replace("M", "e6").replace("tok/step", ""))


def fit_plan_effects(evidence: pd.DataFrame) -> PlanEffects:
    """kappa, beta and the weight-decay factor from Gu et al.'s grids (2410.10781 Tables 9, 10, 2).

    log sink = c + b log10(steps) + b kappa log10(lr) (+ b beta log10 batch): the sink metric is a
    monotone measure of progress, so equal sink means equal effective time. The weight-decay grid
    (one step count) gives g_wd = (sink(wd) / sink(0.1))^(1/b)."""
    gu = evidence[evidence["arxiv"].astype(str).str.strip() == "2410.10781"]
    sink = gu[gu["metric"] == "sink_ratio_Sink1_eps0.3_pct"]
    lr = sink[sink["varied_variable"] == "learning_rate"]
    steps = lr["at_step_or_tokens"].str.extract(r"(\d+)k steps")[0].astype(float) * 1000
    lrs = lr["value"].astype(float)
    y = np.log10(lr["metric_value"].astype(float).to_numpy())
    X = np.column_stack([np.ones(len(lr)), np.log10(steps.to_numpy()), np.log10(lrs.to_numpy())])
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    b, b_kappa = float(coef[1]), float(coef[2])
    kappa = b_kappa / b
    bt = sink[sink["varied_variable"] == "batch_size"]
    bvals = bt["value"].map(lambda v: _value(v.replace("M tok/step", "e6")))
    yb = np.log10(bt["metric_value"].astype(float).to_numpy())
    slope_b = float(np.polyfit(np.log10(bvals.to_numpy(float)), yb, 1)[0]) if len(bt) >= 2 else 0.0
    beta = slope_b / b
    wd = sink[sink["varied_variable"] == "weight_decay"]
    wv = wd["value"].astype(float).to_numpy()
    ws = wd["metric_value"].astype(float).to_numpy()
    ref = float(np.interp(math.log10(WD_REF + 1e-3), np.log10(wv + 1e-3), np.log10(ws)))
    order = np.argsort(wv)
    grid = tuple((float(math.log10(wv[i] + 1e-3)), float((math.log10(ws[i]) - ref) / b)) for i in order)
    return PlanEffects(kappa=kappa, beta=beta, wd_grid=grid, sink_exponent=b, n_rows=len(lr) + len(bt) + len(wd),
                       source="arXiv 2410.10781 Tables 9 (lr x steps), 10 (batch), 2 (weight decay)")


def clock_rate(effects: PlanEffects, s: np.ndarray, total_steps: int, lr: float, schedule: str, warmup_frac: float,
               batch_tokens: float, weight_decay: float) -> np.ndarray:
    """d tau / d step at steps ``s`` in the clock ``effects.clock`` (``CLOCKS``)."""
    clock = effects.clock
    if clock == "steps":
        return np.ones_like(s)
    if clock == "tokens":
        return np.full_like(s, batch_tokens / B_REF)
    if clock == "fraction":
        return np.full_like(s, REF_STEPS / max(total_steps, 1))
    rate = effects.rate(lr, batch_tokens, weight_decay) * lr_shape(s, total_steps, schedule, warmup_frac)
    if clock == "lr_fraction":
        return rate * (REF_STEPS / max(total_steps, 1))
    if clock == "lr_plan":
        return rate * (REF_STEPS / max(total_steps, 1)) ** effects.plan_exponent
    if clock != "lr_integral":
        raise ValueError(f"clock: {clock!r} is not one of {', '.join(CLOCKS)}")
    return rate


class Timeline:
    """Effective time tau(t) of one training plan, tabulated once and interpolated (both ways)."""

    def __init__(self, total_steps: int, lr: float, schedule: str, warmup_frac: float, batch_tokens: float,
                 weight_decay: float, effects: PlanEffects, horizon: float | None = None):
        self.total_steps = int(total_steps)
        end = max(float(horizon or 0.0), float(total_steps))
        s = np.unique(np.concatenate([[0.0], np.geomspace(1.0, end, GRID), np.linspace(0.0, end, GRID)]))
        rate = clock_rate(effects, s, self.total_steps, lr, schedule, warmup_frac, batch_tokens, weight_decay)
        tau = np.concatenate([[0.0], np.cumsum(0.5 * (rate[1:] + rate[:-1]) * np.diff(s))])
        self.steps, self.tau = s, tau

    def __call__(self, t) -> np.ndarray:
        return np.interp(np.asarray(t, float), self.steps, self.tau)

    def step_at(self, tau: float) -> float | None:
        """First step at which effective time reaches ``tau`` (None: not within the tabulated plan)."""
        t = float(self.steps_at(np.array([tau]))[0])
        return None if math.isnan(t) else t

    def steps_at(self, tau: np.ndarray) -> np.ndarray:
        """``step_at`` for an array of effective times (NaN where not within the tabulated plan)."""
        tau = np.asarray(tau, float)
        i = np.searchsorted(self.tau, tau)
        j = np.clip(i, 1, len(self.tau) - 1)
        t0, t1, a, b = self.steps[j - 1], self.steps[j], self.tau[j - 1], self.tau[j]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(b > a, t0 + (tau - a) / (b - a) * (t1 - t0), t1)
        return np.where(tau > self.tau[-1], np.nan, np.where(i == 0, 0.0, t))


def arch_timeline(arch: Architecture, effects: PlanEffects, horizon: float | None = None) -> Timeline:
    """The effective time of ``arch``'s training plan. Cached per plan: tabulating one costs ~0.1 ms,
    sweeps and what-if variants share plans, and a ``Timeline`` is never changed once built."""
    return _timeline((arch.planned_steps, arch.learning_rate, arch.lr_schedule, arch.warmup_frac, arch.batch_tokens,
                      arch.weight_decay), effects, None if horizon is None else float(horizon))


@functools.lru_cache(maxsize=512)
def _timeline(plan: tuple, effects: PlanEffects, horizon: float | None) -> Timeline:
    return Timeline(*plan, effects, horizon=horizon)


def hill(u, p: float) -> np.ndarray:
    u = np.maximum(np.asarray(u, float), 0.0)
    up = np.power(u, p)
    return up / (1.0 + up)


def hill_inverse(h, p: float) -> np.ndarray:
    """u at which H(u) = h (0 < h < 1; clipped into it)."""
    h = np.clip(np.asarray(h, float), 1e-12, 1 - 1e-12)
    return (h / (1.0 - h)) ** (1.0 / p)
