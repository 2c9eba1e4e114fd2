"""Nowcast backtest: forecast the rest of a Pythia checkpoint series from its first k checkpoints.

``python -m bench nowcast`` (or ``python -m bench.nowcast_bench [--no-plot] [--no-synthetic] [--no-holdout]
[--no-speed] [--sensitivity]``: without the plot docs/nowcast_backtest.png, without the synthetic runs, without
the out-of-generator test set, without the speed table, with the nowcast's scores under other observation-noise
settings). For every bundled
Pythia series with at least 6 checkpoints the forecast engine is refitted without that model (its
own data never informs the prior). The first k checkpoints are observed (k = 2 .. n-1, and "every
checkpoint up to 20 % of the planned 143,000 steps"), and the remaining checkpoints are forecast by

- ``last``: each layer's last observed value carried forward (the constant baseline; no interval);
- ``prior``: the architecture forecast alone (``ForecastEngine.layer_curves``, its 90 % band);
- ``eq9``: a plain Eq. 9 fit per layer to the observed ratios alone (``EmergenceCurveFitter``, 5
  points at least; interval: delta method on its parameter covariance plus the residual variance);
- ``hill``: the nowcast's own model with a flat prior (data alone, same Hill curve, the plateau
  class only; white noise at the curve's in-sample RMS, its best setting);
- ``plateau``: the nowcast with the plateau class only (the nowcast before trajectory classes);
- ``nowcast``: the combination (``predictor.nowcast``), a mixture of the three trajectory classes.

The out-of-generator test set (``bench.holdout_runs``, issue 29: Eq. 9 runs drawn from the spread of the Eq. 9
fits of the Pythia series, DINOv2's token-norm ratio, the held-out pythia-1b) is printed beside the tuning set
(the generator, pythia-14m and -160m) with persistence as the baseline in the same run.

A second backtest runs synthetic runs of each class (``bench.synthetic_runs``: plateau, early peak
from the paper's Eq. 9, continued growth) observed to 20 % of the plan: per class the median over
runs of the end-of-training error factor (median over layers), the 90 % coverage of every future
(layer, checkpoint) and at the end, and the probability the nowcast gives the run's true class.

Scored in log10 of top1/median on every (layer, future checkpoint): the median absolute error, the
coverage of the 90 % interval, and at the series' last checkpoint the median over layers of the
error factor 10^|err| (the "end of training" target: x1.25). pythia-12b has no median in the
bundled data (top-1 |h| only), so it is scored on log10 top-1 |h| in a second table.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from collector.reference import load_reference_stats
from fitting.curves import eq9_jacobian
from fitting.estimator import EmergenceCurveFitter
from predictor.engine import Z90, ForecastEngine
from predictor.nowcast import Noise, Posterior
from registry.reference import build_evidence, reference_architectures

ROOT = Path(__file__).resolve().parent.parent
PLOT = ROOT / "docs" / "nowcast_backtest.png"
METHODS = ("last", "prior", "eq9", "hill", "plateau", "nowcast")
PLATEAU = np.array([1.0, 0.0, 0.0])  # class probabilities of the plateau-only nowcast
MIN_CHECKPOINTS = 6
EARLY_FRAC = 0.2
END_TARGET = math.log10(1.25)
SYNTHETIC_RUNS = 20
SYNTHETIC_ARCHS = ("pythia-160m", "pythia-1b")
NOISE = Noise()  # the nowcast's default: probe 0.03 white + misfit 0.2 correlated over 0.5 decades
DATA_NOISE = Noise(misfit=0.10, length=0.0)  # data-only Hill: white noise at the in-sample RMS (its best setting)
SENSITIVITY = (("white 0.10 (in-sample RMS)", Noise(misfit=0.10, length=0.0)),
               ("white 0.20", Noise(misfit=0.20, length=0.0)),
               ("correlated 0.10 / 0.5 dec", Noise(misfit=0.10, length=0.5)),
               ("correlated 0.15 / 0.5 dec", Noise(misfit=0.15, length=0.5)),
               ("correlated 0.20 / 0.5 dec (default)", Noise()),
               ("correlated 0.20 / 1.0 dec", Noise(misfit=0.20, length=1.0)))


def series_frame(stats: pd.DataFrame, model: str) -> pd.DataFrame:
    """(step, layer) -> top1, median (means over probe sequences), y_abs, y_ratio (log10)."""
    s = stats[(stats["model"] == model) & stats["step"].notna() & (stats["protocol"].astype(str) == "seq_mean")]
    g = s.groupby(["step", "layer"], as_index=False).agg(top1=("top1", "mean"), median=("median", "mean"))
    g["step"] = g["step"].astype(int)
    g["y_abs"] = np.log10(g["top1"].where(g["top1"] > 0))
    g["y_ratio"] = np.log10((g["top1"] / g["median"]).where(g["median"] > 0))
    return g


def _eq9(train: pd.DataFrame, test_steps: np.ndarray, col: str):
    """Per-layer Eq. 9 fits on the linear value; (mean, lo, hi) in log10 on (layer, test step), NaN where no fit."""
    layers = sorted(train["layer"].unique())
    out = np.full((3, max(layers) + 1, len(test_steps)), np.nan)
    for li in layers:
        sub = train[train["layer"] == li].sort_values("step")
        y = 10 ** sub[col].to_numpy(float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f = EmergenceCurveFitter(curve="eq9").fit(sub["step"].to_numpy(float), y)
        if not f.ok_:
            continue
        pred = f.predict(test_steps)
        p = f.params_
        J = eq9_jacobian(test_steps, p["A"], p["lam"], p["gamma"], p["t0"], p["K"])
        cov = f.cov_ if f.cov_ is not None and np.isfinite(f.cov_).all() else np.full((5, 5), np.inf)
        with np.errstate(invalid="ignore", over="ignore"):
            var = np.einsum("ij,jk,ik->i", J, cov, J) + f.rmse_**2 * len(y) / max(len(y) - 5, 1)
        with np.errstate(invalid="ignore"):
            sd = np.sqrt(np.where(np.isfinite(var) & (var >= 0), var, np.inf))
        floor = 1.0  # the ratio is >= 1 (top1 >= median); a fitted curve may dip below
        out[0, li] = np.log10(np.maximum(pred, floor))
        out[1, li] = np.log10(np.maximum(pred - Z90 * sd, floor))
        out[2, li] = np.log10(np.maximum(pred + Z90 * sd, floor))
    return out


def run_cut(engine: ForecastEngine, arch, data: pd.DataFrame, cut_step: int, q: str) -> list[dict]:
    """Observe every checkpoint <= cut_step, score each method on the later ones."""
    col = f"y_{q}"
    data = data[data[col].notna()]
    train, test = data[data["step"] <= cut_step], data[data["step"] > cut_step]
    test_steps = np.array(sorted(test["step"].unique()), float)
    if not len(test_steps) or not len(train):
        return []
    li = test["layer"].to_numpy(int)
    ti = np.searchsorted(test_steps, test["step"].to_numpy(float))
    y = test[col].to_numpy(float)
    obs = train[["step", "layer", "top1", "median", "y_abs", "y_ratio"]]
    if q == "abs":
        obs = obs.assign(y_ratio=np.nan)
    preds = {"last": carry_last(train, col, arch.n_layers, len(test_steps))}
    c = engine.layer_curves(arch, test_steps)[q]
    preds["prior"] = (c["mean"], c["lo"], c["hi"])
    preds["eq9"] = tuple(_eq9(train, test_steps, col))
    preds["hill"] = Posterior(engine, arch, obs, noise=DATA_NOISE, prior=False, class_probs=PLATEAU).predictive(q, test_steps)
    preds["plateau"] = Posterior(engine, arch, obs, noise=NOISE, class_probs=PLATEAU).predictive(q, test_steps)
    preds["nowcast"] = Posterior(engine, arch, obs, noise=NOISE).predictive(q, test_steps)
    last = test_steps[-1]
    end = ti == len(test_steps) - 1
    rows = []
    for method, (mean, lo, hi) in preds.items():
        m, lo_, hi_ = mean[li, ti], lo[li, ti], hi[li, ti]
        ok = np.isfinite(m)
        if not ok.any():
            rows.append({"method": method, "err": np.nan, "coverage": np.nan, "end_err": np.nan, "end_cov": np.nan})
            continue
        err = np.abs(m - y)
        cov = (y >= lo_ - 1e-12) & (y <= hi_ + 1e-12)
        interval = bool(np.isfinite(lo_).any())
        rows.append({
            "method": method,
            "err": float(np.median(err[ok])),
            "coverage": float(cov[ok].mean()) if interval else np.nan,
            "end_err": float(np.median(err[end & ok])) if (end & ok).any() else np.nan,
            "end_cov": float(cov[end & ok].mean()) if interval and (end & ok).any() else np.nan,
            "fitted": float(ok.mean()),
        })
    for r in rows:
        r.update(k=int(train["step"].nunique()), cut=int(cut_step), n_future=len(test_steps), last_step=int(last))
    return rows


def carry_last(train: pd.DataFrame, col: str, n_layers: int, n_steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The constant baseline: each layer's last observed value at every future step; no interval (NaN)."""
    last = np.full(n_layers, np.nan)
    for layer, g in train[train[col].notna()].groupby("layer"):
        last[int(layer)] = float(g.sort_values("step")[col].iloc[-1])
    mean = np.repeat(last[:, None], n_steps, axis=1)
    nan = np.full_like(mean, np.nan)
    return mean, nan, nan


def backtest(q: str = "ratio") -> pd.DataFrame:
    stats = load_reference_stats()
    archs = reference_architectures()
    ev = build_evidence(stats, archs)
    out = []
    for model in sorted(set(ev.layers.loc[ev.layers["step"].notna(), "model"])):
        data = series_frame(stats, model)
        col = f"y_{q}"
        steps = sorted(data.loc[data[col].notna(), "step"].unique())
        if len(steps) < MIN_CHECKPOINTS:
            continue
        engine = ForecastEngine().fit(ev.without({model}))
        arch = archs[model]
        early = int(EARLY_FRAC * arch.planned_steps)
        cuts = [(k, steps[k - 1]) for k in range(2, len(steps))]
        cuts.append(("20%", max(s for s in steps if s <= early)))
        for k, cut in cuts:
            for r in run_cut(engine, arch, data, cut, q):
                r.update(model=model, cut_label=str(k), quantity=q)
                out.append(r)
    return pd.DataFrame(out)


def _fmt_err(e: float) -> str:
    return "  n/a" if not np.isfinite(e) else f"{e:5.2f}"


def table(df: pd.DataFrame) -> str:
    """One row per (series, k): median |err| (log10), coverage, end-of-series error factor per method."""
    lines = []
    head = f"{'series':12s} {'k':>4s} {'obs<=step':>9s} {'next':>4s} | " + " | ".join(
        f"{m:^22s}" for m in METHODS)
    lines.append(head)
    lines.append(f"{'':12s} {'':>4s} {'':>9s} {'':>4s} | " + " | ".join(f"{'err  cov90  end x':^22s}" for _ in METHODS))
    for (model, label), g in df.groupby(["model", "cut_label"], sort=False):
        g = g.set_index("method")
        first = g.iloc[0]
        cells = []
        for m in METHODS:
            if m not in g.index or not np.isfinite(g.loc[m, "err"]):
                cells.append(f"{'n/a':^22s}")
                continue
            r = g.loc[m]
            endx = ("  n/a" if not np.isfinite(r["end_err"]) else " >1000" if r["end_err"] > 3
                    else f"{10 ** r['end_err']:5.2f}")
            cov = f"{r['coverage']:5.0%}" if np.isfinite(r["coverage"]) else "    -"
            cells.append(f"{_fmt_err(r['err'])} {cov} {endx:>7s}  ")
        lines.append(f"{model:12s} {label:>4s} {int(first['cut']):9d} {int(first['n_future']):4d} | " + " | ".join(cells))
    return "\n".join(lines)


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per method, over every (series, k) cell where all methods answer and at the 20 % cut."""
    rows = []
    cells = df.pivot_table(index=["model", "cut_label"], columns="method", values="err")
    common = cells.dropna().index
    for scope, sel in (("all k (every method answers)", lambda d: d.set_index(["model", "cut_label"]).index.isin(common)),
                       ("all k (each method where it answers)", lambda d: np.ones(len(d), bool)),
                       ("observed <= 20 % of t_end", lambda d: (d["cut_label"] == "20%").to_numpy())):
        sub = df[sel(df)]
        for m in METHODS:
            s = sub[(sub["method"] == m) & sub["err"].notna()]
            rows.append({"scope": scope, "method": m, "cells": len(s), "median_err": s["err"].median(),
                         "median_end_factor": 10 ** s["end_err"].median() if s["end_err"].notna().any() else np.nan,
                         "coverage": s["coverage"].mean(), "end_coverage": s["end_cov"].mean()})
    return pd.DataFrame(rows)


def plot(df: pd.DataFrame, path: Path = PLOT) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = df[df["cut_label"] != "20%"].copy()
    d["k"] = d["cut_label"].astype(int)
    models = sorted(d["model"].unique())
    fig, axes = plt.subplots(2, len(models), figsize=(4.2 * len(models), 6.4), squeeze=False, sharey="row")
    colors = {"last": "tab:brown", "prior": "tab:gray", "eq9": "tab:orange", "hill": "tab:blue", "plateau": "tab:purple", "nowcast": "tab:green"}
    for j, model in enumerate(models):
        g = d[d["model"] == model]
        for m in METHODS:
            s = g[g["method"] == m].sort_values("k")
            axes[0, j].plot(s["k"], s["err"], "o-", color=colors[m], label=m)
            axes[1, j].plot(s["k"], s["coverage"], "o-", color=colors[m], label=m)
        cut = df[(df["model"] == model) & (df["cut_label"] == "20%")]["k"]
        if len(cut):
            for ax in axes[:, j]:
                ax.axvline(int(cut.iloc[0]), color="k", lw=0.8, ls=":")
        axes[0, j].set_title(f"{model} (dotted: 20 % of t_end)")
        axes[1, j].set_xlabel("checkpoints observed (k)")
        axes[0, j].set_yscale("log")
    from matplotlib.ticker import MaxNLocator

    for ax in axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0, 0].set_ylabel("median |error| of future points, log10")
    axes[1, 0].set_ylabel("90 % interval coverage")
    for ax in axes[1]:
        ax.axhline(0.9, color="k", lw=0.6, ls="--")
        ax.set_ylim(0, 1.05)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Nowcast backtest on Pythia (prior engine fitted without the series), log10 top1/median")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def per_series(df: pd.DataFrame) -> pd.DataFrame:
    """The nowcast's 90 % coverage per series: at the 20 % cut and over every cut."""
    d = df[df["method"] == "nowcast"]
    rows = []
    for model, g in d.groupby("model"):
        cut = g[g["cut_label"] == "20%"]
        rows.append({"series": model, "cut 20 %": int(cut["cut"].iloc[0]) if len(cut) else None,
                     "cov90 at 20 %": float(cut["coverage"].iloc[0]) if len(cut) else np.nan,
                     "end x at 20 %": 10 ** float(cut["end_err"].iloc[0]) if len(cut) else np.nan,
                     "cov90 all cuts": float(g[g["cut_label"] != "20%"]["coverage"].mean())})
    return pd.DataFrame(rows)


def synthetic(n_runs: int = SYNTHETIC_RUNS, models: tuple[str, ...] = SYNTHETIC_ARCHS) -> pd.DataFrame:
    """Synthetic runs of each class (``bench.synthetic_runs``) observed to 20 % of the plan; one row per run and
    method (``last``: the constant baseline, ``nowcast``, ``plateau``): end error (log10, median over layers), coverage, true-class probability."""
    from bench.synthetic_runs import CLASSES, make_run
    from predictor.nowcast import observation_frame
    from registry.reference import reference_engine

    engine, archs = reference_engine(), reference_architectures()
    rows = []
    for model in models:
        arch = archs[model]
        cut = int(EARLY_FRAC * arch.planned_steps)
        for ci, cls in enumerate(CLASSES):
            for seed in range(n_runs):
                run = make_run(engine, arch, cls, seed)
                obs = observation_frame(run[run["step"] <= cut][["step", "layer", "top1", "median"]])
                fut = run[run["step"] > cut]
                steps = np.array(sorted(fut["step"].unique()), float)
                y = np.log10(fut["top1"] / fut["median"]).to_numpy()
                li, ti = fut["layer"].to_numpy(int), np.searchsorted(steps, fut["step"].to_numpy(float))
                end = ti == len(steps) - 1
                last = carry_last(obs, "y_ratio", arch.n_layers, len(steps))[0]
                rows.append({"arch": model, "class": cls, "seed": seed, "method": "last",
                             "end_err": float(np.median(np.abs(last[li, ti] - y)[end])), "coverage": np.nan,
                             "end_cov": np.nan, "p_true": np.nan})
                for method, probs in (("nowcast", None), ("plateau", PLATEAU)):
                    post = Posterior(engine, arch, obs, noise=NOISE, class_probs=probs)
                    m, lo, hi = post.predictive("ratio", steps)
                    err = np.abs(m[li, ti] - y)
                    cov = (y >= lo[li, ti]) & (y <= hi[li, ti])
                    rows.append({"arch": model, "class": cls, "seed": seed, "method": method,
                                 "end_err": float(np.median(err[end])), "coverage": float(cov.mean()),
                                 "end_cov": float(cov[end].mean()),
                                 "p_true": float(post.class_probabilities()[:, ci].mean())})
    return pd.DataFrame(rows)


def synthetic_table(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (cls, method), g in df.groupby(["class", "method"], sort=False):
        rows.append({"class": cls, "method": method, "runs": len(g), "end x (median)": 10 ** g["end_err"].median(),
                     "cov90 future": g["coverage"].mean(), "cov90 end": g["end_cov"].mean(),
                     "P(true class)": g["p_true"].mean()})
    return pd.DataFrame(rows)


SPEED_SIZES = ((12, 8), (24, 10), (64, 50), (256, 20))  # (layers, observed steps)
SPEED_TARGETS = {(64, 50): 1.0, (256, 20): 3.0}  # seconds for one update (issue 28; 4.5 s and 14 s before)


def speed() -> pd.DataFrame:
    """Seconds for one update (posterior + the ratio's predictive at the forecast's 25 steps) on rows drawn around
    the prior: the plateau class alone (one shape: the nowcast before the trajectory classes; the baseline) and the
    three-class mixture against its target, and ``nowcast()``, the whole update as the service runs it (the forecast
    from the posterior, the observed points' predictive, the next checkpoint)."""
    from predictor.architecture import Architecture
    from predictor.engine import default_steps
    from predictor.nowcast import nowcast, observation_frame
    from registry.reference import reference_engine

    engine, rng, out = reference_engine(), np.random.default_rng(0), []
    for n_layers, n_steps in SPEED_SIZES:
        arch = Architecture(name="speed", n_layers=n_layers, d_model=4096, n_heads=32, d_ffn=11008, total_steps=100_000)
        steps = np.unique(np.geomspace(10, 100_000, n_steps).astype(int))
        c = engine.layer_curves(arch, steps.astype(float))["ratio"]["mean"]
        rows = [{"step": int(s), "layer": li, "top1": float(10 ** (c[li, k] + 0.1 * rng.standard_normal())), "median": 1.0}
                for k, s in enumerate(steps) for li in range(n_layers)]
        obs = observation_frame(rows)
        grid = np.array(default_steps(arch.planned_steps), float)
        row = {"layers": n_layers, "steps": len(steps)}
        for label, probs in (("plateau alone s", PLATEAU), ("update s", None)):
            t0 = time.perf_counter()
            Posterior(engine, arch, obs, noise=NOISE, class_probs=probs).predictive("ratio", grid)
            row[label] = time.perf_counter() - t0
        target = SPEED_TARGETS.get((n_layers, n_steps))
        row["target s"] = "" if target is None else f"<= {target:.1f}"
        row["met"] = "" if target is None else "yes" if row["update s"] <= target else "NO"
        row["x plateau"] = row["update s"] / row["plateau alone s"]
        t0 = time.perf_counter()
        nowcast(engine, arch, rows, noise=NOISE)
        row["nowcast() s"] = time.perf_counter() - t0
        out.append(row)
    return pd.DataFrame(out)


def main() -> None:
    t0 = time.perf_counter()
    ratio = backtest("ratio")
    absq = backtest("abs")
    n = NOISE
    print(f"nowcast backtest: observation noise: probe {n.probe:.3f} + misfit {n.misfit:.3f} log10 (correlation length "
          f"{n.length:g} decades); {ratio['model'].nunique()} series with the ratio, "
          f"{absq['model'].nunique()} with top-1 |h|; {time.perf_counter() - t0:.1f} s")
    print("\nlog10 top1/median; err: median |error| over (layer, future checkpoint); cov90: share inside the 90 % "
          "interval; end x: median over layers of the error factor at the series' last checkpoint")
    print(table(ratio))
    s = summary(ratio)
    print("\nsummary (ratio):")
    print(s.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\nlog10 top-1 |h| (all series, pythia-12b included; its late phase, 36k-143k steps, is held out at the 20 % cut):")
    print(table(absq))
    print(summary(absq).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    ps = per_series(ratio)
    print("\nper series (ratio, nowcast; leave one series out):")
    print(ps.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"target: 90 % coverage >= 80 % for each series at the 20 % cut: "
          f"{'met' if (ps['cov90 at 20 %'] >= 0.8).all() else 'NOT met (' + ', '.join(ps.loc[ps['cov90 at 20 %'] < 0.8, 'series']) + ')'}")
    early = s[s["scope"].str.startswith("observed")].set_index("method")
    nc = early.loc["nowcast"]
    print(f"\ntargets at <= 20 % of t_end (ratio): end-of-series error factor x{nc['median_end_factor']:.2f} "
          f"(target <= x1.25: {'met' if nc['median_end_factor'] <= 1.25 else 'NOT met'}); 90 % coverage "
          f"{nc['coverage']:.0%} (target >= 80 %: {'met' if nc['coverage'] >= 0.8 else 'NOT met'})")
    for scope in s["scope"].unique():
        med = s[s["scope"] == scope].set_index("method")["median_err"]
        worse = [m for m in METHODS if m != "nowcast" and np.isfinite(med[m]) and med["nowcast"] > med[m] + 1e-9]
        print(f"combination vs each alone, {scope}: nowcast {med['nowcast']:.3f}, "
              + ", ".join(f"{m} {med[m]:.3f}" for m in METHODS if m != "nowcast")
              + (f" -> worse than {', '.join(worse)}" if worse else " -> never worse"))
    if "--no-plot" not in sys.argv:
        print(f"plot: {plot(ratio).relative_to(ROOT)}")
    if "--no-synthetic" not in sys.argv:
        t1 = time.perf_counter()
        syn = synthetic_table(synthetic())
        print(f"\nsynthetic runs of each trajectory class (bench/synthetic_runs.py; {', '.join(SYNTHETIC_ARCHS)}, "
              f"{SYNTHETIC_RUNS} runs per class and architecture, observed to 20 % of the plan; "
              f"{time.perf_counter() - t1:.0f} s):")
        print(syn.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        nc = syn[syn["method"] == "nowcast"].set_index("class")
        for cls, r in nc.iterrows():
            ok_err, ok_cov = r["end x (median)"] <= 1.5, 0.8 <= r["cov90 future"] <= 0.95
            print(f"target {cls}: end x{r['end x (median)']:.2f} (<= x1.5: {'met' if ok_err else 'NOT met'}), "
                  f"coverage {r['cov90 future']:.0%} (80-95 %: {'met' if ok_cov else 'NOT met'})")
    if "--no-holdout" not in sys.argv:
        holdout()
    if "--no-speed" not in sys.argv:
        print("\nspeed of one update (this machine, same run): the plateau class alone (the baseline) vs the three-class "
              "mixture and its target; nowcast(): the whole update as the service runs it")
        print(speed().to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if "--sensitivity" in sys.argv:
        sensitivity()


def sensitivity() -> None:
    """The nowcast's summary (ratio) under other observation-noise settings."""
    global NOISE
    saved, rows = NOISE, []
    try:
        for label, noise in SENSITIVITY:
            NOISE = noise
            s = summary(backtest("ratio"))
            s = s[(s["method"] == "nowcast") & ~s["scope"].str.contains("each")].set_index("scope")
            a, e = s.iloc[0], s.iloc[1]
            rows.append({"noise (misfit sd / length)": label, "k>=5 err": a["median_err"], "k>=5 cov90": a["coverage"],
                         "20% err": e["median_err"], "20% end x": e["median_end_factor"], "20% cov90": e["coverage"]})
    finally:
        NOISE = saved
    print("\nsensitivity of the nowcast to its observation noise (ratio; k>=5: cells where Eq. 9 also answers):")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))



# ------------------------------------------------------------------------ out-of-generator test set (issue 29)
HOLDOUT_METHODS = ("persistence", "nowcast", "answer")


def score_run(engine: ForecastEngine, arch, obs: pd.DataFrame, fut: pd.DataFrame, col: str = "y_ratio") -> list[dict]:
    """One run observed up to its cut (``obs``: observation_frame rows) and scored on ``fut`` (step, layer, ``col``):
    per method the median over layers of the end error (log10), the 90 % coverage of every future point and at the
    end, and per layer the errors at the end (for the Pythia comparison). ``answer`` is what the nowcast answers per
    layer: the nowcast, or persistence where it recommends persistence."""
    from predictor.nowcast import recommend

    fut = fut[fut[col].notna()]
    steps = np.array(sorted(fut["step"].unique()), float)
    y = fut[col].to_numpy(float)
    li, ti = fut["layer"].to_numpy(int), np.searchsorted(steps, fut["step"].to_numpy(float))
    end = ti == len(steps) - 1
    now = Posterior(engine, arch, obs, noise=NOISE).predictive("ratio", steps)
    rec = recommend(obs, arch.n_layers, steps, now)
    preds = {"persistence": rec["persist"], "nowcast": now, "answer": (rec["mean"], rec["lo"], rec["hi"])}
    rows = []
    for method, (m, lo, hi) in preds.items():
        err = np.abs(m[li, ti] - y)
        cov = (y >= lo[li, ti] - 1e-12) & (y <= hi[li, ti] + 1e-12)
        rows.append({"method": method, "end_err": float(np.median(err[end])), "coverage": float(cov.mean()),
                     "end_cov": float(cov[end].mean()), "layer_end_err": dict(zip(li[end].tolist(), err[end].tolist(), strict=True)),
                     "n_persistence": int(rec["persistence"][np.unique(li)].sum()), "n_layers": len(np.unique(li)),
                     "layer_persist": {int(k): bool(rec["persistence"][k]) for k in np.unique(li)}})
    return rows


def _cut_frames(data: pd.DataFrame, cut: int, col: str = "y_ratio") -> tuple[pd.DataFrame, pd.DataFrame]:
    from predictor.nowcast import observation_frame

    d = data[data[col].notna()] if col in data else data
    obs = observation_frame(d[d["step"] <= cut][["step", "layer", "top1", "median"]])
    fut = d[d["step"] > cut]
    if col not in fut:
        fut = fut.assign(**{col: np.log10(fut["top1"] / fut["median"])})
    return obs, fut


def eq9_test(n_runs: int | None = None) -> pd.DataFrame:
    """The Eq. 9 test runs (``bench.holdout_runs``) observed to 20 % of the plan, scored on the true curve plus noise."""
    from bench.holdout_runs import EQ9_ARCHS, EQ9_RUNS, EQ9_SEED, eq9_fits, make_eq9_run
    from registry.reference import reference_engine

    engine, archs, fits = reference_engine(), reference_architectures(), eq9_fits()
    rows = []
    for model in EQ9_ARCHS:
        arch = archs[model]
        for i in range(n_runs or EQ9_RUNS):
            run = make_eq9_run(fits, arch, EQ9_SEED + i)
            obs, fut = _cut_frames(run, int(EARLY_FRAC * arch.planned_steps))
            for r in score_run(engine, arch, obs, fut):
                rows.append({**r, "set": "test: Eq. 9 runs (Pythia fits' spread)", "run": f"{model}/{i}"})
    return pd.DataFrame(rows)


def dinov2_test() -> pd.DataFrame:
    from bench.holdout_runs import DINOV2_ARCH, dinov2_series
    from registry.reference import reference_engine

    arch, data = DINOV2_ARCH, dinov2_series()
    obs, fut = _cut_frames(data, int(EARLY_FRAC * arch.planned_steps))
    return pd.DataFrame([{**r, "set": "test: DINOv2 ViT-g/14 token-norm ratio", "run": "dinov2"}
                         for r in score_run(reference_engine(), arch, obs, fut)])


def pythia_cut_test(models: tuple[str, ...], label: str) -> pd.DataFrame:
    """Pythia at the 20 % cut, prior engine refitted without the series (leave one series out)."""
    stats, archs = load_reference_stats(), reference_architectures()
    ev = build_evidence(stats, archs)
    rows = []
    for model in models:
        arch, data = archs[model], series_frame(stats, model)
        data = data[data["y_ratio"].notna()]
        early = int(EARLY_FRAC * arch.planned_steps)
        cut = max(s for s in data["step"].unique() if s <= early)
        obs, fut = _cut_frames(data, cut)
        for r in score_run(ForecastEngine().fit(ev.without({model})), arch, obs, fut):
            rows.append({**r, "set": label, "run": model})
    return pd.DataFrame(rows)


def synthetic_tuning(n_runs: int = SYNTHETIC_RUNS) -> pd.DataFrame:
    from bench.synthetic_runs import CLASSES, make_run
    from registry.reference import reference_engine

    engine, archs, rows = reference_engine(), reference_architectures(), []
    for model in SYNTHETIC_ARCHS:
        arch = archs[model]
        for cls in CLASSES:
            for seed in range(n_runs):
                obs, fut = _cut_frames(make_run(engine, arch, cls, seed), int(EARLY_FRAC * arch.planned_steps))
                rows += [{**r, "set": f"tuning: generator {cls}", "run": f"{model}/{cls}/{seed}"}
                         for r in score_run(engine, arch, obs, fut)]
    return pd.DataFrame(rows)


def holdout_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per set and method: runs, median end error as a factor, 90 % coverage of every future point and at the end,
    and the share of layers where the answer recommends persistence."""
    out = []
    for (st, method), g in df.groupby(["set", "method"], sort=False):
        out.append({"set": st, "method": method, "runs": len(g), "end x": 10 ** g["end_err"].median(),
                    "cov90 future": g["coverage"].mean(), "cov90 end": g["end_cov"].mean(),
                    "persistence layers": g["n_persistence"].sum() / max(g["n_layers"].sum(), 1)})
    return pd.DataFrame(out)


HOLDOUT_TUNING_RUNS = 5  # generator runs per class and architecture in the tuning rows of the holdout table


def holdout() -> pd.DataFrame:
    """Print the tuning set and the out-of-generator test set side by side (issue 29) and the targets."""
    from bench.holdout_runs import HELD_OUT_SIZE, TUNING_SIZES

    t0 = time.perf_counter()
    df = pd.concat([synthetic_tuning(HOLDOUT_TUNING_RUNS),
                    pythia_cut_test(TUNING_SIZES, "tuning: Pythia 14m/160m at 20 %"),
                    eq9_test(), dinov2_test(),
                    pythia_cut_test((HELD_OUT_SIZE,), f"test: {HELD_OUT_SIZE} at 20 % (held out)")], ignore_index=True)
    tab = holdout_table(df)
    print(f"\nout-of-generator test set (bench/holdout_runs.py) beside the tuning set, observed to 20 % of the plan "
          f"({time.perf_counter() - t0:.0f} s); end x: median over runs of the median over layers of the end-of-plan "
          "error factor; cov90: share of every future (layer, checkpoint) inside the 90 % interval; persistence: the "
          "last value carried forward (its interval: probe noise plus a drift growing with the horizon); answer: what "
          "the nowcast answers per layer (its recommendation)")
    print(tab.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    eq = tab[tab["set"].str.startswith("test: Eq. 9")].set_index("method")
    for m in ("nowcast", "answer"):
        r = eq.loc[m]
        print(f"target, Eq. 9 test runs ({m}): end x{r['end x']:.2f} (<= x1.5: {'met' if r['end x'] <= 1.5 else 'NOT met'}), "
              f"coverage {r['cov90 future']:.0%} (80-95 %: {'met' if 0.8 <= r['cov90 future'] <= 0.95 else 'NOT met'})")
    py = df[df["set"].str.contains("at 20 %")]
    for run, g in py.groupby("run"):
        g = g.set_index("method")
        e_now, e_per = g.loc["nowcast", "layer_end_err"], g.loc["persistence", "layer_end_err"]
        persist = g.loc["answer", "layer_persist"]
        bad = [li for li in e_now if e_now[li] > e_per[li] + 1e-9 and not persist.get(li, False)]
        print(f"{run} at the 20 % cut ({g.loc['nowcast', 'set'].split(':')[0]}): end error (log10, mean over layers) nowcast "
              f"{np.mean(list(e_now.values())):.3f}, persistence {np.mean(list(e_per.values())):.3f}, answer "
              f"{np.mean(list(g.loc['answer', 'layer_end_err'].values())):.3f}; persistence recommended for layers "
              f"{[li for li, v in persist.items() if v]}; target (per layer: nowcast <= persistence, or persistence "
              f"recommended): {'met' if not bad else 'NOT met for layers ' + str(bad)}")
    return df


if __name__ == "__main__":
    main()
