"""What ``maforecast predict`` and ``review`` read: native architecture JSON, Hugging Face ``config.json``
(converted by ``predictor.hf_config``, which names every inferred field), or folders of them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maforecast.errors import UserError
from predictor.architecture import Architecture, parse_architecture
from predictor.hf_config import from_hf_config
from predictor.response import PredictResponse

AUX_JSON = frozenset(
    {"generation_config.json", "tokenizer_config.json", "tokenizer.json", "special_tokens_map.json",
     "preprocessor_config.json", "added_tokens.json", "training.json"}
)


HF_KEYS = frozenset({"model_type", "num_hidden_layers", "hidden_size", "n_embd", "n_layer", "architectures"})
# Architecture fields a config.json does not use (vocab_size, head_dim, rope_theta are in both)
NATIVE_ONLY = frozenset(Architecture.model_fields) - {"vocab_size", "head_dim", "rope_theta", "name"}


def detect_kind(doc: Any) -> str:
    """'native' (the Architecture schema), 'hf' (a Hugging Face config.json), or 'hf+training'.

    ``{"config": {...}, "training": {...}}`` (the /predict_hf_config body) counts as 'hf+training'.
    """
    if not isinstance(doc, dict):
        raise UserError("the file must hold a JSON object (an architecture or a Hugging Face config.json)")
    if isinstance(doc.get("config"), dict) and set(doc) <= {"config", "training", "steps"}:
        return "hf+training"
    if "model_type" in doc or "architectures" in doc:
        return "hf"
    # any field only the native schema has makes it native, so a typo beside it (``n_layer``,
    # ``d_modle``) is named by the schema's validation instead of being read as another schema
    if set(doc) & NATIVE_ONLY:
        return "native"
    if HF_KEYS & set(doc):
        return "hf"
    raise UserError(
        "cannot tell the schema: a native architecture needs n_layers and d_model; "
        "a Hugging Face config.json has model_type / num_hidden_layers / hidden_size"
    )


def read_json(path: Path | str) -> Any:
    """A JSON file's content; a missing or unreadable file is one line naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"no such file: {path}") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not readable JSON ({' '.join(str(exc).split())})") from None


def load_architecture(path: Path, training: dict | None = None):
    """(Architecture, notes) from a native or Hugging Face JSON file."""
    doc = read_json(path)
    kind = detect_kind(doc)
    if kind == "native":
        if training:
            doc = {**doc, **training}
        return parse_architecture(doc), [f"{path}: native architecture schema"]
    if kind == "hf+training":
        doc, training = doc["config"], {**(doc.get("training") or {}), **(training or {})}
    arch, notes = from_hf_config(doc, training)
    return arch, [f"{path}: Hugging Face config.json (model_type {doc.get('model_type')})", *notes]


@dataclass
class Candidate:
    name: str
    source: str
    kind: str
    arch: Architecture
    inferred: list[str] = field(default_factory=list)
    answer: PredictResponse | None = None
    verdict: Any = None  # review.verdict.CandidateVerdict
    index: int = 0  # position in the input (the report compares each candidate with the first)
    difference: Any = None  # predictor.response.Difference: what changing the first candidate into this one does




def config_files(paths: Sequence[Path | str]) -> list[Path]:
    """The JSON files named by ``paths`` (a folder contributes every *.json below it, auxiliary HF files skipped)."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*.json") if f.name not in AUX_JSON and not f.name.endswith(".index.json"))
            if not found:
                raise UserError(f"{p}: folder holds no architecture JSON or config.json")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise UserError(f"{p}: no such file or folder")
    return out


def _model_type(path: Path) -> str | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    doc = doc.get("config", doc) if isinstance(doc, dict) else {}
    return str(doc.get("model_type")) if isinstance(doc, dict) and doc.get("model_type") else None


def _label(path: Path) -> str:
    if path.name == "config.json" and path.parent.name:
        return path.parent.name
    return path.stem


def load_candidates(paths: Sequence[Path | str], training: dict | None = None) -> list[Candidate]:
    files = config_files(paths)
    out: list[Candidate] = []
    names: dict[str, int] = {}
    for f in files:
        try:
            kind = detect_kind(json.loads(f.read_text(encoding="utf-8")))
        except (OSError, ValueError, UserError):
            kind = "?"
        try:
            arch, notes = load_architecture(f, training)
        except UserError as exc:
            msg = " ".join(str(exc).split())
            raise UserError(msg if msg.startswith(str(f)) else f"{f}: {msg}") from None
        name = _label(f)
        if name in names:
            names[name] += 1
            name = f"{name}#{names[name]}"
        else:
            names[name] = 1
        if kind != "native" and arch.name in (None, "", _model_type(f)):
            arch = arch.model_copy(update={"name": name})  # a config.json names no model: use its folder
        out.append(Candidate(name=name, source=str(f), kind=kind, arch=arch, inferred=list(notes[1:]), index=len(out)))
    return out


def read_training(path: Path | None, precision_target: str | None) -> dict | None:
    training: dict[str, Any] = {}
    if path is not None:
        training = read_json(path)
        if not isinstance(training, dict):
            raise UserError(f"{path}: must hold a JSON object of training fields")
    if precision_target:
        training["precision_target"] = precision_target
    return training or None


