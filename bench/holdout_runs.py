"""The nowcast's out-of-generator test set (issue 29): trajectories that played no part in choosing its shapes,
noise or persistence rule (``bench.nowcast_bench`` prints the tuning and the test set side by side).

Tuning set (what the shape grids, the noise and the persistence rule were chosen on):

- the synthetic runs of ``bench.synthetic_runs`` (Weibull plateaus, Eq. 9 early peaks with hand-set ranges,
  log-growth);
- the Pythia sizes ``TUNING_SIZES`` (pythia-14m, pythia-160m), leave one series out.

Test set (nothing chosen on it):

- ``eq9``: runs whose every layer is the seed paper's five-parameter Eq. 9 curve (``fitting.curves.eq9``,
  arXiv 2508.03616) with parameters drawn from the spread of the Eq. 9 fits that ``fitting`` makes of the
  bundled Pythia ratio series (``EmergenceCurveFitter(curve="eq9")`` on every layer of pythia-14m, -160m and -1b,
  fitted here, nothing hand-picked): per layer a parent fit (the source model's layer at the same relative
  depth), its nonlinear parameters (log lam, log gamma, log t0) moved by a Gaussian with the fits' own
  covariance times Silverman's bandwidth factor (half of it shared by the run's layers, half per layer: a
  kernel-density draw), and the linear ones (A, K) set so the curve starts (step 0) at its parent's value at its
  series' first checkpoint and ends
  at its parent's end value times 10^N(0, 0.15). Draws that leave [1, 20000] on [0, t_end] are redrawn.
  Observed at the synthetic runs' checkpoints (``STEPS_FRAC``) with the same 4 % probe noise.
- ``dinov2``: DINOv2 ViT-g/14's output-token norm ratio (upper edge of the outlier-token density over the bulk
  mode, ``trajectories_more.csv``, arXiv 2309.16588 Fig. 4b digitised), 24 checkpoints to 625k steps, read as a
  top1/median-like series of its last layer. The 25k point is left out (its row says "ratio unreliable"). The
  OLMo-1B / OLMoE rows of the same file count sink *heads* (a share of heads with first-token selectivity),
  a different criterion from a top1/median activation ratio: they are not used.
- ``pythia-1b``: the held-out Pythia size (its prior engine fitted without it, as in the leave-one-out backtest).
"""

from __future__ import annotations

import math
import warnings
from importlib import resources

import numpy as np
import pandas as pd

from fitting.curves import eq9
from predictor.architecture import Architecture

TUNING_SIZES = ("pythia-14m", "pythia-160m")
HELD_OUT_SIZE = "pythia-1b"
FIT_SIZES = ("pythia-14m", "pythia-160m", "pythia-1b")
EQ9_ARCHS = ("pythia-160m", "pythia-1b")
EQ9_RUNS = 20  # per architecture
EQ9_SEED = 29_000  # the test draws' seeds (the synthetic tuning runs use 0..19)
END_JITTER = 0.15  # log10 sd of each layer's end value around its parent's
RATIO_RANGE = (1.0, 2e4)
DINOV2_ARCH = Architecture(name="dinov2-vit-g14", n_layers=40, d_model=1536, n_heads=24, d_ffn=6144, total_steps=625_000,
                           causal_lm=False)


def eq9_fits(stats: pd.DataFrame | None = None) -> pd.DataFrame:
    """Eq. 9 fits (``fitting.estimator``) of every layer's top1/median series of the ``FIT_SIZES``; one row per
    usable fit (its curve finite and >= 1 from step 0 to the plan's end, 143,000 steps)."""
    from bench.nowcast_bench import series_frame
    from collector.reference import load_reference_stats
    from fitting.estimator import EmergenceCurveFitter

    stats = load_reference_stats() if stats is None else stats
    t_end = 143_000.0
    grid = np.concatenate([[0.0], np.geomspace(1.0, t_end, 256)])
    rows = []
    for model in FIT_SIZES:
        d = series_frame(stats, model)
        d = d[d["y_ratio"].notna()]
        n_layers = int(d["layer"].max()) + 1
        for layer, g in d.groupby("layer"):
            g = g.sort_values("step")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                f = EmergenceCurveFitter(curve="eq9").fit(g["step"].to_numpy(float), 10 ** g["y_ratio"].to_numpy(float))
            if not f.ok_:
                continue
            p = f.params_
            v = eq9(grid, **p)
            if not (np.isfinite(v).all() and v.min() >= RATIO_RANGE[0] and v.max() <= RATIO_RANGE[1]):
                continue
            first = float(eq9(np.array([g["step"].min()], float), **p)[0])  # at the series' first checkpoint (init)
            rows.append({"model": model, "layer": int(layer), "depth": int(layer) / max(n_layers - 1, 1), **p,
                         "y_start": max(first, 1.0), "y_end": float(v[-1])})
    return pd.DataFrame(rows)


def _theta(fits: pd.DataFrame) -> np.ndarray:
    return np.log(fits[["lam", "gamma", "t0"]].to_numpy(float))


def _linear(theta: np.ndarray, t0_step: float, t_end: float, y_start: float, y_end: float):
    """(A, K) of Eq. 9 with nonlinear parameters ``theta`` through (0, y_start) and (t_end, y_end); None if degenerate."""
    lam, gamma, t0 = np.exp(theta)
    g = eq9(np.array([t0_step, t_end]), 1.0, lam, gamma, t0, 0.0)
    if not np.isfinite(g).all() or abs(g[1] - g[0]) < 1e-9 * max(abs(g).max(), 1e-300):
        return None
    A = (y_end - y_start) / (g[1] - g[0])
    return float(A), float(y_start - A * g[0])


def make_eq9_run(fits: pd.DataFrame, arch: Architecture, seed: int, source: str | None = None) -> pd.DataFrame:
    """Rows (step, layer, top1, median, y_true) of one Eq. 9 run on ``arch`` (its plan), parameters drawn around
    the fits of ``source`` (default: the FIT_SIZES in turn by seed)."""
    from bench.synthetic_runs import NOISE_CV, STEPS_FRAC

    rng = np.random.default_rng(seed)
    source = source or FIT_SIZES[seed % len(FIT_SIZES)]
    theta_all = _theta(fits)
    n, d = theta_all.shape
    h = (n * (d + 2) / 4.0) ** (-1.0 / (d + 4))  # Silverman's factor
    chol = np.linalg.cholesky(np.cov(theta_all.T) * h**2 + 1e-9 * np.eye(d))
    src = fits[fits["model"] == source].sort_values("layer")
    t_end = float(arch.planned_steps)
    scale = t_end / 143_000.0  # the fits' clock is Pythia's plan; another plan stretches it
    steps = np.unique(np.round(np.array(STEPS_FRAC) * t_end).astype(int))
    grid = np.concatenate([[0.0], np.geomspace(1.0, t_end, 256)])
    shared = chol @ rng.standard_normal(d) / math.sqrt(2.0)
    rows = []
    L = arch.n_layers
    for layer in range(L):
        depth = layer / max(L - 1, 1)
        parent = src.iloc[int(np.argmin(np.abs(src["depth"].to_numpy() - depth)))]
        base = np.log([parent["lam"], parent["gamma"] / scale, parent["t0"]])
        curve = None
        for _ in range(100):
            theta = base + shared + chol @ rng.standard_normal(d) / math.sqrt(2.0)
            y_end = float(parent["y_end"]) * 10 ** (END_JITTER * rng.standard_normal())
            lin = _linear(theta, 0.0, t_end, float(parent["y_start"]), y_end)
            if lin is None:
                continue
            lam, gamma, t0 = np.exp(theta)
            v = eq9(grid, lin[0], lam, gamma, t0, lin[1])
            if np.isfinite(v).all() and v.min() >= RATIO_RANGE[0] and v.max() <= RATIO_RANGE[1]:
                curve = (lin[0], lam, gamma, t0, lin[1])
                break
        if curve is None:  # the parent itself, on this plan's clock
            curve = (parent["A"], parent["lam"], parent["gamma"] / scale, parent["t0"], parent["K"])
        y = np.log10(np.maximum(eq9(steps.astype(float), *curve), RATIO_RANGE[0]))
        noisy = y + math.log10(1.0 + NOISE_CV) * rng.standard_normal(len(steps))
        median = 0.05 * (1.0 + 0.02 * rng.standard_normal(len(steps)))
        for s, yt, yn, md in zip(steps, y, noisy, median, strict=True):
            rows.append({"step": int(s), "layer": layer, "top1": float(10**yn * md), "median": float(md), "y_true": float(yt)})
    return pd.DataFrame(rows)


def dinov2_series() -> pd.DataFrame:
    """DINOv2 ViT-g/14's last layer: (step, layer, top1, median, y_ratio) from ``trajectories_more.csv`` (upper edge
    of the output-token norm density as top1, the bulk mode as the median); the unreliable 25k point left out."""
    path = resources.files("maforecast") / "data" / "reference" / "trajectories_more.csv"
    d = pd.read_csv(str(path))
    d = d[d["model"].str.startswith("DINOv2")]
    d = d[~d["confidence"].astype(str).str.contains("unreliable")]
    wide = d.pivot_table(index="step", columns="quantity", values="value", aggfunc="first")
    top = wide["output_token_L2norm_upper_edge_of_density (outlier tokens)"].astype(float)
    bulk = wide["output_token_L2norm_bulk_mode"].astype(float)
    out = pd.DataFrame({"step": wide.index.astype(int), "layer": DINOV2_ARCH.n_layers - 1, "top1": top.to_numpy(),
                        "median": bulk.to_numpy()})
    out["y_ratio"] = np.log10(out["top1"] / out["median"])
    return out.reset_index(drop=True)
