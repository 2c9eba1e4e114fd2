"""Honest evaluation of the forecast engine: grouped cross-validation on models it never saw, as it is used.

Two questions, each a grouped cross-validation whose held-out rows (per-layer stats, anchors) leave the
training part (``assert_no_leak``):

- ``by="model"``, **a new member of a known lineage** (the most common real question: a new size of Qwen3,
  Gemma-3, Pythia): leave one model out (with its weight-sharing variants: base, instruct, VL of one Qwen2.5
  size), its lineage kept. Only models whose lineage keeps a measured member are scored here.
- ``by="lineage"``, **a new lineage**: leave every member of one lineage out.

Targets, each next to a predict-the-constant baseline (the training part's lineage-weighted mean, same
protocol) and, where the lineage keeps members, the **nearest measured sibling** (the member nearest in width,
same protocol where one is, moved by the evidence's within-lineage size slope):

- ``peak_abs``: log10 peak |a| of a model's largest layer in its own protocol (the level the engine reads off
  the data: measured for trained models, the fitted asymptote for checkpoint series), and per layer;
- ``ratio_end``: log10 top-1/median of a Pythia model's largest layer at its last checkpoint (and the papers'
  143k-step figures);
- ``t_emerge``: log10 of the step at which a Pythia series is half-way up its (log) rise.

Scores average each family's rows first (a model measured in two protocols counts once). Coverage is the
share of held-out values inside the 90 % interval, whose scale is fitted on the *other* groups' standardized
residuals (cross-fitted). ``proxy_pairs`` scores the proxy -> target question: a lineage's other members
removed, the target forecast from the proxy's measured data alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from predictor.architecture import Architecture, family_of
from predictor.engine import Z90, ForecastEngine, TargetQuality
from predictor.evidence import Evidence
from predictor.level import width_term
from predictor.timeline import arch_timeline

__all__ = ["CV", "PROXY_PAIRS", "Evaluation", "LeakError", "assert_no_leak", "evaluate", "fit_evaluated", "groups_of",
           "headline", "proxy_pairs"]

CV = {"model": "a new member of a known lineage (leave one model out, its lineage kept)",
      "lineage": "a new lineage (leave one lineage out)"}
# proxy -> target pairs the evidence holds (issue: Pythia 160m -> 1b -> 6.9b/12b, Qwen2.5 1.5B -> 7B -> 32B,
# Gemma-3 1b -> 12b, Qwen3 1.7B -> 32B)
PROXY_PAIRS = (("pythia-160m", "pythia-1b"), ("pythia-1b", "pythia-6.9b"), ("pythia-1b", "pythia-12b"),
               ("Qwen2.5-1.5B", "Qwen2.5-7B"), ("Qwen2.5-7B", "Qwen2.5-32B"), ("gemma-3-1b-pt", "gemma-3-12b-pt"),
               ("Qwen3-1.7B", "Qwen3-32B"))


class LeakError(AssertionError):
    """A held-out model's rows (or its group's) appeared in the training part of a fold."""


def groups_of(ev: Evidence, by: str) -> dict[str, set[str]]:
    if by not in CV:
        raise ValueError(f"by must be one of {', '.join(CV)}, not {by!r}")
    key = ev.lineages if by == "lineage" else ev.families
    out: dict[str, set[str]] = {}
    for m in ev.models:
        out.setdefault(key[m], set()).add(m)
    return out


def assert_no_leak(train: Evidence, held_out: set[str], by: str, lineages: set[str] = frozenset()) -> None:
    """No held-out model, no model sharing its weights and (``by="lineage"``) no member of a held-out lineage
    (``lineages``) in the training part."""
    seen = set(train.layers["model"]) | set(train.anchors["model"]) | set(train.archs)
    if seen & held_out:
        raise LeakError(f"held-out models in the training part: {sorted(seen & held_out)}")
    fams = {family_of(m) for m in held_out}
    if shared := {m for m in seen if family_of(m) in fams}:
        raise LeakError(f"models of a held-out family (shared weights) in the training part: {sorted(shared)}")
    if by == "lineage" and (lin := set(train.lineages.values()) & set(lineages)):
        raise LeakError(f"members of a held-out lineage in the training part: {sorted(lin)}")


def as_held_out(arch: Architecture, engine: ForecastEngine) -> Architecture:
    """The design as a held-out fold asks it: its lineage if the training part holds it, else a new one."""
    known = arch.lineage in engine.level_["abs"].lineages_
    return arch if known or arch.lineage is None else arch.model_copy(update={"lineage": None})


def _observations(ev: Evidence, engine: ForecastEngine) -> dict[str, pd.DataFrame]:
    """Held-out truths, from the data alone (each model's own curve for a checkpoint series' asymptote)."""
    L = ev.layers
    lv = engine.levels_table_
    peak = lv[lv["quantity"] == "abs"][["model", "protocol", "Y"]].rename(columns={"Y": "y"})
    final = L[L["step"].isna()]
    peak_layers = final[["model", "protocol", "layer", "y_abs"]].rename(columns={"y_abs": "y"})
    traj = L[L["step"].notna() & L["y_ratio"].notna()]
    last = traj[traj["step"] == traj.groupby("model")["step"].transform("max")]
    ratio = last.groupby(["model", "protocol", "step"], as_index=False)["y_ratio"].max().rename(columns={"y_ratio": "y"})
    anchors = ev.anchors[ev.anchors["metric"] == "ratio"]
    ratio = pd.concat([ratio, pd.DataFrame({"model": anchors["model"], "protocol": anchors["protocol"],
                                            "step": anchors["step"], "y": np.log10(anchors["value"])})], ignore_index=True)
    em = []
    for m, f in engine.clock_model_.curves_.items():
        tl = arch_timeline(ev.archs[m], engine.clock_model_.series_effects_)  # the series fits clock
        t = tl.step_at(10**f.log_tau_e)
        if t:
            em.append({"model": m, "y": math.log10(t)})
    return {"peak_abs": peak, "peak_abs_layers": peak_layers, "ratio_end": ratio, "t_emerge": pd.DataFrame(em)}


def _constant(train_levels: pd.DataFrame, quantity: str, protocol: str) -> float:
    lv = train_levels[train_levels["quantity"] == quantity]
    same = lv[lv["protocol"] == protocol]
    lv = same if len(same) else lv
    w = 1.0 / lv["lineage"].map(lv["lineage"].value_counts())
    return float(np.average(lv["Y"], weights=w)) if len(lv) else float("nan")


def size_slope(levels: pd.DataFrame, archs: dict[str, Architecture], quantity: str = "abs") -> float:
    """The evidence's within-lineage size slope: log10 level per unit of the width term, pooled over lineages
    (each lineage's and protocol's mean removed first), the slope the sibling baseline scales by."""
    lv = levels[levels["quantity"] == quantity].copy()
    lv["w"] = [width_term(archs[m].d_model) for m in lv["model"]]
    wc = lv["w"] - lv.groupby("lineage")["w"].transform("mean")
    yc = lv["Y"] - lv.groupby(["lineage", "protocol"])["Y"].transform("mean")
    den = float((wc**2).sum())
    return float((wc * yc).sum() / den) if den > 0 else 0.0


def sibling(levels: pd.DataFrame, archs: dict[str, Architecture], arch: Architecture, protocol: str, slope: float,
            engine: ForecastEngine | None = None, quantity: str = "abs") -> tuple[float, str | None]:
    """The nearest measured sibling's level moved by ``slope`` (and by the protocol terms when no sibling was
    measured in ``protocol``): (value, sibling's name); NaN where the lineage has no member."""
    lv = levels[(levels["quantity"] == quantity) & (levels["lineage"] == arch.lineage)]
    if lv.empty or arch.lineage is None:
        return float("nan"), None
    same = lv[lv["protocol"] == protocol]
    cand = same if len(same) else lv
    w = width_term(arch.d_model)
    dist = (cand["model"].map(lambda m: width_term(archs[m].d_model)) - w).abs()
    r = cand.loc[dist.idxmin()]
    shift = 0.0
    if r["protocol"] != protocol and engine is not None:
        shift = engine.protocol_shift(archs[r["model"]].model_copy(update={"protocol": r["protocol"]}), protocol)[quantity][0]
    return float(r["Y"] + slope * (w - width_term(archs[r["model"]].d_model)) + shift), str(r["model"])


@dataclass
class Evaluation:
    by: str
    predictions: pd.DataFrame  # target, group, model, family, protocol, y, pred, sd, baseline, sibling
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
        if len(lp):
            for protocol, d in lp.groupby("protocol"):
                rows.append(_score_row("peak_abs per layer", protocol, d))
            rows.append(_score_row("peak_abs per layer", "all", lp))
        out = pd.DataFrame(rows)
        out.insert(0, "cv", f"leave one {self.by} out")
        return out

    def quality(self) -> dict[str, TargetQuality]:
        """Per served target: held-out MAE next to the constant's (all protocols pooled)."""
        out = {}
        for target, d in self.predictions.groupby("target"):
            r = _score_row(target, "all", d)
            out[target] = TargetQuality(target, r["mae"], r["constant_mae"], r["coverage_90"], r["n_groups"])
        return out


def _score_row(target: str, protocol: str, d: pd.DataFrame) -> dict:
    """Scores with each family counted once (its rows' errors averaged first)."""
    d = d.assign(err=(d["pred"] - d["y"]).abs(), cerr=(d["baseline"] - d["y"]).abs(),
                 serr=(d["sibling"] - d["y"]).abs() if "sibling" in d else np.nan,
                 inside=((d["y"] - d["pred"]).abs() <= Z90 * d["sd"]).astype(float), width=2 * Z90 * d["sd"])
    unit = d["family"] if "family" in d else d["model"]
    u = d.groupby(unit)[["err", "cerr", "serr", "inside", "width"]].mean()
    sib = u["serr"].dropna()
    return {
        "target": target, "protocol": protocol, "n": len(u), "n_groups": int(d["group"].nunique()),
        "mae": float(u["err"].mean()), "constant_mae": float(u["cerr"].mean()),
        "sibling_mae": float(sib.mean()) if len(sib) else float("nan"),
        "mae_where_sibling": float(u.loc[sib.index, "err"].mean()) if len(sib) else float("nan"),
        "ratio_to_constant": float(u["err"].mean() / max(u["cerr"].mean(), 1e-9)),
        "coverage_90": float(u["inside"].mean()),
        "median_interval_width": float(u["width"].median()),
    }


def evaluate(ev: Evidence, by: str = "lineage", engine_params: dict | None = None, progress: bool = True,
             full: ForecastEngine | None = None) -> Evaluation:
    """Grouped cross-validation of ``ForecastEngine(**engine_params)`` (interval scale cross-fitted)."""
    params = dict(engine_params or {})
    params.pop("interval_scale", None)
    full = full or ForecastEngine(**params).fit(ev)
    obs = _observations(ev, full)
    lineages = ev.lineages
    params = {**params, "level_start": _starts(full)}  # each fold's level model starts from the full fit's variances
    recs, lrecs = [], []
    for g, models in tqdm(groups_of(ev, by).items(), desc=f"leave one {by} out", disable=None if progress else True,
                          leave=False):
        if by == "model" and not ({lineages[m] for m in models} & {lineages[m] for m in ev.models if m not in models}):
            continue  # the only member of its lineage: a new lineage, scored by the lineage folds
        train = ev.without(models)
        assert_no_leak(train, models, by, {lineages[m] for m in models})
        if not len(train.layers):
            continue
        eng = ForecastEngine(**params).fit(train)
        lv = eng.levels_table_
        slope = size_slope(lv, train.archs)
        for r in obs["peak_abs"][obs["peak_abs"]["model"].isin(models)].to_dict("records"):
            arch = as_held_out(ev.archs[r["model"]], eng)
            mean, sd = eng.level(arch, r["protocol"])["abs"]
            base = _constant(lv, "abs", r["protocol"])
            sib, _ = sibling(lv, train.archs, arch, r["protocol"], slope, eng)
            recs.append({"target": "peak_abs", "group": g, "family": family_of(r["model"]), **r, "pred": mean, "sd": sd,
                         "baseline": base, "sibling": sib})
            sub = obs["peak_abs_layers"][(obs["peak_abs_layers"]["model"] == r["model"])
                                         & (obs["peak_abs_layers"]["protocol"] == r["protocol"])]
            if sub.empty:
                continue
            d, d_sd = eng.profile_["abs"].predict(arch.n_layers)
            for lr in sub.to_dict("records"):
                li = int(lr["layer"])
                lrecs.append({"group": g, "model": r["model"], "family": family_of(r["model"]), "protocol": r["protocol"],
                              "layer": li, "y": lr["y"], "pred": mean + d[li], "sd": math.sqrt(sd**2 + d_sd[li] ** 2),
                              "sd_level": sd, "sd_depth": float(d_sd[li]), "baseline": base,
                              "sibling": sib + d[li] if math.isfinite(sib) else float("nan")})
        pythia_train = {m for m in lv["model"] if m.startswith("pythia-")}
        for r in obs["ratio_end"][obs["ratio_end"]["model"].isin(models)].to_dict("records"):
            arch = as_held_out(ev.archs[r["model"]], eng)
            c = eng.layer_curves(arch, np.array([float(r["step"])]), r["protocol"])["ratio"]
            k = int(np.argmax(c["mean"][:, 0]))
            sd = float(c["hi"][k, 0] - c["lo"][k, 0]) / (2 * Z90)
            recs.append({"target": "ratio_end", "group": g, "family": family_of(r["model"]), "model": r["model"],
                         "protocol": r["protocol"], "y": r["y"], "pred": float(c["mean"][k, 0]), "sd": sd,
                         "baseline": _pythia_constant_ratio(pythia_train, obs), "sibling": float("nan")})
        em_train = obs["t_emerge"][~obs["t_emerge"]["model"].isin(models)]
        for r in obs["t_emerge"][obs["t_emerge"]["model"].isin(models)].to_dict("records"):
            arch = as_held_out(ev.archs[r["model"]], eng)
            lt, lt_sd = eng.clock_model_.tau_e(arch)
            tl = arch_timeline(arch, eng.clock_model_.effects_, horizon=10 * arch.planned_steps)
            t = tl.step_at(10**lt) or tl.steps[-1]
            t_hi = tl.step_at(10 ** (lt + lt_sd)) or tl.steps[-1]
            recs.append({"target": "t_emerge", "group": g, "family": family_of(r["model"]), "model": r["model"],
                         "protocol": "seq_mean", "y": r["y"], "pred": math.log10(t), "sd": max(math.log10(t_hi) - math.log10(t), 1e-3),
                         "baseline": float(em_train["y"].mean()) if len(em_train) else float("nan"), "sibling": float("nan")})
    pred = pd.DataFrame(recs)
    if len(pred):
        pred["raw_sd"] = pred["sd"]
    layers = pd.DataFrame(lrecs)
    pred, scale, group_scale = _cross_fit_scale(pred)
    if len(layers):  # the served per-layer interval: the level's sd scaled as served (the group's cross-fitted scale)
        s = layers["group"].map(group_scale.get("peak_abs", {})).fillna(1.0)
        layers["sd"] = np.sqrt((layers["sd_level"] * s) ** 2 + layers["sd_depth"] ** 2)
    return Evaluation(by, pred, layers, scale)


def _starts(engine: ForecastEngine) -> dict[str, list[float]]:
    return {q: [float(v) for v in engine.level_[q].hyper_] for q in ("abs", "ratio")}


def _pythia_constant_ratio(train_models: set[str], obs: dict) -> float:
    r = obs["ratio_end"]
    r = r[r["model"].isin(train_models)]
    return float(r["y"].mean()) if len(r) else float("nan")


def _level(n: int) -> float:
    """The quantile level that covers 90 % of a new draw given n calibration scores (split conformal)."""
    return min(1.0, 0.9 * (1 + 1 / n))


def _cross_fit_scale(pred: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, float], dict[str, dict]]:
    """Scale each target's sd so that 90 % of standardized held-out residuals fall inside (the conformal
    quantile of the scores), with the scale for each group estimated from the other groups only (coverage is
    then honest)."""
    pred = pred.copy()
    scale, by_group = {}, {}
    if pred.empty:
        return pred, scale, by_group
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


def proxy_pairs(ev: Evidence, engine_params: dict | None = None, scale: float = 1.0,
                pairs: tuple[tuple[str, str], ...] = PROXY_PAIRS) -> pd.DataFrame:
    """The proxy -> target question on the pairs the evidence holds: every other member of the lineage removed
    (the target's family included), the target's level forecast from the proxy's measured data alone, next to
    the constant and the proxy itself moved by the evidence's size slope. ``scale``: the served interval scale."""
    params = dict(engine_params or {})
    params.pop("interval_scale", None)
    lineages, fams = ev.lineages, ev.families
    full = ForecastEngine(**params).fit(ev)
    truth = full.levels_table_
    params = {**params, "level_start": _starts(full)}
    rows = []
    for proxy, target in pairs:
        if proxy not in ev.archs or target not in ev.archs:
            continue
        keep = {m for m in ev.models if fams[m] == fams[proxy]}
        drop = {m for m in ev.models if lineages[m] == lineages[proxy]} - keep
        train = ev.without(drop)
        eng = ForecastEngine(**{**params, "interval_scale": {"abs": scale, "ratio": scale}}).fit(train)
        lv = eng.levels_table_
        slope = size_slope(lv, train.archs)
        for r in truth[(truth["model"] == target) & (truth["quantity"] == "abs")].to_dict("records"):
            arch = ev.archs[target]
            mean, sd = eng.level(arch, r["protocol"])["abs"]
            sib, who = sibling(lv, train.archs, arch, r["protocol"], slope, eng)
            rows.append({"pair": f"{proxy} -> {target}", "proxy": proxy, "target": target, "protocol": r["protocol"],
                         "y": r["Y"], "pred": mean, "sd": sd, "lo": mean - Z90 * sd, "hi": mean + Z90 * sd,
                         "covered": bool(abs(r["Y"] - mean) <= Z90 * sd), "baseline": _constant(lv, "abs", r["protocol"]),
                         "sibling": sib, "width_ratio": ev.archs[target].d_model / ev.archs[proxy].d_model})
    return pd.DataFrame(rows)


def proxy_summary(pp: pd.DataFrame) -> dict[str, float]:
    """MAE (each pair once: its protocols averaged), coverage and median width of the proxy -> target pairs."""
    if pp.empty:
        return {}
    u = pp.assign(err=(pp["pred"] - pp["y"]).abs(), cerr=(pp["baseline"] - pp["y"]).abs(),
                  serr=(pp["sibling"] - pp["y"]).abs(), cov=pp["covered"].astype(float),
                  width=pp["hi"] - pp["lo"]).groupby("pair")[["err", "cerr", "serr", "cov", "width"]].mean()
    return {"n": float(len(u)), "mae": float(u["err"].mean()), "constant_mae": float(u["cerr"].mean()),
            "sibling_mae": float(u["serr"].mean()), "coverage_90": float(u["cov"].mean()),
            "median_interval_width": float(u["width"].median())}


def fit_evaluated(ev: Evidence, engine_params: dict | None = None, progress: bool = True,
                  cv: tuple[str, ...] = ("lineage", "model")) -> tuple[ForecastEngine, dict[str, Evaluation]]:
    """Evaluate (leave one lineage out, leave one model out with its lineage kept), then fit the served engine
    with each quantity's interval scales (a design of a known lineage: the leave-one-model-out folds'; of a new
    lineage: the leave-one-lineage-out folds') and the held-out quality of each target (the new-lineage folds:
    the harder question)."""
    params = dict(engine_params or {})
    params.pop("interval_scale", None)
    full = ForecastEngine(**params).fit(ev)
    evals = {by: evaluate(ev, by, params, progress, full=full) for by in dict.fromkeys(("lineage", "model", *cv))}
    known = evals.get("model", evals["lineage"]).scale
    new = evals["lineage"].scale
    scale = {"abs": known.get("peak_abs", 1.0), "ratio": known.get("ratio_end", 1.0),
             "abs_new": new.get("peak_abs", 1.0), "ratio_new": new.get("ratio_end", 1.0)}
    engine = ForecastEngine(**{**params, "interval_scale": scale, "level_start": _starts(full)}).fit(ev)
    big = evals["lineage"].table().set_index(["target", "protocol"]).loc[("peak_abs", "all")]
    caveats = [f"the largest layer's peak |a| of a new lineage is forecast no better than a constant "
               f"(held-out MAE {big['mae']:.2f} vs {big['constant_mae']:.2f} decades): read it with its interval"] \
        if big["mae"] >= big["constant_mae"] else []
    return engine.with_evaluation(quality=served_quality(evals), caveats=caveats), evals


def served_quality(evals: dict[str, Evaluation]) -> dict[str, TargetQuality]:
    """Per served target, the held-out quality that decides whether it is served or shown as the constant: the
    new-lineage folds' (the harder question), except for a target only one lineage holds (Pythia's end ratio and
    emergence step: leaving that lineage out leaves no constant to compare with), scored leaving one model out."""
    q = evals["lineage"].quality()
    other = evals["model"].quality() if "model" in evals else {}
    return {t: other.get(t, v) if not math.isfinite(v.baseline_mae) else v for t, v in q.items()}


def headline(evals: dict[str, Evaluation], proxy: dict[str, float] | None = None) -> dict[str, float]:
    """Metrics logged to MLflow and used by the registry gate: the skill (1 - MAE / the constant's MAE) of the
    largest layer's level on both questions; ``headline_skill`` is the smaller (a version is as good as its
    weaker answer)."""
    out: dict[str, float] = {}
    for by, e in evals.items():
        for r in e.table().to_dict("records"):
            key = f"{by}.{r['target'].replace(' ', '_')}.{r['protocol']}"
            for k in ("mae", "constant_mae", "sibling_mae", "mae_where_sibling", "coverage_90", "ratio_to_constant",
                      "median_interval_width"):
                if isinstance(r[k], float) and math.isfinite(r[k]):
                    out[f"{key}.{k}"] = r[k]
    skills = {}
    for by, name in (("lineage", "skill_new_lineage"), ("model", "skill_new_member")):
        if by in evals and len(evals[by].predictions):
            t = evals[by].table().set_index(["target", "protocol"])
            if ("peak_abs", "all") in t.index:
                r = t.loc[("peak_abs", "all")]
                skills[name] = float(1.0 - r["mae"] / r["constant_mae"]) if r["constant_mae"] > 0 else float("nan")
                out[f"{name.replace('skill', 'mae')}"] = float(r["mae"])
    out.update(skills)
    for k, v in (proxy or {}).items():
        out[f"proxy.{k}"] = v
    q = served_quality(evals)
    pk = q.get("peak_abs")
    out["headline_peak_abs_mae"] = pk.mae if pk else float("nan")
    out["headline_constant_mae"] = pk.baseline_mae if pk else float("nan")
    out["headline_skill"] = min(skills.values()) if skills else float("nan")
    out["targets_beating_constant"] = float(sum(t.predictable for t in q.values()))
    out["targets_scored"] = float(len(q))
    return out
