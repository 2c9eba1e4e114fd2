"""The evidence the forecast engine learns from, built once from the stats table.

- ``layers``: one row per (model, protocol, layer, step) with log10 top-1 |h| (``y_abs``) and
  log10 top-1/median (``y_ratio``, missing where the median is); ``step`` is missing for fully
  trained models. Rows are averaged over probe sequences first (Eq. 8 of 2508.03616).
- ``anchors``: model-level figures quoted from papers (``maforecast/data/anchors.csv``).
- ``peers``: the peer studies' grids (``peers/emergence_evidence.csv``), for the plan effects.
- ``controlled``: the controlled comparisons (``controlled_effects.csv``), for what a design change does
  (``predictor.effects``).

Every row carries its model's ``family`` (variants that share weights), the unit of grouped
cross-validation, and models without a known architecture are set aside (``unknown``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from maforecast.tables import DEFAULT_PROTOCOL, digest
from predictor.architecture import Architecture, family_of
from predictor.lineage import lineage_of

__all__ = ["Evidence", "aggregate_evidence"]


@dataclass
class Evidence:
    layers: pd.DataFrame
    anchors: pd.DataFrame
    peers: pd.DataFrame
    archs: dict[str, Architecture]
    unknown: list[str] = field(default_factory=list)
    controlled: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def models(self) -> list[str]:
        return sorted(set(self.layers["model"]) | set(self.anchors["model"]))

    @property
    def families(self) -> dict[str, str]:
        return {m: family_of(m) for m in self.models}

    @property
    def lineages(self) -> dict[str, str]:
        """Model -> lineage (``predictor.lineage.lineage_of``: declared, bundled, else the model itself)."""
        return {m: lineage_of(m, self.archs.get(m)) for m in self.models}

    def without(self, models: set[str]) -> Evidence:
        """The evidence with every row of ``models`` removed (a grouped-CV training part)."""
        return Evidence(
            self.layers[~self.layers["model"].isin(models)].reset_index(drop=True),
            self.anchors[~self.anchors["model"].isin(models)].reset_index(drop=True),
            self.peers,
            {m: a for m, a in self.archs.items() if m not in models},
            self.unknown,
            self.controlled,
        )

    def digest(self) -> str:
        d = digest(self.layers[["model", "protocol", "layer", "step", "y_abs", "y_ratio"]].fillna(-999.0))
        return d if self.controlled.empty else digest(pd.DataFrame({"d": [d], "c": [digest(self.controlled.astype(str))]}))

    def describe(self) -> dict[str, int]:
        final = self.layers[self.layers["step"].isna()]
        traj = self.layers[self.layers["step"].notna()]
        return {
            "models": len(self.models),
            "families": len(set(self.families.values())),
            "lineages": len(set(self.lineages.values())),
            "trained_models": int(final["model"].nunique()),
            "checkpoint_models": int(traj["model"].nunique()),
            "layer_rows": len(self.layers),
            "anchors": len(self.anchors),
            **{f"models_{p}": int(self.layers.loc[self.layers["protocol"] == p, "model"].nunique())
               for p in sorted(set(self.layers["protocol"]))},
        }


def _log10(x: pd.Series) -> pd.Series:
    x = pd.to_numeric(x, errors="coerce").astype(float)
    return np.log10(x.where(x > 0))


def aggregate_evidence(stats: pd.DataFrame, archs: dict[str, Architecture], peers: pd.DataFrame,
                       anchors: pd.DataFrame, controlled: pd.DataFrame | None = None) -> Evidence:
    """Aggregate a stats table (any mix of sources and protocols) into the engine's evidence
    (``registry.reference.build_evidence`` supplies the bundled architectures, peers and anchors)."""
    s = stats.copy()
    s["protocol"] = s["protocol"].astype("string").fillna(DEFAULT_PROTOCOL).astype(str) if "protocol" in s else DEFAULT_PROTOCOL
    s["step_key"] = pd.to_numeric(s["step"], errors="coerce").fillna(-1.0)
    s["revision"] = s["revision"].astype("string").fillna("")
    keys = ["model", "protocol", "step_key", "layer"]
    # mean over probe sequences (Eq. 8), then the larger of two runs of one checkpoint (2503.22329
    # measured each model with and without a BOS token: with it, Gemma's peaks are 3-50x larger)
    g = s.groupby([*keys, "revision"], as_index=False).agg(top1=("top1", "mean"), median=("median", "mean"))
    g = g.groupby(keys, as_index=False).agg(top1=("top1", "max"), median=("median", "mean"))
    g["step"] = g["step_key"].where(g["step_key"] >= 0)
    g["y_abs"] = _log10(g["top1"])
    g["y_ratio"] = _log10(g["top1"] / g["median"])
    g["layer"] = g["layer"].astype(int)
    known = g["model"].isin(set(archs))
    unknown = sorted(set(g.loc[~known, "model"]))
    g = g[known & g["y_abs"].notna()].copy()
    g["family"] = g["model"].map(family_of)
    g["n_layers"] = g["model"].map(lambda m: archs[m].n_layers)
    g = g[g["layer"] < g["n_layers"]]
    layers = g[["model", "family", "protocol", "step", "layer", "n_layers", "y_abs", "y_ratio"]].reset_index(drop=True)
    anchors = anchors[anchors["model"].isin(set(archs)) & ~anchors["model"].isin(set(layers.loc[layers["y_ratio"].notna(), "model"]))]
    return Evidence(layers, anchors.reset_index(drop=True), peers, dict(archs), unknown,
                    pd.DataFrame() if controlled is None else controlled)
