"""Scikit-learn style fitter for one emergence trajectory.

Why the care: with 6-9 checkpoints the five Eq. 9 parameters sit on ridges (huge |A| with a
compensating K, lam -> 0, extreme gamma) while R^2 stays ~0.99. The fitter therefore

* normalizes t to [0, 1] and y to [0, 1] (the paper's recipe), fits, and scales back;
* chooses starting points by variable projection: for a grid of the nonlinear parameters
  (lam, gamma, t0) the linear ones (A, K) are solved in closed form, and the best distinct grid
  points (plus the paper's own start) seed trust-region least squares with the analytic Jacobian;
* reports the covariance, standard errors and a scaled-Jacobian condition number, and labels a
  fit ``ill_conditioned`` when its parameters are not identified even if the curve fits well;
* never raises on bad data: flat, too short, non-finite or negative series get a status.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.optimize import leastsq

from fitting.curves import (
    PARAM_NAMES,
    aic,
    eq9,
    eq9_jacobian,
    r2_score,
    step1,
    step1_jacobian,
)
from fitting.derived import Derived, derive

OK = "ok"
ILL = "ill_conditioned"
POOR = "poor_fit"
FLAT = "flat"
TOO_SHORT = "too_short"
MISSING = "missing"
NON_FINITE = "non_finite"
NEGATIVE = "negative"
FAILED = "failed"
GOOD_STATUSES = (OK, ILL)  # the curve is usable (ILL: the raw parameters are not)

# bounds in normalized space (t/T, (y - ymin)/yrange): A, lam, gamma, t0, K
_LO = np.array([-1e6, 0.0, 1e-6, 1e-6, -1e6])
_HI = np.array([1e6, 1e3, 1e9, 1e6, 1e6])
_LAM_GRID = np.concatenate([[0.0], np.geomspace(1e-7, 3.0, 16)])
_GAMMA_GRID = np.geomspace(0.3, 3e7, 18)
_T0_GRID = np.array([0.3, 1.0, 3.0])


class _Result:
    def __init__(self, x: np.ndarray, cost: float):
        self.x, self.cost = x, cost


def _minpack(resid, jac, q0: np.ndarray, maxfev: int) -> _Result | None:
    """Levenberg-Marquardt via MINPACK's lmder; None when it did not reach a finite point."""
    try:
        q, _, info, _, ier = leastsq(resid, q0, Dfun=jac, full_output=True, maxfev=maxfev)
    except (ValueError, OverflowError, TypeError):
        return None
    if not np.isfinite(q).all():
        return None
    cost = 0.5 * float(np.sum(resid(q) ** 2))
    return _Result(q, cost) if np.isfinite(cost) else None


def _project(b: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed-form least squares of ys ~ a * b_i + k for every row b_i (variable projection)."""
    bm = b.mean(axis=1, keepdims=True)
    bc = b - bm
    denom = (bc**2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        a = (bc * (ys - ys.mean())[None, :]).sum(axis=1) / denom
        k = ys.mean() - a * bm[:, 0]
        rss = ((a[:, None] * b + k[:, None] - ys[None, :]) ** 2).sum(axis=1)
    rss[~np.isfinite(rss) | (denom < 1e-18)] = np.inf
    return a, k, rss


class EmergenceCurveFitter:
    """Fit Eq. 9 (and the first-order step response) to one trajectory.

    Parameters
    ----------
    curve : "auto" | "eq9" | "step1"
        "auto" fits both families and selects by AIC; the Eq. 9 parameters are always reported.
    n_starts : int
        Maximum number of least-squares starts (best variable-projection grid points + the
        paper's start). Starts stop early once R^2 >= ``good_r2``.
    min_points : int
        Fewer distinct steps than this -> status ``too_short``.
    max_rel_se : float
        A fit whose parameters have relative standard error above this (or that sits on a
        bound, or whose scaled Jacobian is singular) is labelled ``ill_conditioned``.
    min_r2 : float
        Below this the curve itself is not trusted: status ``poor_fit``.
    t_end : float | None
        Planned end of training for the derived quantities (default: last observed step).
    diagnostics : bool
        False skips covariance, identifiability checks and derived quantities: parameters and
        R^2 only (status ``ok`` or ``poor_fit``), for callers that just need a curve's
        parameters fast (the predictor's per-layer reconstruction at request time).
    """

    def __init__(
        self,
        curve: str = "auto",
        n_starts: int = 4,
        good_r2: float = 0.999,
        min_points: int = 5,
        max_rel_se: float = 1.0,
        max_condition: float = 1e10,
        min_r2: float = 0.8,
        t_end: float | None = None,
        max_nfev: int = 100,
        diagnostics: bool = True,
    ):
        self.curve = curve
        self.n_starts = n_starts
        self.good_r2 = good_r2
        self.min_points = min_points
        self.max_rel_se = max_rel_se
        self.max_condition = max_condition
        self.min_r2 = min_r2
        self.t_end = t_end
        self.max_nfev = max_nfev
        self.diagnostics = diagnostics

    # ------------------------------------------------------------------ public API
    def fit(self, t, y) -> EmergenceCurveFitter:
        if self.curve not in ("auto", "eq9", "step1"):
            raise ValueError(f"curve must be 'auto', 'eq9' or 'step1', got {self.curve!r}")
        self._reset()
        t = np.asarray(t, dtype=float).ravel()
        y = np.asarray(y, dtype=float).ravel()
        if t.shape != y.shape:
            return self._finish(FAILED, f"t and y differ in length ({t.size} vs {y.size})")
        missing = np.isnan(y) | np.isnan(t)
        t, y = t[~missing], y[~missing]
        self.n_points_ = int(t.size)
        self.t_ = t
        self.y_ = y
        if t.size == 0:
            return self._finish(MISSING, "no measured values")
        if not (np.isfinite(t).all() and np.isfinite(y).all()):
            return self._finish(NON_FINITE, "series contains infinite values")
        if (y < 0).any() or (t < 0).any():
            return self._finish(NEGATIVE, "negative values: magnitudes and steps must be >= 0")
        order = np.argsort(t, kind="stable")
        t, y = t[order], y[order]
        self.t_, self.y_ = t, y
        self.t_min_ = float(t.min())
        self.t_end_ = float(self.t_end if self.t_end is not None else t.max())
        if np.unique(t).size < self.min_points:
            return self._finish(TOO_SHORT, f"{np.unique(t).size} distinct steps < {self.min_points}")
        yr = float(y.max() - y.min())
        if yr <= 1e-9 * max(float(np.abs(y).max()), 1e-300):
            self.params_ = {"A": 0.0, "lam": 0.0, "gamma": float("nan"), "t0": float("nan"), "K": float(y.mean())}
            self.curve_ = "none"
            self.derived_ = Derived(None, None, "log_increase", None, float(y.mean()), float(y.mean()))
            return self._finish(FLAT, "series is constant: no emergence to fit")
        self._scale = (float(t.max()), float(y.min()), yr)
        ts, ys = t / self._scale[0], (y - self._scale[1]) / yr
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ok9 = self._fit_eq9(ts, ys) if self.curve in ("auto", "eq9") else False
                ok1 = self._fit_step1(ts, ys) if self.curve in ("auto", "step1") else False
        except (ValueError, np.linalg.LinAlgError, FloatingPointError, OverflowError) as exc:
            return self._finish(FAILED, f"optimizer failed: {exc}")
        if not ok9 and not ok1:
            return self._finish(FAILED, "no start converged to a finite curve")
        use_step1 = ok1 and (not ok9 or (self.curve == "step1") or self.aic_step1_ < self.aic_eq9_)
        self.curve_ = "step1" if use_step1 else "eq9"
        yhat = self.predict(t)
        self.residuals_ = y - yhat
        _, ymin, yr = self._scale  # R^2 is affine-invariant: compute it on normalized data (no under/overflow)
        self.r2_ = r2_score((y - ymin) / yr, (yhat - ymin) / yr)
        self.rmse_ = float(yr * np.sqrt(np.mean((self.residuals_ / yr) ** 2)))  # scaled: no overflow
        self.aic_ = self.aic_step1_ if use_step1 else self.aic_eq9_
        if not self.diagnostics:
            good = np.isfinite(self.r2_) and self.r2_ >= self.min_r2
            return self._finish(OK if good else POOR, None if good else f"R^2 {self.r2_:.3f} < {self.min_r2}")
        if self.curve_ == "step1":
            self.derived_ = derive(self.step1_params_, self.t_end_, curve="step1")
        else:
            self.derived_ = derive(self.params_, self.t_end_, curve="eq9")
        if not np.isfinite(self.r2_) or self.r2_ < self.min_r2:
            return self._finish(POOR, f"R^2 {self.r2_:.3f} < {self.min_r2}: the curve does not describe the data")
        reason = self._ill_reason() if self.curve_ == "eq9" else None
        return self._finish(ILL if reason else OK, reason)

    def predict(self, t) -> np.ndarray:
        """Fitted curve at steps ``t`` (the selected family)."""
        self._check_fitted()
        t = np.asarray(t, dtype=float)
        if self.curve_ == "step1":
            p = self.step1_params_
            return step1(t, p["K"], p["tau"], p["c"])
        p = self.params_
        if self.curve_ == "none":
            return np.full_like(t, p["K"], dtype=float)
        return eq9(t, p["A"], p["lam"], p["gamma"], p["t0"], p["K"])

    def intervals(self, z: float = 1.96) -> dict[str, tuple[float, float]]:
        """Wald intervals (value +/- z SE) of the Eq. 9 parameters."""
        self._check_fitted()
        return {k: (v - z * self.se_[k], v + z * self.se_[k]) for k, v in self.params_.items()}

    @property
    def ok_(self) -> bool:
        """The curve is usable (status ok or ill_conditioned)."""
        return self.status_ in GOOD_STATUSES

    def summary(self) -> dict:
        """Flat dict in the fits-table (FitRow) vocabulary."""
        self._check_fitted()
        out = {
            "curve": self.curve_,
            "status": self.status_,
            "n_points": self.n_points_,
            "t_min": self.t_min_,
            "t_end": self.t_end_,
            "r2": self.r2_,
            "aic": self.aic_eq9_,
            "aic_step1": self.aic_step1_,
            "rmse": self.rmse_,
            "condition": self.condition_,
            "message": self.message_,
        }
        for k in PARAM_NAMES:
            out[k] = self.params_.get(k)
            out[f"se_{k}"] = self.se_.get(k)
        if self.step1_params_:
            out.update(tau=self.step1_params_["tau"], step1_K=self.step1_params_["K"], step1_c=self.step1_params_["c"])
        if self.derived_ is not None:
            out.update(self.derived_.as_dict())
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}

    # ------------------------------------------------------------------ internals
    def _reset(self) -> None:
        nan = float("nan")
        self.params_: dict[str, float] = {}
        self.se_: dict[str, float] = {}
        self.cov_ = None
        self.step1_params_: dict[str, float] = {}
        self.curve_ = "none"
        self.status_ = FAILED
        self.message_: str | None = None
        self.r2_ = nan
        self.rmse_ = nan
        self.aic_ = nan
        self.aic_eq9_ = nan
        self.aic_step1_ = nan
        self.condition_ = nan
        self.residuals_ = np.array([])
        self.derived_: Derived | None = None
        self.n_points_ = 0
        self.t_min_ = nan
        self.t_end_ = nan
        self._at_bound = False

    def _finish(self, status: str, message: str | None) -> EmergenceCurveFitter:
        self.status_ = status
        self.message_ = message
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "status_"):
            raise RuntimeError("EmergenceCurveFitter is not fitted; call fit(t, y) first")

    def _starts(self, ts: np.ndarray, ys: np.ndarray) -> list[np.ndarray]:
        """Variable projection over (lam, gamma, t0): closed-form (A, K), best distinct points first."""
        lam, gam, t0 = np.meshgrid(_LAM_GRID, _GAMMA_GRID, _T0_GRID, indexing="ij")
        lam, gam, t0 = lam.ravel(), gam.ravel(), t0.ravel()
        x = gam[:, None] * ts[None, :] + t0[:, None]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            b = np.exp(-lam[:, None] * x) * np.log(x)
        a, k, rss = _project(b, ys)
        self._grid = (lam, gam, t0, rss)
        order = np.argsort(rss)
        starts: list[np.ndarray] = []
        seen: set[tuple] = set()
        for i in order:
            if not np.isfinite(rss[i]) or len(starts) >= max(self.n_starts - 1, 1):
                break
            key = (lam[i], gam[i])  # distinct ridges, not the same point with another t0
            if key in seen:
                continue
            seen.add(key)
            starts.append(np.clip(np.array([a[i], lam[i], gam[i], t0[i], k[i]]), _LO, _HI))
        # the paper's start: A = range(y), K = min(y) + A/2, lam = 1/std(t), gamma = 1/range(t), t0 = 1
        paper = np.array([1.0, 1.0 / max(float(ts.std()), 1e-9), 1.0, 1.0, 0.5])
        if len(starts) < self.n_starts or not starts:
            starts.append(np.clip(paper, _LO, _HI))
        return starts

    def _fit_eq9(self, ts: np.ndarray, ys: np.ndarray) -> bool:
        best = None
        for p0 in self._starts(ts, ys):
            res = self._solve(p0, ts, ys)
            if res is None:
                continue
            if best is None or res.cost < best.cost:
                best = res
            if 1.0 - 2 * best.cost / max(float(((ys - ys.mean()) ** 2).sum()), 1e-300) >= self.good_r2:
                break
        if best is None:
            return False
        p = best.x
        n = ts.size
        rss = 2.0 * float(best.cost)
        self.aic_eq9_ = aic(rss, n, 5) + 2 * n * math.log(self._scale[2])  # AIC of the unscaled data
        T, ymin, yr = self._scale
        self.params_ = {"A": p[0] * yr, "lam": p[1], "gamma": p[2] / T, "t0": p[3], "K": ymin + yr * p[4]}
        self._pn = p
        if not self.diagnostics:
            return bool(np.isfinite(eq9(ts, *p)).all())
        # covariance in normalized space, then scaled back (the map is diagonal-linear)
        jac = eq9_jacobian(ts, *p)
        dof = n - 5
        scale_cols = np.maximum(np.abs(p), 1e-12)
        js = jac * scale_cols
        try:
            sv = np.linalg.svd(js, compute_uv=False)
            self.condition_ = float(sv[0] / sv[-1]) if sv[-1] > 0 else float("inf")
        except np.linalg.LinAlgError:
            self.condition_ = float("inf")
        d = np.array([yr, 1.0, 1.0 / T, 1.0, yr])
        if dof > 0:
            s2 = rss / dof
            try:  # a true inverse: pinv would hide the ridge direction of an unidentified fit
                cov_n = s2 * np.linalg.inv(jac.T @ jac)
            except np.linalg.LinAlgError:
                cov_n = np.full((5, 5), np.inf)
            self.cov_ = cov_n * np.outer(d, d)
            se = np.sqrt(np.clip(np.diag(self.cov_), 0, None))
            se[~np.isfinite(np.diag(self.cov_))] = np.inf
        else:
            self.cov_ = np.full((5, 5), np.inf)
            se = np.full(5, np.inf)
        self.se_ = dict(zip(PARAM_NAMES, map(float, se), strict=True))
        # A and K: linear bounds; gamma, t0: log-scale bounds; lam = 0 is a legitimate pure log climb
        self._at_bound = bool(
            abs(p[0]) >= 0.999 * _HI[0] or abs(p[4]) >= 0.999 * _HI[4] or p[1] >= 0.999 * _HI[1]
            or any(p[i] <= _LO[i] * 1.001 or p[i] >= _HI[i] * 0.999 for i in (2, 3))
        )
        return bool(np.isfinite(eq9(ts, *p)).all())

    def _solve(self, p0: np.ndarray, ts: np.ndarray, ys: np.ndarray):
        # Unconstrained Levenberg-Marquardt (MINPACK, called directly: least_squares' wrappers
        # cost more than the 30-point model) in coordinates that keep lam = u^2 >= 0,
        # gamma = e^g > 0, t0 = e^s > 0; A and K stay linear.
        def to_p(q):
            return np.array([q[0], q[1] ** 2, np.exp(q[2]), np.exp(q[3]), q[4]])

        jac_buf = np.empty((ts.size, 5))

        def resid(q):
            with np.errstate(all="ignore"):
                x = np.exp(q[2]) * ts + np.exp(q[3])
                r = q[0] * np.exp(-q[1] * q[1] * x) * np.log(x) + q[4] - ys
            return np.where(np.isfinite(r), r, 1e6)

        def jac(q):
            lam, gamma, t0 = q[1] * q[1], np.exp(q[2]), np.exp(q[3])
            with np.errstate(all="ignore"):
                x = gamma * ts + t0
                e = np.exp(-lam * x)
                lx = np.log(x)
                d_x = q[0] * e * (1.0 / x - lam * lx)
                jac_buf[:, 0] = e * lx
                jac_buf[:, 1] = -q[0] * x * e * lx * 2 * q[1]
                jac_buf[:, 2] = ts * d_x * gamma
                jac_buf[:, 3] = d_x * t0
                jac_buf[:, 4] = 1.0
            return np.where(np.isfinite(jac_buf), jac_buf, 0.0)

        q0 = np.array([p0[0], math.sqrt(max(p0[1], 0.0)), math.log(p0[2]), math.log(p0[3]), p0[4]])
        if q0[1] == 0.0:
            q0[1] = 1e-4  # d/du vanishes at u = 0; start just off it
        r = _minpack(resid, jac, q0, self.max_nfev)
        if r is None:
            return None
        with np.errstate(over="ignore"):
            r.x = to_p(r.x)
        if not np.isfinite(r.x).all():
            return None
        return r if np.isfinite(r.cost) else None

    def _fit_step1(self, ts: np.ndarray, ys: np.ndarray) -> bool:
        taus = np.geomspace(1e-6, 10.0, 15)
        with np.errstate(over="ignore", under="ignore"):
            k, c, rss = _project(1.0 - np.exp(-ts[None, :] / taus[:, None]), ys)
        i = int(np.argmin(rss))
        if not np.isfinite(rss[i]):
            return False
        best = (rss[i], np.array([k[i], taus[i], c[i]]))
        # tau = e^s > 0, unconstrained LM as for Eq. 9
        def resid(q):
            with np.errstate(all="ignore"):
                return q[0] * (1.0 - np.exp(-ts * np.exp(-q[1]))) + q[2] - ys

        def jac(q):
            with np.errstate(all="ignore"):
                j = step1_jacobian(ts, q[0], np.exp(q[1]), q[2])
                j[:, 1] *= np.exp(q[1])
            return np.where(np.isfinite(j), j, 0.0)

        k0, tau0, c0 = best[1]
        r = _minpack(resid, jac, np.array([k0, math.log(tau0), c0]), self.max_nfev)
        if r is None:
            return False
        r.x = np.array([r.x[0], math.exp(min(r.x[1], 700.0)), r.x[2]])
        T, ymin, yr = self._scale
        K, tau, c = r.x
        self.step1_params_ = {"K": float(K * yr), "tau": float(tau * T), "c": float(ymin + yr * c)}
        self.aic_step1_ = aic(2.0 * float(r.cost), ts.size, 3) + 2 * ts.size * math.log(yr)
        return True

    def _ill_reason(self) -> str | None:
        p = self._pn
        if self.n_points_ <= 5:
            return f"{self.n_points_} points for 5 parameters: parameters not identified (no residual degrees of freedom)"
        if self._at_bound:
            return "a parameter sits on its bound (ridge solution)"
        if not np.isfinite(self.condition_) or self.condition_ > self.max_condition:
            return f"scaled Jacobian condition number {self.condition_:.3g} > {self.max_condition:.0e}"
        T, _, yr = self._scale
        se = np.array([self.se_[k] for k in PARAM_NAMES])
        se_n = se / np.array([yr, 1.0, 1.0 / T, 1.0, yr])
        x_end = p[2] + p[3]
        rel = {
            "A": se_n[0] / max(abs(p[0]), 1e-12),
            # lam > 0: relative; lam = 0: uncertainty of the total decay exponent over training
            "lam": se_n[1] / p[1] if p[1] > 1e-12 else se_n[1] * x_end,
            "gamma": se_n[2] / p[2],
            "t0": se_n[3] / p[3],
            "K": se_n[4] / max(abs(p[4]), 1.0),  # relative to the data range
        }
        bad = {k: v for k, v in rel.items() if not np.isfinite(v) or v > self.max_rel_se}
        if bad:
            worst = max(bad, key=lambda k: bad[k] if np.isfinite(bad[k]) else np.inf)
            return f"relative standard error of {worst} is {bad[worst]:.3g} (> {self.max_rel_se}): parameters on a ridge"
        return self._log_climb_reason() or self._ridge_reason(se_n)

    def _log_climb_reason(self) -> str | None:
        """With lam = 0, Eq. 9 is A ln(t + t0/gamma) + A ln(gamma) + K: gamma, t0 and K are not
        separately identified. If an F-test does not reject lam = 0, neither are the fitted ones."""
        from scipy.optimize import minimize_scalar
        from scipy.stats import f as f_dist

        ts = self.t_ / self._scale[0]
        ys = (self.y_ - self._scale[1]) / self._scale[2]

        def rss_at(log_tau: np.ndarray) -> np.ndarray:
            return _project(np.log(ts[None, :] + np.exp(np.atleast_1d(log_tau))[:, None]), ys)[2]

        grid = np.linspace(math.log(1e-9), math.log(1e3), 40)
        i = int(np.argmin(rss_at(grid)))
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
        rss0 = float(minimize_scalar(lambda g: float(rss_at(g)[0]), bounds=(lo, hi), method="bounded").fun)
        rss1 = float(np.sum((self.residuals_ / self._scale[2]) ** 2))
        dof = self.n_points_ - 5
        if rss0 <= rss1 * (1.0 + float(f_dist.ppf(0.95, 1, dof)) / dof):
            return "a pure log climb (lam = 0) fits as well: gamma, t0 and K are not separately identified"
        return None

    def _ridge_reason(self, se_n: np.ndarray) -> str | None:
        """Likelihood-ratio check of the Wald intervals on the start grid.

        Grid points (lam, gamma, t0 with optimal A, K) inside the joint 95% likelihood region
        RSS <= RSS_min (1 + p/(n-p) F) but outside the matching Wald box (+/- sqrt(p F) SE)
        mean the covariance describes a curved ridge badly: the parameters are not identified.
        """
        from scipy.stats import f as f_dist

        n, k = self.n_points_, 5
        dof = n - k
        lam, gam, t0, rss = self._grid
        rss_min = float(np.sum((self.residuals_ / self._scale[2]) ** 2))
        q = float(f_dist.ppf(0.95, k, dof))
        inside = rss <= rss_min * (1.0 + k / dof * q)
        if not inside.any():
            return None
        c = math.sqrt(k * q)
        p = self._pn
        far = (
            (np.abs(lam[inside] - p[1]) > c * se_n[1] + 1e-12)
            | (np.abs(np.log(gam[inside] / p[2])) > c * se_n[2] / p[2] + 0.05)
            | (np.abs(np.log(t0[inside] / p[3])) > c * se_n[3] / p[3] + 0.05)
        )
        if far.any():
            return (
                f"{int(far.sum())} distinct (lam, gamma, t0) fit as well as the optimum but lie outside its "
                "intervals: parameters on a ridge"
            )
        return None
