"""Curve families for emergence trajectories, with analytic Jacobians.

Eq. 9 (arXiv 2508.03616):  f(t) = A exp(-lam x) ln(x) + K,  x = gamma t + t0.
Step response (the paper's rejected alternative): f(t) = K (1 - exp(-t / tau)) (+ offset c).
"""

from __future__ import annotations

import numpy as np

PARAM_NAMES: tuple[str, ...] = ("A", "lam", "gamma", "t0", "K")
STEP1_NAMES: tuple[str, ...] = ("K", "tau", "c")


def eq9(t, A, lam, gamma, t0, K):
    """Eq. 9. ``t`` is the raw training step; requires gamma t + t0 > 0."""
    x = gamma * np.asarray(t, dtype=float) + t0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return A * np.exp(-lam * x) * np.log(x) + K


def eq9_jacobian(t, A, lam, gamma, t0, K):
    """Columns d f / d(A, lam, gamma, t0, K)."""
    t = np.asarray(t, dtype=float)
    x = gamma * t + t0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        e = np.exp(-lam * x)
        lx = np.log(x)
        d_a = e * lx
        d_lam = -A * x * e * lx
        d_x = A * e * (1.0 / x - lam * lx)
    return np.column_stack([d_a, d_lam, t * d_x, d_x, np.ones_like(t)])


def step1(t, K, tau, c=0.0):
    """First-order step response c + K (1 - exp(-t / tau))."""
    t = np.asarray(t, dtype=float)
    with np.errstate(over="ignore", invalid="ignore"):
        return c + K * (1.0 - np.exp(-t / tau))


def step1_jacobian(t, K, tau, c=0.0):
    t = np.asarray(t, dtype=float)
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(-t / tau)
        return np.column_stack([1.0 - e, -K * t * e / tau**2, np.ones_like(t)])


def aic(rss: float, n: int, k: int) -> float:
    """AIC as in the published data set: n ln(RSS/n) + 2k."""
    rss = max(float(rss), np.finfo(float).tiny)
    return float(n * np.log(rss / n) + 2 * k)


def r2_score(y, yhat) -> float:
    y = np.asarray(y, dtype=float)
    ss_res = float(np.sum((y - yhat) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
