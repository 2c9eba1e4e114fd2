"""The probe set: fixed, equal-length token windows, identical at every checkpoint of a series.

A probe set is tokenized once (with the series' tokenizer) and the same token ids are fed to every
checkpoint, so nothing about the input changes between steps. Its ``digest`` (sha256 of the shape
and the int64 token ids) is stored in every stats row; rows measured on different probe sets never
mix and a resumed series must use the same probe set to skip what is done.

Sources (``spec``):

- ``None`` / ``"default"``: the bundled offline text (``maforecast/data/probe/*.txt``), works on a
  fresh machine without network;
- a local text file or folder (``.txt``, ``.md``, ``.rst``, ``.text``; ``.jsonl`` lines with a
  ``"text"`` field), read in sorted order;
- ``hf:REPO`` (e.g. ``hf:togethercomputer/RedPajama-Data-1T-Sample``, the paper's source) when the
  network allows and the ``datasets`` package is installed: the paper-style recipe, i.e. seeded
  random documents of at least ``seq_len`` tokens with a seeded random window in each.

Windows: documents are tokenized without special tokens, joined with the EOS token, and cut into
consecutive non-overlapping windows of ``seq_len`` tokens. If the tokenizer normally prepends a BOS
token (Llama), each window starts with BOS followed by ``seq_len - 1`` text tokens, as in training.
All windows have the same length, so batches need no padding and no attention mask.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from collector.errors import CollectorError, EmptyProbeError, NetworkUnavailableError

log = logging.getLogger(__name__)

TEXT_SUFFIXES = {".txt", ".md", ".rst", ".text", ".jsonl"}
DEFAULT_N_SEQUENCES = 10
DEFAULT_SEQ_LEN = 256


@dataclass(frozen=True)
class ProbeSet:
    input_ids: np.ndarray  # (n_sequences, seq_len) int64
    source: str

    @property
    def digest(self) -> str:
        return probe_digest(self.input_ids)

    @property
    def n_sequences(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.input_ids.shape[1])

    def describe(self) -> str:
        return f"{self.n_sequences} x {self.seq_len} tokens from {self.source} (digest {self.digest})"


def probe_digest(input_ids: np.ndarray) -> str:
    ids = np.ascontiguousarray(np.asarray(input_ids, dtype="<i8"))
    h = hashlib.sha256(f"maforecast-probe-v1:{ids.shape[0]}x{ids.shape[1]}:".encode())
    h.update(ids.tobytes())
    return h.hexdigest()[:16]


def default_probe_dir() -> Path:
    return Path(str(resources.files("maforecast") / "data" / "probe"))


def _read_file(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".jsonl":
        docs = []
        for line in text.splitlines():
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    raise CollectorError(f"probe file {path}: a line is not JSON") from None
                if isinstance(obj, dict) and isinstance(obj.get("text"), str):
                    docs.append(obj["text"])
        return docs
    return [text]


def read_documents(spec: str | Path | None) -> tuple[list[str], str]:
    """Documents of a local probe source and a short description of where they came from."""
    if spec is None or str(spec) == "default":
        folder = default_probe_dir()
        files = sorted(p for p in folder.glob("*.txt"))
        return [d for p in files for d in _read_file(p)], "bundled default probe text"
    path = Path(spec).expanduser()
    if not path.exists():
        raise CollectorError(f"probe text not found: {path} (give a text file, a folder of .txt files, 'default' or hf:REPO)")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
        if not files:
            raise EmptyProbeError(f"probe folder {path} has no text files ({', '.join(sorted(TEXT_SUFFIXES))})")
    else:
        files = [path]
    return [d for p in files for d in _read_file(p)], str(path)


def _adds_bos(tokenizer) -> bool:
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    try:
        ids = tokenizer("a")["input_ids"]
    except Exception:
        return False
    return bool(ids) and ids[0] == bos


def windows_from_documents(
    tokenizer, docs: list[str], n_sequences: int, seq_len: int, source: str
) -> ProbeSet:
    if n_sequences < 1 or seq_len < 2:
        raise CollectorError("the probe needs at least 1 sequence of at least 2 tokens")
    if not any(d.strip() for d in docs):
        raise EmptyProbeError(f"probe text from {source} is empty")
    eos = getattr(tokenizer, "eos_token_id", None)
    stream: list[int] = []
    for doc in docs:
        if not doc.strip():
            continue
        ids = tokenizer(doc, add_special_tokens=False)["input_ids"]
        if stream and eos is not None:
            stream.append(eos)
        stream.extend(int(i) for i in ids)
    if not stream:
        raise EmptyProbeError(f"probe text from {source} tokenizes to no tokens")
    bos = [int(tokenizer.bos_token_id)] if _adds_bos(tokenizer) else []
    body = seq_len - len(bos)
    n_full = len(stream) // body
    if n_full == 0:
        log.warning("probe text has only %d tokens; using one window of that length", len(stream))
        windows = [bos + stream]
    else:
        if n_full < n_sequences:
            log.warning("probe text gives only %d windows of %d tokens (asked for %d)", n_full, seq_len, n_sequences)
        windows = [bos + stream[i * body : (i + 1) * body] for i in range(min(n_full, n_sequences))]
    return ProbeSet(np.asarray(windows, dtype=np.int64), source)


def _hf_documents(repo: str, tokenizer, n_sequences: int, seq_len: int, seed: int) -> list[str]:
    """Paper-style recipe on a hub data set: seeded random documents with >= seq_len tokens."""
    from collector.sources import hub_offline

    if hub_offline():
        raise NetworkUnavailableError(
            f"probe data set {repo} needs the Hugging Face hub but HF_HUB_OFFLINE is set; "
            "use --probe default or --probe PATH to a local text file or folder"
        )
    try:
        import datasets
    except ImportError:
        raise CollectorError(
            "--probe hf:REPO needs the 'datasets' package (pip install datasets); "
            "or use --probe default / a local text file"
        ) from None
    try:
        ds = datasets.load_dataset(repo, split="train", streaming=True)
        pool = [row["text"] for _, row in zip(range(2000), ds, strict=False) if isinstance(row.get("text"), str)]
    except (ConnectionError, OSError) as exc:
        raise NetworkUnavailableError(
            f"cannot download probe data set {repo} ({exc.__class__.__name__}); "
            "use --probe default or --probe PATH to a local text file or folder"
        ) from None
    rng = random.Random(seed)
    rng.shuffle(pool)
    chosen = []
    for doc in pool:
        ids = tokenizer(doc, add_special_tokens=False)["input_ids"]
        if len(ids) >= seq_len:
            start = rng.randrange(0, len(ids) - seq_len + 1)
            chosen.append(tokenizer.decode(ids[start : start + seq_len]))
        if len(chosen) == n_sequences:
            break
    return chosen


def build_probe(
    tokenizer,
    spec: str | Path | None = None,
    n_sequences: int = DEFAULT_N_SEQUENCES,
    seq_len: int = DEFAULT_SEQ_LEN,
    seed: int = 0,
) -> ProbeSet:
    """Tokenize a probe source into ``n_sequences`` fixed windows of ``seq_len`` tokens."""
    if spec is not None and str(spec).startswith("hf:"):
        repo = str(spec)[3:]
        docs = _hf_documents(repo, tokenizer, n_sequences, seq_len, seed)
        source = f"hf:{repo}"
        if not docs:
            raise EmptyProbeError(f"no document of {seq_len} tokens found in {repo}")
        # one window per chosen document: tokenize each separately, keep exactly seq_len tokens
        probes = [windows_from_documents(tokenizer, [d], 1, seq_len, source).input_ids[0] for d in docs]
        width = min(len(p) for p in probes)
        return ProbeSet(np.stack([p[:width] for p in probes]), source)
    docs, source = read_documents(spec)
    return windows_from_documents(tokenizer, docs, n_sequences, seq_len, source)


def check_vocab(probe: ProbeSet, vocab_size: int | None, what: str) -> None:
    if vocab_size is not None and int(probe.input_ids.max()) >= vocab_size:
        raise CollectorError(
            f"probe token id {int(probe.input_ids.max())} is outside the vocabulary of {what} "
            f"({vocab_size}); the probe was tokenized with a different tokenizer (use --tokenizer)"
        )
