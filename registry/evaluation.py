"""Honest evaluation of the forecast engine: grouped cross-validation on models it never saw.

Folds leave out one *group* at a time: a model (``by="model"``) or a family of variants that share
weights (``by="family"``: base + instruct + VL of one Qwen2.5 size, the Gemma-3 sizes). Every row
of the held-out models (per-layer stats, anchors) leaves the training part, which is asserted
(``assert_no_leak``). Three targets are scored, each next to a predict-the-constant baseline
(the training part's family-weighted mean, of the same protocol) and today's v1 learner:

- ``peak_abs``: log10 peak |a| of a trained LLM's largest layer, per measurement protocol (and
  per layer);
- ``ratio_end``: log10 top-1/median of a Pythia model's largest layer at its last checkpoint
  (and the papers' 143k-step figures);
- ``t_emerge``: log10 of the step at which a Pythia series is half-way up its (log) rise.

Coverage is the share of held-out values inside the 90 % interval. The interval scale is fitted
on the *other* groups' standardized residuals (cross-fitted), so coverage is not measured on the
data that set it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from predictor.architecture import family_of
from predictor.engine import Z90, ForecastEngine, TargetQuality, arch_timeline
from predictor.evidence import Evidence


class LeakError(AssertionError):
    """A held-out model's rows (or its family's) appeared in the training part of a fold."""


def assert_no_leak(train: Evidence, held_out: set[str], by: str) -> None:
    seen = set(train.layers["model"]) | set(train.anchors["model"]) | set(train.archs)
    if seen & held_out:
        raise LeakError(f"held-out models in the training part: {sorted(seen & held_out)}")
    if by == "family":
        fams = {family_of(m) for m in held_out}
        shared = {m for m in seen if family_of(m) in fams}
        if shared:
            raise LeakError(f"models of a held-out family in the training part: {sorted(shared)}")


def groups_of(ev: Evidence, by: str) -> dict[str, set[str]]:
    if by not in ("model", "family"):
        raise ValueError(f"by must be 'model' or 'family', not {by!r}")
    out: dict[str, set[str]] = {}
    for m in ev.models:
        out.setdefault(m if by == "model" else family_of(m), set()).add(m)
    return out


def _observations(ev: Evidence, engine: ForecastEngine) -> dict[str, pd.DataFrame]:
    """Held-out truths, from the data alone (the full engine is used only for Pythia's tau_e)."""
    L = ev.layers
    final = L[L["step"].isna()]
    peak = final.groupby(["model", "protocol"], as_index=False)["y_abs"].max().rename(columns={"y_abs": "y"})
    peak_layers = final[["model", "protocol", "layer", "y_abs"]].rename(columns={"y_abs": "y"})
    traj = L[L["step"].notna() & L["y_ratio"].notna()]
    last = traj[traj["step"] == traj.groupby("model")["step"].transform("max")]
    ratio = last.groupby(["model", "protocol", "step"], as_index=False)["y_ratio"].max().rename(columns={"y_ratio": "y"})
    anchors = ev.anchors[ev.anchors["metric"] == "ratio"]
    ratio = pd.concat([ratio, pd.DataFrame({"model": anchors["model"], "protocol": anchors["protocol"],
                                            "step": anchors["step"], "y": np.log10(anchors["value"])})], ignore_index=True)
    em = []
    for m, f in engine.curves_.items():
        tl = arch_timeline(ev.archs[m], engine.effects_)
        t = tl.step_at(10**f.log_tau_e)
        if t:
            em.append({"model": m, "y": math.log10(t)})
    return {"peak_abs": peak, "peak_abs_layers": peak_layers, "ratio_end": ratio, "t_emerge": pd.DataFrame(em)}


def _constant(train_levels: pd.DataFrame, quantity: str, protocol: str, models: set[str] | None = None) -> float:
    lv = train_levels[(train_levels["quantity"] == quantity)]
    if models is not None:
        lv = lv[lv["model"].isin(models)]
    same = lv[lv["protocol"] == protocol]
    lv = same if len(same) else lv
    w = 1.0 / lv["family"].map(lv["family"].value_counts())
    return float(np.average(lv["Y"], weights=w)) if len(lv) else float("nan")


def _v1_peak(train: Evidence, arch_layers: dict) -> dict[str, np.ndarray]:
    """Today's v1 learner (hierarchical: mean level + shared depth profile) on per-layer log peaks."""
    from registry.baseline import make_estimator
    from registry.dataset import FEATURES, layer_features

    final = train.layers[train.layers["step"].isna()]
    X, y = [], []
    for m, sub in final.groupby("model"):
        f = layer_features(train.archs[m], recipe_known=False).set_index("layer")
        X.append(f.loc[sub["layer"], list(FEATURES)].to_numpy(float))
        y.append(sub["y_abs"].to_numpy(float))
    est = make_estimator("hier_mean", "none").fit(np.vstack(X), np.concatenate(y))
    return {m: est.predict(layer_features(a, recipe_known=False)[list(FEATURES)].to_numpy(float)) for m, a in arch_layers.items()}


@dataclass
class Evaluation:
    by: str
    predictions: pd.DataFrame  # target, group, model, protocol, y, pred, sd, baseline, v1
    layer_predictions: pd.DataFrame
    scale: dict[str, float]

    def table(self) -> pd.DataFrame:
        rows = []
        for (target, protocol), d in self.predictions.groupby(["target", "protocol"], dropna=False):
            rows.append(_score_row(target, protocol, d))
        for target, d in self.predictions.groupby("target"):
            if d["protocol"].nunique() > 1:
                rows.append(_score_row(target, "all", d))
        lp = self.layer_predictions
        for protocol, d in lp.groupby("protocol"):
            rows.append(_score_row("peak_abs per layer", protocol, d))
        rows.append(_score_row("peak_abs per layer", "all", lp))
        out = pd.DataFrame(rows)
        out.insert(0, "cv", f"leave one {self.by} out")
        return out

    def quality(self) -> dict[str, TargetQuality]:
        """Per served target: held-out MAE next to the constant's. Peak |a| is served per layer, so it
        is scored per layer (all protocols pooled); its largest-layer score is in ``table``."""
        out = {}
        for target, d in self.predictions.groupby("target"):
            if target == "peak_abs":
                d = self.layer_predictions
            r = _score_row(target, "all", d)
            out[target] = TargetQuality(target, r["mae"], r["constant_mae"], r["coverage_90"], r["n_groups"])
        return out


def _score_row(target: str, protocol: str, d: pd.DataFrame) -> dict:
    err = (d["pred"] - d["y"]).abs()
    inside = (d["y"] >= d["pred"] - Z90 * d["sd"]) & (d["y"] <= d["pred"] + Z90 * d["sd"])
    return {
        "target": target, "protocol": protocol, "n": len(d), "n_groups": int(d["group"].nunique()),
        "mae": float(err.mean()), "constant_mae": float((d["baseline"] - d["y"]).abs().mean()),
        "v1_mae": float((d["v1"] - d["y"]).abs().mean()) if d["v1"].notna().any() else float("nan"),
        "ratio_to_constant": float(err.mean() / max((d["baseline"] - d["y"]).abs().mean(), 1e-9)),
        "coverage_90": float(inside.mean()),
        "median_interval_width": float((2 * Z90 * d["sd"]).median()),
    }


def evaluate(ev: Evidence, by: str = "family", engine_params: dict | None = None, progress: bool = True,
             full: ForecastEngine | None = None) -> Evaluation:
    """Grouped cross-validation of ``ForecastEngine(**engine_params)`` (interval scale cross-fitted)."""
    params = dict(engine_params or {})
    params.pop("interval_scale", None)
    full = full or ForecastEngine(**params).fit(ev)
    obs = _observations(ev, full)
    recs, lrecs = [], []
    groups = groups_of(ev, by)
    for g, models in tqdm(groups.items(), desc=f"leave one {by} out", disable=None if progress else True, leave=False):
        train = ev.without(models)
        assert_no_leak(train, models, by)
        if not len(train.layers):
            continue
        eng = ForecastEngine(**params).fit(train)
        lv = eng.levels_table_
        v1 = _v1_peak(train, {m: ev.archs[m] for m in models if m in set(obs["peak_abs"]["model"])})
        for r in obs["peak_abs"][obs["peak_abs"]["model"].isin(models)].to_dict("records"):
            arch = ev.archs[r["model"]]
            mean, sd = eng.level(arch, r["protocol"])["abs"]
            recs.append({"target": "peak_abs", "group": g, **r, "pred": mean, "sd": sd,
                         "baseline": _constant(lv, "abs", r["protocol"]), "v1": float(np.max(v1[r["model"]]))})
            d, d_sd = eng.profile_["abs"].predict(arch.n_layers)
            sub = obs["peak_abs_layers"][(obs["peak_abs_layers"]["model"] == r["model"]) & (obs["peak_abs_layers"]["protocol"] == r["protocol"])]
            base = _constant(lv, "abs", r["protocol"])
            for lr in sub.to_dict("records"):
                li = int(lr["layer"])
                lrecs.append({"group": g, "model": r["model"], "protocol": r["protocol"], "layer": li, "y": lr["y"],
                              "pred": mean + d[li], "sd": math.sqrt(sd**2 + d_sd[li] ** 2), "sd_level": sd,
                              "sd_depth": float(d_sd[li]), "baseline": base, "v1": v1[r["model"]][li]})
        pythia_train = {m for m in lv["model"] if m.startswith("pythia-")}
        for r in obs["ratio_end"][obs["ratio_end"]["model"].isin(models)].to_dict("records"):
            arch = ev.archs[r["model"]]
            c = eng.layer_curves(arch, np.array([float(r["step"])]), r["protocol"])["ratio"]
            k = int(np.argmax(c["mean"][:, 0]))
            sd = float(c["hi"][k, 0] - c["lo"][k, 0]) / (2 * Z90)
            recs.append({"target": "ratio_end", "group": g, "model": r["model"], "protocol": r["protocol"], "y": r["y"],
                         "pred": float(c["mean"][k, 0]), "sd": sd, "baseline": _pythia_constant_ratio(ev, pythia_train, obs),
                         "v1": float("nan")})
        em_train = obs["t_emerge"][~obs["t_emerge"]["model"].isin(models)]
        for r in obs["t_emerge"][obs["t_emerge"]["model"].isin(models)].to_dict("records"):
            arch = ev.archs[r["model"]]
            lt, lt_sd = eng.tau_e(arch)
            tl = arch_timeline(arch, eng.effects_, horizon=10 * arch.planned_steps)
            t = tl.step_at(10**lt) or tl.steps[-1]
            t_hi = tl.step_at(10 ** (lt + lt_sd)) or tl.steps[-1]
            recs.append({"target": "t_emerge", "group": g, "model": r["model"], "protocol": "seq_mean", "y": r["y"],
                         "pred": math.log10(t), "sd": max(math.log10(t_hi) - math.log10(t), 1e-3),
                         "baseline": float(em_train["y"].mean()) if len(em_train) else float("nan"), "v1": float("nan")})
    pred = pd.DataFrame(recs)
    layers = pd.DataFrame(lrecs)
    pred, scale, group_scale = _cross_fit_scale(pred)
    if len(layers):  # the served per-layer interval: the level's sd scaled as served (the group's cross-fitted scale)
        s = layers["group"].map(group_scale.get("peak_abs", {})).fillna(1.0)
        layers["sd"] = np.sqrt((layers["sd_level"] * s) ** 2 + layers["sd_depth"] ** 2)
    return Evaluation(by, pred, layers, scale)


def _pythia_constant_ratio(ev: Evidence, train_models: set[str], obs: dict) -> float:
    r = obs["ratio_end"]
    r = r[r["model"].isin(train_models)]
    return float(r["y"].mean()) if len(r) else float("nan")


def _level(n: int) -> float:
    """The quantile level that covers 90 % of a new draw given n calibration scores (split conformal)."""
    return min(1.0, 0.9 * (1 + 1 / n))


def _cross_fit_scale(pred: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, float], dict[str, dict]]:
    """Scale each target's sd so that 90 % of standardized held-out residuals fall inside (the conformal
    quantile of the scores: with ~25 groups the plain 90 % quantile covers ~85 %), with the scale for
    each group estimated from the other groups only (coverage is then honest)."""
    pred = pred.copy()
    scale, by_group = {}, {}
    for target, d in pred.groupby("target"):
        z = ((d["y"] - d["pred"]).abs() / d["sd"]).to_numpy()
        g = d["group"].to_numpy()
        new_sd = d["sd"].to_numpy().copy()
        by_group[target] = {}
        for grp in set(g):
            others = z[g != grp]
            s = max(np.quantile(others, _level(len(others))) / Z90, 0.5) if len(others) >= 3 else 1.0
            new_sd[g == grp] *= s
            by_group[target][grp] = s
        pred.loc[d.index, "sd"] = new_sd
        scale[target] = float(max(np.quantile(z, _level(len(z))) / Z90, 0.5)) if len(z) >= 3 else 1.0
    return pred, scale, by_group


def fit_evaluated(ev: Evidence, engine_params: dict | None = None, progress: bool = True,
                  cv: tuple[str, ...] = ("family", "model")) -> tuple[ForecastEngine, dict[str, Evaluation]]:
    """Evaluate (leave one model out, leave one family out), then fit the served engine with the
    interval scale from the family folds and the held-out quality of each target."""
    params = dict(engine_params or {})
    full = ForecastEngine(**params).fit(ev)
    evals = {by: evaluate(ev, by, params, progress, full=full) for by in dict.fromkeys(("family", *cv))}
    fam = evals["family"]
    scale = {"abs": fam.scale.get("peak_abs", 1.0), "ratio": fam.scale.get("ratio_end", 1.0)}
    engine = ForecastEngine(**{**params, "interval_scale": scale}).fit(ev)
    engine.quality_ = fam.quality()
    big = fam.table().set_index(["target", "protocol"]).loc[("peak_abs", "all")]
    if big["mae"] >= big["constant_mae"]:
        engine.caveats_ = [f"the largest layer's peak |a| of an unseen model family is forecast no better than a constant "
                           f"(held-out MAE {big['mae']:.2f} vs {big['constant_mae']:.2f} decades): read it with its interval"]
    return engine, evals


def headline(evals: dict[str, Evaluation]) -> dict[str, float]:
    """Metrics logged to MLflow and used by the registry gate (leave one family out)."""
    out: dict[str, float] = {}
    for by, e in evals.items():
        for r in e.table().to_dict("records"):
            key = f"{by}.{r['target'].replace(' ', '_')}.{r['protocol']}"
            for k in ("mae", "constant_mae", "v1_mae", "coverage_90", "ratio_to_constant"):
                if isinstance(r[k], float) and math.isfinite(r[k]):
                    out[f"{key}.{k}"] = r[k]
    q = evals["family"].quality()
    pk = q.get("peak_abs")
    out["headline_peak_abs_mae"] = pk.mae if pk else float("nan")
    out["headline_constant_mae"] = pk.baseline_mae if pk else float("nan")
    out["headline_skill"] = 1.0 - pk.mae / pk.baseline_mae if pk and pk.baseline_mae > 0 else float("nan")
    out["targets_beating_constant"] = float(sum(t.predictable for t in q.values()))
    out["targets_scored"] = float(len(q))
    return out

