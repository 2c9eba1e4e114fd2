"""Synthetic training runs of each trajectory class, for the nowcast backtest (``bench.nowcast_bench``).

A run is an architecture with a Pythia recipe (the clock is calibrated there) and one log10
top1/median series per layer, observed at the run's checkpoints with 4 % multiplicative noise (the
probe-text spread of a checkpoint's ratio, CV 4-7 %). The generator does **not** use the nowcast's
own shapes (``predictor.trajectory``); per layer:

- level: the value at the planned end, ``Y_end``, is drawn from the prior forecast of the
  architecture (its mean and 90 % band as a Gaussian, one model-level draw shared by the layers
  plus a per-layer one), so the backtest measures the shape and the update, not the level model
  (which has its own held-out scores in ``bench predictor``);
- timing: the step of half the rise, ``t_half``, is drawn from the prior's ``t_emerge`` interval
  (log-normal), one per run, each layer within +-0.1 decades of it;
- shape, per class:
  * ``plateau``: a saturating Weibull curve ``1 - exp(-ln2 (t / t_half)^k)``, k ~ U[0.8, 2.0]
    (not the Hill curve the nowcast uses);
  * ``early_peak``: the paper's Eq. 9 (arXiv 2508.03616) ``f(t) = A exp(-lam x) ln x + K``,
    ``x = gamma t + t0``, with its peak at ``t_peak`` ~ logU[5 %, 25 %] of the plan (the issue's
    "peaks around 20 % of the plan"), lam ~ logU[0.3, 3], and t0 set so that the curve loses a
    fraction D ~ U[0.1, 0.5] of its rise on the way to its steady state K;
  * ``growth``: the Weibull rise plus ``s log10(1 + t / t_half)``, s ~ U[0.1, 0.35] of the rise per
    decade (Pythia-1b's middle layers: about 0.2);
- each curve is mapped affinely (in log10) to run from ``y0`` ~ N(0.85, 0.03) at step 0 to ``Y_end``
  at the planned end.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import lambertw

from predictor.architecture import Architecture
from predictor.engine import Z90, ForecastEngine
from predictor.trajectory import CLASSES

__all__ = ["CLASSES", "make_run"]
NOISE_CV = 0.04
STEPS_FRAC = (0.0, 0.0005, 0.0035, 0.014, 0.028, 0.056, 0.11, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0)  # checkpoints, share of the plan


def _weibull(t: np.ndarray, t_half: float, k: float) -> np.ndarray:
    return 1.0 - np.exp(-math.log(2.0) * (t / t_half) ** k)


def _eq9_shape(t: np.ndarray, t_peak: float, lam: float, decline: float) -> np.ndarray:
    """Eq. 9 with A = 1, K = 0: peak at ``t_peak``, a fraction ``decline`` of the rise lost towards K."""
    x_star = math.exp(lambertw(1.0 / lam).real)
    f_star = math.exp(-lam * x_star) * math.log(x_star)
    target = -f_star * (1.0 - decline) / decline  # f(0) = exp(-lam t0) ln t0
    t0 = brentq(lambda x: math.exp(-lam * x) * math.log(x) - target, 1e-12, 1.0 - 1e-12)
    gamma = (x_star - t0) / t_peak
    x = gamma * t + t0
    return np.exp(-lam * x) * np.log(x)


def curve(cls: str, t: np.ndarray, t_end: float, t_half: float, rng: np.random.Generator) -> np.ndarray:
    """One layer's shape at steps ``t`` (any scale; mapped to the level afterwards)."""
    if cls == "plateau":
        return _weibull(t, t_half, rng.uniform(0.8, 2.0))
    if cls == "growth":
        return _weibull(t, t_half, rng.uniform(0.8, 2.0)) + rng.uniform(0.1, 0.35) * np.log10(1.0 + t / t_half)
    if cls == "early_peak":
        t_peak = t_end * math.exp(rng.uniform(math.log(0.05), math.log(0.25)))
        return _eq9_shape(t, t_peak, math.exp(rng.uniform(math.log(0.3), math.log(3.0))), rng.uniform(0.1, 0.5))
    raise ValueError(f"unknown class {cls!r}")


def make_run(engine: ForecastEngine, arch: Architecture, cls: str, seed: int) -> pd.DataFrame:
    """Rows (step, layer, top1, median, y_true) of one synthetic run of class ``cls``."""
    rng = np.random.default_rng(seed)
    t_end = float(arch.planned_steps)
    fc = engine.forecast_arrays(arch, [int(t_end)])
    L = arch.n_layers
    end_log = np.log10(fc.ratio_end.value)
    end_sd = (np.log10(fc.ratio_end.hi) - np.log10(fc.ratio_end.lo)) / (2 * Z90)
    Y_end = end_log + end_sd * (0.7 * rng.standard_normal() + 0.7 * rng.standard_normal(L))
    te = fc.t_emerge
    mid = [(v, lo, hi) for v, lo, hi in zip(te.value, te.lo, te.hi, strict=True) if v is not None]
    v, lo, hi = mid[len(mid) // 2] if mid else (0.02 * t_end, 0.01 * t_end, 0.05 * t_end)
    t_half_run = 10 ** (math.log10(v) + rng.standard_normal() * (math.log10(hi) - math.log10(lo)) / (2 * Z90))
    steps = np.unique(np.round(np.array(STEPS_FRAC) * t_end).astype(int))
    rows = []
    for layer in range(L):
        t_half = t_half_run * 10 ** rng.uniform(-0.1, 0.1)
        shape = curve(cls, np.concatenate([[0.0], steps.astype(float), [t_end]]), t_end, t_half, rng)
        f0, f_end = shape[0], shape[-1]
        y0 = 0.85 + 0.03 * rng.standard_normal()
        y = y0 + (Y_end[layer] - y0) * (shape[1:-1] - f0) / (f_end - f0)
        noisy = y + math.log10(1.0 + NOISE_CV) * rng.standard_normal(len(steps))
        median = 0.05 * (1.0 + 0.02 * rng.standard_normal(len(steps)))
        for s, yt, yn, md in zip(steps, y, noisy, median, strict=True):
            rows.append({"step": int(s), "layer": layer, "top1": float(10**yn * md), "median": float(md), "y_true": float(yt)})
    return pd.DataFrame(rows)
