"""Import the published data set ``Aimpoint-Digital/pythia-massive-activations`` from its own layout.

Layout (as downloaded from the hub)::

    <root>/<model>/stats/exp2_pythia_<size>_step<N>[.npy]      array (sequences, 4, layers):
                                                                rows top1, top2, top3, median
    <root>/<model>/params/layer_fit_params_<metric>.json       [{"original": {"param_names", "popt",
                                                                  "pcov", "r2", "aic", "residuals"}}, ...]

``import_published(root)`` returns the stats table (same schema the collector writes) and the
published fits as a fits table, so a user who downloads the data set loads all of it at once.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from maforecast.errors import UserError
from maforecast.tables import FitRow, StatsRow, conform, empty

SOURCE = "published:aimpoint-pythia-massive-activations"
_STATS_RE = re.compile(r"^exp2_(?P<model>.+?)_step(?P<step>\d+)(?:\.npy)?$")
_PARAMS_RE = re.compile(r"^layer_fit_params_(?P<metric>ratio|top1|median)\.json$")
_PARAM_ALIASES = {"A": "A", "lambda": "lam", "lam": "lam", "gamma": "gamma", "t0": "t0", "K": "K"}


class PublishedFormatError(UserError, ValueError):
    """A file in the published layout cannot be read; the message names the file."""


def _model_name(raw: str) -> str:
    # 'pythia_160m' / 'pythia-160m' -> 'pythia-160m'
    return re.sub(r"^pythia[_-]", "pythia-", raw)


def read_stats_file(path: Path) -> pd.DataFrame:
    """One checkpoint file -> stats rows."""
    m = _STATS_RE.match(path.name)
    if not m:
        raise PublishedFormatError(f"{path}: name does not match exp2_<model>_step<N>[.npy]")
    try:
        with open(path, "rb") as fh:
            arr = np.load(fh, allow_pickle=False)
    except Exception as exc:  # numpy raises several types for a bad file
        raise PublishedFormatError(f"{path}: not a numpy array file ({exc})") from None
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1] != 4:
        raise PublishedFormatError(f"{path}: expected shape (sequences, 4, layers), got {arr.shape}")
    n_seq, _, n_layers = arr.shape
    seq, layer = np.meshgrid(np.arange(n_seq), np.arange(n_layers), indexing="ij")
    step = int(m["step"])
    df = pd.DataFrame(
        {
            "model": _model_name(m["model"]),
            "step": step,
            "sequence": seq.ravel(),
            "layer": layer.ravel(),
            "top1": arr[:, 0, :].ravel(),
            "top2": arr[:, 1, :].ravel(),
            "top3": arr[:, 2, :].ravel(),
            "median": arr[:, 3, :].ravel(),
            "revision": f"step{step}",
            "source": SOURCE,
            "protocol": "seq_mean",
        }
    )
    return df


def read_params_file(path: Path, model: str) -> pd.DataFrame:
    """One ``layer_fit_params_<metric>.json`` -> fits rows (layer = position in the list)."""
    m = _PARAMS_RE.match(path.name)
    if not m:
        raise PublishedFormatError(f"{path}: name does not match layer_fit_params_<metric>.json")
    try:
        entries = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise PublishedFormatError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(entries, list):
        raise PublishedFormatError(f"{path}: expected a list with one entry per layer")
    rows = []
    for layer, entry in enumerate(entries):
        fit = entry.get("original", entry) if isinstance(entry, dict) else None
        if not isinstance(fit, dict) or "popt" not in fit:
            raise PublishedFormatError(f"{path}: entry {layer} has no 'original.popt'")
        names = fit.get("param_names") or ["A", "lambda", "gamma", "t0", "K"]
        popt = [float(v) for v in fit["popt"]]
        row: dict = {"model": model, "layer": layer, "metric": m["metric"], "curve": "eq9", "status": "ok"}
        pcov = np.asarray(fit.get("pcov") or np.full((len(popt), len(popt)), np.nan), dtype=float)
        for i, (name, value) in enumerate(zip(names, popt, strict=False)):
            key = _PARAM_ALIASES.get(name, name)
            row[key] = value
            var = pcov[i, i] if pcov.shape == (len(popt), len(popt)) else math.nan
            row[f"se_{key}"] = math.sqrt(var) if np.isfinite(var) and var >= 0 else None
        residuals = fit.get("residuals") or []
        row["n_points"] = len(residuals)
        row["r2"] = fit.get("r2")
        row["aic"] = fit.get("aic")
        if residuals:
            row["rmse"] = float(np.sqrt(np.mean(np.square(residuals))))
        row["message"] = f"imported from {path.name}"
        rows.append(row)
    return pd.DataFrame(rows)


def import_published(root: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read every stats and params file under ``root``; returns (stats, fits) tables."""
    root = Path(root)
    if not root.is_dir():
        raise PublishedFormatError(f"{root}: not a directory")
    stats_files = sorted(p for p in root.rglob("exp2_*") if p.is_file() and p.parent.name == "stats")
    params_files = sorted(p for p in root.rglob("layer_fit_params_*.json") if p.parent.name == "params")
    if not stats_files and not params_files:
        raise PublishedFormatError(
            f"{root}: no '<model>/stats/exp2_pythia_<size>_step<N>' or '<model>/params/layer_fit_params_<metric>.json' files"
        )
    stats = (
        conform(pd.concat([read_stats_file(p) for p in stats_files], ignore_index=True), StatsRow)
        if stats_files
        else empty(StatsRow)
    )
    fits_frames = []
    for p in params_files:
        model_dir = p.parent.parent.name
        model = _model_name(model_dir) if model_dir.startswith("pythia") else f"pythia-{model_dir}"
        fits_frames.append(read_params_file(p, model))
    fits = conform(pd.concat(fits_frames, ignore_index=True), FitRow) if fits_frames else empty(FitRow)
    stats = stats.sort_values(["model", "step", "sequence", "layer"]).reset_index(drop=True)
    return stats, fits
