"""The precision plan in the answer and its files (issue 19): module names read off real ``transformers``
classes, torchao converting a real tiny model with the emitted filter, the llm-compressor recipe, Megatron
arguments and the TE debug config checked against their documented formats (llm-compressor pins
transformers<=5.17 and Transformer Engine needs CUDA: neither installs beside the project's pins)."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from maforecast.errors import UserError
from plan.files import render
from plan.naming import MODEL_TYPES, discover, layer_modules, load_bundle
from predictor import knowledge as kbm
from predictor.answer import Answerer
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
    assert set(keep) <= set(fp.monitor) and fp.residual_risk < 0.2  # the gate's threshold: the plan makes it pass
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
    assert kept - {"lm_head"} == set(layer_modules("qwen2", keep)) == set(ns["KEEP_HIGH_PRECISION"])
    assert converted and not any(re.match(rf"model\.layers\.({'|'.join(map(str, keep))})\.", n) for n in converted)


def test_llm_compressor_recipe_matches_its_documented_form(qwen_fp8):
    """llm-compressor's recipe form (quant stage -> modifiers -> QuantizationModifier with targets, scheme,
    ignore); every ignore entry is a module of a real tiny model of the type."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    arch, answer, keep = qwen_fp8
    text = render(answer, arch, "llm-compressor", "fp8_e4m3", "qwen2")
    doc = yaml.safe_load(text)
    mod = doc["quant_stage"]["quant_modifiers"]["QuantizationModifier"]
    assert mod["targets"] == ["Linear"] and mod["scheme"] == "FP8_DYNAMIC"
    with torch.device("meta"):
        model = Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                             num_key_value_heads=2, num_hidden_layers=arch.n_layers))
    names = {n for n, _ in model.named_modules()}
    assert set(mod["ignore"]) <= names and len(mod["ignore"]) == 1 + 7 * len(keep)


def test_megatron_args_cover_the_plan_and_te_config_logs_the_monitored_layers(qwen_fp8):
    arch, answer, keep = qwen_fp8
    text = render(answer, arch, "megatron", "fp8_e4m3", "qwen2")
    args = text.splitlines()[-1].split()
    start = int(args[args.index("--num-layers-at-start-in-bf16") + 1])
    end = int(args[args.index("--num-layers-at-end-in-bf16") + 1])
    assert "--first-last-layers-bf16" in args and "--fp8-recipe" in args and "delayed" not in args
    assert all(k < start or k >= arch.n_layers - end for k in keep)
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
    with pytest.raises(UserError, match="^format: the precision target uses fp8_e4m3, fp8_e5m2"):
        render(answer, arch, "json", None, "qwen2")
    with pytest.raises(UserError, match="^the plan keeps no layer"):
        render(answer, arch, "torchao", "fp8_e5m2", "qwen2")
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
        if r.format.startswith("fp8"):
            (e,) = r.schedule
            assert (e.kind, e.evidence, e.source, e.step, e.within_plan) == (
                "fp8_swiglu_tokens", "number", "arXiv 2409.12517", int(200e9 / 4_194_304), True)
        else:
            assert r.schedule == []
    t = ptq.planned_steps
    decay = round(0.01 * t) + int(0.9 * (t - round(0.01 * t)))
    got = {r.format: [(e.kind, e.evidence, e.step) for e in r.schedule] for r in w4.precision}
    assert got == {"fp16": [("lr_decay_ptq", "direction", decay)], "bf16": [("lr_decay_ptq", "direction", decay)],
                   "fp8_e4m3": [], "fp8_e5m2": [], "int8_per_tensor": []}
