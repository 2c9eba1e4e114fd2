"""Collector tests on tiny real checkpoint series built locally (see collector_helpers.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from collector import errors as E
from collector.hooks import find_decoder_layers, hook_name, measure
from collector.probe import ProbeSet, build_probe, probe_digest
from collector.run import CollectOptions, collect_series, probe_for_series
from collector.sources import local_series, resolve_source
from maforecast.tables import StatsRow, conform, read_table, stats_with_ratio

N_SEQ, SEQ_LEN, BATCH = 5, 16, 2  # batches of 2, 2, 1: an uneven last batch


@pytest.fixture(scope="session")
def series():
    from collector_helpers import build_series

    return build_series()


def _probe(series, key="neox"):
    cps = resolve_source(str(series[key]))
    return cps, probe_for_series(cps, series["probe"], n_sequences=N_SEQ, seq_len=SEQ_LEN)


def _load(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def _stats(h: torch.Tensor):
    a = h.abs().reshape(h.shape[0], -1)
    vals, idx = a.topk(3, dim=1)
    d = h.shape[-1]
    return vals, a.median(dim=1).values, idx[:, 0] // d, idx[:, 0] % d


def _as_frame(rows):
    return pd.DataFrame(rows).sort_values(["layer", "sequence"]).reset_index(drop=True)


# --------------------------------------------------------------------------- measurement


@pytest.mark.parametrize("key,final_norm", [("neox", "gpt_neox.final_layer_norm"), ("llama", "model.norm")])
def test_hooks_match_hidden_states(series, key, final_norm):
    """Layers 0..L-2 equal ``hidden_states[l+1]``; the last layer equals the pre-final-norm output.

    transformers' last ``hidden_states`` entry is taken after the final norm, so for the last layer
    the reference is the same forward pass with the final norm replaced by identity (hook-free),
    and the post-norm entry is shown to differ.
    """
    cps, probe = _probe(series, key)
    model = _load(cps[-1].location)
    ids = torch.from_numpy(probe.input_ids)
    got = _as_frame(measure(model, ids, batch_size=BATCH))
    n_layers = model.config.num_hidden_layers
    assert sorted(got["layer"].unique()) == list(range(n_layers))
    assert len(got) == n_layers * probe.n_sequences

    with torch.inference_mode():
        hs = model(input_ids=ids, output_hidden_states=True).hidden_states
    assert len(hs) == n_layers + 1
    for layer in range(n_layers - 1):
        vals, med, tok, dim = _stats(hs[layer + 1])
        g = got[got["layer"] == layer]
        np.testing.assert_allclose(g[["top1", "top2", "top3"]].to_numpy(), vals.numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(g["median"].to_numpy(), med.numpy(), rtol=1e-5, atol=1e-5)
        assert g["top1_token"].tolist() == tok.tolist()
        assert g["top1_dim"].tolist() == dim.tolist()

    last = got[got["layer"] == n_layers - 1]
    post_norm_top1 = _stats(hs[-1])[0][:, 0].numpy()
    assert not np.allclose(last["top1"].to_numpy(), post_norm_top1, rtol=1e-3)

    parent, attr = final_norm.rsplit(".", 1)
    setattr(model.get_submodule(parent), attr, torch.nn.Identity())
    with torch.inference_mode():
        pre_norm = model(input_ids=ids, output_hidden_states=True).hidden_states[-1]
    vals, med, tok, dim = _stats(pre_norm)
    np.testing.assert_allclose(last[["top1", "top2", "top3"]].to_numpy(), vals.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(last["median"].to_numpy(), med.numpy(), rtol=1e-5, atol=1e-5)
    assert last["top1_token"].tolist() == tok.tolist()


@pytest.mark.parametrize(
    "make",
    [
        lambda: __import__("transformers").GPT2LMHeadModel(
            __import__("transformers").GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=64, n_positions=32)
        ),
        lambda: __import__("transformers").OPTForCausalLM(
            __import__("transformers").OPTConfig(
                num_hidden_layers=2, hidden_size=32, num_attention_heads=4, ffn_dim=64, vocab_size=64,
                word_embed_proj_dim=32, max_position_embeddings=32,
            )
        ),
    ],
    ids=["gpt2", "opt"],
)
def test_find_layers_generic(make):
    model = make().eval()
    name, layers = find_decoder_layers(model)
    assert len(layers) == 2 and name.endswith(("h", "layers"))
    rows = measure(model, torch.randint(0, 64, (3, 8)), batch_size=2)
    assert len(rows) == 6 and all(r["top1"] >= r["top2"] >= r["top3"] >= 0 for r in rows)
    assert hook_name(1) == "blocks.1.hook_resid_post"


def test_batch_size_does_not_change_results(series):
    cps, probe = _probe(series)
    model = _load(cps[1].location)
    ids = torch.from_numpy(probe.input_ids)
    a = _as_frame(measure(model, ids, batch_size=1))
    b = _as_frame(measure(model, ids, batch_size=8))
    np.testing.assert_allclose(a[["top1", "median"]].to_numpy(), b[["top1", "median"]].to_numpy(), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- probe


def test_probe_windows_fixed_and_digest(series):
    cps, probe = _probe(series)
    assert probe.input_ids.shape == (N_SEQ, SEQ_LEN)
    again = probe_for_series(cps, series["probe"], n_sequences=N_SEQ, seq_len=SEQ_LEN)
    assert again.digest == probe.digest and len(probe.digest) == 16
    assert probe_digest(probe.input_ids[:, :-1]) != probe.digest
    # the Llama tokenizer (in the series root only) prepends BOS to every window
    _, lp = _probe(series, "llama")
    assert (lp.input_ids[:, 0] == 1).all() and lp.input_ids.shape == (N_SEQ, SEQ_LEN)


def test_default_probe_is_offline_and_fixed(series):
    from collector_helpers import make_tokenizer

    tok = make_tokenizer(bos=False)
    p1 = build_probe(tok, None, n_sequences=10, seq_len=64)
    p2 = build_probe(tok, "default", n_sequences=10, seq_len=64)
    assert p1.input_ids.shape == (10, 64) and p1.digest == p2.digest


# --------------------------------------------------------------------------- sources and suites


def test_local_steps_from_names_and_trainer_state(series):
    neox = local_series(series["neox"])
    assert [(c.revision, c.step) for c in neox] == [("step0", 0), ("step2", 2), ("step4", 4)]
    llama = local_series(series["llama"])
    assert [(c.revision, c.step) for c in llama] == [("early", 0), ("late", 3)]
    one = resolve_source(str(series["neox"] / "step2"))
    assert len(one) == 1 and one[0].step == 2
    assert [c.step for c in resolve_source(str(series["neox"]), ["step4", "0"])] == [4, 0]


def test_suites_presets():
    from collector.sources import load_suites, suite_series

    suites = load_suites()
    assert {"pythia-14m", "pythia-160m", "pythia-12b", "pythia-160m-deduped", "pythia-70m-seed3", "amber"} <= set(suites)
    cps = suite_series("pythia-160m")
    assert len(cps) == 154 and cps[0].revision == "step0" and cps[-1].revision == "step143000"
    assert [c.step for c in cps[:12]] == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000]
    assert all(c.location == "EleutherAI/pythia-160m" and c.model == "pythia-160m" for c in cps)
    every = resolve_source(None, suite="pythia-160m", every=4000)
    assert every[0].step == 0 and every[1].step == 4000 and every[-1].step == 143000
    assert all(c.step % 4000 == 0 for c in every[:-1])
    assert suite_series("amber")[3].revision == "ckpt_003"
    with pytest.raises(E.UnknownSuiteError):
        suite_series("pythia-999m")


# --------------------------------------------------------------------------- series, resume, MLflow


def _collect(series, out, key="neox", **kw):
    cps, probe = _probe(series, key)
    opts = kw.pop("options", CollectOptions(batch_size=BATCH))
    return collect_series(cps, probe, out=out, options=opts, progress=False, **kw), cps, probe


def _assert_complete(table, cps, probe):
    n_layers = table["layer"].nunique()
    key = ["model", "revision", "probe_digest", "source", "sequence", "layer"]
    assert not table.duplicated(key).any()
    assert sorted(table["revision"].unique()) == sorted(c.revision for c in cps)
    assert len(table) == len(cps) * probe.n_sequences * n_layers


def test_collect_series_end_to_end(series, data_home):
    from mlflow.tracking import MlflowClient

    from maforecast.settings import stats_path

    out = stats_path()
    result, cps, probe = _collect(series, out)
    assert result.measured == [c.label for c in cps] and result.rows_written == 3 * N_SEQ * 3

    table = read_table(out, StatsRow)
    conform(table, StatsRow)
    _assert_complete(table, cps, probe)
    assert set(table["source"]) == {"collector"} and set(table["probe_digest"]) == {probe.digest}
    assert set(table["dtype"]) == {"float32"}
    ratio = stats_with_ratio(table)
    assert len(ratio) == 3 * 3 and np.isfinite(ratio["ratio"]).all() and (ratio["ratio"] > 1).all()
    by_step = ratio.pivot(index="step", columns="layer", values="ratio")
    assert not np.allclose(by_step.loc[0], by_step.loc[4])  # training changed the weights

    client = MlflowClient()
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert sorted(c.data.tags["maforecast.revision"] for c in children) == ["step0", "step2", "step4"]
    hist = client.get_metric_history(parent.info.run_id, "ratio/layer_00")
    assert sorted(m.step for m in hist) == [0, 2, 4]
    expected = ratio[ratio["layer"] == 0].set_index("step")["ratio"]
    for m in hist:
        assert m.value == pytest.approx(expected[m.step], rel=1e-9)
    assert parent.inputs.dataset_inputs and parent.inputs.dataset_inputs[0].dataset.name == "stats-tiny-neox"
    assert [a.path for a in client.list_artifacts(parent.info.run_id)] == ["stats-tiny-neox.parquet"]

    again, _, _ = _collect(series, out)
    assert again.measured == [] and len(again.skipped) == 3
    assert len(read_table(out, StatsRow)) == len(table)


def test_resume_after_crash(series, data_home, tmp_path):
    out = tmp_path / "stats.parquet"
    seen = []

    def crash_after_two(cp, rows):
        seen.append(cp.revision)
        if len(seen) == 2:
            raise KeyboardInterrupt  # Ctrl-C after two checkpoints were measured and written

    with pytest.raises(KeyboardInterrupt):
        _collect(series, out, on_checkpoint=crash_after_two)
    partial = read_table(out, StatsRow)
    assert sorted(partial["revision"].unique()) == ["step0", "step2"]

    result, cps, probe = _collect(series, out)
    assert result.measured == ["tiny-neox@step4"] and len(result.skipped) == 2
    _assert_complete(read_table(out, StatsRow), cps, probe)

    from mlflow.tracking import MlflowClient

    parent = MlflowClient().get_run(result.parent_run_id)  # the same parent run was resumed
    assert parent.info.status == "FINISHED"
    hist = MlflowClient().get_metric_history(result.parent_run_id, "ratio/layer_01")
    assert sorted(m.step for m in hist) == [0, 2, 4]


def test_resume_after_killed_subprocess(series, data_home, tmp_path):
    """A process killed mid-series (SIGKILL, no cleanup) leaves whole checkpoints; a rerun completes them."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap
    import time

    out = tmp_path / "stats.parquet"
    marker = tmp_path / "two-done"
    code = textwrap.dedent(
        f"""
        import os, sys, time
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from collector.run import CollectOptions, collect_series, probe_for_series
        from collector.sources import resolve_source
        cps = resolve_source({str(series["neox"])!r})
        probe = probe_for_series(cps, {str(series["probe"])!r}, n_sequences={N_SEQ}, seq_len={SEQ_LEN})
        def hang(cp, rows, n=[0]):
            n[0] += 1
            if n[0] == 2:
                open({str(marker)!r}, "w").close()
                time.sleep(600)
        collect_series(cps, probe, out={str(out)!r}, options=CollectOptions(batch_size={BATCH}),
                       track=False, progress=False, on_checkpoint=hang)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        deadline = time.time() + 120
        while not marker.exists():
            assert proc.poll() is None, "collector subprocess exited early"
            assert time.time() < deadline, "collector subprocess too slow"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert sorted(read_table(out, StatsRow)["revision"].unique()) == ["step0", "step2"]
    result, cps, probe = _collect(series, out, track=False)
    assert result.measured == ["tiny-neox@step4"]
    _assert_complete(read_table(out, StatsRow), cps, probe)


def test_bfloat16_kept_apart(series, data_home, tmp_path):
    out = tmp_path / "stats.parquet"
    _collect(series, out, track=False)
    _collect(series, out, track=False, options=CollectOptions(batch_size=BATCH, dtype="bfloat16"))
    table = read_table(out, StatsRow)
    assert set(table["source"]) == {"collector", "collector:bfloat16"}
    f32 = table[table["dtype"] == "float32"].sort_values(["revision", "layer", "sequence"])
    b16 = table[table["dtype"] == "bfloat16"].sort_values(["revision", "layer", "sequence"])
    np.testing.assert_allclose(b16["top1"].to_numpy(), f32["top1"].to_numpy(), rtol=0.1)


def test_cli_collect_llama(series, data_home, tmp_path, capsys):
    from maforecast.cli import main
    from maforecast.settings import stats_path

    main(["collect", str(series["llama"]), "--probe", str(series["probe"]), "--n-sequences", "3",
          "--seq-len", "12", "--no-progress", "--batch-size", "2"])
    out = capsys.readouterr().out
    assert "collected 2 checkpoints" in out
    table = read_table(stats_path(), StatsRow)
    assert sorted(table["step"].unique()) == [0, 3] and set(table["model"]) == {"tiny-llama"}
    assert len(table) == 2 * 3 * 2


# --------------------------------------------------------------------------- errors


def _cli_error(argv, capsys) -> str:
    from maforecast.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_error_path_without_model(series, tmp_path, data_home, capsys):
    with pytest.raises(E.NoModelError):
        resolve_source(str(tmp_path))
    assert "no model in" in _cli_error(["collect", str(tmp_path)], capsys)
    cfg_only = tmp_path / "cfg-only"
    cfg_only.mkdir()
    (cfg_only / "config.json").write_text((series["neox"] / "step0" / "config.json").read_text())
    cps = resolve_source(str(cfg_only))
    from collector.loading import load_model

    with pytest.raises(E.NoModelError, match="no model weights"):
        load_model(cps[0])
    assert "no such folder" in _cli_error(["collect", str(tmp_path / "missing")], capsys)


def test_error_unknown_local_revision(series):
    with pytest.raises(E.UnknownRevisionError, match="step99"):
        resolve_source(str(series["neox"]), ["step0", "step99"])


def test_error_encoder_only(series, data_home, capsys):
    from collector.loading import load_config

    with pytest.raises(E.UnsupportedModelError, match="encoder-only"):
        load_config(resolve_source(str(series["bert"]))[0])
    err = _cli_error(["collect", str(series["bert"]), "--probe", str(series["probe"]), "--no-mlflow"], capsys)
    assert "encoder-only" in err


def test_error_empty_probe(series, tmp_path, capsys, data_home):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n")
    cps = resolve_source(str(series["neox"]))
    with pytest.raises(E.EmptyProbeError):
        probe_for_series(cps, empty)
    assert "empty" in _cli_error(["collect", str(series["neox"]), "--probe", str(empty)], capsys)


def test_error_oom_names_layer(series):
    cps, probe = _probe(series)
    model = _load(cps[0].location)
    _, layers = find_decoder_layers(model)

    def boom(module, args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    layers[1].register_forward_pre_hook(boom)
    with pytest.raises(E.LayerOOMError, match=r"decoder layer 1 \(blocks\.1\.hook_resid_post\)"):
        measure(model, torch.from_numpy(probe.input_ids), batch_size=4, what="tiny-neox@step0")


def test_error_hub_offline(data_home, capsys):
    cps = resolve_source("maforecast-test/not-cached", ["step0"])
    assert cps[0].hub and cps[0].step == 0
    with pytest.raises(E.NetworkUnavailableError, match="network unavailable"):
        probe_for_series(cps)
    from collector.loading import load_model

    with pytest.raises(E.NetworkUnavailableError, match="local"):
        load_model(cps[0])
    err = _cli_error(["collect", "maforecast-test/not-cached", "--revisions", "step0,step1"], capsys)
    assert "HF_HUB_OFFLINE" in err and "maforecast collect PATH" in err
    # "runs/my-run" reads as a repo id too: a missing folder is named as missing first (issue 20)
    err = _cli_error(["collect", "runs/my-run"], capsys)
    assert err.startswith("error: no such folder 'runs/my-run'") and "HF_HUB_OFFLINE" in err
    err = _cli_error(["collect", "--suite", "pythia-14m", "--every", "50000"], capsys)
    assert "network unavailable" in err


def test_error_unknown_hub_repo_and_revision(monkeypatch):
    """With network: unknown repo / revision are checked up-front via list_repo_refs (simulated here)."""
    import httpx
    from huggingface_hub import HfApi
    from huggingface_hub import errors as hf

    from collector.sources import translate_hub_error, validate_hub_revisions

    response = httpx.Response(404, request=httpx.Request("GET", "https://huggingface.co/api/models/x/y"))
    assert isinstance(translate_hub_error(hf.RepositoryNotFoundError("nope", response=response), "x/y", "main"), E.UnknownRepoError)
    assert isinstance(translate_hub_error(hf.RevisionNotFoundError("nope", response=response), "x/y", "s1"), E.UnknownRevisionError)
    wrapped = OSError("We couldn't connect to 'https://huggingface.co'")
    wrapped.__cause__ = ConnectionError("no route")
    assert isinstance(translate_hub_error(wrapped, "x/y", "s1"), E.NetworkUnavailableError)

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")

    class Refs:
        branches = [type("B", (), {"name": n})() for n in ("main", "step0", "step1000")]
        tags = []

    monkeypatch.setattr(HfApi, "list_repo_refs", lambda self, repo, **kw: Refs())
    validate_hub_revisions("EleutherAI/pythia-14m", ["step0", "step1000"])
    with pytest.raises(E.UnknownRevisionError, match="step7"):
        validate_hub_revisions("EleutherAI/pythia-14m", ["step0", "step7"])

    def missing(self, repo, **kw):
        raise hf.RepositoryNotFoundError("404", response=response)

    monkeypatch.setattr(HfApi, "list_repo_refs", missing)
    with pytest.raises(E.UnknownRepoError, match="no-such-org/no-such-model"):
        validate_hub_revisions("no-such-org/no-such-model", ["step0"])


def test_probe_token_outside_vocab(series, data_home, tmp_path):
    cps, probe = _probe(series)
    bad = ProbeSet(probe.input_ids + 10_000, "bad")
    with pytest.raises(E.CollectorError, match="outside the vocabulary"):
        collect_series(cps, bad, out=tmp_path / "s.parquet", track=False, progress=False)


# --------------------------------------------------------------------------- ray


@pytest.mark.slow
def test_ray_matches_inprocess(series, data_home, tmp_path):
    ray = pytest.importorskip("ray")
    a, b = tmp_path / "inprocess.parquet", tmp_path / "ray.parquet"
    _collect(series, a, track=False)
    try:
        result, cps, probe = _collect(series, b, executor="ray", ray_num_cpus=1)
    finally:
        if ray.is_initialized():
            ray.shutdown()
    assert sorted(result.measured) == sorted(c.label for c in cps)
    cols = ["model", "revision", "layer", "sequence"]
    ta = read_table(a, StatsRow).sort_values(cols).reset_index(drop=True)
    tb = read_table(b, StatsRow).sort_values(cols).reset_index(drop=True)
    pd.testing.assert_frame_equal(ta.drop(columns=["top1", "top2", "top3", "median"]), tb.drop(columns=["top1", "top2", "top3", "median"]))
    np.testing.assert_allclose(tb[["top1", "top2", "top3", "median"]], ta[["top1", "top2", "top3", "median"]], rtol=1e-5, atol=1e-6)
