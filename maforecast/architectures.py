"""The architectures of the runs a user measured (``maforecast collect --arch``, ``maforecast monitor``).

A measured run joins the evidence only with its architecture (and, through it, the lineage it belongs to):
this table keeps one architecture per series name, as the plain JSON object the user gave, in the data home
next to the stats table. Writers hold the table's lock from the read to the atomic rename, so two processes
recording at once lose nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

from maforecast.errors import UserError
from maforecast.files import write_text_atomic
from maforecast.tables import locked

__all__ = ["load_architectures", "record_architecture"]


def load_architectures(path: str | Path) -> dict[str, dict]:
    """Series name -> architecture (a JSON object); empty when nothing was recorded."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); fix or remove it") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected an object of series name -> architecture")
    return data


def record_architecture(path: str | Path, model: str, arch: dict) -> bool:
    """Record (or replace) ``model``'s architecture; True when the table changed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with locked(path):
        data = load_architectures(path)
        if data.get(model) == arch:
            return False
        data[model] = arch
        write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True))
    return True
