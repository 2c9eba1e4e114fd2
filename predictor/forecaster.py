"""The fitted predictor (``PredictorBundle``) and the ``Forecaster`` that turns it into forecasts."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.interpolate import PchipInterpolator

from predictor.architecture import Architecture, parse_architecture
from predictor.dataset import CANONICAL_STEPS, FEATURES, HEADLINE_TARGETS, PARAMS, TARGETS, layer_features
from predictor.model import DEFAULT_LEARNERS, TargetModel, evaluate_target
from predictor.schemas import ApplicabilityWarning, Forecast, Interval, LayerForecast, TrajectoryPoint

MASSIVE_ABS, MASSIVE_REL = 100.0, 1000.0
# architecture fields checked for applicability: numeric (range) and categorical (seen values)
NUMERIC_FIELDS = ("n_layers", "d_model", "n_heads", "d_ffn", "ffn_ratio", "heads_per_width", "n_params_B", "learning_rate", "batch_tokens", "planned_steps")
CATEGORICAL_FIELDS = ("ffn_type", "activation", "norm_type", "norm_placement", "parallel_attn_mlp", "qk_norm", "positional_encoding", "attention_kind", "optimizer")
RECIPE_FIELDS = ("learning_rate", "batch_tokens", "planned_steps", "optimizer")


def _arch_values(a: Architecture) -> dict:
    return {
        "n_layers": a.n_layers,
        "d_model": a.d_model,
        "n_heads": a.n_heads,
        "d_ffn": a.d_ffn,
        "ffn_ratio": a.d_ffn / a.d_model,
        "heads_per_width": a.n_heads / a.d_model,
        "n_params_B": a.n_params() / 1e9,
        "learning_rate": a.learning_rate,
        "batch_tokens": a.batch_tokens,
        "planned_steps": a.planned_steps,
        **{f: getattr(a, f) for f in CATEGORICAL_FIELDS},
    }


def training_domain(archs: dict[str, Architecture], recipe_models: set[str]) -> dict:
    """Ranges (numeric) and seen values (categorical) of the architectures behind the rows."""
    dom: dict = {}
    vals = {m: _arch_values(a) for m, a in archs.items()}
    for f in NUMERIC_FIELDS:
        src = [v[f] for m, v in vals.items() if f not in RECIPE_FIELDS or m in recipe_models]
        if src:
            dom[f] = {"min": float(min(src)), "max": float(max(src))}
    for f in CATEGORICAL_FIELDS:
        src = [str(v[f]) for m, v in vals.items() if f not in RECIPE_FIELDS or m in recipe_models]
        if src:
            dom[f] = {"seen": sorted(set(src))}
    return dom


def applicability(arch: Architecture, domains: dict[str, dict]) -> list[ApplicabilityWarning]:
    """Fields of ``arch`` outside the training domain, per scope (trajectory / steady_state)."""
    out: list[ApplicabilityWarning] = []
    vals = _arch_values(arch)
    for scope, dom in domains.items():
        what = "curve (trajectory) targets, trained on Pythia only" if scope == "trajectory" else "steady-state targets"
        for f, d in dom.items():
            v = vals[f]
            if "seen" in d:
                if str(v) not in d["seen"]:
                    out.append(
                        ApplicabilityWarning(
                            field=f, value=v, seen=d["seen"], scope=scope, message=f"{f}={v} never seen by the {what} (seen: {', '.join(d['seen'])})"
                        )
                    )
            elif not d["min"] * (1 - 1e-9) <= float(v) <= d["max"] * (1 + 1e-9):
                out.append(
                    ApplicabilityWarning(
                        field=f,
                        value=float(v),
                        train_min=d["min"],
                        train_max=d["max"],
                        scope=scope,
                        message=f"{f}={v:g} outside the range [{d['min']:g}, {d['max']:g}] of the {what}",
                    )
                )
    return out


@dataclass
class PredictorBundle:
    """Everything a forecast needs: one fitted model per target, training domains, metrics."""

    targets: dict[str, TargetModel]
    domains: dict[str, dict]
    metrics: dict[str, float]
    data_digest: str
    n_rows: dict[str, int]
    learners: tuple[str, ...] = DEFAULT_LEARNERS
    curve_scores: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)

    # ---------------------------------------------------------------- prediction
    def predict_table(self, arch: Architecture) -> pd.DataFrame:
        """Point predictions of every target for each layer of ``arch`` (target units)."""
        feats = layer_features(arch)
        X = feats[list(FEATURES)].to_numpy(dtype=float)
        out = pd.DataFrame({"layer": feats["layer"]})
        for name, tm in self.targets.items():
            out[name] = tm.predict(X)
        return out

    def forecast(self, arch: Architecture | dict, steps: list[int] | None = None, name: str = "maforecast-predictor",
                 version: str | None = None, alias: str | None = None) -> Forecast:
        arch = parse_architecture(arch)
        t_end = int(arch.planned_steps)
        if steps is None:
            steps = default_steps(t_end)
        steps = sorted({int(s) for s in steps if 0 <= int(s) <= 10 * t_end})
        table = self.predict_table(arch)
        layers = []
        for i, row in table.iterrows():
            layers.append(self._layer_forecast(int(row["layer"]), row, steps, t_end))
            del i
        notes = list(self.notes)
        if t_end != 143_000:
            notes.append("trajectories were learned on 143000-step runs; steps beyond 143000 are held at the predicted end-of-training ratio")
        return Forecast(
            predictor_name=name,
            predictor_version=version,
            predictor_alias=alias,
            architecture=arch.label(),
            t_end=t_end,
            layers=layers,
            applicability=applicability(arch, self.domains),
            notes=notes,
        )

    def _iv(self, target: str, value: float, exp10: bool = True, minus_one: bool = False) -> Interval | None:
        tm = self.targets.get(target)
        if tm is None or not math.isfinite(value):
            return None
        lo, hi = value + tm.residual_q[0], value + tm.residual_q[1]
        if exp10:
            f = (lambda v: max(0.0, pow10(v) - 1)) if minus_one else pow10
            return Interval(value=f(value), lo=f(lo), hi=f(hi))
        return Interval(value=value, lo=lo, hi=hi)

    def _layer_forecast(self, layer: int, row: pd.Series, steps: list[int], t_end: int) -> LayerForecast:
        canon = [(s, f"log_ratio_s{s}") for s in CANONICAL_STEPS if f"log_ratio_s{s}" in self.targets]
        end_val = float(row["log_ratio_end"]) if "log_ratio_end" in row else float("nan")
        knots = [(s, float(row[c])) for s, c in canon if s <= t_end]
        if t_end not in [k[0] for k in knots] and math.isfinite(end_val):
            knots.append((t_end if t_end > CANONICAL_STEPS[-1] or not knots else t_end, end_val))
        knots = sorted({s: v for s, v in knots if math.isfinite(v)}.items())
        traj: list[TrajectoryPoint] = []
        params: dict[str, float] = {}
        if len(knots) >= 2:
            u = np.log10(1 + np.array([k[0] for k in knots], dtype=float))
            v = np.array([k[1] for k in knots])
            interp = PchipInterpolator(u, v, extrapolate=False)
            qs = {s: self.targets[c].residual_q for s, c in canon}
            q_steps = np.log10(1 + np.array(sorted(qs), dtype=float))
            q_lo = np.array([qs[s][0] for s in sorted(qs)])
            q_hi = np.array([qs[s][1] for s in sorted(qs)])
            for s in steps:
                us = math.log10(1 + min(s, knots[-1][0]))
                val = float(interp(us))
                lo = val + float(np.interp(us, q_steps, q_lo))
                hi = val + float(np.interp(us, q_steps, q_hi))
                traj.append(TrajectoryPoint(step=s, value=pow10(val), lo=pow10(lo), hi=pow10(hi)))
            params = _reconstruct(interp, knots, t_end)
        if not params:
            params = {p: float(row[p]) for p in PARAMS if p in row and math.isfinite(float(row[p]))}
        early = float(row.get("early_peak", 0.0)) >= 0.5
        t_peak = self._iv("log_t_peak", float(row["log_t_peak"]), minus_one=True) if early and "log_t_peak" in row else None
        ratio_end = self._iv("log_ratio_end", end_val) or Interval(value=float("nan"), lo=float("nan"), hi=float("nan"))
        steady = self._iv("log_steady_state", float(row.get("log_steady_state", float("nan")))) or ratio_end
        peak_abs = self._iv("log_peak_abs", float(row.get("log_peak_abs", float("nan")))) or Interval(value=float("nan"), lo=float("nan"), hi=float("nan"))
        max_ratio = max([p.value for p in traj] + [ratio_end.value, steady.value], default=float("nan"))
        massive = bool(peak_abs.value > MASSIVE_ABS and max_ratio > MASSIVE_REL)
        return LayerForecast(
            layer=layer,
            ratio_trajectory=traj,
            params=params,
            t_emerge=self._iv("log_t_emerge", float(row.get("log_t_emerge", float("nan"))), minus_one=True),
            t_peak=t_peak,
            trajectory_class="early_peak" if early else "log_increase",
            ratio_end=ratio_end,
            steady_state=steady,
            peak_abs=peak_abs,
            massive=massive,
        )


LOG10_LIMIT = 30.0  # |a| or a ratio beyond 1e30 is physically meaningless (and overflows JSON floats)


def pow10(v: float) -> float:
    """10**v clipped to [1e-30, 1e30]: far-out-of-range architectures extrapolate absurdly; the
    forecast then carries an applicability warning rather than an overflow (a 500 in the API)."""
    return float(10.0 ** min(max(float(v), -LOG10_LIMIT), LOG10_LIMIT))


def _reconstruct(interp, knots, t_end: int) -> dict[str, float]:
    """Eq. 9 parameters of the curve through the predicted trajectory (fitting's estimator)."""
    from fitting.estimator import EmergenceCurveFitter

    t = np.unique(np.concatenate([[k[0] for k in knots], np.geomspace(1, knots[-1][0], 24)]))
    y = np.power(10.0, np.clip(interp(np.log10(1 + t)), -LOG10_LIMIT, LOG10_LIMIT))
    ok = np.isfinite(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = EmergenceCurveFitter(curve="eq9", n_starts=1, max_nfev=40, t_end=t_end, diagnostics=False).fit(t[ok], y[ok])
    if fit.params_ and all(math.isfinite(fit.params_.get(p, float("nan"))) for p in PARAMS):
        return {p: float(fit.params_[p]) for p in PARAMS}
    return {}


def default_steps(t_end: int, n: int = 24) -> list[int]:
    """Log-spaced steps over the planned training length (plus step 0)."""
    return sorted({0, *np.unique(np.geomspace(1, max(t_end, 2), n).round().astype(int)).tolist()})


# -------------------------------------------------------------------- training
def fit_bundle(
    rows: pd.DataFrame,
    archs: dict[str, Architecture],
    measured: pd.DataFrame | None = None,
    learners=DEFAULT_LEARNERS,
    n_estimators: int = 100,
    targets: list[str] | None = None,
    data_digest: str = "",
    random_repeats: int = 5,
) -> PredictorBundle:
    """Evaluate (nested LOMO, random split) and fit every target; score reconstructed curves."""
    fitted: dict[str, TargetModel] = {}
    metrics: dict[str, float] = {}
    for t in targets or list(TARGETS):
        tm = evaluate_target(rows, t, learners=learners, n_estimators=n_estimators, random_repeats=random_repeats)
        if tm is None:
            continue
        fitted[t] = tm
        for k, v in tm.metrics.items():
            metrics[f"{t}.{k}"] = v
    head = [fitted[t].metrics.get("lomo_r2", float("nan")) for t in HEADLINE_TARGETS if t in fitted]
    metrics["headline_lomo_r2"] = float(np.nanmean(head)) if np.isfinite(head).any() else float("nan")
    base = [fitted[t].metrics.get("baseline_lomo_r2", float("nan")) for t in HEADLINE_TARGETS if t in fitted]
    metrics["headline_baseline_lomo_r2"] = float(np.nanmean(base)) if np.isfinite(base).any() else float("nan")
    traj_models = set(rows.loc[rows["kind"] == "trajectory", "model"])
    all_models = set(rows["model"])
    domains = {
        "trajectory": training_domain({m: archs[m] for m in traj_models}, traj_models),
        "steady_state": training_domain({m: archs[m] for m in all_models}, traj_models),
    }
    curve = curve_scores(fitted, rows, measured) if measured is not None else None
    if curve is not None and len(curve):
        for r in curve.to_dict("records"):
            metrics[f"curve_lomo_r2_log.{r['model']}"] = r["r2_log"]
            metrics[f"curve_lomo_r2.{r['model']}"] = r["r2"]
        metrics["curve_lomo_r2_log"] = float(np.nanmean(curve["r2_log"]))
        metrics["curve_lomo_r2"] = float(np.nanmean(curve["r2"]))
    n_rows = {"rows": len(rows), "trajectory_rows": int((rows["kind"] == "trajectory").sum()),
              "steady_state_rows": int((rows["kind"] == "steady_state").sum()),
              "models": len(all_models), "trajectory_models": len(traj_models)}
    notes = [
        f"trained on {n_rows['trajectory_models']} models with trajectories ({n_rows['trajectory_rows']} layers) "
        f"and {n_rows['models'] - n_rows['trajectory_models']} steady-state-only models ({n_rows['steady_state_rows']} layers)",
        "intervals: 5-95 % quantiles of leave-one-model-out residuals",
    ]
    return PredictorBundle(fitted, domains, metrics, data_digest, n_rows, tuple(learners), curve, notes)


def curve_scores(fitted: dict[str, TargetModel], rows: pd.DataFrame, measured: pd.DataFrame) -> pd.DataFrame:
    """R^2 of the reconstructed (held-out, nested LOMO) ratio trajectory against each model's measured points."""
    canon = [(s, f"log_ratio_s{s}") for s in CANONICAL_STEPS if f"log_ratio_s{s}" in fitted]
    if len(canon) < 2 or measured is None or not len(measured):
        return pd.DataFrame(columns=["model", "n_points", "r2", "r2_log"])
    oof = None
    for s, c in canon:
        o = fitted[c].oof[["model", "layer", "yhat"]].rename(columns={"yhat": s})
        oof = o if oof is None else oof.merge(o, on=["model", "layer"], how="outer")
    out = []
    for model, sub in measured.groupby("model"):
        pred_rows = oof[oof["model"] == model]
        ys, ps = [], []
        for r in pred_rows.to_dict("records"):
            knots = [(s, r[s]) for s, _ in canon if pd.notna(r.get(s))]
            m = sub[sub["layer"] == r["layer"]]
            if len(knots) < 2 or not len(m):
                continue
            interp = PchipInterpolator(np.log10(1 + np.array([k[0] for k in knots], float)), np.array([k[1] for k in knots]), extrapolate=True)
            st = np.clip(m["step"].to_numpy(float), knots[0][0], knots[-1][0])
            ps.extend(interp(np.log10(1 + st)))
            ys.extend(np.log10(m["ratio"].to_numpy(float)))
        if len(ys) >= 3:
            ys_a, ps_a = np.array(ys), np.array(ps)
            ok = np.isfinite(ps_a)
            r2_log = 1 - np.sum((ys_a[ok] - ps_a[ok]) ** 2) / np.sum((ys_a[ok] - ys_a[ok].mean()) ** 2)
            lin_y, lin_p = 10 ** ys_a[ok], 10 ** ps_a[ok]
            r2 = 1 - np.sum((lin_y - lin_p) ** 2) / np.sum((lin_y - lin_y.mean()) ** 2)
            out.append({"model": model, "n_points": int(ok.sum()), "r2": float(r2), "r2_log": float(r2_log)})
    return pd.DataFrame(out)
