"""The README's field reference is generated from the schema and what the forecast reads: it cannot drift."""

from __future__ import annotations

from pathlib import Path

from predictor.architecture import Architecture
from predictor.fields import BEGIN, END, field_reference, replace_block, role
from predictor.hf_config import from_hf_config

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_field_reference_is_the_generated_one():
    text = README.read_text()
    assert BEGIN in text and END in text
    assert replace_block(text) == text, "README field reference is stale: python -m predictor.fields --write README.md"
    table = field_reference()
    for name in Architecture.model_fields:
        assert f"| `{name}` |" in table
    assert all(f.description for n, f in Architecture.model_fields.items()), "every field says what it means"


def test_roles_say_which_fields_the_forecast_reads():
    assert role("seq_len").startswith("not modelled") and role("rope_theta").startswith("not modelled")
    assert "controlled" in role("norm_placement") and "training clock" in role("learning_rate")
    assert "size" in role("d_model") and "level" in role("lineage")


def test_an_hf_config_names_every_plan_value_it_assumed():
    """Issue 26: an HF config silently got Pythia's plan and seq_len from max_position_embeddings."""
    cfg = {"model_type": "llama", "hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32,
           "intermediate_size": 8192, "vocab_size": 128256, "max_position_embeddings": 131072}
    _, notes = from_hf_config(cfg)
    said = {n.split(":", 1)[0] for n in notes}
    assert {"learning_rate", "batch_tokens", "total_steps", "lr_schedule", "warmup_frac", "weight_decay", "optimizer",
            "precision_target", "seq_len"} <= said
    _, notes = from_hf_config(cfg, {"learning_rate": 1e-3, "seq_len": 8192, "total_steps": 1000})
    said = {n.split(":", 1)[0] for n in notes}
    assert not {"learning_rate", "seq_len", "total_steps"} & said
