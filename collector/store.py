"""The stats table on disk: idempotent, atomic appends keyed by (model, revision, probe digest, source).

Readers never see a half-written file (write to temp + rename; ``read_table`` reads through one open
file, so a rename meanwhile cannot mix two files), and re-importing or re-collecting
replaces the same keys instead of duplicating rows. Concurrent writers (several ``collect``
processes, an import) each hold the table's file lock from the read to the rename, so none
overwrites rows another just wrote.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from maforecast.tables import StatsRow, conform, empty, locked, read_table, write_table

KEY = ["model", "revision", "probe_digest", "source"]


def load(path: Path) -> pd.DataFrame:
    return read_table(path, StatsRow) if Path(path).exists() else empty(StatsRow)


def upsert(path: Path, rows: pd.DataFrame) -> tuple[int, int]:
    """Replace rows with the same checkpoint key, append the rest. Returns (written, replaced)."""
    new = conform(rows, StatsRow)
    with locked(path):
        old = load(path)
        if len(old) and len(new):
            keys_new = new[KEY].astype(str).drop_duplicates()
            merged = old[KEY].astype(str).merge(keys_new, how="left", indicator=True)
            keep = (merged["_merge"] == "left_only").to_numpy()
            replaced = int((~keep).sum())
            old = old[keep]
        else:
            replaced = 0
        frames = [f for f in (old, new) if len(f)]
        out = pd.concat(frames, ignore_index=True) if frames else empty(StatsRow)
        write_table(out, path, StatsRow)
    return len(new), replaced
