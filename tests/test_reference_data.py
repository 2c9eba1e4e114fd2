"""Bundled reference data, the stats-table schema, and the published-layout importer."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from collector.published import PublishedFormatError, import_published
from collector.reference import load_final_model_stats, load_pythia_stats
from maforecast.tables import FitRow, StatsRow, TableError, conform, read_table, stats_with_ratio, write_table


def test_bundled_pythia_loads_through_stats_schema():
    df = load_pythia_stats(more=False)
    assert list(df.columns) == list(StatsRow.model_fields)
    assert set(df["protocol"]) == {"seq_mean"}
    counts = df.groupby("model").agg(steps=("step", "nunique"), layers=("layer", "nunique"))
    assert counts.loc["pythia-14m"].tolist() == [8, 6]
    assert counts.loc["pythia-160m"].tolist() == [6, 12]
    assert counts.loc["pythia-1b"].tolist() == [6, 16]
    assert counts.loc["pythia-12b"].tolist() == [9, 36]
    raw = pd.read_csv(__import__("collector.reference", fromlist=["x"]).reference_file("pythia_stats.csv"))
    assert len(df) == len(raw)
    # 12b has no median in the source: it stays missing, not invented
    assert df.loc[df.model == "pythia-12b", "median"].isna().all()
    assert df.loc[df.model == "pythia-12b", "top1"].notna().all()
    ratio = stats_with_ratio(df)
    assert ratio.loc[ratio.model == "pythia-12b", "ratio"].isna().all()
    # exact transcription of the first row of the source file
    first = df[(df.model == "pythia-14m") & (df.step == 0) & (df.sequence == 0) & (df.layer == 0)].iloc[0]
    assert first["top1"] == pytest.approx(1.25000238) and first["median"] == pytest.approx(0.1755127)


def test_second_harvest_and_maxact_load_with_their_protocol():
    from collector.reference import load_maxact_stats, load_reference_stats

    more = load_pythia_stats().groupby("model")["step"].unique()
    assert {64, 8000} <= set(more["pythia-160m"]) and 512 in set(more["pythia-1b"]) and {36000, 60000} <= set(more["pythia-12b"])
    m = load_maxact_stats()
    assert m["model"].nunique() == 19 and set(m["protocol"]) == {"corpus_max"} and m["step"].isna().all()
    raw = pd.read_csv(__import__("collector.reference", fromlist=["x"]).reference_file("maxact_layers.csv"))
    assert len(m) == len(raw) and m["top1"].max() == pytest.approx(raw["abs_max"].max())
    allrows = load_reference_stats()
    assert set(allrows["protocol"]) == {"seq_mean", "one_sentence", "corpus_max"}
    assert list(allrows.columns) == list(StatsRow.model_fields)


def test_bundled_final_models_load_without_a_step():
    df = load_final_model_stats(bos=False)
    assert df["model"].nunique() == 13
    assert df["step"].isna().all()
    assert df.loc[(df.model == "Llama-2-7b-hf") & (df.layer == 1), "top1"].iloc[0] == 2368.0


def test_conform_names_the_bad_column():
    with pytest.raises(TableError, match="'layer'"):
        conform(pd.DataFrame({"model": ["a"], "step": [1], "sequence": [0], "source": ["x"]}), StatsRow)
    with pytest.raises(TableError, match="'step'"):
        conform(pd.DataFrame({"model": ["a"], "step": ["x"], "sequence": [0], "layer": [0], "source": ["s"]}), StatsRow)
    with pytest.raises(TableError, match="'layer'"):
        conform(pd.DataFrame({"model": ["a"], "step": [1], "sequence": [0], "layer": [-1], "source": ["s"]}), StatsRow)


def test_table_round_trip(tmp_path):
    df = load_pythia_stats()
    for name in ("s.parquet", "s.csv"):
        write_table(df, tmp_path / name, StatsRow)
        back = read_table(tmp_path / name, StatsRow)
        pd.testing.assert_frame_equal(back, df)


def _write_published(root, with_ext: bool):
    rng = np.random.default_rng(0)
    arrays = {}
    for step in (0, 1000, 143000):
        arr = rng.uniform(0.1, 50, size=(3, 4, 6)).astype(np.float32)
        arrays[step] = arr
        (root / "pythia-14m" / "stats").mkdir(parents=True, exist_ok=True)
        name = f"exp2_pythia_14m_step{step}"
        if with_ext:
            np.save(root / "pythia-14m" / "stats" / f"{name}.npy", arr)
        else:  # np.save always appends .npy: write to a handle to get the bare name
            with open(root / "pythia-14m" / "stats" / name, "wb") as fh:
                np.save(fh, arr)
    (root / "pythia-14m" / "params").mkdir(parents=True)
    entries = [
        {"original": {"param_names": ["A", "lambda", "gamma", "t0", "K"], "popt": [1.0 + i, 0.1, 1e-4, 0.6, 0.1],
                      "pcov": np.diag([0.01, 0.001, 1e-10, 0.04, 0.0001]).tolist(), "r2": 0.99, "aic": -300.0,
                      "residuals": [0.01, -0.02, 0.0]}}
        for i in range(6)
    ]
    (root / "pythia-14m" / "params" / "layer_fit_params_median.json").write_text(json.dumps(entries))
    return arrays


@pytest.mark.parametrize("with_ext", [True, False])
def test_published_importer_round_trip(tmp_path, with_ext):
    arrays = _write_published(tmp_path, with_ext)
    stats, fits = import_published(tmp_path)
    assert len(stats) == 3 * 3 * 6
    assert set(stats["model"]) == {"pythia-14m"}
    for step, arr in arrays.items():
        sub = stats[stats.step == step].sort_values(["sequence", "layer"])
        for i, col in enumerate(["top1", "top2", "top3", "median"]):
            np.testing.assert_allclose(sub[col].to_numpy(), arr[:, i, :].ravel(), rtol=1e-6)
    assert len(fits) == 6 and set(fits["metric"]) == {"median"}
    row = fits[fits.layer == 2].iloc[0]
    assert row["A"] == 3.0 and row["lam"] == 0.1 and row["se_A"] == pytest.approx(0.1)
    FitRow(**{k: (None if pd.isna(v) else v) for k, v in row.to_dict().items()})


def test_published_importer_errors_name_the_file(tmp_path):
    with pytest.raises(PublishedFormatError, match="no '<model>/stats"):
        import_published(tmp_path)
    bad = tmp_path / "pythia-14m" / "stats"
    bad.mkdir(parents=True)
    (bad / "exp2_pythia_14m_step5").write_bytes(b"not numpy")
    with pytest.raises(PublishedFormatError, match="exp2_pythia_14m_step5"):
        import_published(tmp_path)


def test_import_published_cli(tmp_path, data_home):
    from click.testing import CliRunner

    from maforecast.cli import root

    _write_published(tmp_path / "ds", True)
    res = CliRunner().invoke(root, ["import-published", str(tmp_path / "ds")])
    assert res.exit_code == 0, res.output
    stats = read_table(data_home / "tables" / "stats.parquet", StatsRow)
    assert len(stats) == 54
    # importing twice replaces, never duplicates
    res = CliRunner().invoke(root, ["import-published", str(tmp_path / "ds")])
    assert len(read_table(data_home / "tables" / "stats.parquet", StatsRow)) == 54
    assert (data_home / "tables" / "published_fits.parquet").exists()


def test_controlled_effects_are_bundled_with_their_provenance():
    """The controlled comparisons (issue 18's evidence) load through their row schema; every ratio agrees
    with its before/after values; every mapped field is a schema field; the provenance text travels."""
    import math
    import re

    from collector.reference import load_controlled_effects, reference_file
    from predictor.architecture import Architecture

    ce = load_controlled_effects()
    assert len(ce) == 60 and ce["study"].nunique() == 16
    for r in ce.to_dict("records"):
        if r["log10_ratio"] is not None and not math.isnan(r["log10_ratio"]):
            before, after = float(r["value_before"]), float(r["value_after"])
            assert abs(math.log10(after / before) - r["log10_ratio"]) < 0.01, r
        for field in re.split(r"[+]", r["change_field"]):
            assert field.startswith("other:") or field in Architecture.model_fields or field == "z_loss", r["change_field"]
    text = (reference_file("PROVENANCE.md")).read_text(encoding="utf-8")
    assert "## Controlled comparisons (design effects)" in text and "controlled_effects.csv" in text


def test_precision_outcomes_are_bundled_with_sources():
    """Issue 19's outcome table: every row names a bundled architecture, a use the scorer knows, an outcome and a
    source; the AUC helper counts pairs (ties half)."""
    from registry.outcomes import USE_FORMAT, auc, load_outcomes
    from registry.reference import reference_architectures

    df = load_outcomes()
    archs = reference_architectures()
    assert len(df) >= 8 and set(df["outcome"]) == {"breaks", "fine"}
    for r in df.to_dict("records"):
        assert r["model"] in archs and r["use"] in USE_FORMAT and r["confidence"] in ("H", "M", "L")
        assert r["source"].startswith("https://") and r["evidence"]
    assert auc([0.9, 0.5], [0.1, 0.5]) == pytest.approx((1 + 1 + 1 + 0.5) / 4)
    assert auc([0.1], [0.9]) == 0.0
