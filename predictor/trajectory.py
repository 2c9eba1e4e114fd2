"""Trajectory classes: the shapes a layer's log10 ratio can take over training, in u = tau / tau_e.

The engine's curve is a rise to a plateau. The evidence shows two more shapes, and a nowcast that
knows only the first extrapolates a run that is turning over upwards and flattens one that keeps
growing:

- ``plateau``: ``H(u)``, the rise to a steady state (the engine's Hill curve);
- ``early_peak``: ``H(u) (1 - rho H_2(u / c))``: rise, peak, then a decline by a fraction ``rho``
  of the rise towards a lower steady state (the paper's Eq. 9 early-peak class, arXiv 2508.03616;
  Pythia-14m layers 4-5 fall 0.2-0.7 decades after 20-22k steps);
- ``growth``: ``H(u) (1 + g log10(1 + u))``: keeps rising log-linearly after emergence (Pythia-1b
  middle layers: +0.3 decades from 24k to 100k steps; models trained for trillions of tokens).

Each class carries a small grid of its shape parameters (uniform within the class). Every shape is
normalised to the engine's curve at the planned end, ``g(u) H(u_end) / g(u_end)``: the engine's level
(fitted on end-of-training measurements) stays the value at the end in every class, and the classes
differ in how a run gets there, which is what early checkpoints can tell apart. With no
observations the forecast at the end is therefore the same whatever the class.

``class_prior`` turns the evidence's checkpoint series into prior class probabilities per depth
zone (first three layers, middle, last two): each layer classified by how well each class explains
it (``classify``), each series counting once per zone; ``TrajectoryClasses`` is that prior fitted once on the
emergence clock's series (the engine's part), or a nowcast's posterior in a new fitted object.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, logsumexp
from sklearn.base import BaseEstimator

from predictor.emergence_clock import EmergenceClock
from predictor.evidence import Evidence
from predictor.timeline import arch_timeline

__all__ = ["CLASSES", "SHAPES", "TrajectoryClasses", "ZONES", "as_dict", "log_u_of", "shape_values", "zone_index"]

CLASSES = ("plateau", "early_peak", "growth")
DECLINE_P = 2.0  # exponent of the decline's Hill factor
RHO = (0.15, 0.3, 0.5, 0.7)  # early peak: fraction of the rise lost by the steady state
DECLINE_AT = (1.5, 3.0, 6.0, 12.0, 24.0)  # early peak: decline midpoint in units of tau_e
GROWTH = (0.05, 0.12, 0.25, 0.4)  # growth: rise per decade of u, as a fraction of the rise at emergence
ZONES = ("first", "middle", "last")
PRIOR_COUNT = 1.0  # Dirichlet pseudo-count per class and zone: few series cannot rule a class out
SIGMA_CLASSIFY = 0.05  # log10: least noise assumed when classifying an evidence layer's trajectory (probe noise ~0.03)


@dataclass(frozen=True)
class Shapes:
    """The grid of shapes: one entry per (class, shape parameters)."""

    cls: np.ndarray  # (K,) index into CLASSES
    rho: np.ndarray
    c: np.ndarray
    g: np.ndarray

    @property
    def n(self) -> int:
        return len(self.cls)

    def log_prior(self, class_probs: np.ndarray) -> np.ndarray:
        """(L, K) log prior of each shape per layer: the class probability spread evenly over its shapes."""
        counts = np.bincount(self.cls, minlength=len(CLASSES)).astype(float)
        with np.errstate(divide="ignore"):
            return np.log(np.asarray(class_probs, float)[:, self.cls]) - np.log(counts[self.cls])[None, :]

    def subset(self, keep: np.ndarray) -> Shapes:
        """The shapes where ``keep`` (K,) is true."""
        return Shapes(self.cls[keep], self.rho[keep], self.c[keep], self.g[keep])

    def class_sums(self, w: np.ndarray) -> np.ndarray:
        """Sum a (..., K) array of shape weights into (..., 3) class weights."""
        out = np.zeros((*w.shape[:-1], len(CLASSES)))
        for j in range(len(CLASSES)):
            out[..., j] = w[..., self.cls == j].sum(axis=-1)
        return out


def default_shapes() -> Shapes:
    rows = [(0, 0.0, 1.0, 0.0)]
    rows += [(1, r, c, 0.0) for r in RHO for c in DECLINE_AT]
    rows += [(2, 0.0, 1.0, g) for g in GROWTH]
    a = np.array(rows, float)
    return Shapes(a[:, 0].astype(int), a[:, 1], a[:, 2], a[:, 3])


SHAPES = default_shapes()


def _raw(log_u: np.ndarray, p: np.ndarray, shapes: Shapes) -> np.ndarray:
    """Unnormalised shapes at log u: (K, *log_u.shape); ``p`` broadcasts against ``log_u``."""
    h = expit(p * log_u)[None]
    rho, c, g = (x.reshape((-1,) + (1,) * log_u.ndim) for x in (shapes.rho, shapes.c, shapes.g))
    decline = expit(DECLINE_P * (log_u[None] - np.log(c)))
    growth = np.log10(1.0 + np.exp(np.minimum(log_u, 700.0)))[None]
    return h * (1.0 - rho * decline) * (1.0 + g * growth)


def shape_values(log_u: np.ndarray, log_u_end: np.ndarray, p: np.ndarray, shapes: Shapes = SHAPES) -> np.ndarray:
    """Normalised shapes, (K, G, T): ``log_u`` (G, T) is log(tau / tau_e) per grid point and step,
    ``log_u_end`` (G,) the same at the planned end, ``p`` (G,) the Hill exponent."""
    p2 = np.asarray(p, float)[:, None]
    raw = _raw(log_u, p2, shapes)
    end = _raw(np.asarray(log_u_end, float)[:, None], p2, shapes)  # (K, G, 1)
    h_end = expit(p2 * np.asarray(log_u_end, float)[:, None])[None]
    return raw * h_end / np.maximum(end, 1e-300)


def classify(log_u: np.ndarray, dy: np.ndarray, p: float, sigma: float, shapes: Shapes = SHAPES) -> np.ndarray:
    """Class probabilities of one layer's series with equal prior odds: ``dy`` (T,) the rise above the
    start value at ``log_u`` (T,). Each shape's amplitude is integrated out (flat prior, white noise
    ``sigma``); the classes' likelihoods are averaged over their shapes."""
    ok = np.isfinite(dy)
    if ok.sum() < 3:
        return np.full(len(CLASSES), 1.0 / len(CLASSES))
    lu, y = log_u[ok], dy[ok]
    s = shape_values(lu[None, :], np.array([lu.max()]), np.array([p]), shapes)[:, 0, :]  # (K, T)
    a = (s * s).sum(axis=1)
    b = (s * y[None, :]).sum(axis=1)
    rss = (y @ y) - b * b / np.maximum(a, 1e-300)
    ll = -rss / (2 * sigma**2) - 0.5 * np.log(np.maximum(a, 1e-300))
    lp = shapes.log_prior(np.full((1, len(CLASSES)), 1.0 / len(CLASSES)))[0] + ll
    w = np.exp(lp - logsumexp(lp))
    return shapes.class_sums(w)


def class_prior(rows: list[tuple[str, str, np.ndarray]]) -> dict[str, list[float]]:
    """Prior class probabilities per depth zone from classified evidence layers: ``rows`` of (series, zone,
    class probabilities). A series counts once per zone (its layers averaged: the layers of one run are not
    independent evidence), with a Dirichlet(PRIOR_COUNT) prior per zone."""
    out = {}
    for z in ZONES:
        series = sorted({m for m, zone, _ in rows if zone == z})
        means = [np.mean([p for m, zone, p in rows if m == s and zone == z], axis=0) for s in series]
        tot = np.sum(means, axis=0) if means else np.zeros(len(CLASSES))
        out[z] = [float(v) for v in (tot + PRIOR_COUNT) / (len(means) + PRIOR_COUNT * len(CLASSES))]
    return out


def uniform_prior() -> dict[str, list[float]]:
    return {z: [1.0 / len(CLASSES)] * len(CLASSES) for z in ZONES}


def as_dict(probs) -> dict[str, float]:
    return {c: round(float(v), 4) for c, v in zip(CLASSES, probs, strict=True)}


def zone_index(n_layers: int) -> np.ndarray:
    """Each layer's index into ``ZONES`` in a model of ``n_layers``: the first three layers, the middle, the last two."""
    layer = np.arange(n_layers)
    return np.where(layer <= 2, 0, np.where(layer >= n_layers - 2, 2, 1))


class TrajectoryClasses(BaseEstimator):
    """The probabilities of the trajectory classes per layer: the prior per depth zone the checkpoint series show
    (``class_prior``), or a nowcast's posterior, which makes a new fitted object (``given``)."""

    def __init__(self, sigma: float = SIGMA_CLASSIFY):
        self.sigma = sigma  # least noise assumed when classifying an evidence layer

    def fit(self, ev: Evidence, clock: EmergenceClock) -> TrajectoryClasses:
        """Every layer of every checkpoint series the ``clock`` fitted classified on its own curve's clock (tau_e, p)
        with white noise at the series' misfit (at least ``sigma``). Sets ``prior_`` (zone -> class probabilities),
        ``evidence_`` (each layer's), ``posterior_probabilities_`` (None: the prior applies)."""
        traj = ev.layers[ev.layers["step"].notna()]
        rows, table = [], []
        for model, f in clock.curves_.items():
            sub = traj[traj["model"] == model]
            q = "ratio" if sub["y_ratio"].notna().any() else "abs"
            piv = sub.pivot_table(index="layer", columns="step", values=f"y_{q}")
            steps = piv.columns.to_numpy(float)
            tl = arch_timeline(ev.archs[model], clock.series_effects_, horizon=float(steps.max()))
            with np.errstate(divide="ignore"):
                log_u = np.log(np.maximum(tl(steps), 1e-300)) - math.log(10.0) * f.log_tau_e
            n_layers = ev.archs[model].n_layers
            for layer, y in piv.iterrows():
                i = int(np.flatnonzero(f.layers == layer)[0])
                probs = classify(log_u, y.to_numpy(float) - f.y0[q][i], f.p, max(f.rmse, self.sigma))
                zone = ZONES[int(zone_index(n_layers)[layer])]
                rows.append((model, zone, probs))
                table.append({"model": model, "layer": int(layer), "zone": zone, "quantity": q,
                              **{c: float(v) for c, v in zip(CLASSES, probs, strict=True)}})
        self.prior_ = class_prior(rows) if rows else uniform_prior()
        self.evidence_ = table
        self.posterior_probabilities_: np.ndarray | None = None
        self._dicts: dict[int, list[dict[str, float]]] = {}  # ``dicts`` of the prior, per depth
        return self

    def given(self, probs: np.ndarray) -> TrajectoryClasses:
        """A new fitted object whose probabilities are a nowcast's posterior ``probs`` (L, 3), for its design."""
        out = copy.copy(self)
        out.posterior_probabilities_ = probs
        return out

    def probabilities(self, n_layers: int) -> np.ndarray:
        """(L, 3) probabilities of the classes per layer in a model of ``n_layers``: the prior's by depth zone (they
        depend on the depth alone), or the posterior's."""
        if self.posterior_probabilities_ is not None:
            return self.posterior_probabilities_
        return np.array([self.prior_[z] for z in ZONES], float)[zone_index(n_layers)]

    def dicts(self, n_layers: int) -> list[dict[str, float]]:
        """``as_dict`` of each layer's ``probabilities`` (shared: copy before handing out). The prior's are made once
        per depth, a posterior's once per call."""
        if self.posterior_probabilities_ is not None:
            return _class_dicts(self.posterior_probabilities_)
        hit = self._dicts.get(n_layers)
        if hit is None:
            hit = self._dicts[n_layers] = _class_dicts(self.probabilities(n_layers))
        return hit


def _class_dicts(probs: np.ndarray) -> list[dict[str, float]]:
    """``as_dict`` of each row (layers of one depth zone share a row: each distinct row is rounded once; every
    layer gets its own dict)."""
    seen: dict[tuple, dict[str, float]] = {}
    out = []
    for r in probs.tolist():
        key = tuple(r)
        d = seen.get(key)
        if d is None:
            d = seen[key] = as_dict(r)
        out.append(d.copy())
    return out



def log_u_of(tau: np.ndarray, lt: np.ndarray) -> np.ndarray:
    """log(tau / 10^lt) for every grid point: (G, T) from tau (T,) and log10 tau_e (G,)."""
    with np.errstate(divide="ignore"):
        return np.log(np.maximum(np.asarray(tau, float), 1e-300))[None, :] - math.log(10.0) * np.asarray(lt, float)[:, None]
