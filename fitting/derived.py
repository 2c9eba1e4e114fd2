"""Quantities a user wants from a fitted curve (DESIGN.md section 5), defined once.

Every stage (predictor targets, service responses, plots) calls ``derive`` instead of
recomputing peaks or emergence steps on its own.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import lambertw

from fitting.curves import eq9, step1

EARLY_PEAK = "early_peak"
LOG_INCREASE = "log_increase"


@dataclass(frozen=True)
class Derived:
    t_peak: float | None  # step of the curve maximum when inside [0, t_end], else None
    value_peak: float | None  # f(t_peak) (the paper's ratio_peak for ratio curves)
    trajectory_class: str  # early_peak | log_increase
    t_emerge: float | None  # first step where half of the rise from f(0) to max_[0,t_end] f is done
    value_end: float  # f(t_end)
    steady_state: float  # K: the asymptote as t -> inf

    def as_dict(self) -> dict:
        return asdict(self)


def eq9_peak(A: float, lam: float, gamma: float, t0: float) -> float | None:
    """Stationary point of Eq. 9 (Eq. 11-13): lam x ln x = 1 -> x* = exp(W(1/lam)).

    Returns t_peak = (x* - t0) / gamma, or None when there is no stationary point (lam <= 0)
    or it is a minimum (A < 0).
    """
    if not (lam > 0 and gamma > 0 and A > 0) or not all(map(math.isfinite, (A, lam, gamma, t0))):
        return None
    w = lambertw(1.0 / lam).real
    x_star = math.exp(w) if w < 700 else math.inf
    if not math.isfinite(x_star):
        return None
    return (x_star - t0) / gamma


def _grid(t_end: float, n: int = 2048) -> np.ndarray:
    """Dense grid over [0, t_end], log-spaced at early steps where emergence happens."""
    if t_end <= 0:
        return np.array([0.0])
    return np.unique(np.concatenate([[0.0], np.geomspace(max(t_end * 1e-6, 1e-3), t_end, n), np.linspace(0, t_end, n)]))


def derive_curve(fn, t_end: float, t_peak_hint: float | None = None, steady_state: float | None = None) -> Derived:
    """Derived quantities of any curve ``fn(t)`` over [0, t_end] (numeric, shared by all families)."""
    grid = _grid(t_end)
    if t_peak_hint is not None and 0 < t_peak_hint < t_end:
        grid = np.unique(np.append(grid, t_peak_hint))
    vals = np.asarray(fn(grid), dtype=float)
    finite = np.isfinite(vals)
    if not finite.any():
        nan = float("nan")
        return Derived(None, None, LOG_INCREASE, None, nan, steady_state if steady_state is not None else nan)
    grid, vals = grid[finite], vals[finite]
    i_max = int(np.argmax(vals))
    f0, fmax = float(vals[0]), float(vals[i_max])
    # interior maximum (with a real decline after it) -> early peak
    interior = 0 < i_max < len(vals) - 1 and (fmax - float(vals[-1])) > 1e-6 * max(abs(fmax), 1e-12)
    t_peak = float(grid[i_max]) if interior else None
    value_peak = fmax if interior else None
    half = f0 + 0.5 * (fmax - f0)
    t_emerge = None
    if fmax > f0:
        idx = int(np.argmax(vals >= half))
        if idx > 0:  # linear interpolation between grid points
            t_a, t_b, v_a, v_b = grid[idx - 1], grid[idx], vals[idx - 1], vals[idx]
            t_emerge = float(t_a + (half - v_a) * (t_b - t_a) / (v_b - v_a)) if v_b != v_a else float(t_b)
        else:
            t_emerge = float(grid[0])
    return Derived(
        t_peak=t_peak,
        value_peak=value_peak,
        trajectory_class=EARLY_PEAK if interior else LOG_INCREASE,
        t_emerge=t_emerge,
        value_end=float(fn(np.array([t_end]))[0]),
        steady_state=float(steady_state) if steady_state is not None else float("nan"),
    )


def derive(params: dict, t_end: float, curve: str = "eq9") -> Derived:
    """Derived quantities from fitted parameters (``eq9``: A, lam, gamma, t0, K; ``step1``: K, tau, c)."""
    if curve == "eq9":
        A, lam, gamma, t0, K = (float(params[k]) for k in ("A", "lam", "gamma", "t0", "K"))
        hint = eq9_peak(A, lam, gamma, t0)
        return derive_curve(lambda t: eq9(t, A, lam, gamma, t0, K), t_end, hint, steady_state=K)
    if curve == "step1":
        K, tau, c = float(params["K"]), float(params["tau"]), float(params.get("c", 0.0))
        return derive_curve(lambda t: step1(t, K, tau, c), t_end, None, steady_state=K + c)
    raise ValueError(f"unknown curve family {curve!r}")
