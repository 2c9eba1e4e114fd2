"""The emergence clock: when a design's curve rises, fitted once on the evidence's checkpoint series and onsets.

``EmergenceClock.fit`` learns, in order: each checkpoint series' Hill curve in the peer grids' effective time
(``fit_series``; all layers share tau_e and p, each has its own rise), the Hill steepness ``p_`` (the median over the
series that pin their emergence) and log10 tau_e's size regression over them; then every candidate clock
(``predictor.clock.CANDIDATES``) scored leaving one family out on every onset the evidence holds (the series'
midpoints, ``TIMING_ONSETS``, the placeable rows of onsets_more.csv), and the servable one with the smallest error
(or ``clock`` where set) calibrated across families; and how far the evidence's longest trajectories reach
(``beyond``: a plan past them gets a wider interval). A design of the series' family and recipe keeps the series'
regression; any other one gets the across-family intercept with the between-family spread (``timing_distance``).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import least_squares
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from predictor import clock as clocks
from predictor.architecture import Architecture, family_of
from predictor.design import DESIGN_TERMS, design_vector
from predictor.evidence import Evidence
from predictor.timeline import PlanEffects, Timeline, arch_timeline, fit_plan_effects, hill

__all__ = ["EmergenceClock", "MAX_EXTRAPOLATION", "QUANTITIES", "Y0_DEFAULT", "fit_series"]

QUANTITIES = ("abs", "ratio")
Y0_DEFAULT = {"abs": 0.85, "ratio": 0.85}  # log10 values at initialisation when no early checkpoint says otherwise
# published onsets the clock is checked on: (label, source, family, architecture fields or a bundled model, first, last step)
TIMING_ONSETS: tuple[tuple[str, str, str, dict | str, float, float], ...] = (
    ("LLaMA-style 60M, attention sink", "arXiv 2410.10781 Sec. 4, Fig. 4: the sink emerges between 1k and 2k steps",
     "Gu2025 LLaMA-style", {"n_layers": 10, "d_model": 768, "n_heads": 8, "d_ffn": 2048, "ffn_type": "glu",
                            "activation": "silu", "norm_type": "rmsnorm", "learning_rate": 4e-4, "batch_tokens": 1_048_576,
                            "total_steps": 20_000, "weight_decay": 0.1, "name": "Gu2025-60M"}, 1000.0, 2000.0),
    ("BERT-base, LayerNorm outlier dimensions", "Kovaleva et al. 2021 (BERT Busters; peers/README 5h, M): they emerge "
     "gradually from about 50k steps (read as within x1.4)", "BERT",
     {"n_layers": 12, "d_model": 768, "n_heads": 12, "d_ffn": 3072, "norm_placement": "post", "positional_encoding": "learned",
      "causal_lm": False, "vocab_size": 30_522, "seq_len": 512, "learning_rate": 1e-4, "weight_decay": 0.01,
      "lr_schedule": "linear", "total_steps": 1_000_000, "batch_tokens": 131_072, "name": "BERT-base"}, 36_000.0, 70_000.0),
    ("pythia-12b, last-layer outlier dimensions", "arXiv 2503.21718 (peers/README 5h, M): steps 3,000-4,000",
     "Pythia", "pythia-12b", 3000.0, 4000.0),
)
# the recipe fields whose values, when no checkpoint series has them, put a design outside the clock's family
RECIPE_FIELDS = ("batch_tokens", "lr_schedule", "optimizer", "weight_decay")
TAU_FAMILY_FLOOR = 0.15  # decades: the clock of another family's recipe is never known better than this
MAX_EXTRAPOLATION = 0.5  # decades of effective time a series' fitted midpoint may lie beyond its last checkpoint


@dataclass
class CurveFit:
    """Hill fit of one checkpoint series (all layers share tau_e and p; each has its own rise)."""

    model: str
    log_tau_e: float
    p: float
    y0: dict[str, np.ndarray]  # quantity -> per-layer start
    rise: dict[str, np.ndarray]  # quantity -> per-layer Y_inf - y0 (NaN where not measured)
    layers: np.ndarray
    rmse: float
    log_tau_span: tuple[float, float] = (-np.inf, np.inf)  # log10 effective time of the first and last checkpoints after 0

    @property
    def timed(self) -> bool:
        """Whether the series pins its emergence time: the fitted midpoint within the checkpoints it saw (a run
        that emerged before its first save, or had not yet emerged, says little about when)."""
        lo, hi = self.log_tau_span
        return lo - MAX_EXTRAPOLATION <= self.log_tau_e <= hi and self.p < 6.0 - 1e-3


def fit_series(model: str, sub: pd.DataFrame, tl: Timeline) -> CurveFit | None:
    """Variable projection: for given (tau_e, p) each layer's rise is linear least squares."""
    q = "ratio" if sub["y_ratio"].notna().any() else "abs"
    steps = np.sort(sub["step"].unique())
    if len(steps) < 3:
        return None
    layers = np.sort(sub["layer"].unique())
    y0s, rises, data = {}, {}, {}
    for qq in QUANTITIES:
        piv = sub.pivot_table(index="layer", columns="step", values=f"y_{qq}").reindex(index=layers, columns=steps)
        first = piv.iloc[:, 0] if steps[0] <= 100 else pd.Series(np.nan, index=layers)
        y0s[qq] = first.fillna(Y0_DEFAULT[qq]).to_numpy(float)
        data[qq] = piv.to_numpy(float)
    tau = tl(steps)

    def rises_for(theta, qq):
        h = hill(tau / 10.0 ** theta[0], theta[1])
        Y = data[qq] - y0s[qq][:, None]
        ok = np.isfinite(Y)
        num = np.nansum(np.where(ok, Y * h, 0.0), axis=1)
        den = np.sum(np.where(ok, h * h, 0.0), axis=1)
        r = np.where(den > 0, num / np.maximum(den, 1e-300), np.nan)
        return r, h, Y, ok

    def resid(theta):
        r, h, Y, ok = rises_for(theta, q)
        e = Y - r[:, None] * h[None, :]
        return np.where(ok, e, 0.0).ravel()

    # the midpoint no later than ~3x the last observation: a series still rising when it ends (a short proxy run)
    # otherwise puts tau_e anywhere beyond it and its asymptote, rise / H(end), at any height (seen: 10**400)
    lt_max = float(np.log10(max(tau[-1], 1.0))) + MAX_EXTRAPOLATION
    best = None
    for lt in np.log10(np.geomspace(max(tau[1], 1.0), tau[-1], 7)):
        for p in (0.8, 1.5, 2.5):
            sol = least_squares(resid, [min(lt, lt_max - 1e-6), p], bounds=([0.0, 0.3], [lt_max, 6.0]), method="trf")
            if best is None or sol.cost < best.cost:
                best = sol
    theta = best.x
    rises = {qq: rises_for(theta, qq)[0] for qq in QUANTITIES}
    n = max(int((resid(theta) != 0).sum()), 1)
    return CurveFit(model, float(theta[0]), float(theta[1]), y0s, rises, layers, float(np.sqrt(2 * best.cost / n)),
                    (float(np.log10(max(tau[1], 1e-300))), float(np.log10(max(tau[-1], 1e-300)))))


class EmergenceClock(BaseEstimator):
    """log10 tau_e (in the served clock's effective time) and the Hill steepness p of a design's curve, and the
    widening of a plan beyond the evidence's longest trajectory (scikit-learn estimator API: ``fit(ev)`` sets every
    learned attribute; a nowcast's steepness makes a new fitted clock, ``with_p``)."""

    def __init__(self, clock: str | None = None):
        self.clock = clock  # None: the clock with the smallest leave-one-family-out error (predictor.clock)

    def fit(self, ev: Evidence) -> EmergenceClock:
        """Sets ``series_effects_`` (the clock the series' curves are fitted in), ``curves_`` (each series'
        ``CurveFit``), ``p_``, ``series_ref_`` (the timed series' design vectors and recipe values), ``onsets_``,
        ``onsets_left_out_``, the served clock (``clock_``, ``effects_``, ``clock_fit_``, ``clock_table_``,
        ``clock_families_``, ``timing_checks_``: its onsets, each left out; ``tau_family_sd_``: its between-family
        spread; ``tau_coef_``, ``tau_cov_``, ``tau_s2_`` in its units), ``horizon_tokens_``, ``late_slopes_`` and
        ``timing_text_`` (``timing_notes``' design-free parts)."""
        native = fit_plan_effects(ev.peers)
        traj = ev.layers[ev.layers["step"].notna()]
        curves = {}
        for model, sub in traj.groupby("model"):
            f = fit_series(model, sub, arch_timeline(ev.archs[model], native, horizon=sub["step"].max()))
            if f is not None:
                curves[model] = f
        timed = [f for f in curves.values() if f.timed]  # the clock from series that pin their emergence (levels use them all)
        if len(timed) >= 2:
            x = np.array([math.log10(ev.archs[f.model].n_params()) - 9.0 for f in timed])
            y = np.array([f.log_tau_e for f in timed])
            A = np.column_stack([np.ones_like(x), x])
            coef, *_ = np.linalg.lstsq(A, y, rcond=None)
            resid = y - A @ coef
            s2 = float(resid @ resid / max(len(y) - 2, 1)) if len(y) > 2 else 0.25
            cov = s2 * np.linalg.pinv(A.T @ A)
            sizes = [float(10 ** (v + 9.0) / 1e9) for v in x]
            p = float(np.median([f.p for f in timed]))
            series = [ev.archs[f.model] for f in timed]
        else:  # no checkpoint series: Gu et al.'s emergence at 1-2k steps of a 60M model at lr 4e-4, no size trend
            coef = np.array([math.log10(1500 * (4e-4 / 3e-4) ** native.kappa), 0.0])
            cov, s2, p, sizes, series = np.diag([0.25, 0.0]), 0.25, 1.5, [], []
        ref = (np.stack([design_vector(a) for a in series]),
               {f: {_recipe_value(a, f) for a in series} for f in RECIPE_FIELDS}) if series else None

        more, left_out = clocks.load_onsets_more()
        from_series = clocks.series_onsets(curves, ev.archs, native, arch_timeline, _onset_family)
        onsets = [*from_series, *clocks.table_onsets(TIMING_ONSETS, ev.archs), *more]
        if len(from_series) < 2:  # no checkpoint series to pin the size slope: the clock before issue 29
            chosen, effects, fit, table, family_sd, checks = "lr_integral", native, None, [], TAU_FAMILY_FLOOR, []
        else:
            chosen, effects, fit, table, checks = _calibrated(onsets, native, p, ref, self.clock)
            coef, cov, s2, family_sd = fit.coef, fit.cov, fit.s2, fit.family_sd
        families = sorted(fit.offsets) if fit is not None else []

        self.series_effects_, self.curves_, self.p_, self.series_ref_ = native, curves, p, ref
        self.onsets_ = [{"label": o.label, "family": o.family, "steps": [o.lo, o.hi], "h": o.h, "bridge": o.bridge,
                         "assumptions": list(o.assumptions), "source": o.source, "series": o.series} for o in onsets]
        self.onsets_left_out_ = left_out
        self.clock_, self.effects_, self.clock_fit_, self.clock_table_, self.clock_families_ = chosen, effects, fit, table, families
        self.timing_checks_, self.tau_family_sd_ = checks, family_sd
        self.tau_coef_, self.tau_cov_, self.tau_s2_ = coef, cov, s2
        self.horizon_tokens_, self.late_slopes_ = _late_growth(ev)
        self.timing_text_ = _timing_text(curves, sizes or [min(ev.archs[m].n_params() for m in ev.models) / 1e9],
                                         checks, chosen, table, families, family_sd)
        return self

    def with_p(self, p: float) -> EmergenceClock:
        """A new fitted clock whose curves rise with steepness ``p`` (a nowcast's posterior's); the rest is shared."""
        check_is_fitted(self, "p_")
        out = copy.copy(self)
        out.p_ = p
        return out

    def tau_e(self, arch: Architecture) -> tuple[float, float]:
        """log10 tau_e (in the served clock, ``effects_``) and its predictive sd for an architecture: the checkpoint
        series' size regression for a design of their family and recipe, else the intercept calibrated across
        families with the between-family spread (``predictor.clock``)."""
        return self._tau_e(math.log10(arch.n_params()) - 9.0, self.timing_distance(arch))

    def _tau_e(self, x: float, away: list[str]) -> tuple[float, float]:
        """``tau_e`` of a design of log10 parameters - 9 ``x`` whose ``timing_distance`` is ``away``."""
        if self.clock_fit_ is not None:
            return self.clock_fit_.predict(x, own_family=not away)
        a = np.array([1.0, x])
        family = self.tau_family_sd_ if away else 0.0
        return float(a @ self.tau_coef_), float(math.sqrt(a @ self.tau_cov_ @ a + self.tau_s2_ + family**2))

    def timing_distance(self, arch: Architecture) -> list[str]:
        """How this design departs from the family the clock is calibrated on: the design terms and recipe
        fields whose value no checkpoint series has (empty: the clock's own family)."""
        return _away(self.series_ref_, arch, design_vector(arch))

    def _away(self, arch: Architecture, x: np.ndarray) -> list[str]:
        """``timing_distance`` of ``arch`` whose ``design_vector`` is ``x`` (a forecast reads it several times)."""
        return _away(self.series_ref_, arch, x)

    def timing_notes(self, arch: Architecture, away: list[str] | None = None) -> list[str]:
        """Which family the emergence timing is calibrated on, and how far this design is from it (``away``: its
        ``timing_distance`` where the caller has it)."""
        series, lo, hi, said, spread = self.timing_text_
        n_b = arch.n_params() / 1e9
        where = "inside" if lo * 0.999 <= n_b <= hi * 1.001 else "outside"
        away = self.timing_distance(arch) if away is None else away
        head = f"{series}; this design, {n_b:.2g}B, is {where} that range){said}"
        if not away:
            return [head + "; its design and recipe are that family's: the within-family spread applies"]
        return [head + f"; it departs from that family in {', '.join(away)}: {spread}"]

    def beyond(self, arch: Architecture, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """How far below and above (log10) the interval reaches at ``steps`` for the part of the plan beyond the
        longest trajectory in the evidence (``_late_growth``): zero inside it, growing with the doublings beyond."""
        return self._beyond(np.asarray(steps, float) * arch.batch_tokens)

    def _beyond(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``beyond`` at ``tokens`` trained (steps times batch, of any shape)."""
        horizon = self.horizon_tokens_
        lo, hi = self.late_slopes_
        with np.errstate(divide="ignore"):  # no trajectory in the evidence: an infinite horizon, nothing beyond it
            d = np.maximum(np.log2(np.maximum(tokens, 1.0) / horizon), 0.0)
        return d * max(-lo, 0.0), d * max(hi, 0.0)

    def extrapolation_notes(self, arch: Architecture) -> list[str]:
        """What a plan beyond the evidence's longest trajectory adds to the interval, and why (none inside it)."""
        horizon = self.horizon_tokens_
        tokens = arch.planned_steps * arch.batch_tokens
        if not math.isfinite(horizon) or tokens <= horizon:
            return []
        down, up = self.beyond(arch, np.array([float(arch.planned_steps)]))
        lo, hi = self.late_slopes_
        return [f"this plan runs {tokens / 1e9:,.0f}B tokens, x{tokens / horizon:.1f} beyond the longest trajectory the "
                f"evidence holds ({horizon / 1e9:,.0f}B tokens): whether the layers plateau, keep growing or decline there is "
                f"not measured, so the interval widens by the rates the longest trajectories still moved at their end "
                f"({lo:+.2f} to {hi:+.2f} decades per doubling): -{down[0]:.2f} / +{up[0]:.2f} decades at the end"]

    def info(self) -> dict:
        """The time model as a reviewer reads it: tau_e's regression, p, the plan exponents, the clock's choice and
        each series' fit."""
        check_is_fitted(self, "p_")
        return {"log10_tau_e_coef": [float(v) for v in self.tau_coef_], "p": self.p_, "kappa": self.effects_.kappa,
                "beta": self.effects_.beta, "source": self.effects_.source,
                "clock": {"chosen": self.clock_, "text": clocks.CANDIDATE_TEXT.get(self.clock_, ""),
                          "families": list(self.clock_families_), "between_family_sd": float(self.tau_family_sd_),
                          "intercept": None if self.clock_fit_ is None else float(self.clock_fit_.intercept),
                          "leave_one_family_out": list(self.clock_table_),
                          "onsets_left_out": list(self.onsets_left_out_)},
                "series": {m: {"log10_tau_e": f.log_tau_e, "p": f.p, "rmse": f.rmse} for m, f in self.curves_.items()}}


def _calibrated(onsets: list[clocks.Onset], native: PlanEffects, p: float, ref: tuple | None, clock: str | None
                ) -> tuple[str, PlanEffects, clocks.ClockFit, list[dict], list[dict]]:
    """Every candidate clock scored leaving one family out on ``onsets`` (the series' own clock for an onset of their
    family and recipe, ``ref``), and the servable one with the smallest error (or ``clock``) calibrated across
    families: its name, effects, fit, the comparison table and its onsets each left out."""
    def own(onset: clocks.Onset) -> bool:  # whether an onset's design is the series' family and recipe
        return not _away(ref, onset.arch, design_vector(onset.arch))

    table, rows_by = [], {}
    for name, (_, _, _, servable) in clocks.CANDIDATES.items():
        eff = clocks.with_clock(native, name)
        for previous in (True, False):
            if previous and name not in ("lr_integral", "steps", "fraction"):
                continue
            rows, summ = clocks.leave_one_family_out(onsets, eff, p, arch_timeline, previous=previous, own=own)
            rows_by[(name, previous)] = rows
            table.append({"clock": name, "calibration": "previous (Pythia series only)" if previous else "across families",
                          "servable": servable, **summ})
    across = [r for r in table if r["calibration"] == "across families" and r["servable"]]
    chosen = clock or min(across, key=lambda r: r["rms_error"])["clock"]
    effects = clocks.with_clock(native, chosen)
    fit = clocks.calibrate(clocks.points_for(onsets, effects, p, arch_timeline), chosen)
    by_label = {o.label: o for o in onsets}
    checks = []
    for r in rows_by[(chosen, False)]:
        o = by_label[r["onset"]]
        checks.append({**r, "source": o.source, "outside_family": _away(ref, o.arch, design_vector(o.arch))})
    return chosen, effects, fit, table, checks


def _away(ref: tuple[np.ndarray, dict[str, set]] | None, arch: Architecture, x: np.ndarray) -> list[str]:
    """The design terms and recipe fields of ``arch`` (design vector ``x``) that no checkpoint series has (``ref``:
    their design vectors and recipe values)."""
    if ref is None:
        return ["no checkpoint series"]
    seen, recipes = ref
    near = (np.abs(seen - x) < 1e-9).any(axis=0).tolist()
    out = [t for j, t in DESIGN_TERMS if not near[j]]
    out += [f"{f}={getattr(arch, f)}" for f in RECIPE_FIELDS if _recipe_value(arch, f) not in recipes[f]]
    return out


def _timing_text(curves: dict[str, CurveFit], sizes: list[float], checks: list[dict], clock: str, table: list[dict],
                 families: list[str], family_sd: float) -> tuple[str, float, float, str, str]:
    """``timing_notes``' parts that do not depend on the design: the series it names, their size range (billions of
    parameters), the clock's choice and the across-family spread."""
    fams = sorted({family_of(m).split("-")[0] for m in curves}) or ["no checkpoint series"]
    lo, hi = min(sizes), max(sizes)
    covered = sum(c["covered_loo"] for c in checks)
    series = (f"timing (t_emerge, the curve's clock) is calibrated on {', '.join(fams)} checkpoint series ({len(curves)} "
              f"series, {lo:.2g}-{hi:.2g}B parameters")
    row = next((r for r in table if r["clock"] == clock and r["calibration"] == "across families"), None)
    said = (f"; time is counted in the {clock} clock ({clocks.CANDIDATE_TEXT.get(clock, clock)}), chosen by "
            f"leave-one-family-out error ({row['rms_error']:.2f} decades) among {len(clocks.CANDIDATES)} clocks on "
            f"{row['n']} published onsets of {len(families)} families "
            f"({', '.join(families)})") if row else ""
    spread = (f"its tau_e is the across-family intercept with a between-family spread of {family_sd:.2f} "
              f"decades ({covered}/{len(checks)} published onsets covered when their family is left out)")
    return series, lo, hi, said, spread


def _late_growth(ev: Evidence) -> tuple[float, tuple[float, float]]:
    """The longest trajectory the evidence holds (in tokens) and how its layers still moved at the end:
    the 10th and 90th percentile over layers of the ratio's change over the last doubling of steps
    (log10 per doubling; negative: declining). A plan beyond the horizon widens its interval by these
    rates per doubling beyond it: the evidence cannot tell a plateau from continued growth or decline."""
    traj = ev.layers[ev.layers["step"].notna() & ev.layers["y_ratio"].notna()]
    if traj.empty:
        return float("inf"), (0.0, 0.0)
    horizon = max(float(sub["step"].max()) * ev.archs[m].batch_tokens for m, sub in traj.groupby("model"))
    slopes = []
    for _, g in traj.groupby(["model", "layer"]):
        steps = g.groupby("step")["y_ratio"].mean()
        last = float(steps.index.max())
        half = float(steps.index[np.abs(steps.index - last / 2).argmin()])
        if 0 < half < last:
            slopes.append((steps[last] - steps[half]) / math.log2(last / half))
    if not slopes:
        return horizon, (0.0, 0.0)
    lo, hi = np.percentile(slopes, [10, 90])
    return horizon, (float(lo), float(hi))



def _onset_family(model: str) -> str:
    """The family label of a checkpoint series (the one ``TIMING_ONSETS`` uses for Pythia)."""
    return "Pythia" if model.startswith("pythia") else family_of(model)


def _recipe_value(arch: Architecture, f: str):
    v = getattr(arch, f)
    return {"adam": "adamw"}.get(v, v) if isinstance(v, str) else v  # Pythia's "Adam" decouples weight decay too
