"""Learners, grouped evaluation and the fitted predictor bundle.

One estimator per target, chosen by leave-one-model-out (LOMO) cross-validation among the
predict-the-mean baseline, the hierarchical model (``HierarchicalRegressor``: model-level level +
shared depth profile) and ridge / random forest / gradient boosting / LightGBM. The headline scores are *nested* LOMO: for each
held-out model the learner is chosen on the remaining models only, so neither the model choice
nor the fit ever sees the held-out model. The paper's random 80/20 split is reported beside it.
Intervals come from the held-out residual quantiles of the nested LOMO.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.compose import TransformedTargetRegressor
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.metrics import mean_absolute_error, r2_score
from sklearn.model_selection import GroupKFold, LeaveOneGroupOut, ShuffleSplit
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, PowerTransformer, StandardScaler

from registry.dataset import FEATURES, TARGETS

BASE_LEARNERS = ("ridge", "rf", "gbm", "lgbm")
# hierarchical (model level + shared depth profile) and the predict-the-mean fallback
HIER_LEARNERS = ("hier_mean", "hier_size", "hier_ridge", "hier_knn")
LEARNERS = ("mean", *HIER_LEARNERS, *BASE_LEARNERS)  # every valid learner name
# default candidates of the nested selection: on the bundled data (3-17 models) wider candidate
# sets lose more to selection noise than they gain (README), so the default is the mean baseline
# and the hierarchical model with a mean level (baseline + learned depth profile)
DEFAULT_LEARNERS = ("mean", "hier_mean")
INTERVAL_Q = (0.05, 0.95)


class LeakError(AssertionError):
    """A model's rows appeared in both the training and the test part of a fold."""


def _slog1p(x):
    return np.sign(x) * np.log1p(np.abs(x))


def _sexpm1(y):
    return np.sign(y) * np.expm1(np.abs(y))


def make_learner(name: str, n_estimators: int = 100, seed: int = 0):
    if name == "mean":
        return DummyRegressor(strategy="mean")
    if name.startswith("hier_"):
        level, _, profile = name[5:].partition("_")
        return HierarchicalRegressor(level=level, profile=profile or "inter")
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


# ------------------------------------------------------------------ hierarchical model
# columns of FEATURES that vary with depth inside one model; every other column is constant per model
DEPTH_COLUMNS = ("rel", "rel2", "rel3", "sqrt_rel", "l_times_L", "first_layer", "last_layer")
# model-level features of the level model (recipe features are excluded: unknown for most models)
LEVEL_FEATURES = ("log_d", "log_params", "dff_over_d", "h_over_d", "d_over_L", "glu", "rmsnorm", "norm_nonparametric",
                  "parallel", "sandwich", "post_sublayer", "post_norm", "qk_norm", "rotary", "alibi", "learned_pos", "tied",
                  "kv_ratio")
SIZE_FEATURES = ("log_d", "log_params")
# model-level switches the depth profile may depend on (norm placement changes its shape)
PROFILE_SWITCHES = ("sandwich", "post_sublayer", "post_norm", "parallel", "glu", "qk_norm")
_IDX = {f: i for i, f in enumerate(FEATURES)}


def model_keys(X: np.ndarray) -> np.ndarray:
    """Integer model id per row: rows sharing every model-level (non-depth) feature belong to one model."""
    cols = [i for f, i in _IDX.items() if f not in DEPTH_COLUMNS]
    Z = np.round(np.nan_to_num(np.asarray(X, float)[:, cols], nan=-9.999e9), 9)
    return np.unique(Z, axis=0, return_inverse=True)[1].ravel()


def depth_basis(X: np.ndarray) -> np.ndarray:
    """Relative-depth basis of each row: l/L and its powers, first/second and last/second-to-last layer.

    The layer index and depth are recovered from ``rel`` = (l+1)/L and ``l_times_L`` = (l+1) L."""
    X = np.asarray(X, float)
    rel, lL = X[:, _IDX["rel"]], X[:, _IDX["l_times_L"]]
    L = np.sqrt(lL / rel)
    pos = np.rint(rel * L)  # 1-based layer number
    return np.column_stack([
        rel, rel**2, rel**3, np.sqrt(rel),
        (pos == 1).astype(float), (pos == 2).astype(float), (pos == np.rint(L)).astype(float), (pos == np.rint(L) - 1).astype(float),
    ])


class HierarchicalRegressor(BaseEstimator, RegressorMixin):
    """y(model, layer) = level(model features) + profile(relative depth).

    The depth profile is shared by all models and learned from every row (ridge on ``depth_basis``
    after removing each model's level); the level is learned from one row per model (its mean
    of y minus the profile) with a strongly regularized learner:

    - ``mean``: the mean level of the training rows (no model features: the mean baseline + profile);
    - ``size``: ridge on log d_model and log params only (levels scale with size);
    - ``ridge``: ridge on the standardized ``LEVEL_FEATURES``, alpha by leave-one-model-out;
    - ``knn``: distance-weighted 3 nearest models in the standardized ``LEVEL_FEATURES`` space.

    Models are identified from the features (``model_keys``), so it is a plain sklearn regressor
    and the grouped-CV machinery (and its leak assertions) apply unchanged."""

    def __init__(self, level: str = "ridge", profile: str = "inter", n_iter: int = 3):
        self.level = level
        self.profile = profile
        self.n_iter = n_iter

    def _level_learner(self, n_models: int):
        alphas = np.logspace(-1, 3, 9)
        if self.level == "mean" or n_models < 2:
            return DummyRegressor(strategy="mean"), ()
        if self.level == "size":
            return make_pipeline(StandardScaler(), Ridge(alpha=1.0)), SIZE_FEATURES
        if self.level == "ridge":
            return make_pipeline(StandardScaler(), RidgeCV(alphas=alphas)), LEVEL_FEATURES
        if self.level == "knn":
            return make_pipeline(StandardScaler(), KNeighborsRegressor(n_neighbors=min(3, n_models), weights="distance")), LEVEL_FEATURES
        raise ValueError(f"unknown level learner {self.level!r}")

    def fit(self, X, y):
        X = np.asarray(X, float)
        y = np.asarray(y, float)
        keys = model_keys(X)
        n = keys.max() + 1
        D = self._profile_basis(X)
        if self.profile == "gbm":
            self.profile_ = GradientBoostingRegressor(n_estimators=60, max_depth=3, learning_rate=0.1, subsample=0.8, random_state=0)
        else:
            self.profile_ = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 3, 11)))
        prof = np.zeros(len(y))
        for _ in range(max(1, self.n_iter)):
            lev = np.bincount(keys, weights=y - prof, minlength=n) / np.bincount(keys, minlength=n)
            resid = y - lev[keys]
            if self.profile == "none" or len(set(np.round(D[:, 0], 9))) < 2:
                self.profile_ = DummyRegressor(strategy="constant", constant=0.0).fit(D, resid)
            else:
                self.profile_.fit(D, resid)
            prof = self.profile_.predict(D)
        lev = np.bincount(keys, weights=y - prof, minlength=n) / np.bincount(keys, minlength=n)
        first = np.array([np.flatnonzero(keys == k)[0] for k in range(n)])
        self.level_, cols = self._level_learner(n)
        self.level_cols_ = [_IDX[c] for c in cols]
        Z = X[first][:, self.level_cols_] if cols else np.zeros((n, 1))
        if cols:
            self.level_.fit(Z, lev)
        else:  # mean level weighted by rows, i.e. the predict-the-mean baseline plus the profile
            self.level_.fit(Z, lev, sample_weight=np.bincount(keys, minlength=n))
        self.n_models_ = int(n)
        return self

    def predict(self, X):
        X = np.asarray(X, float)
        Z = X[:, self.level_cols_] if self.level_cols_ else np.zeros((len(X), 1))
        return self.level_.predict(Z) + self.profile_.predict(self._profile_basis(X))

    def _profile_basis(self, X):
        D = depth_basis(X)
        if self.profile in ("ridge", "none"):
            return D
        S = X[:, [_IDX[c] for c in PROFILE_SWITCHES]]
        if self.profile == "gbm":
            return np.column_stack([D, S])
        if self.profile == "inter":  # shared profile + a profile offset per switch
            return np.column_stack([D, *(D * S[:, [j]] for j in range(S.shape[1]))])
        raise ValueError(f"unknown profile learner {self.profile!r}")


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


def evaluate_target(
    data: pd.DataFrame, target: str, learners=DEFAULT_LEARNERS, n_estimators: int = 100, random_repeats: int = 5
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
