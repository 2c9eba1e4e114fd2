"""Schemas of the tables that cross stage boundaries, defined once.

Each table is a pydantic row model; a DataFrame conforms when it has the model's columns with
compatible dtypes. ``conform`` coerces and validates a frame (naming the bad column), ``empty``
builds a typed empty frame, and ``read_table``/``write_table`` move frames to parquet or CSV.
``locked`` is the one inter-process lock of a table file: every writer holds it, and a
read-modify-write (``collector.store.upsert``) holds it from the read to the rename.
Imported reference data and collected data share ``StatsRow``, so downstream code treats them
alike.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, get_args, get_origin

import numpy as np
import pandas as pd
from filelock import FileLock, Timeout
from pydantic import BaseModel, ConfigDict, Field

from maforecast.errors import UserError

Metric = Literal["ratio", "top1", "median"]
METRICS: tuple[str, ...] = get_args(Metric)


# measurement protocols of the stats table (StatsRow.protocol); values of one protocol are comparable
PROTOCOLS: dict[str, str] = {
    "seq_mean": "mean over a few probe sequences of each sequence's top-1 |h| (arXiv 2508.03616; maforecast collect)",
    "one_sentence": "top-1 |h| on one probe sentence (arXiv 2503.22329)",
    "corpus_max": "one maximum over all tokens of 5,000 prompts, median from a log histogram (arXiv 2605.15572)",
}
DEFAULT_PROTOCOL = "seq_mean"


class StatsRow(BaseModel):
    """One (model, step, probe sequence, decoder layer) measurement of |h| in the residual stream."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="Model (series) name, e.g. 'pythia-160m'.")
    step: int | None = Field(default=None, ge=0, description="Training step; missing for fully trained models whose step is unknown.")
    sequence: int = Field(ge=0, description="Index of the probe sequence.")
    layer: int = Field(ge=0, description="Decoder layer index (0-based); output of that layer.")
    top1: float | None = Field(default=None, description="Largest |h| over (token, feature).")
    top2: float | None = None
    top3: float | None = None
    median: float | None = Field(default=None, description="Median |h| over (token, feature).")
    top1_token: int | None = Field(default=None, description="Token position of top1.")
    top1_dim: int | None = Field(default=None, description="Feature dimension of top1.")
    revision: str | None = Field(default=None, description="Hub revision or checkpoint folder name.")
    probe_digest: str | None = Field(default=None, description="Digest of the probe token ids.")
    source: str = Field(description="Where the row came from, e.g. 'reference:aimpoint-pythia' or 'collector'.")
    protocol: str | None = Field(
        default=None,
        description="Measurement protocol (maforecast.tables.PROTOCOLS): seq_mean (per-sequence maxima averaged over a "
        "few probe sequences: 2508.03616 and the collector), one_sentence (2503.22329), corpus_max (one maximum over "
        "5,000 prompts: 2605.15572). Missing means seq_mean.",
    )
    dtype: str | None = Field(default=None, description="Compute dtype of the forward pass.")


class ControlledEffectRow(BaseModel):
    """One controlled comparison (same study, same base model and recipe, one change): the design
    effects' evidence (``maforecast/data/reference/controlled_effects.csv``; PROVENANCE.md says where
    each number comes from)."""

    model_config = ConfigDict(extra="forbid")

    study: str
    arxiv: str
    base_model: str = Field(description="The base design and recipe the change was made on.")
    change_field: str = Field(description="Architecture field(s) changed ('a+b': two at once); 'other:<name>': none.")
    change_from: str
    change_to: str
    metric: str = Field(description="What was measured: max |h| of the residual stream, a sublayer's inf-norm, kurtosis, sink ratio...")
    value_before: str | None = Field(default=None, description="As reported (a bound keeps its sign, e.g. '>12275').")
    value_after: str | None = None
    log10_ratio: float | None = Field(default=None, description="log10(after / before); missing for bounds and missing values.")
    n_seeds: str | None = None
    at_tokens_or_steps: str | None = None
    source_location: str | None = None
    confidence: Literal["H", "M", "L"]
    verified_at_source: str | None = None
    notes: str | None = None


class FitRow(BaseModel):
    """One fitted curve: (model, layer, metric) series -> parameters, quality and derived quantities."""

    model_config = ConfigDict(extra="forbid")

    model: str
    layer: int = Field(ge=0)
    metric: str = Field(description="ratio | top1 | median")
    curve: str = Field(description="Selected curve family: eq9 | step1 | none")
    status: str = Field(description="ok | ill_conditioned | poor_fit | flat | too_short | missing | non_finite | negative | failed")
    n_points: int = Field(ge=0)
    t_min: float | None = None
    t_end: float | None = None
    A: float | None = None
    lam: float | None = None
    gamma: float | None = None
    t0: float | None = None
    K: float | None = None
    se_A: float | None = None
    se_lam: float | None = None
    se_gamma: float | None = None
    se_t0: float | None = None
    se_K: float | None = None
    tau: float | None = Field(default=None, description="Time constant of the step1 alternative.")
    step1_K: float | None = Field(default=None, description="Gain of the step1 alternative c + K(1 - exp(-t/tau)).")
    step1_c: float | None = Field(default=None, description="Offset of the step1 alternative.")
    r2: float | None = None
    aic: float | None = None
    aic_step1: float | None = None
    rmse: float | None = None
    condition: float | None = Field(default=None, description="Condition number of the scaled Jacobian.")
    t_peak: float | None = None
    value_peak: float | None = None
    trajectory_class: str | None = Field(default=None, description="early_peak | log_increase")
    t_emerge: float | None = None
    value_end: float | None = None
    steady_state: float | None = None
    message: str | None = None


def _dtype_for(annotation) -> str:
    args = [a for a in get_args(annotation) if a is not type(None)] if get_origin(annotation) else [annotation]
    base = args[0] if args else annotation
    if base is int:
        return "Int64"
    if base is float:
        return "float64"
    if base is bool:
        return "boolean"
    return "string"


def columns(row_model: type[BaseModel]) -> dict[str, str]:
    """Column name -> pandas dtype, in schema order."""
    return {name: _dtype_for(f.annotation) for name, f in row_model.model_fields.items()}


def empty(row_model: type[BaseModel]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=d) for c, d in columns(row_model).items()})


class TableError(UserError, ValueError):
    """A table does not conform to its schema; the message names the column."""


def conform(df: pd.DataFrame, row_model: type[BaseModel]) -> pd.DataFrame:
    """Return ``df`` with exactly the schema's columns and dtypes; missing optional columns are NA.

    Raises TableError naming the offending column when a required column is missing or a
    value cannot be coerced. Missing values stay missing: nothing is invented.
    """
    out = {}
    for name, dtype in columns(row_model).items():
        field = row_model.model_fields[name]
        if name not in df.columns:
            if field.is_required():
                raise TableError(f"{row_model.__name__}: required column '{name}' is missing")
            out[name] = pd.Series(index=df.index, dtype=dtype)
            continue
        col = df[name]
        try:
            if dtype == "Int64":
                num = pd.to_numeric(col, errors="raise")
                if (num.notna() & (num != np.round(num))).any():
                    raise ValueError("non-integer value")
                col = num.astype("Int64")
            elif dtype == "float64":
                col = pd.to_numeric(col, errors="raise").astype("float64")
            elif dtype == "boolean":
                col = col.astype("boolean")
            else:
                col = col.astype("string")
        except (ValueError, TypeError) as exc:
            raise TableError(f"{row_model.__name__}: column '{name}' cannot be read as {dtype}: {exc}") from None
        if field.is_required() and col.isna().any():
            raise TableError(f"{row_model.__name__}: column '{name}' has missing values but is required")
        out[name] = col
    frame = pd.DataFrame(out, index=df.index).reset_index(drop=True)
    if row_model is StatsRow and len(frame):
        for c in ("step", "sequence", "layer"):
            if (frame[c] < 0).any():
                raise TableError(f"StatsRow: column '{c}' has negative values")
    return frame


def read_table(path: str | Path, row_model: type[BaseModel]) -> pd.DataFrame:
    """Read without the lock, through one open file: a writer renames its new table over the path,
    so the file opened here stays whole. (Given the path, pyarrow opens it more than once, and a
    rename in between mixes the old file's footer with the new file's pages.)"""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            df = pd.read_parquet(fh) if path.suffix == ".parquet" else pd.read_csv(fh)
    except FileNotFoundError:
        raise TableError(f"table file not found: {path}") from None
    return conform(df, row_model)


LOCK_TIMEOUT = 600.0


def lock_path(path: str | Path) -> Path:
    """The lock file that guards ``path``: ``.<name>.lock`` next to it."""
    path = Path(path).absolute()
    return path.with_name(f".{path.name}.lock")


@contextmanager
def locked(path: str | Path, timeout: float | None = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the inter-process lock of the file ``path`` (``filelock``, an OS lock on ``.<name>.lock``).

    Concurrent writers of one table (collectors, importers, fits) would otherwise each read the
    table, add their rows and rename their copy over the others'. Re-entrant in one thread (one
    FileLock per lock file and process), so ``upsert`` can hold it around ``write_table``. The OS
    drops the lock when its holder dies, so a killed writer never leaves the table locked.
    ``timeout=None`` waits as long as it takes.
    """
    lock_file = lock_path(path)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_file, is_singleton=True)
    try:
        lock.acquire(timeout=-1 if timeout is None else timeout)
    except Timeout:
        raise TableError(f"{path}: another process has held {lock_file} for over {timeout:.0f}s; "
                         "is a writer stuck?") from None
    try:
        yield
    finally:
        lock.release()


def write_table(df: pd.DataFrame, path: str | Path, row_model: type[BaseModel]) -> Path:
    """Write atomically (temp file + rename) under the table's lock, so a crash never leaves a
    half-written table and concurrent writers never share the temp file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = conform(df, row_model)
    tmp = path.with_name(f".{path.name}.tmp")
    with locked(path):
        if path.suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)
        tmp.replace(path)
    return path


def digest(df: pd.DataFrame) -> str:
    """Content digest of a table (order-independent over rows), for dataset lineage."""
    h = pd.util.hash_pandas_object(df.sort_values(list(df.columns)).reset_index(drop=True), index=False)
    return hashlib.sha256(h.values.tobytes()).hexdigest()[:16]


def stats_with_ratio(stats: pd.DataFrame) -> pd.DataFrame:
    """Aggregate a stats table over probe sequences to the paper's per (model, step, layer) series.

    ``top1_mean = mean_x top1``, ``median_mean = mean_x median``, ``ratio = top1_mean /
    median_mean`` (Eq. 8 of arXiv 2508.03616). Missing medians give a missing ratio.
    """
    g = stats.groupby(["model", "step", "layer"], as_index=False).agg(
        top1=("top1", "mean"), median=("median", "mean"), n_sequences=("sequence", "nunique")
    )
    g["ratio"] = g["top1"] / g["median"]
    return g.sort_values(["model", "layer", "step"]).reset_index(drop=True)
