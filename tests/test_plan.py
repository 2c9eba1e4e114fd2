"""The precision plan in the answer and its files (issue 19): module names read off real ``transformers``
classes, torchao converting a real tiny model with the emitted filter, the llm-compressor recipe's scheme resolved
by compressed-tensors (llm-compressor's own scheme library: llm-compressor itself pins transformers<=5.17), Megatron
arguments and the TE debug config checked against their documented formats (Transformer Engine needs CUDA).

Issue 26: Megatron's flags cover the plan with the fewest BF16 layers, FP8 files keep lm_head and the embeddings,
a tool that cannot express the target says which target it can, Megatron needs no module naming, and a plan keeps
the fewest layers that make the design pass its gate."""

from __future__ import annotations

import json
import random
import re

import pytest
import yaml
from review_helpers import champion_home, use_home

from maforecast.cli import main
from maforecast.errors import UserError
from plan.files import megatron_cover, render
from plan.naming import MODEL_TYPES, discover, layer_modules, load_bundle
from predictor import knowledge as kbm
from predictor import precision as prec
from predictor.answer import Answerer
from predictor.plan import ALPHA, fewest_to_keep
from predictor.text import ranges
from registry.reference import reference_architectures, reference_engine


@pytest.fixture(scope="module")
def answerer():
    return Answerer(reference_engine(), kbm.load_kb())


@pytest.fixture(scope="module")
def qwen_fp8(answerer):
    """Qwen2.5-7B's shape planned for FP8 training as a design of a new lineage: the plan keeps some E4M3 layers
    (P >= 0.2), not all (as a member of the Qwen2.5 lineage its measured ratios put every layer past per-tensor
    E4M3's limit: the finer-scaled recipes of issue 27 are the answer there)."""
    arch = reference_architectures()["Qwen2.5-7B"].model_copy(update={"precision_target": "fp8_training", "lineage": None})
    answer = answerer.answers([arch])[0]
    keep = [p.layer for p in answer.precision_plan.formats[0].keep_high_precision]
    assert 0 < len(keep) < arch.n_layers, keep
    return arch, answer, keep


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_module_names_are_the_real_classes(model_type):
    """The bundled names are what a tiny model of each type has today (no hand-typed names)."""
    assert load_bundle()[model_type] == discover(model_type)


def test_plan_is_in_the_answer_and_bf16_keeps_nothing(answerer, qwen_fp8):
    arch, answer, keep = qwen_fp8
    fp = answer.precision_plan.formats[0]
    assert fp.format == "fp8_e4m3" and fp.breaking_checks == ["underflow_scaled"] and fp.alpha == 0.2
    assert all(p.probability >= 0.2 and p.check == "underflow_scaled" and str(p.layer) in p.why for p in fp.keep_high_precision)
    assert set(keep) <= set(fp.monitor) and fp.residual_risk <= 0.2  # the gate's threshold: the plan makes it pass
    bf16 = answerer.answers([arch.model_copy(update={"precision_target": "bf16"})])[0].precision_plan.formats[0]
    assert bf16.keep_high_precision == [] and "nothing to keep" in bf16.why


def test_torchao_filter_keeps_exactly_the_planned_modules(qwen_fp8, tmp_path):
    """The emitted module runs as written; torchao converts a real tiny Qwen2 of the same depth with it."""
    import torch
    from torchao.float8 import convert_to_float8_training
    from transformers import Qwen2Config, Qwen2ForCausalLM

    arch, answer, keep = qwen_fp8
    text = render(answer, arch, "torchao", "fp8_e4m3", "qwen2")
    assert text.startswith("# maforecast precision plan for torchao") and "version" in text.splitlines()[1]
    ns: dict = {}
    exec(compile(text, "float8_filter.py", "exec"), ns)  # the file as a user imports it
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                         num_key_value_heads=2, num_hidden_layers=arch.n_layers))
    convert_to_float8_training(model, module_filter_fn=ns["module_filter_fn"])
    kept = {n for n, m in model.named_modules() if type(m) is torch.nn.Linear}
    converted = {n for n, m in model.named_modules() if type(m).__name__ == "Float8Linear"}
    assert kept == set(layer_modules("qwen2", keep)) | {"lm_head"} and set(ns["KEEP_HIGH_PRECISION"]) == kept - {"lm_head"}
    assert converted and not any(re.match(rf"model\.layers\.({'|'.join(map(str, keep))})\.", n) for n in converted)
    embeddings = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Embedding)]
    assert embeddings and not any(ns["module_filter_fn"](model.get_submodule(n), n) for n in [*embeddings, "lm_head"])


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_torchao_filter_keeps_the_output_head_and_embeddings(qwen_fp8, model_type):
    """Issue 26: every FP8 recipe keeps the output head and the embeddings in high precision, so the emitted
    filter returns False for them, read off a tiny real model of each mapped type (``get_output_embeddings``,
    ``get_input_embeddings``); of its linears it converts exactly the decoder-layer ones outside the plan."""
    import contextlib

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from plan.naming import _TINY

    arch, answer, keep = qwen_fp8
    ns: dict = {}
    exec(compile(render(answer, arch, "torchao", "fp8_e4m3", model_type), "float8_filter.py", "exec"), ns)
    cfg = AutoConfig.for_model(model_type)
    for k, v in _TINY.items():
        if hasattr(cfg, k) or k in getattr(cfg, "attribute_map", {}):
            with contextlib.suppress(AttributeError):
                setattr(cfg, k, v)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    names = {m: n for n, m in model.named_modules()}
    head, embed = names[model.get_output_embeddings()], names[model.get_input_embeddings()]
    assert head == "lm_head" and ("emb" in embed or "wte" in embed), (head, embed)
    assert not ns["module_filter_fn"](model.get_output_embeddings(), head)
    assert not ns["module_filter_fn"](model.get_input_embeddings(), embed)
    linear = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    layers = load_bundle()[model_type]["prefix"].split("{i}")[0]
    assert {n for n in linear if ns["module_filter_fn"](model.get_submodule(n), n)} == (
        {n for n in linear if n.startswith(layers)} - set(layer_modules(model_type, keep)))


def test_llm_compressor_recipe_matches_its_documented_form(answerer, qwen_fp8):
    """llm-compressor's recipe form (quant stage -> modifiers -> QuantizationModifier with targets, scheme,
    ignore) for an inference target; the scheme resolves through compressed-tensors' presets (what llm-compressor
    reads) and every ignore entry is a module of a real tiny model of the type. Per-tensor INT8 has no preset: its
    config group validates as a compressed-tensors scheme with a per-tensor activation strategy."""
    import torch
    from compressed_tensors.quantization import QuantizationScheme, preset_name_to_scheme
    from transformers import Qwen2Config, Qwen2ForCausalLM

    arch, _, _ = qwen_fp8
    arch = arch.model_copy(update={"precision_target": "fp8_inference"})
    answer = answerer.answers([arch])[0]
    for fmt, scheme, strategy in (("fp8_e4m3", "FP8", "tensor"), ("fp8_rowwise", "FP8_DYNAMIC", "token"),
                                  ("fp8_block128", "FP8_BLOCK", "group"), ("mxfp8", "MXFP8", "group")):
        doc = yaml.safe_load(render(answer, arch, "llm-compressor", fmt, "qwen2"))
        mod = doc["quant_stage"]["quant_modifiers"]["QuantizationModifier"]
        assert mod["targets"] == ["Linear"] and mod["scheme"] == scheme
        assert preset_name_to_scheme(mod["scheme"], ["Linear"]).input_activations.strategy == strategy
        keep = [p.layer for f in answer.precision_plan.formats if f.format == fmt for p in f.keep_high_precision]
        with torch.device("meta"):
            model = Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                                 num_key_value_heads=2, num_hidden_layers=arch.n_layers))
        names = {n for n, _ in model.named_modules()}
        assert set(mod["ignore"]) <= names and len(mod["ignore"]) == 1 + 7 * len(keep)
    int8 = arch.model_copy(update={"precision_target": "int8_w8a8"})
    ans8 = answerer.answers([int8])[0]
    group = yaml.safe_load(render(ans8, int8, "llm-compressor", "int8_per_tensor", "qwen2"))[
        "quant_stage"]["quant_modifiers"]["QuantizationModifier"]["config_groups"]["group_0"]
    assert QuantizationScheme.model_validate(group).input_activations.strategy == "tensor"
    mod = yaml.safe_load(render(ans8, int8, "llm-compressor", "int8_per_token", "qwen2"))["quant_stage"]["quant_modifiers"]
    assert preset_name_to_scheme(mod["QuantizationModifier"]["scheme"], ["Linear"]).input_activations.strategy == "token"


def test_megatron_args_cover_the_plan_and_te_config_logs_the_monitored_layers(qwen_fp8):
    arch, answer, keep = qwen_fp8
    text = render(answer, arch, "megatron", "fp8_e4m3", "qwen2")
    args = text.splitlines()[-1].split()
    start = int(args[args.index("--num-layers-at-start-in-bf16") + 1])
    end = int(args[args.index("--num-layers-at-end-in-bf16") + 1])
    assert "--first-last-layers-bf16" in args and "--fp8-recipe" in args and "delayed" not in args
    assert all(k < start or k >= arch.n_layers - end for k in keep)
    assert start + end == _fewest_cover(keep, arch.n_layers) < arch.n_layers
    te = yaml.safe_load(render(answer, arch, "te-debug", "fp8_e4m3", "qwen2"))
    section = te["maforecast_monitor"]
    stats = section["transformer_engine"]["LogTensorStats"]
    assert section["enabled"] is True and set(stats) <= {"enabled", "tensors", "stats", "freq", "start_step", "end_step"}
    assert set(stats["stats"]) <= {"min", "max", "mean", "std", "l1_norm", "l2_norm", "cur_amax", "dynamic_range"}
    monitor = answer.precision_plan.formats[0].monitor
    pattern = re.compile(section["layers"]["layer_name_regex_pattern"])
    for i in range(arch.n_layers):
        assert bool(pattern.fullmatch(f"model.layers.{i}.mlp.down_proj")) == (i in monitor)
    plan = json.loads(render(answer, arch, "json", "fp8_e4m3", "qwen2"))
    assert plan["keep_modules"] == layer_modules("qwen2", keep)


def test_bad_plan_requests_name_the_field(answerer, qwen_fp8):
    arch, answer, _ = qwen_fp8
    with pytest.raises(UserError, match="^model_type: no module naming for 'bert'"):
        render(answer, arch, "torchao", "fp8_e4m3", "bert")
    with pytest.raises(UserError, match="^format: 'int8_per_tensor' is not a format of this precision target"):
        render(answer, arch, "json", "int8_per_tensor", "qwen2")
    w4 = arch.model_copy(update={"precision_target": "w4a16"})
    with pytest.raises(UserError, match="^format: the precision target uses fp16, bf16"):
        render(answerer.answers([w4])[0], w4, "json", None, "qwen2")
    with pytest.raises(UserError, match="^format: torchao cannot express fp8_e5m2 .*use --format fp8_e4m3"):
        render(answer, arch, "torchao", "fp8_e5m2", "qwen2")
    with pytest.raises(UserError, match="^tool: llm-compressor writes inference recipes and fp8_training is a training "
                       "target: use --tool torchao or --tool te or --tool megatron.*--target fp8_inference"):
        render(answer, arch, "llm-compressor", None, "qwen2")
    bf16 = answerer.answers([arch.model_copy(update={"precision_target": "bf16"})])[0]
    with pytest.raises(UserError, match="^format: torchao cannot express bf16"):
        render(bf16, arch, "torchao", None, "qwen2")


def test_te_debug_config_loads_with_nvdlfw_inspect(qwen_fp8, tmp_path):
    """The TE debug file through nvdlfw_inspect's own config loader (the one ``debug_api.initialize`` uses):
    exactly the monitored layers get LogTensorStats. Transformer Engine needs CUDA, so its namespace is
    registered with the one documented feature the file uses instead of TE's feature directory."""
    from nvdlfw_inspect.config_manager import ConfigManager
    from nvdlfw_inspect.logging import initialize_logger
    from nvdlfw_inspect.registry import NamespaceData

    arch, answer, _ = qwen_fp8
    path = tmp_path / "te_debug.yaml"
    path.write_text(render(answer, arch, "te-debug", "fp8_e4m3", "qwen2"))
    initialize_logger(str(tmp_path / "logs"))
    registry = {"transformer_engine": NamespaceData("transformer_engine", None, {"LogTensorStats": None}),
                "base": NamespaceData("base", None)}
    ConfigManager.reset()
    try:
        ConfigManager._load_config(str(path), registry)
        monitor = answer.precision_plan.formats[0].monitor
        logged = [i for i in range(arch.n_layers) if ConfigManager.get_config_for_layer(f"model.layers.{i}.mlp.down_proj")]
        assert logged == monitor
        stats = ConfigManager.get_config_for_layer(f"model.layers.{monitor[0]}.self_attn.o_proj")["transformer_engine"]
        assert stats["LogTensorStats"]["freq"] == 100 and stats["LogTensorStats"]["enabled"] is True
    finally:
        ConfigManager.reset()


def test_schedule_linked_risk_is_a_term_of_the_target_formats(answerer):
    """Issue 20: the schedule-linked risks are structured terms of the precision answer, on the target formats
    only: FP8 + SwiGLU past 200B tokens (2409.12517, a number: the step) and weight quantization after the
    learning-rate decay starts (2510.06213, a direction: the step, no magnitude)."""
    from predictor.architecture import Architecture

    a = Architecture(n_layers=32, d_model=4096, n_heads=32, d_ffn=11008, ffn_type="glu", activation="silu",
                     norm_type="rmsnorm", precision_target="fp8_training", training_tokens=2e12, batch_tokens=4_194_304)
    ptq = a.model_copy(update={"precision_target": "w4a16", "lr_schedule": "wsd", "warmup_frac": 0.01})
    fp8, w4 = answerer.answers([a, ptq])
    for r in fp8.precision:
        if r.format in prec.TARGET_FORMATS["fp8_training"]:
            (e,) = r.schedule
            assert (e.kind, e.evidence, e.source, e.step, e.within_plan) == (
                "fp8_swiglu_tokens", "number", "arXiv 2409.12517", int(200e9 / 4_194_304), True)
        else:
            assert r.schedule == []
    t = ptq.planned_steps
    decay = round(0.01 * t) + int(0.9 * (t - round(0.01 * t)))
    got = {r.format: [(e.kind, e.evidence, e.step) for e in r.schedule] for r in w4.precision}
    assert got == {f: ([("lr_decay_ptq", "direction", decay)] if f in ("fp16", "bf16") else []) for f in prec.FORMATS}


# ------------------------------------------------------------------------------------ issue 26


def _planned(fp, layer: int):
    """A planned layer for a plan built by hand: ``fp``'s first entry moved to ``layer``."""
    return fp.keep_high_precision[0].model_copy(update={"layer": layer, "why": f"layer {layer}: kept by hand"})


def _with_keep(answer, keep: list[int]):
    """``answer`` whose E4M3 plan keeps exactly ``keep`` (to put Megatron's cover through the real render)."""
    fp = answer.precision_plan.formats[0]
    fp = fp.model_copy(update={"keep_high_precision": [_planned(fp, k) for k in keep]})
    plan = answer.precision_plan.model_copy(update={"formats": [fp, *answer.precision_plan.formats[1:]]})
    return answer.model_copy(update={"precision_plan": plan})


def _fewest_cover(keep: list[int], n: int) -> int:
    """Independently of plan.files: the fewest BF16 layers a start/end pair can cover ``keep`` with (all pairs)."""
    return min(s + e for s in range(n + 1) for e in range(n + 1 - s) if all(k < s or k >= n - e for k in keep))


def _megatron(text: str) -> tuple[int, int]:
    args = text.splitlines()[-1].split()
    return int(args[args.index("--num-layers-at-start-in-bf16") + 1]), int(args[args.index("--num-layers-at-end-in-bf16") + 1])


def test_megatron_flags_cover_the_plan_with_the_fewest_layers(qwen_fp8):
    """The reported 32-layer plan keeping 2-18 gets start 19, end 0 (not 16 + 16: every layer in BF16); for any
    plan the flags cover the fewest layers possible and never more than the plan plus the layers the header
    names as unavoidable (the flags keep a prefix and a suffix, never a middle block)."""
    arch, answer, _ = qwen_fp8
    arch32 = arch.model_copy(update={"n_layers": 32})
    text = render(_with_keep(answer, list(range(2, 19))), arch32, "megatron", "fp8_e4m3", "qwen2")
    assert _megatron(text) == (19, 0) and _fewest_cover(list(range(2, 19)), 32) == 19
    assert "# unavoidable: 2 layer(s) (0-1)" in text and "--pipeline-model-parallel-size <= 1" in text
    rng = random.Random(26)
    cases = [[0], [31], [0, 31], [14, 15, 16, 17], [5, 20, 26], *(sorted(rng.sample(range(32), rng.randint(1, 31)))
                                                                  for _ in range(40))]
    for keep in cases:
        text = render(_with_keep(answer, keep), arch32, "megatron", "fp8_e4m3", "qwen2")
        start, end = _megatron(text)
        covered = set(range(start)) | set(range(32 - end, 32))
        assert set(keep) <= covered and len(covered) == start + end == _fewest_cover(keep, 32), keep
        unavoidable = sorted(covered - set(keep))
        assert (f"# unavoidable: {len(unavoidable)} layer(s) ({ranges(unavoidable)})" in text) == bool(unavoidable), keep
        assert megatron_cover(keep, 32) == (start, end)
    every = render(_with_keep(answer, list(range(32))), arch32, "megatron", "fp8_e4m3", "qwen2")
    assert _megatron(every) == (32, 0) and "keeps every layer (32) in high precision: with these flags FP8 is off" in every


def test_plan_thresholds_are_the_gates():
    """The plan's per-format threshold is the shared gate's (predictor.precision.GATE, which the review's
    default fail rules are built from): the plan that passes its own threshold passes the gate."""
    from review.verdict import default_policy

    for target, formats in prec.TARGET_FORMATS.items():
        rules = default_policy(target).rules
        assert [r.rule_id() for r in rules if r.severity == "fail"] == ["precision-gate"]  # the answer's own decision
        for f in formats:
            if f in prec.GATE:
                assert ALPHA[f] == prec.GATE[f][1], (target, f)


@pytest.mark.parametrize("name", ["Qwen2.5-7B", "Llama-2-7b-hf", "pythia-2.8b"])
def test_plan_keeps_the_fewest_layers_that_pass_the_gate(answerer, name):
    """Issue 26: on real forecasts, with the plan applied the gate (predictor.precision.gate_at_risk, on the
    review's own per-layer probabilities, review.verdict.layer_format_probabilities) passes, and putting back any
    one kept layer makes it fail again: no kept layer could be dropped. The why says how many kept layers have
    their point forecast below the limit (kept for the interval's upper end)."""
    from review.verdict import layer_format_probabilities

    arch = reference_architectures()[name].model_copy(update={"precision_target": "fp8_training", "lineage": None})
    answer = answerer.answers([arch])[0]
    risks = {r.format: r for r in answer.precision}
    fp = answer.precision_plan.formats[0]
    checks = prec.GATE[fp.format][0]
    per_layer = layer_format_probabilities(risks[fp.format], checks)
    keep = {p.layer for p in fp.keep_high_precision}
    assert keep and len(keep) < arch.n_layers and prec.gate_at_risk(fp.format, risks[fp.format].check_probabilities)

    def at_risk(layers: list[int]) -> bool:
        return prec.gate_at_risk(fp.format, {c: max((per_layer[k] for k in layers), default=0.0) for c in checks})

    left = [k for k in per_layer if k not in keep]
    assert not at_risk(left) and fp.residual_risk == max((per_layer[k] for k in left), default=0.0)
    for k in keep:
        assert at_risk([*left, k]), k
    below = sum(p.predicted < p.limit for p in fp.keep_high_precision)
    assert (f"{below} of them for their interval's upper end" in fp.why) == bool(below)


def test_fewest_to_keep_is_the_smallest_passing_set():
    """Against every subset (independently): the kept set is a smallest one leaving no layer above the threshold,
    and a layer exactly at the threshold stays in the format (the gate fails only above it)."""
    from itertools import combinations

    rng = random.Random(26)
    for _ in range(200):
        probs = {k: round(rng.random() * 0.6, 2) for k in range(rng.randint(0, 8))}
        keep = fewest_to_keep(probs, 0.2)
        smallest = next(len(c) for n in range(len(probs) + 1) for c in combinations(probs, n)
                        if all(p <= 0.2 for k, p in probs.items() if k not in c))
        assert len(keep) == smallest and all(probs[k] <= 0.2 for k in probs if k not in keep), probs
    assert fewest_to_keep({0: 0.2, 1: 0.21}, 0.2) == [1]


@pytest.fixture(scope="module")
def home(tmp_path_factory, migrated_mlflow_db):
    return champion_home(tmp_path_factory, migrated_mlflow_db)


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.xdist_group("review")  # the worker that trains test_review's champion, so it is trained once
def test_cli_names_the_target_a_tool_expresses_and_megatron_needs_no_naming(home, monkeypatch, tmp_path, capsys):
    """Through ``maforecast plan``: torchao on a BF16 target is one line naming ``--target fp8_training`` (exit 2);
    Megatron (and TE debug) plans for a model type without module naming (mamba) are written, while the tools
    whose files name modules still refuse it."""
    use_home(monkeypatch, home)
    arch = reference_architectures()["Qwen2.5-7B"].model_copy(update={"precision_target": "fp8_training", "lineage": None})
    config = tmp_path / "qwen.json"
    config.write_text(arch.model_dump_json(exclude_none=True))
    code, _, err = _cli(["plan", str(config), "--tool", "torchao", "--target", "bf16"], capsys)
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1 and "torchao cannot express bf16" in lines[0] and "--target fp8_training" in lines[0]
    out = tmp_path / "megatron_args.txt"
    code, _, err = _cli(["plan", str(config), "--tool", "megatron", "--model-type", "mamba", "--format", "fp8_e4m3",
                         "--out", str(out)], capsys)
    assert code == 0 and f"wrote {out}" in err, err
    start, end = _megatron(out.read_text())
    assert 0 < start + end < arch.n_layers
    code, text, err = _cli(["plan", str(config), "--tool", "te-debug", "--model-type", "mamba", "--format", "fp8_e4m3"],
                           capsys)
    assert code == 0 and yaml.safe_load(text)["maforecast_monitor"]["enabled"] is True, err
    code, _, err = _cli(["plan", str(config), "--tool", "torchao", "--model-type", "mamba", "--format", "fp8_e4m3"], capsys)
    assert code == 2 and err.strip() == (f"error: --model-type: no module naming for 'mamba' (known: "
                                         f"{', '.join(sorted(load_bundle()))})")
