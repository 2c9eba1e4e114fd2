"""The level of a model's largest layer (log10 magnitude), lineage-aware: an empirical-Bayes Gaussian model.

One row per (measured model, protocol). With ``x`` the row's design vector (``predictor.engine.TERMS``: size,
design switches, protocol), ``g`` its lineage, ``u`` its weight-sharing family and ``w`` its width term
(2.5 (log10 d_model - 3.5), the size within a lineage)::

    y = b0 + x.beta + a_g + f_g(w) + e_u + eps
    beta_j ~ N(0, s_j^2)        width slope and intercept: flat (s = 10); protocol terms s = PROTOCOL_SD;
                                every other term s = tau_switch (estimated: shrunk where few lineages vary it)
    a_g ~ N(0, tau_lineage^2)   the lineage's own level (what its design switches do not say)
    f_g ~ GP(0, tau_local^2 exp(-(w - w')^2 / (2 ell^2)))   how the lineage departs from the common size slope
    e_u ~ N(0, tau_family^2)    each family's own deviation (shared by its base / instruct / VL rows)
    eps ~ N(0, sigma^2)         the rest (two protocols of one model differ by it)

Integrating out beta, a, f and e leaves y ~ N(0, K): K = F D F' + [g = g'] (tau_lineage^2 + tau_local^2 k(w, w'))
+ [u = u'] tau_family^2 + sigma^2 I. The six variances are set by maximising the log marginal likelihood
-1/2 y'K^-1 y - 1/2 log|K| with a weak log-normal prior (sd 1 in ln) around 0.3 decades (0.1 for sigma; 0.5 for
ell) that keeps a variance no data inform from collapsing to zero. The forecast of a new design is the Gaussian
conditional: mean k*' K^-1 y, variance k** - k*' K^-1 k*. A design of a known lineage has k* through its
siblings (nearest sizes weigh most: the lineage's level and local slope); a new lineage gets the common terms
and the between-lineage spread tau_lineage^2 + tau_local^2 in its variance. docs/LEVEL.md writes this out.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.optimize import minimize
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

__all__ = ["LineageLevel", "PROTOCOL_SD", "width_term"]

# the mean over sequences of per-sequence maxima and a corpus maximum differ little for massive activations:
# they sit on fixed tokens (first token, delimiters), the per-sequence maximum varies 4-7 % over probe sequences
# (2508.03616 Table 2) and the corpus maximum 3-10 % over subsamples of the 5,000 prompts (2605.15572); a
# protocol term is an offset of a few tenths of a decade at most, which the data then set
PROTOCOL_SD = 0.2
FLAT_SD = 10.0
HYPER = ("tau_switch", "tau_lineage", "tau_local", "length", "tau_family", "sigma")
HYPER_PRIOR = np.log(np.array([0.3, 0.3, 0.3, 0.5, 0.3, 0.1]))
HYPER_PRIOR_SD = 1.0
_STARTS = ((0.3, 0.5, 0.5, 0.5, 0.2, 0.05), (0.2, 0.8, 0.3, 0.3, 0.3, 0.03), (0.4, 0.3, 0.8, 1.0, 0.1, 0.1))


class LineageLevel(BaseEstimator):
    """Lineage-aware level model (module docstring). ``terms``: the names of X's columns; ``width``: the
    column that is the size within a lineage; ``protocol_prefix``: columns with the protocol prior."""

    def __init__(self, terms: tuple[str, ...] = (), width: str = "log_width", protocol_prefix: str = "protocol_",
                 flat: tuple[str, ...] = ("log_width",), interval_scale: float = 1.0, new_lineage_scale: float = 1.0,
                 start: tuple[float, ...] | None = None, protocol_sd: float = PROTOCOL_SD):
        self.start = start
        self.protocol_sd = protocol_sd
        self.terms = terms
        self.width = width
        self.protocol_prefix = protocol_prefix
        self.flat = flat
        self.interval_scale = interval_scale
        self.new_lineage_scale = new_lineage_scale

    # ------------------------------------------------------------------ fit
    def _prior_var(self, tau_switch: float) -> np.ndarray:
        v = [FLAT_SD**2]  # intercept
        for t in self.terms:
            v.append(FLAT_SD**2 if t in self.flat else self.protocol_sd**2 if t.startswith(self.protocol_prefix) else tau_switch**2)
        return np.array(v)

    def _F(self, X: np.ndarray) -> np.ndarray:
        return np.concatenate([np.ones((len(X), 1)), X], axis=1)

    def _cross(self, hyp: np.ndarray, Xa, la, ua, Xb, lb, ub) -> np.ndarray:
        tau_sw, tau_l, tau_loc, ell, tau_u, _ = hyp
        Fa, Fb = self._F(Xa), self._F(Xb)
        wa, wb = Xa[:, self.w_], Xb[:, self.w_]
        same = la[:, None] == lb[None, :]
        k = (Fa * self._prior_var(tau_sw)) @ Fb.T
        k = k + same * (tau_l**2 + tau_loc**2 * np.exp(-0.5 * ((wa[:, None] - wb[None, :]) / ell) ** 2))
        return k + (ua[:, None] == ub[None, :]) * tau_u**2

    def fit(self, X: np.ndarray, lineage, unit, y: np.ndarray) -> LineageLevel:
        X, y = np.asarray(X, float), np.asarray(y, float)
        lineage, unit = np.asarray(lineage, object), np.asarray(unit, object)
        if X.shape[1] != len(self.terms):
            raise ValueError(f"X has {X.shape[1]} columns for {len(self.terms)} terms")
        self.w_ = list(self.terms).index(self.width)
        n = len(y)
        # the kernel's pieces, computed once: K(theta) is a weighted sum of them
        F = self._F(X)
        v_sw = self._prior_var(1.0)
        is_sw = np.array([False] + [not (t in self.flat or t.startswith(self.protocol_prefix)) for t in self.terms])
        G_fixed = (F[:, ~is_sw] * v_sw[~is_sw]) @ F[:, ~is_sw].T
        G_sw = F[:, is_sw] @ F[:, is_sw].T
        same_l = (lineage[:, None] == lineage[None, :]).astype(float)
        same_u = (unit[:, None] == unit[None, :]).astype(float)
        sqd = (X[:, self.w_][:, None] - X[:, self.w_][None, :]) ** 2
        eye = np.eye(n)

        def nll(th: np.ndarray) -> float:
            h = np.exp(th)
            K = (G_fixed + h[0] ** 2 * G_sw + same_l * (h[1] ** 2 + h[2] ** 2 * np.exp(-0.5 * sqd / h[3] ** 2))
                 + same_u * h[4] ** 2 + (h[5] ** 2 + 1e-9) * eye)
            try:
                c = np.linalg.cholesky(K)
            except np.linalg.LinAlgError:
                return 1e12
            a = np.linalg.solve(c, y)
            return float(0.5 * a @ a + np.log(np.diag(c)).sum() + 0.5 * np.sum(((th - HYPER_PRIOR) / HYPER_PRIOR_SD) ** 2))

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            starts = (self.start,) if self.start is not None else _STARTS  # a fold starts from the full fit's
            best = min((minimize(nll, np.log(np.asarray(s, float)), method="L-BFGS-B", bounds=[(-6.0, 1.5)] * 6)
                        for s in starts), key=lambda r: r.fun)
        self.hyper_ = np.exp(best.x)
        self.log_evidence_ = -float(best.fun)
        K = self._cross(self.hyper_, X, lineage, unit, X, lineage, unit) + (self.hyper_[5] ** 2 + 1e-9) * np.eye(n)
        self.chol_ = np.linalg.cholesky(K)
        self.alpha_ = np.linalg.solve(self.chol_.T, np.linalg.solve(self.chol_, y))
        self.X_, self.lineage_, self.unit_, self.y_ = X, lineage, unit, y
        # the posterior of the linear terms (intercept first): for what-if differences and the model card
        D = self._prior_var(self.hyper_[0])
        FD = self._F(X) * D
        V = np.linalg.solve(self.chol_, FD)
        self.coef_ = FD.T @ self.alpha_
        self.coef_cov_ = np.diag(D) - V.T @ V
        # what every prediction reads, computed once: the prior variances of the linear terms, the training rows'
        # F and the training lineages as a set
        self.prior_var_ = D
        self.F_ = self._F(X)
        self.lineage_set_ = frozenset(lineage.tolist())
        self.lineages_ = sorted(set(lineage))
        self.support_ = {t: len(set(lineage[X[:, j] != 0])) for j, t in enumerate(self.terms)}
        self.n_models_ = n
        self.n_groups_ = len(self.lineages_)
        return self

    # ------------------------------------------------------------------ predict
    def predict(self, X: np.ndarray, lineage=None) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sd (log10) of a new family's level per row; ``lineage`` per row (unknown or None: new). The sd is
        scaled by ``interval_scale`` for a known lineage and ``new_lineage_scale`` for a new one (each the factor
        that makes the 90 % interval cover 90 % of that question's held-out models, ``registry.evaluation``)."""
        check_is_fitted(self, "alpha_")
        return self._predict(X, lineage)

    def _predict(self, X: np.ndarray, lineage=None) -> tuple[np.ndarray, np.ndarray]:
        """``predict`` of a fitted model (the engine's hot path: no fitted check)."""
        X = np.atleast_2d(np.asarray(X, float))
        lineage = [None] * len(X) if lineage is None else list(lineage)
        known = [g in self.lineage_set_ for g in lineage]
        tau_sw, tau_l, tau_loc, ell, tau_u, sigma = self.hyper_
        F = self._F(X)
        Ks = (F * self.prior_var_) @ self.F_.T
        # a new lineage shares no lineage and no family with a training row (a new unit never does): its covariance
        # with them is the linear terms' alone, so its variance is the linear terms' posterior's (coef_cov_), the
        # same Gaussian algebra as below without its solve
        var = ((F @ self.coef_cov_) * F).sum(axis=1) + tau_l**2 + tau_loc**2 + tau_u**2 + sigma**2
        if any(known):  # a known lineage's siblings
            k = np.flatnonzero(known)
            same = np.asarray(lineage, object)[k, None] == self.lineage_[None, :]
            w = self.X_[:, self.w_]
            Ks[k] += same * (tau_l**2 + tau_loc**2 * np.exp(-0.5 * ((X[k, self.w_][:, None] - w[None, :]) / ell) ** 2))
            v = np.linalg.solve(self.chol_, Ks[k].T)
            var[k] = ((F[k] ** 2) * self.prior_var_).sum(axis=1) + tau_l**2 + tau_loc**2 + tau_u**2 + sigma**2 - (v * v).sum(axis=0)
        mean = (Ks * self.alpha_).sum(axis=1)  # each row's sum on its own: a row's mean does not depend on the others
        sd = np.sqrt(np.maximum(var, 1e-12))
        return mean, sd * np.where(known, self.interval_scale, self.new_lineage_scale)

    def diff(self, Xa: np.ndarray, Xb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sd of the common terms' effect of going from Xa to Xb (their posterior only: ``d' C d``)."""
        check_is_fitted(self, "coef_")
        return self._diff(Xa, Xb)

    def _diff(self, Xa: np.ndarray, Xb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``diff`` of a fitted model (the engine's hot path: no fitted check)."""
        d = np.atleast_2d(np.asarray(Xb, float) - np.asarray(Xa, float))
        c, C = self.coef_[1:], self.coef_cov_[1:, 1:]
        return d @ c, np.sqrt(np.maximum(((d @ C) * d).sum(axis=1), 0.0)) * self.interval_scale

    def coefficients(self) -> dict[str, dict[str, float]]:
        check_is_fitted(self, "coef_")
        sd = np.sqrt(np.maximum(np.diag(self.coef_cov_), 0.0))
        out = {t: {"coef": float(self.coef_[j + 1]), "sd": float(sd[j + 1]), "families": self.support_.get(t, 0)}
               for j, t in enumerate(self.terms)}
        out["intercept"] = {"coef": float(self.coef_[0]), "sd": float(sd[0]), "families": self.n_groups_}
        return out

    def hyperparameters(self) -> dict[str, float]:
        check_is_fitted(self, "hyper_")
        return {k: float(v) for k, v in zip(HYPER, self.hyper_, strict=True)}

    def members(self, lineage: str) -> np.ndarray:
        """Row indices of a lineage's measured members."""
        return np.flatnonzero(self.lineage_ == lineage)

    def lineage_effect(self, lineage: str, X: np.ndarray) -> float:
        """How far (log10) the lineage's members put this design above the common terms alone."""
        check_is_fitted(self, "alpha_")
        m_known, _ = self._predict(X, [lineage])
        m_new, _ = self._predict(X, [None])
        return float(m_known[0] - m_new[0])


def width_term(d_model: int) -> float:
    """The size within a lineage: 2.5 (log10 d_model - 3.5) (about log10 of parameters per the width's share)."""
    return 2.5 * (math.log10(d_model) - 3.5)
