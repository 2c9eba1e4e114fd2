"""Forecast engine v2: plan-aware time, magnitude terms with shrinkage, leak-free grouped evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from collector.reference import load_peer_evidence
from predictor.architecture import Architecture, family_of
from predictor.design import TERMS
from predictor.engine import ForecastEngine
from predictor.level import LineageLevel
from predictor.timeline import Timeline, fit_plan_effects
from registry.evaluation import LeakError, assert_no_leak, evaluate, groups_of
from registry.sensitivity import VARIANTS, sensitivity_table
from tests.conftest import stand_in_posterior

BASE = {"n_layers": 24, "d_model": 2048, "n_heads": 16, "d_ffn": 8192}
BASE_ARCH = Architecture(**BASE)


def test_evidence_holds_every_source_with_its_protocol(evidence):
    d = evidence.describe()
    # seq_mean: the Pythia series and the 2503.22329 models' means over 10 RedPajama sequences
    assert d["models_seq_mean"] >= 15 and d["models_one_sentence"] == 13 and d["models_corpus_max"] == 19
    assert d["lineages"] == 17
    assert evidence.unknown == []
    assert {"pythia-1.4b", "pythia-12b"} == set(evidence.anchors["model"])
    # 160m's step 8000 (second harvest) is in
    assert 8000 in set(evidence.layers.loc[evidence.layers["model"] == "pythia-160m", "step"])
    # with a BOS token Gemma-3's peaks are the larger ones (2503.22329 measured both)
    g = evidence.layers[(evidence.layers["model"] == "gemma-3-12b-pt") & (evidence.layers["protocol"] == "one_sentence")]
    assert 10 ** g["y_abs"].max() == pytest.approx(777957.4375, rel=1e-6)


def test_families_group_variants_that_share_weights():
    assert family_of("Qwen2.5-7B") == family_of("Qwen2.5-7B-Instruct") == family_of("Qwen2.5-VL-7B")
    assert family_of("Qwen2.5-7B") != family_of("Qwen2.5-32B")
    assert family_of("gemma-3-1b-pt") != family_of("gemma-3-27b-it")  # sizes of one recipe: a lineage, not a family
    assert family_of("pythia-1b") == "pythia-1b"


def test_lineages_group_the_sizes_of_one_recipe(evidence):
    lin = evidence.lineages
    assert lin["gemma-3-1b-pt"] == lin["gemma-3-27b-it"] == "gemma-3"
    assert lin["Qwen3-30B-A3B"] == lin["Qwen3-32B"] == "qwen3" and lin["pythia-14m"] == "pythia"
    assert lin["Llama-2-7b-hf"] != lin["Llama-3.2-1B"]


def test_plan_effects_follow_the_peer_grids():
    fx = fit_plan_effects(load_peer_evidence())
    assert 1.0 < fx.kappa < 4.0  # lower lr -> slower: Gu et al. Table 9
    assert abs(fx.beta) < 0.1  # batch size has no effect at fixed steps: Table 10
    assert fx.wd_factor(0.5) > fx.wd_factor(0.1) > fx.wd_factor(0.0) and fx.wd_factor(5.0) < 1e-3  # Table 2
    tl = Timeline(10000, 3e-4, "constant", 0.0, 2**21, 0.1, fx)
    assert tl(10000) == pytest.approx(10000 * fx.rate(3e-4, 2**21, 0.1), rel=1e-3)
    warm = Timeline(10000, 3e-4, "constant", 0.5, 2**21, 0.1, fx)
    assert warm(10000) < tl(10000) and warm.step_at(warm(7000)) == pytest.approx(7000, rel=1e-3)


def test_trajectory_is_the_curve_at_the_planned_steps(engine):
    for steps in (10000, 143000):
        fc = engine.forecast({**BASE, "total_steps": steps})
        assert fc.t_end == steps
        for lf in fc.layers:
            last = lf.ratio_trajectory[-1]
            assert last.step == steps and lf.ratio_end.value == last.value
            assert lf.ratio_end.lo <= lf.ratio_end.value <= lf.ratio_end.hi
            assert lf.peak_abs.lo <= lf.peak_abs.value <= lf.peak_abs.hi
            values = [p.value for p in lf.ratio_trajectory]
            assert values == sorted(values)  # the curve rises monotonically


def test_acceptance_directions_on_the_engine(engine):
    t = sensitivity_table(engine.forecast).set_index("variant")
    for name in ("pythia-160m, 10k steps", "pythia-1.4b", "Gemma-3-like", "learning rate 3e-3"):
        assert t.loc[name, "agrees"] == "yes", t.loc[name].to_dict()
    assert t.loc["pythia-1.4b", "ratio"] >= 5 and t.loc["Gemma-3-like", "ratio"] >= 30
    # every input with an expected sign moves the forecast that way
    bad = t[(t["agrees"] == "NO")]
    assert bad.empty, bad[["vs", "quantity", "ratio", "expected"]].to_string()
    assert set(VARIANTS) == set(t.index)


def test_rare_switches_are_shrunk_and_widen_the_interval(engine):
    coef = engine.level_["abs"].coefficients()
    assert coef["post_sublayer"]["families"] == 1 and coef["glu"]["families"] > 7
    _, sd_plain = engine.level(engine_arch())["abs"]
    _, sd_rare = engine.level(engine_arch(norm_placement="post_sublayer"))["abs"]
    _, sd_unseen = engine.level(engine_arch(attention_kind="sigmoid"))["abs"]
    assert sd_rare > sd_plain and sd_unseen > sd_plain
    fc = engine.forecast({**BASE, "attention_kind": "sigmoid", "norm_placement": "post_sublayer"})
    fields = {w.field for w in fc.applicability}
    assert {"attention_kind", "norm_placement"} <= fields


def engine_arch(**kw):
    from predictor.architecture import Architecture

    return Architecture(**{**BASE, **kw})


def _synthetic_lineages(rng, n_lineages=12, sizes=3):
    """Lineages with their own level (sd 0.8) on a common width slope 0.6, three sizes each."""
    X, lin, y = [], [], []
    for g in range(n_lineages):
        a = rng.normal(scale=0.8)
        for w in rng.uniform(-1.5, 1.5, size=sizes):
            x = np.zeros(len(TERMS))
            x[TERMS.index("log_width")] = w
            X.append(x)
            lin.append(f"L{g}")
            y.append(3.0 + 0.6 * w + a + rng.normal(scale=0.1))
    return np.array(X), np.array(lin, object), np.array(y)


def test_level_model_shrinks_a_term_seen_once():
    rng = np.random.default_rng(0)
    X, lin, y = _synthetic_lineages(rng)
    X[0, TERMS.index("glu")] = 1.0  # one model with the switch, far off
    y[0] += 3.0
    m = LineageLevel(TERMS).fit(X, lin, np.arange(len(y)).astype(str), y)
    assert 0 < m.coefficients()["glu"]["coef"] < 3.0  # pulled towards zero


def test_level_model_leans_on_a_known_lineage_and_widens_for_a_new_one():
    """A new size of a known lineage is forecast from its siblings (the lineage's own level), with a narrower
    interval than a new lineage, which gets the common slope and the between-lineage spread."""
    rng = np.random.default_rng(1)
    X, lin, y = _synthetic_lineages(rng)
    m = LineageLevel(TERMS).fit(X, lin, np.arange(len(y)).astype(str), y)
    assert m.coefficients()["log_width"]["coef"] == pytest.approx(0.6, abs=0.15)
    assert m.hyperparameters()["tau_lineage"] == pytest.approx(0.8, rel=0.5)
    x = np.zeros((1, len(TERMS)))
    own = float(np.mean(y[lin == "L3"] - 0.6 * X[lin == "L3", TERMS.index("log_width")]))
    known, sd_known = m.predict(x, ["L3"])
    new, sd_new = m.predict(x, [None])
    assert abs(known[0] - own) < abs(new[0] - own) and abs(known[0] - own) < 0.15
    assert sd_known[0] < 0.5 * sd_new[0]


def test_unpredictable_targets_show_the_constant(evidence):
    from predictor.engine import TargetQuality

    fitted = ForecastEngine().fit(evidence)
    eng = fitted.with_evaluation(quality={"peak_abs": TargetQuality("peak_abs", mae=1.0, baseline_mae=0.8)},
                                 caveats=["read it with its interval"])
    assert fitted.quality_ == {} and fitted.caveats_ == []  # a new object: the fitted one is unchanged
    fc = eng.forecast(BASE)
    mu, _ = eng.constant_["abs"]
    assert fc.unpredictable == ["peak_abs"]
    assert all(lf.peak_abs.value == pytest.approx(10**mu) for lf in fc.layers)
    assert any("not predictable from the data held" in n for n in fc.notes)
    assert "read it with its interval" in fc.notes and "read it with its interval" not in fitted.forecast(BASE).notes


def test_a_variant_is_a_new_fitted_engine_and_the_fitted_one_is_unchanged(engine):
    """Consumers get variants from the engine (leave one study out, a nowcast's posterior), never by writing it."""
    studies = sorted({c.study for c in engine.controlled_.comparisons_})
    before = (engine.controlled_, engine.association_sd_, engine.forecast_arrays(BASE).model_dump_json())
    loso = engine.without_studies(studies[:1])
    assert loso is not engine and studies[0] not in {c.study for c in loso.controlled_.comparisons_}
    assert loso.level_ is engine.level_  # the level model never saw the controlled table: shared, not refitted

    cond = engine.conditioned(stand_in_posterior(engine, BASE["n_layers"]))
    assert cond.clock_model_.p_ == 2.5 and cond.quality_ == {} and cond.class_probabilities(BASE_ARCH).shape == (24, 3)
    assert not np.array_equal(engine.class_probabilities(BASE_ARCH), cond.class_probabilities(BASE_ARCH))
    assert engine.posterior_ is None and engine.clock_model_.p_ != 2.5
    assert before == (engine.controlled_, engine.association_sd_, engine.forecast_arrays(BASE).model_dump_json())


def test_assert_no_leak_catches_a_model_its_family_or_its_lineage(evidence):
    held = {"Qwen2.5-7B"}
    with pytest.raises(LeakError):
        assert_no_leak(evidence, held, "model")
    part = evidence.without(held)
    with pytest.raises(LeakError, match="family"):  # its instruct and VL variants share its weights
        assert_no_leak(part, held, "model")
    fam = groups_of(evidence, "model")["Qwen2.5-7B"]
    assert fam == {"Qwen2.5-7B", "Qwen2.5-7B-Instruct", "Qwen2.5-VL-7B"}
    assert_no_leak(evidence.without(fam), fam, "model")
    with pytest.raises(LeakError, match="lineage"):  # Qwen2.5-32B is of the same lineage
        assert_no_leak(evidence.without(fam), fam, "lineage", {"qwen2.5"})
    lin = groups_of(evidence, "lineage")["qwen2.5"]
    assert_no_leak(evidence.without(lin), lin, "lineage", {"qwen2.5"})


@pytest.mark.parametrize("by", ["lineage", "model"])
def test_evaluation_never_trains_on_the_held_out_group(evidence, monkeypatch, by):
    """Every fold's engine sees no row of the held-out group (and, by family, none of its variants)."""
    seen: list[set[str]] = []
    orig = ForecastEngine.fit

    def spy(self, ev):
        seen.append(set(ev.layers["model"]) | set(ev.anchors["model"]))
        return orig(self, ev)

    monkeypatch.setattr(ForecastEngine, "fit", spy)
    e = evaluate(evidence, by, progress=False)
    groups = groups_of(evidence, by)
    lineages = evidence.lineages
    if by == "model":  # only a model whose lineage keeps a member is "a new member of a known lineage"
        groups = {g: ms for g, ms in groups.items()
                  if {lineages[m] for m in ms} & {lineages[m] for m in evidence.models if m not in ms}}
    fold_models = seen[1:]  # the first fit is the full engine (the truths: each series' own curve)
    assert len(fold_models) == len(groups)
    for (_g, models), trained_on in zip(groups.items(), fold_models, strict=True):
        assert not (models & trained_on)
        assert not ({family_of(m) for m in models} & {family_of(m) for m in trained_on})
        held_lineages = {lineages[m] for m in models}
        kept = held_lineages & {lineages[m] for m in trained_on}
        assert (not kept) if by == "lineage" else kept == held_lineages
    pred = e.predictions
    for r in pred.to_dict("records"):
        assert r["model"] in groups[r["group"]]
    assert math.isfinite(e.table()["mae"].mean())


def test_steps_at_inverts_the_effective_time():
    """The vectorised inverse of the effective time (emergence steps of all layers at once): the step at
    which tau(t) is reached is t, everywhere in the plan; 0 at tau = 0; NaN (step_at: None) beyond the plan."""
    from predictor.timeline import PlanEffects

    eff = PlanEffects(kappa=2.0, beta=0.0, wd_grid=((-3.0, 0.0), (0.0, 0.0)), sink_exponent=1.0, n_rows=0, source="test")
    tl = Timeline(10_000, 3e-4, "cosine", 0.05, 2e6, 0.1, eff)
    t = np.concatenate([np.geomspace(1.0, 10_000.0, 60), [250.0, 500.0, 9_999.0]])
    assert tl.steps_at(tl(t)) == pytest.approx(t, rel=1e-9)
    beyond = float(tl.tau[-1]) * 1.5
    got = tl.steps_at(np.array([0.0, beyond]))
    assert got[0] == 0.0 and np.isnan(got[1])
    assert tl.step_at(beyond) is None and tl.step_at(float(tl(5_000.0))) == pytest.approx(5_000.0, rel=1e-9)


def test_t_emerge_does_not_depend_on_where_the_plan_stops(evidence):
    """Issue 20: shortening a cosine plan (same warmup steps) decays the learning rate sooner, which by the
    effective-time clock delays emergence; t_emerge is half the rise to the steady state, so no layer emerges
    earlier in the shorter plan (it was half the rise to the plan's maximum, which made 10k steps emerge at
    1,126 instead of 1,830). On that clock (issue 29 serves the clock the data chooses; a clock counting the
    fraction of the plan moves a shorter plan's emergence earlier in steps by design)."""
    from registry.reference import pythia_architectures

    engine = ForecastEngine(clock="lr_integral").fit(evidence)

    base = pythia_architectures()["pythia-160m"].model_copy(update={"total_steps": 143_000, "warmup_frac": 0.01})
    short = base.model_copy(update={"total_steps": 20_000, "warmup_frac": 1430 / 20_000})
    long_fc, short_fc = engine.forecast(base), engine.forecast(short)
    pairs = [(lf.t_emerge, sf.t_emerge) for lf, sf in zip(long_fc.layers, short_fc.layers, strict=True)]
    assert all(lt is not None and lt.value for lt, _ in pairs)
    assert all(st is None or st.value is None or st.value >= lt.value for lt, st in pairs)
    assert sum(st is not None and st.value is not None and st.value > lt.value for lt, st in pairs) >= 6
    # the steady state, and so t_emerge, does not move with the plan's end when the clock does not
    same = engine.forecast(base.model_copy(update={"total_steps": 200_000, "warmup_frac": 1430 / 200_000}))
    assert same.layers[0].t_emerge.value == pytest.approx(long_fc.layers[0].t_emerge.value, rel=0.05)


def test_schedule_linked_risk_is_stated_with_its_source(engine):
    """Issue 20: FP8 divergence of SwiGLU after ~200B tokens (2409.12517: a number, the step is stated) and PTQ
    error rising when the learning rate decays (2510.06213: a direction, the decay start is stated)."""
    from predictor.architecture import Architecture

    a = Architecture(n_layers=32, d_model=4096, n_heads=32, d_ffn=11008, ffn_type="glu", activation="silu",
                     norm_type="rmsnorm", precision_target="fp8_training", training_tokens=2e12, batch_tokens=4_194_304)
    note = next(n for n in engine.forecast(a).notes if n.startswith("late FP8 risk"))
    assert "2409.12517" in note and f"step {int(200e9 / 4_194_304):,}" in note
    short = a.model_copy(update={"training_tokens": 1e11})
    assert "before it" in next(n for n in engine.forecast(short).notes if n.startswith("late FP8 risk"))
    ptq = a.model_copy(update={"precision_target": "w4a16", "lr_schedule": "wsd", "warmup_frac": 0.01})
    note = next(n for n in engine.forecast(ptq).notes if n.startswith("post-training quantization"))
    t = ptq.planned_steps
    w = round(0.01 * t)
    assert "2510.06213" in note and "direction only" in note and f"step {w + int(0.9 * (t - w)):,}" in note
    assert not any(n.startswith(("late FP8", "post-training")) for n in engine.forecast(a.model_copy(
        update={"precision_target": "bf16"})).notes)


def test_a_plan_beyond_the_evidence_says_so_and_widens_with_the_distance(engine):
    """Issue 20: a plan longer than the longest trajectory the evidence holds names how far it extrapolates, and
    the end interval widens with the doublings beyond it (by the rates those trajectories still moved at their
    end); inside the horizon nothing changes."""
    from predictor.architecture import Architecture

    base = dict(n_layers=32, d_model=4096, n_heads=32, d_ffn=11008, ffn_type="glu", activation="silu",
                norm_type="rmsnorm", batch_tokens=4_194_304)
    clock = engine.clock_model_
    lo_slope, hi_slope = clock.late_slopes_
    assert lo_slope < 0 < hi_slope and 1e11 < clock.horizon_tokens_ < 1e12
    widths, notes = [], []
    for tokens in (0.5 * clock.horizon_tokens_, 2e12, 1.5e13):
        fc = engine.forecast(Architecture(**base, training_tokens=tokens))
        big = max(fc.layers, key=lambda lf: lf.peak_abs.value)
        widths.append(math.log10(big.ratio_end.hi / big.ratio_end.lo))
        notes.append([n for n in fc.notes if "beyond the longest trajectory" in n])
    assert notes[0] == [] and notes[1] and notes[2] and "2,000B tokens" in notes[1][0]
    assert widths[0] < widths[1] < widths[2]
    down, up = clock.beyond(Architecture(**base, training_tokens=2e12), np.array([0.0, 1e4, 2e12 / 4_194_304]))
    assert down[0] == up[0] == down[1] == 0.0 and down[2] > 0 and up[2] > 0


def _series(values: dict[int, float]):
    import pandas as pd

    return pd.DataFrame([{"model": "toy", "step": s, "layer": layer, "y_abs": v + 0.1 * layer, "y_ratio": np.nan}
                         for s, v in values.items() for layer in range(2)])


def test_a_short_series_cannot_claim_any_height_or_set_the_clock():
    """A proxy run still rising at its last save (or that emerged before its first) once put its fitted midpoint
    anywhere beyond the data and its asymptote at 10**400 (seen in a retrain with a 300-step proxy)."""
    from predictor.emergence_clock import MAX_EXTRAPOLATION, fit_series
    tl = Timeline(300, 3e-3, "constant", 0.0, 512, 0.0, fit_plan_effects(load_peer_evidence()))
    rising = fit_series("toy", _series({0: 0.0, 25: 0.1, 50: 0.2, 100: 0.4, 200: 0.8, 300: 1.2}), tl)
    assert rising.log_tau_e <= rising.log_tau_span[1] + MAX_EXTRAPOLATION + 1e-9
    assert np.all(np.isfinite(rising.rise["abs"])) and np.nanmax(rising.rise["abs"]) < 10  # not 10**400
    early = fit_series("toy", _series({0: 0.0, 25: 1.5, 50: 1.5, 100: 1.5, 200: 1.5, 300: 1.5}), tl)
    assert not early.timed  # emerged before its first save: says nothing of when
    mid = fit_series("toy", _series({0: 0.0, 25: 0.05, 50: 0.2, 100: 0.9, 200: 1.4, 300: 1.5}), tl)
    assert mid.timed
