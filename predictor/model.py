"""Learners, grouped evaluation and the fitted predictor bundle.

One estimator per target, chosen among ridge / random forest / gradient boosting / LightGBM by
leave-one-model-out (LOMO) cross-validation. The headline scores are *nested* LOMO: for each
held-out model the learner is chosen on the remaining models only, so neither the model choice
nor the fit ever sees the held-out model. The paper's random 80/20 split is reported beside it.
Intervals come from the held-out residual quantiles of the nested LOMO.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import RidgeCV
from sklearn.metrics import mean_absolute_error, r2_score
from sklearn.model_selection import GroupKFold, LeaveOneGroupOut, ShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, PowerTransformer, StandardScaler

from predictor.dataset import FEATURES, TARGETS

LEARNERS = ("ridge", "rf", "gbm", "lgbm")
INTERVAL_Q = (0.05, 0.95)


class LeakError(AssertionError):
    """A model's rows appeared in both the training and the test part of a fold."""


def _slog1p(x):
    return np.sign(x) * np.log1p(np.abs(x))


def _sexpm1(y):
    return np.sign(y) * np.expm1(np.abs(y))


def make_learner(name: str, n_estimators: int = 100, seed: int = 0):
    imp = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
    if name == "ridge":
        return make_pipeline(imp, StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
    if name == "rf":
        return make_pipeline(imp, RandomForestRegressor(n_estimators=n_estimators, min_samples_leaf=2, random_state=seed, n_jobs=1))
    if name == "gbm":
        return make_pipeline(
            imp, GradientBoostingRegressor(n_estimators=n_estimators, max_depth=2, learning_rate=0.1, subsample=0.8, random_state=seed)
        )
    if name == "lgbm":
        from lightgbm import LGBMRegressor

        return make_pipeline(
            imp,
            LGBMRegressor(
                n_estimators=n_estimators, num_leaves=7, min_child_samples=3, learning_rate=0.1, random_state=seed, n_jobs=1, verbose=-1
            ),
        )
    raise ValueError(f"unknown learner {name!r} (choose from {', '.join(LEARNERS)})")


def make_estimator(learner: str, transform: str, n_estimators: int = 100, seed: int = 0):
    """Learner wrapped with the paper's target transform (log1p for A/lam/gamma/t0, Yeo-Johnson for K)."""
    base = make_learner(learner, n_estimators, seed)
    if transform == "slog1p":
        return TransformedTargetRegressor(base, transformer=FunctionTransformer(_slog1p, _sexpm1, check_inverse=False))
    if transform == "yeojohnson":
        return TransformedTargetRegressor(base, transformer=PowerTransformer(method="yeo-johnson"))
    return base


def to_score_space(y: np.ndarray, transform: str, y_fit: np.ndarray | None = None) -> np.ndarray:
    """Targets are scored in the space the paper regressed in (transformed) so R^2 is comparable."""
    y = np.asarray(y, dtype=float)
    if transform == "slog1p":
        return _slog1p(y)
    if transform == "yeojohnson":
        pt = PowerTransformer(method="yeo-johnson").fit((y if y_fit is None else y_fit).reshape(-1, 1))
        return pt.transform(y.reshape(-1, 1)).ravel()
    return y


def grouped_folds(groups: np.ndarray):
    """Leave-one-model-out folds, each asserted leak-free (no model in both train and test)."""
    groups = np.asarray(groups)
    for tr, te in LeaveOneGroupOut().split(np.zeros(len(groups)), groups=groups):
        assert_no_leak(groups, tr, te)
        yield tr, te


def selection_folds(groups: np.ndarray, max_folds: int = 5):
    """Grouped folds for learner selection: LOMO up to ``max_folds`` models, else GroupKFold."""
    groups = np.asarray(groups)
    n = len(set(groups))
    if n <= max_folds:
        yield from grouped_folds(groups)
        return
    for tr, te in GroupKFold(n_splits=max_folds).split(np.zeros(len(groups)), groups=groups):
        assert_no_leak(groups, tr, te)
        yield tr, te


def assert_no_leak(groups: np.ndarray, train_idx, test_idx) -> None:
    shared = set(np.asarray(groups)[train_idx]) & set(np.asarray(groups)[test_idx])
    if shared:
        raise LeakError(f"models in both train and test of a fold: {sorted(shared)}")


def _fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


def _predict(est, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.predict(X)


def _score(y, yhat) -> tuple[float, float]:
    y, yhat = np.asarray(y, float), np.asarray(yhat, float)
    r2 = float(r2_score(y, yhat)) if len(y) >= 2 and np.var(y) > 0 else float("nan")
    return r2, float(mean_absolute_error(y, yhat)) if len(y) else float("nan")


def choose_learner(X, y, groups, transform: str, learners, n_estimators: int) -> tuple[str, dict[str, float]]:
    """Pick the learner with the best pooled LOMO R^2 (ties/too few models: first listed)."""
    if len(set(groups)) < 2 or len(learners) == 1:
        return learners[0], {}
    scores = {}
    ys = to_score_space(y, transform)
    for name in learners:
        pred = np.full(len(y), np.nan)
        for tr, te in selection_folds(groups):
            est = _fit(make_estimator(name, transform, n_estimators), X[tr], y[tr])
            pred[te] = _predict(est, X[te])
        ok = np.isfinite(pred)
        ps = to_score_space(pred[ok], transform, y_fit=y)
        scores[name] = _score(ys[ok], ps)[0] if ok.sum() >= 2 else float("-inf")
    best = max(learners, key=lambda n: scores[n] if np.isfinite(scores[n]) else -np.inf)
    return best, scores


@dataclass
class TargetModel:
    name: str
    transform: str
    learner: str
    estimator: object
    residual_q: tuple[float, float]
    n_rows: int
    models: list[str]
    metrics: dict[str, float] = field(default_factory=dict)
    oof: pd.DataFrame | None = None  # nested-LOMO held-out predictions (model, layer, y, yhat)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(_predict(self.estimator, X), dtype=float)

    def interval(self, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.residual_q
        return pred + lo, pred + hi


def evaluate_target(
    data: pd.DataFrame, target: str, learners=LEARNERS, n_estimators: int = 100, random_repeats: int = 5
) -> TargetModel | None:
    """Nested LOMO + random-split evaluation of one target, then the final fit on all rows."""
    spec = TARGETS[target]
    sub = data[data[target].notna()].reset_index(drop=True)
    if len(sub) < 4:
        return None
    X = sub[list(FEATURES)].to_numpy(dtype=float)
    y = sub[target].to_numpy(dtype=float)
    groups = sub["model"].to_numpy()
    models = sorted(set(groups))
    metrics: dict[str, float] = {"n_rows": float(len(sub)), "n_models": float(len(models))}
    oof = np.full(len(y), np.nan)
    base = np.full(len(y), np.nan)
    if len(models) >= 2:
        for tr, te in grouped_folds(groups):
            inner = [m for m in models if m not in set(groups[te])]
            name, _ = choose_learner(X[tr], y[tr], groups[tr], spec.transform, list(learners), n_estimators) if len(inner) >= 2 else (
                learners[0],
                {},
            )
            est = _fit(make_estimator(name, spec.transform, n_estimators), X[tr], y[tr])
            oof[te] = _predict(est, X[te])
            base[te] = np.mean(y[tr]) if spec.transform == "none" else _sexpm1(np.mean(_slog1p(y[tr]))) if spec.transform == "slog1p" else np.median(y[tr])
        ys = to_score_space(y, spec.transform)
        metrics["lomo_r2"], metrics["lomo_mae"] = _score(ys, to_score_space(oof, spec.transform, y_fit=y))
        metrics["baseline_lomo_r2"], metrics["baseline_lomo_mae"] = _score(ys, to_score_space(base, spec.transform, y_fit=y))
    # learner for the final model: LOMO over all models
    name, scores = choose_learner(X, y, groups, spec.transform, list(learners), n_estimators)
    for k, v in scores.items():
        metrics[f"cv_r2_{k}"] = v
    # the paper's protocol: random 80/20 split of rows (repeated; leaks between layers of a model)
    r2s, maes = [], []
    for tr, te in ShuffleSplit(n_splits=random_repeats, test_size=0.2, random_state=0).split(X):
        est = _fit(make_estimator(name, spec.transform, n_estimators), X[tr], y[tr])
        p = _predict(est, X[te])
        r, m = _score(to_score_space(y[te], spec.transform, y_fit=y), to_score_space(p, spec.transform, y_fit=y))
        r2s.append(r)
        maes.append(m)
    metrics["random_r2"] = float(np.nanmean(r2s)) if np.isfinite(r2s).any() else float("nan")
    metrics["random_mae"] = float(np.nanmean(maes))
    final = _fit(make_estimator(name, spec.transform, n_estimators), X, y)
    if np.isfinite(oof).sum() >= 3:
        resid = (y - oof)[np.isfinite(oof)] if spec.transform == "none" else (_slog1p(y) - _slog1p(oof))[np.isfinite(oof)]
        q = (float(np.quantile(resid, INTERVAL_Q[0])), float(np.quantile(resid, INTERVAL_Q[1])))
    else:
        sd = float(np.std(y)) if spec.transform == "none" else float(np.std(_slog1p(y)))
        q = (-1.645 * sd, 1.645 * sd)
    oof_df = pd.DataFrame({"model": groups, "layer": sub["layer"].to_numpy(), "y": y, "yhat": oof})
    return TargetModel(target, spec.transform, name, final, q, len(sub), models, metrics, oof_df)


def _finite(x) -> bool:
    return x is not None and isinstance(x, float | int) and math.isfinite(x)
