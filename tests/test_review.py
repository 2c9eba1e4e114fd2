"""``maforecast review``: configs from transformers' own config classes, policies, verdicts, exit codes.

A small real predictor is trained once (``review_helpers.champion_home``); the review runs the same
``Engine`` as ``maforecast predict``. No mocks: the forecast rules are checked against the
forecast they read, and the rules that must pass or fail regardless of the predictor's numbers
(a peak |a| bound of 1e-3 or 1e12) pin the exit codes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from review_helpers import champion_home, use_home, write_hf_configs

from maforecast.cli import main
from maforecast.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.xdist_group("review")


@pytest.fixture(scope="module")
def home(tmp_path_factory, migrated_mlflow_db):
    return champion_home(tmp_path_factory, migrated_mlflow_db)


@pytest.fixture
def env(home, monkeypatch):
    use_home(monkeypatch, home)
    return home


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> dict[str, Path]:
    return write_hf_configs(tmp_path_factory.mktemp("candidates"))


@pytest.fixture(scope="module")
def engine(home):
    with pytest.MonkeyPatch.context() as mp:
        use_home(mp, home)
        from registry.loader import load_predictor

        return load_predictor()


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def write_policy(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------ CLI end to end


def test_three_hf_configs_default_policy(env, configs, tmp_path, capsys):
    folder = configs["llama"].parent.parent
    out = tmp_path / "review.json"
    html = tmp_path / "report.html"
    code, stdout, _ = run(["review", str(folder), "--json", str(out), "--html", str(html)], capsys)
    answer = json.loads(out.read_text())
    assert answer["schema_version"] == "1.0"
    assert code == answer["exit_code"]
    names = [c["name"] for c in answer["candidates"]]
    assert sorted(names) == ["gemma3", "llama", "neox"]
    by = {c["name"]: c for c in answer["candidates"]}
    for name, c in by.items():
        assert c["kind"] == "hf" and c["precision_target"] == "bf16", c
        assert c["inferred"], name  # the converter names what it inferred or defaulted
        rule_ids = {r["id"] for r in c["results"]}
        assert {"bf16-swamping", "within-evidence", "precision-gate"} <= rule_ids  # the default policy for bf16
        # issue 27: BF16 swamping is stated (info), never a warning: every model in the evidence trained in BF16 with it
        sev = {r["id"]: r for r in c["results"]}
        assert sev["bf16-swamping"]["severity"] == "info" and sev["bf16-swamping"]["status"] in ("info", "pass")
        assert sev["precision-gate"]["status"] == "pass" and "bf16-swamping" not in c["broken"]
        assert c["status"] in ("pass", "warn")
        assert c["broken"] == [r["id"] for r in c["results"] if r["status"] in ("fail", "warn")]
        assert 0.0 <= c["risk"] <= 1.0
        assert c["architecture"] == name  # a nameless config.json is named after its folder
    assert code == 0 and answer["status"] in ("pass", "warn")
    assert any("qk_norm" in n for n in by["gemma3"]["inferred"])
    assert any("mlp_bias" in n for n in by["neox"]["inferred"])
    # sorted by risk within a status
    risks = [(c["status"], c["risk"]) for c in answer["candidates"]]
    assert risks == sorted(risks, key=lambda r: ({"fail": 0, "warn": 1, "pass": 2}[r[0]], -r[1]))
    # the predictor's held-out scores sit next to the baseline's
    scores = {s["metric"]: s for s in answer["predictor"]["scores"]}
    key = "peak_abs held-out MAE (leave one lineage out)"
    assert key in scores and scores[key]["baseline"] is not None
    # the verdict table: one row per candidate
    for name in names:
        assert name in stdout
    assert "exit 0" in stdout
    assert html.read_text().startswith("<!doctype html>")


def test_precision_target_int8_applies_int8_rules(env, configs, capsys, tmp_path):
    out = tmp_path / "r.json"
    code, _, _ = run(["review", str(configs["neox"]), str(configs["llama"]), "--precision-target", "int8_w8a8",
                      "--json", str(out)], capsys)
    answer = json.loads(out.read_text())
    for c in answer["candidates"]:
        assert c["precision_target"] == "int8_w8a8"
        ids = {r["id"]: r for r in c["results"]}
        assert {"int8-no-massive-layers", "precision-gate", "int8-below-one-step"} <= set(ids)
        massive = ids["int8-no-massive-layers"]
        # massive layers are stated (info: per-token INT8 isolates them); the failing rule is the answer's decision
        # for the recipe its plan is for (the coarsest scaling that passes: per token where per tensor fails)
        assert (massive["status"] == "info") == bool(massive["observed"]), massive
        gate = ids["precision-gate"]
        assert (gate["status"] == "fail") == (c["status"] == "fail")
        if c["precision"]["int8_per_tensor"]["at_risk"] and not c["precision"]["int8_per_token"]["at_risk"]:
            assert gate["status"] == "pass" and "int8_per_token (the plan's recipe)" in gate["message"], gate
    assert code == (1 if any(c["status"] == "fail" for c in answer["candidates"]) else 0)


def test_policy_violation_fails_and_names_the_rule(env, configs, tmp_path, capsys):
    policy = write_policy(tmp_path / "review.yaml", """
name: gate
rules:
  - id: tiny-peak
    check: peak_abs
    max: 0.001
  - id: fp8-e4m3-overflow
    check: format_risk
    format: fp8_e4m3
    checks: [overflow_unscaled]
    max_probability: 0.2
  - id: int8-no-massive
    check: massive_layers
    targets: [int8_w8a8]
  - check: applicability
    severity: warn
""")
    out, junit = tmp_path / "r.json", tmp_path / "review.xml"
    code, stdout, _ = run(["review", str(configs["llama"]), str(configs["gemma3"]), "--policy", str(policy),
                           "--json", str(out), "--junit", str(junit)], capsys)
    assert code == 1
    answer = json.loads(out.read_text())
    _check_junit(junit, answer)
    assert answer["status"] == "fail" and answer["exit_code"] == 1 and "gate" in answer["policy"]
    for c in answer["candidates"]:
        assert c["status"] == "fail" and c["broken"][0] == "tiny-peak"
        r = {x["id"]: x for x in c["results"]}
        assert r["int8-no-massive"]["status"] == "skipped"  # bf16 candidates: the INT8 rule does not apply
        assert r["within-evidence"]["severity"] == "warn"  # default id of an applicability rule
        p = r["fp8-e4m3-overflow"]
        assert p["status"] == ("fail" if p["observed"] > 0.2 else "pass") and p["source"] == "forecast"  # the answer's own
    assert "tiny-peak" in stdout and "FAIL" in stdout


def _check_junit(path: Path, answer: dict) -> None:
    """--junit: one test suite per candidate, one test case per rule; a failed rule is a <failure> with the
    message the table prints, a skipped one <skipped>, a warning passes with the warning in <system-out>."""
    import xml.etree.ElementTree as ET

    root = ET.parse(path).getroot()
    assert root.tag == "testsuites" and [s.get("name") for s in root] == [c["name"] for c in answer["candidates"]]
    n_fail = sum(r["status"] == "fail" for c in answer["candidates"] for r in c["results"])
    assert int(root.get("failures")) == n_fail > 0 and int(root.get("tests")) == sum(len(c["results"]) for c in answer["candidates"])
    for suite, cand in zip(root, answer["candidates"], strict=True):
        cases = {tc.get("name"): tc for tc in suite.iter("testcase")}
        assert set(cases) == {r["id"] for r in cand["results"]}
        for r in cand["results"]:
            tc = cases[r["id"]]
            kind = {"fail": "failure", "skipped": "skipped", "warn": "system-out"}.get(r["status"])
            if kind is None:
                assert len(tc) == 0
            else:
                node = tc.find(kind)
                assert node is not None and r["message"] in (node.get("message") or node.text or "")


def test_passing_policy_exits_0(env, configs, tmp_path, capsys):
    policy = write_policy(tmp_path / "ok.yaml", "rules:\n  - {check: peak_abs, max: 1.0e+12}\n")
    code, stdout, _ = run(["review", str(configs["neox"]), "--policy", str(policy), "--json", "-"], capsys)
    answer = json.loads(stdout)
    assert code == 0 and answer["status"] == "pass" and answer["candidates"][0]["broken"] == []


def test_include_defaults_adds_the_target_rules(env, configs, tmp_path, capsys):
    policy = write_policy(tmp_path / "p.yaml", "include_defaults: true\nrules:\n  - {check: peak_abs, max: 1.0e+12}\n")
    code, stdout, _ = run(["review", str(configs["neox"]), "--policy", str(policy), "--json", "-",
                           "--precision-target", "fp8_training"], capsys)
    ids = {r["id"] for r in json.loads(stdout)["candidates"][0]["results"]}
    assert {"fp8-e4m3-overflow", "precision-gate", "within-evidence"} <= ids


# ------------------------------------------------------------------------------------ bad input: exit 2, one line


@pytest.mark.parametrize(
    "text, names",
    [
        ("rules:\n  - check: format_risk\n    format: fp8_e4m3\n    max_probability: 1.5\n", "rules.0.max_probability"),
        ("rules:\n  - check: format_risk\n    format: fp9\n    max_probability: 0.2\n", "rules.0.format"),
        ("rules:\n  - check: peak_abs\n    maximum: 10\n", "rules.0.max"),
        ("rules:\n  - check: no_such_check\n", "rules.0"),
        ("rules:\n  - check: format_risk\n    format: bf16\n    checks: [overflow]\n    max_probability: 0.2\n", "checks"),
        ("rules:\n  - {check: peak_abs, max: 1, targets: [int7]}\n", "rules.0.targets.0"),
        ("rules: [\n  {check: peak_abs\n", "line"),
        ("- just\n- a list\n", "policy"),
        ("name: empty\n", "no rules"),
        ("rules:\n  - {id: a, check: peak_abs, max: 1}\n  - {id: a, check: ratio_end, max: 1}\n", "duplicate rule id"),
    ],
)
def test_bad_policy_is_one_line_naming_the_field(tmp_path, text, names):
    from review.verdict import load_policy

    path = write_policy(tmp_path / "review.yaml", text)
    with pytest.raises(UserError) as info:
        load_policy(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(str(path)) and names in msg, msg


def test_missing_policy_file(tmp_path):
    from review.verdict import load_policy

    with pytest.raises(UserError, match="no such policy file"):
        load_policy(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    "name, doc, names",
    [
        ("arch.json", {"name": "x", "n_layers": 12, "d_model": 768, "n_heads": 7, "d_ffn": 3072}, "n_heads"),
        ("arch2.json", {"name": "x", "n_layers": 0, "d_model": 768, "n_heads": 12, "d_ffn": 3072}, "n_layers"),
        ("bert/config.json", {"model_type": "bert", "num_hidden_layers": 2, "hidden_size": 64}, "model_type"),
        ("llama/config.json", {"model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 4,
                               "vocab_size": 100, "intermediate_size": 256}, "hidden_size"),
        ("odd.json", {"hello": 1}, "n_layers"),
        ("list.json", [1, 2], "JSON object"),
    ],
)
def test_bad_config_is_one_line_naming_file_and_field(tmp_path, name, doc, names):
    from review.inputs import load_candidates

    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    with pytest.raises(UserError) as info:
        load_candidates([path])
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(str(path)) and names in msg, msg


def test_unreadable_inputs(tmp_path):
    from review.inputs import load_candidates

    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(UserError, match="broken.json: not readable JSON"):
        load_candidates([tmp_path / "broken.json"])
    with pytest.raises(UserError, match="no such file or folder"):
        load_candidates([tmp_path / "missing.json"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no architecture JSON"):
        load_candidates([tmp_path / "empty"])


@pytest.mark.slow
def test_cli_bad_input_exit_2_one_line(env, configs, tmp_path):
    """The installed entry point: bad config and bad policy exit 2 with one stderr line, no traceback."""
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "n_layers": 12, "d_model": 770, "n_heads": 12, "d_ffn": 3072}))
    policy = write_policy(tmp_path / "review.yaml", "rules:\n  - {check: format_risk, format: fp8_e4m3, max_probability: 2}\n")
    for args, names in (([str(configs["llama"]), str(bad)], [str(bad), "d_model"]),
                        ([str(configs["llama"]), "--policy", str(policy)], [str(policy), "rules.0.max_probability"])):
        proc = subprocess.run([sys.executable, "-m", "maforecast.cli", "review", *args], capture_output=True, text=True,
                              cwd=ROOT, env={**os.environ}, timeout=180)
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("error:")]
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert len(lines) == 1 and all(n in lines[0] for n in names), proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------ rules on the answer


def test_rules_read_the_answers_own_probabilities(engine, configs):
    """The review computes no probability of its own: its rules read the answer's typed fields (one formula
    in the predictor), so the verdict's numbers are the answer's and a changed answer changes the verdict."""
    from review.inputs import load_candidates
    from review.verdict import Policy, evaluate_rule, format_probability, massive_probabilities

    cand = load_candidates([configs["llama"]])[0]
    answer = engine.answer(cand.arch)
    e4m3 = next(r for r in answer.precision if r.format == "fp8_e4m3")
    # the format's probability is that of its breaking check (scaled underflow); unscaled overflow is stated
    assert format_probability(e4m3) == e4m3.probability == e4m3.check_probabilities["underflow_scaled"]
    assert format_probability(e4m3, ["overflow_unscaled"]) == e4m3.check_probabilities["overflow_unscaled"]
    assert all(0.0 <= d.probability <= e4m3.check_probabilities[d.check] for d in e4m3.details)
    assert massive_probabilities(answer) == {lf.layer: lf.p_massive for lf in answer.layers}
    policy = Policy.model_validate({"rules": [
        {"id": "e4m3", "check": "format_risk", "format": "fp8_e4m3", "checks": ["overflow_unscaled"], "max_probability": 0.2},
        {"id": "massive", "check": "massive_layers", "max_layers": 0},
    ]})

    def with_(p_overflow: float) -> object:
        risk = e4m3.model_copy(update={"check_probabilities": {**e4m3.check_probabilities, "overflow_unscaled": p_overflow}})
        layers = [lf.model_copy(update={"p_massive": 0.7 if lf.layer == 1 else 0.01}) for lf in answer.layers]
        return answer.model_copy(update={"precision": [risk if r.format == "fp8_e4m3" else r for r in answer.precision],
                                          "layers": layers})

    r_fmt, r_mass = (evaluate_rule(rule, with_(0.9), "bf16") for rule in policy.rules)
    assert r_fmt.status == "fail" and r_fmt.observed == 0.9 and r_fmt.source == "forecast"
    assert r_mass.status == "fail" and r_mass.observed == [1]
    assert evaluate_rule(policy.rules[0], with_(0.1), "bf16").status == "pass"


def test_default_policy_per_target():
    """Issue 27: one failing rule, the answer's own decision (precision-gate); the stated mechanisms are info."""
    from review.verdict import default_policy

    for target, must in (("bf16", {"bf16-swamping"}), ("fp16_inference", {"fp16-swamping"}),
                         ("fp8_training", {"fp8-e4m3-overflow", "fp8-rowwise-row-subnormal"}),
                         ("int8_w8a8", {"int8-below-one-step", "int8-no-massive-layers"}),
                         ("w4a16", {"fp16-swamping"})):
        rules = {r.rule_id(): r for r in default_policy(target).rules}
        assert must | {"within-evidence", "precision-gate"} <= set(rules), (target, rules)
        assert {i for i, r in rules.items() if r.severity == "fail"} == {"precision-gate"}
        assert all(rules[i].severity == "info" for i in must), target
    # a stated check is never in a gate: what fails is what the outcome table says breaks models
    from predictor.precision import BREAKS, GATE

    for fmt, (checks, _) in GATE.items():
        assert all(BREAKS[fmt, c] for c in checks), fmt


# ------------------------------------------------------------------------------------ the HTML report


def test_report_is_self_contained_and_complete(engine, configs):
    import re

    from review.inputs import load_candidates
    from review.report import render_report
    from review.verdict import review

    cands = load_candidates([configs["llama"], configs["neox"]])
    answer = review(cands, engine, None)
    page = render_report(cands, answer)
    # nothing fetched from elsewhere: no scripts, stylesheets, fonts, images or CSS urls
    assert not re.search(r"<script|<link|<img|<iframe|@import|url\(|@font-face", page, re.I)
    assert not re.search(r'\ssrc=', page)
    assert page.count('<article class="candidate"') == 2 and "candidates side-by-side" in page
    assert page.count('class="risk-matrix"') == 2 and page.count('class="mitigations"') == 2
    # the precision plan per candidate: one row per target format, the answer's own layers and risk
    assert page.count('<table class="plan">') == 2
    for c in cands:
        for f in c.answer.precision_plan.formats:
            assert f'<tr data-format="{f.format}">' in page and f"{f.residual_risk:.2f}" in page
    assert page.count("<svg") == 4 and page.count('class="layer-line"') == 8 + 6
    assert 'class="comparison"' in page and "neox vs llama" in page
    # the predicted effects: a filled "before" column, numbers with intervals, no raw Python dicts
    effects = re.findall(r'<table class="effect" data-kind="predicted">(.*?)</table>', page, re.S)
    assert effects, "no predicted effect table"
    for table in effects:
        rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td></tr>", table)
        assert rows and all(before.strip() and after.strip() for _, before, after in rows), table[:500]
        assert "{" not in table and "&#x27;" not in table, table[:500]
        assert re.search(r"\d \[\d", rows[0][1]), rows[0]  # value [lo, hi]
    # the predictor's scores: an MAE below the constant's reads as better, and the header names no CV
    assert "not better than baseline" not in page and "better than baseline" in page
    assert "leave one model out</th>" not in page
    assert "baseline (predict the mean)" in page and "peak_abs held-out MAE" in page
    assert "inferred or defaulted" in page
    for m in cands[0].answer.mitigations[:3]:
        assert f'data-id="{m.id}"' in page
        for c in m.citations:
            assert f"arXiv:{c.arxiv}" in page


def test_report_endpoint_serves_html(env):
    """POST /report: an architecture in the body, the same report out (text/html)."""
    from starlette.testclient import TestClient

    from service.service import asgi_app

    body = {"name": "neox-160m", "n_layers": 12, "d_model": 768, "n_heads": 12, "d_ffn": 3072,
            "precision_target": "fp8_training"}
    with TestClient(asgi_app(), raise_server_exceptions=False) as client:
        r = client.post("/report", json=body)
        assert r.status_code == 200, r.text[:500]
        assert r.headers["content-type"].startswith("text/html")
        page = r.text
        assert "<svg" in page and 'class="risk-matrix"' in page and 'class="mitigations"' in page
        assert "fp8-e4m3-overflow" in page and "neox-160m" in page
        bad = client.post("/report", json={**body, "n_heads": 7})
        assert 400 <= bad.status_code < 500 and "n_heads" in bad.text


def test_cli_plan_writes_the_file_and_bad_input_is_one_line(env, configs, tmp_path, capsys):
    """`maforecast plan`: the champion's plan as a file (JSON here; tests/test_plan.py loads the tool files), the
    config's model_type naming the modules; bad input is one line and exit 2."""
    out = tmp_path / "plan.json"
    main(["plan", str(configs["llama"]), "--tool", "json", "--target", "fp8_training", "--format", "fp8_e4m3",
          "--out", str(out)])  # success returns (no SystemExit)
    assert f"wrote {out}" in capsys.readouterr().err
    plan = json.loads(out.read_text())
    assert plan["model_type"] == "llama" and plan["plan"]["format"] == "fp8_e4m3" and "version" in plan["header"][1]
    assert plan["monitor_modules"] == [m for m in plan["monitor_modules"] if m.startswith("model.layers.")]
    for argv, names in ((["--tool", "json", "--target", "fp8_training", "--format", "int8_per_tensor"], "format: "),
                        (["--tool", "torchao", "--target", "bf16"], "format: torchao cannot express bf16"),
                        (["--tool", "json", "--target", "w4a16"], "format: the precision target uses fp16, bf16"),
                        (["--tool", "llm-compressor", "--target", "fp8_training"], "tool: llm-compressor writes inference"),
                        (["--tool", "json", "--model-type", "bert"], "--model-type: no module naming for 'bert'")):
        code, _, err = run(["plan", str(configs["llama"]), *argv], capsys)
        lines = [x for x in err.strip().splitlines() if x]
        assert code == 2 and len(lines) == 1 and names in lines[0], (argv, err)


def test_review_from_a_configs_folder_finds_the_champion_and_leaves_nothing_there(env, configs, capsys, monkeypatch):
    """Issue 26: run from a configs folder, review said 'no champion' and left an empty store there. Run from the
    folder it reviews, it leaves nothing there (the default home itself: the next test)."""
    folder = configs["neox"].parent
    before = sorted(p.name for p in folder.iterdir())
    monkeypatch.chdir(folder)
    code, out, err = run(["review", configs["neox"].name], capsys)
    assert code in (0, 1), err
    assert "no champion" not in err and "candidate(s)" in out
    assert sorted(p.name for p in folder.iterdir()) == before


def test_default_data_home_is_not_the_current_folder(tmp_path, monkeypatch):
    import maforecast.settings as settings

    monkeypatch.delenv("MAFORECAST_DATA_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert settings.default_data_home() == ROOT / ".maforecast"  # the checkout's (what `make serve` set up)
    monkeypatch.setattr(settings, "CHECKOUT", tmp_path / "site-packages")  # an installed package
    home = settings.default_data_home()
    assert home.name == "maforecast" and tmp_path not in home.parents
    assert not any(tmp_path.iterdir())


DOOR_DESIGNS = {
    "llama-fp8": {"name": "llama-fp8", "n_layers": 16, "d_model": 2048, "n_heads": 16, "n_kv_heads": 4, "d_ffn": 8192,
                  "ffn_type": "glu", "activation": "silu", "norm_type": "rmsnorm", "vocab_size": 128256,
                  "learning_rate": 3e-4, "batch_tokens": 4_000_000, "total_steps": 100_000,
                  "precision_target": "fp8_training"},
    "neox-fp16": {"name": "neox-fp16", "n_layers": 24, "d_model": 1024, "n_heads": 16, "d_ffn": 4096,
                  "parallel_attn_mlp": True, "rotary_pct": 0.25, "precision_target": "fp16_inference"},
    "neox-int8": {"name": "neox-int8", "n_layers": 24, "d_model": 1024, "n_heads": 16, "d_ffn": 4096,
                  "precision_target": "int8_w8a8"},
}


def test_every_door_gives_one_decision(env, tmp_path, capsys):
    """Issue 26: per target format, the pyfunc model (loaded by MLflow itself), /predict's at_risk, the review's
    failing rules and the precision plan agree on at risk or not."""
    import mlflow

    from predictor.architecture import Architecture
    from predictor.pyfunc import arch_frame
    from predictor.response import PredictResponse

    model = mlflow.pyfunc.load_model("models:/maforecast-predictor@champion")
    paths = []
    for name, d in DOOR_DESIGNS.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(d))
        paths.append(str(tmp_path / f"{name}.json"))
    out = tmp_path / "review.json"
    code, _, err = run(["review", *paths, "--json", str(out)], capsys)
    assert code in (0, 1), err
    verdicts = {c["name"]: c for c in json.loads(out.read_text())["candidates"]}
    seen = set()
    for name, d in DOOR_DESIGNS.items():
        arch = Architecture.model_validate(d)
        a = PredictResponse.model_validate_json(model.predict(arch_frame([arch]), params={"view": "full"})["answer"][0])
        v = verdicts[name]
        plans = {f.format: f for f in a.precision_plan.formats}
        for r in (r for r in a.precision if r.target):
            assert v["precision"][r.format]["at_risk"] == r.at_risk, (name, r.format)
            if r.format in plans:
                assert bool(plans[r.format].keep_high_precision) == r.at_risk, (name, r.format)
            seen.add(r.format)
        # the design's decision: the plan's recipe (or the target's formats) at risk, at every door
        assert (v["status"] == "fail") == a.precision_plan.at_risk, name
        gate = next(r for r in v["results"] if r["id"] == "precision-gate")
        assert (gate["status"] == "fail") == a.precision_plan.at_risk, name
    assert seen >= {"fp16", "fp8_e4m3", "int8_per_tensor"}
