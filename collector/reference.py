"""Load the bundled reference data (see maforecast/data/reference/PROVENANCE.md) as stats tables.

The bundled Pythia file is a transcription of the published data set's per-checkpoint arrays;
the final-model file holds per-layer peaks of 13 fully trained LLMs (step unknown, so ``step`` is
missing and ``revision`` says ``final``). Missing cells stay missing.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd

from maforecast.tables import ControlledEffectRow, StatsRow, conform

PYTHIA_SOURCE = "reference:aimpoint-pythia-massive-activations"
FINAL_SOURCE = "reference:refine-massive-activations"
MAXACT_SOURCE = "reference:max-act-llm"


def reference_dir() -> Path:
    return Path(str(resources.files("maforecast") / "data" / "reference"))


def reference_file(name: str) -> Path:
    path = reference_dir() / name
    if not path.exists():
        raise FileNotFoundError(f"bundled reference file missing: {path}")
    return path


def pythia_model_name(size: str) -> str:
    size = str(size).strip().lower()
    return size if size.startswith("pythia-") else f"pythia-{size}"


def load_pythia_stats(more: bool = True) -> pd.DataFrame:
    """Bundled Pythia training-checkpoint stats, one row per (model, step, sequence, layer).

    ``more`` adds the second harvest (``pythia_stats_more.csv``: 160m steps 64/8000, 1b step 512,
    12b steps 36000/60000)."""
    raw = pd.read_csv(reference_file("pythia_stats.csv"))
    if more:
        extra = pd.read_csv(reference_file("pythia_stats_more.csv")).drop(columns=["source"])
        raw = pd.concat([raw, extra], ignore_index=True)
    df = pd.DataFrame(
        {
            "model": raw["model"].map(pythia_model_name),
            "step": raw["step"],
            "sequence": raw["sample"],
            "layer": raw["layer"],
            "top1": raw["top1"],
            "top2": raw["top2"],
            "top3": raw["top3"],
            "median": raw["median"],
            "revision": "step" + raw["step"].astype(str),
            "source": PYTHIA_SOURCE,
            "protocol": "seq_mean",
        }
    )
    return conform(df, StatsRow)


def load_final_model_stats(bos: bool | None = False) -> pd.DataFrame:
    """Per-layer peaks of the 13 fully trained LLMs (one probe sentence), as stats rows.

    ``bos`` selects the BOS-token variant (None keeps both). ``step`` is missing: these are
    steady-state observations without a training step. The first massive token position
    is kept as ``top1_token`` when published.
    """
    raw = pd.read_csv(reference_file("final_models_layers.csv"))
    if bos is not None:
        raw = raw[raw["bos_token"].astype(str).str.lower() == str(bos).lower()]

    def first_int(cell) -> int | None:
        if not isinstance(cell, str) or not cell.strip("[] "):
            return None
        return int(cell.strip("[] ").split(",")[0])

    df = pd.DataFrame(
        {
            "model": raw["model"],
            "step": pd.NA,
            "sequence": 0,
            "layer": raw["layer"],
            "top1": raw["max_activation"],
            "median": raw["median_activation"],
            "top1_token": raw["massive_token_positions"].map(first_int),
            "top1_dim": raw["massive_dims"].map(first_int),
            "revision": raw["bos_token"].map(lambda b: "final+bos" if str(b).lower() == "true" else "final"),
            "source": FINAL_SOURCE,
            "protocol": "one_sentence",
            "dtype": raw["dtype"],
        }
    )
    return conform(df, StatsRow)


def load_final_model_seq_mean_stats() -> pd.DataFrame:
    """The same 13 LLMs' per-layer peaks averaged over 10 RedPajama sequences (column
    ``max_activation_redpajama_mean`` of 2503.22329's tables: the mean over sequences of each sequence's
    top-1 |h|, Pythia's protocol ``seq_mean``). Where a model has both, its one-sentence and seq_mean rows
    are the within-model pairs that tie the two protocols together. No median is published with it."""
    raw = pd.read_csv(reference_file("final_models_layers.csv"))
    raw = raw[pd.to_numeric(raw["max_activation_redpajama_mean"], errors="coerce") > 0]
    df = pd.DataFrame(
        {
            "model": raw["model"],
            "step": pd.NA,
            "sequence": 0,
            "layer": raw["layer"],
            "top1": raw["max_activation_redpajama_mean"],
            "median": pd.NA,
            "revision": raw["bos_token"].map(lambda b: "final+bos" if str(b).lower() == "true" else "final"),
            "source": FINAL_SOURCE,
            "protocol": "seq_mean",
            "dtype": raw["dtype"],
        }
    )
    return conform(df, StatsRow)


def load_maxact_stats() -> pd.DataFrame:
    """Per-layer decoder-output statistics of 19 trained LLMs (arXiv 2605.15572), as stats rows.

    ``top1`` is the single maximum |h| over all tokens of 5,000 prompts and ``median`` the median
    |h| from a 512-bin log histogram (protocol ``corpus_max``): not comparable with the other
    sources without a protocol term. ``step`` is missing (fully trained)."""
    raw = pd.read_csv(reference_file("maxact_layers.csv"))
    raw = raw[raw["component"].astype(str).str.startswith("hidden")]
    df = pd.DataFrame(
        {
            "model": raw["model"],
            "step": pd.NA,
            "sequence": 0,
            "layer": raw["layer"],
            "top1": raw["abs_max"],
            "median": raw["abs_median_hist"],
            "revision": "final",
            "source": MAXACT_SOURCE,
            "protocol": "corpus_max",
            "dtype": "bfloat16",
        }
    )
    return conform(df, StatsRow)


def load_reference_stats(final_models: bool = True, maxact: bool = True, bos: bool | None = None) -> pd.DataFrame:
    """Every bundled measurement in one stats table (Pythia checkpoints + trained LLMs of both protocols)."""
    frames = [load_pythia_stats()]
    if final_models:
        frames += [load_final_model_stats(bos=bos), load_final_model_seq_mean_stats()]
    if maxact:
        frames.append(load_maxact_stats())
    return pd.concat(frames, ignore_index=True)


def load_maxact_architectures() -> pd.DataFrame:
    return pd.read_csv(reference_file("maxact_architectures.csv"))


def load_peer_evidence() -> pd.DataFrame:
    """Peer studies' measured conditions (``peers/emergence_evidence.csv``, 197 rows)."""
    return pd.read_csv(reference_file("peers/emergence_evidence.csv"))


def load_controlled_effects() -> pd.DataFrame:
    """The 60 controlled comparisons of 16 studies (``controlled_effects.csv``), each row checked against
    ``ControlledEffectRow`` (a malformed bundled file fails here, naming the row)."""
    df = pd.read_csv(reference_file("controlled_effects.csv"), dtype=str, keep_default_na=False)
    rows = []
    for i, rec in enumerate(df.to_dict("records")):
        rec = {k: (v if v != "" else None) for k, v in rec.items()}
        try:
            rows.append(ControlledEffectRow.model_validate(rec).model_dump())
        except ValueError as exc:
            raise ValueError(f"controlled_effects.csv row {i + 2}: {exc}") from None
    return pd.DataFrame(rows)


def load_pythia_architectures() -> pd.DataFrame:
    return pd.read_csv(reference_file("pythia_architectures.csv"))


def load_final_model_architectures() -> pd.DataFrame:
    return pd.read_csv(reference_file("final_models_architectures.csv"))

