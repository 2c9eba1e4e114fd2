"""The reference of the architecture and plan fields, generated from the schema (``Architecture``) and from what
the forecast reads, so the README's table cannot drift from either (``tests/test_docs.py`` checks it)."""

from __future__ import annotations

import typing
from typing import Any, get_args, get_origin

from pydantic.fields import FieldInfo

from predictor.architecture import Architecture
from predictor.effects import BASES
from predictor.whatif import DESIGN_FIELDS, LEVEL_FIELDS, PLAN_FIELDS, SIZE_FIELDS

__all__ = ["BEGIN", "END", "field_reference", "replace_block", "role"]

BEGIN, END = "<!-- fields:begin (generated: python -m predictor.fields --write README.md) -->", "<!-- fields:end -->"


def role(name: str) -> str:
    """How the forecast uses a field: what a change of it is answered from."""
    roles = []
    if name in BASES or name == "weight_decay":
        roles.append("controlled comparisons")
    if name in DESIGN_FIELDS:
        roles.append("design term (association across trained models)")
    if name in SIZE_FIELDS - {"seq_len"}:  # the context length enters no term (a change answers not_modelled)
        roles.append("size")
    if name in PLAN_FIELDS:
        roles.append("training clock")
    if name in LEVEL_FIELDS:
        roles.append("level (lineage / statistic)")
    if name == "precision_target":
        roles.append("which formats are the target (gate, plan)")
    return ", ".join(roles) or "not modelled (recorded; a change answers `not_modelled`)"


def _type(f: FieldInfo) -> str:
    ann: Any = f.annotation
    args = [a for a in get_args(ann) if a is not type(None)]
    if get_origin(ann) is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in get_args(ann))
    if args and all(get_origin(a) is typing.Literal for a in args):
        return " \\| ".join(f"`{v}`" for a in args for v in get_args(a))
    if args:
        return " or ".join(getattr(a, "__name__", str(a)) for a in args)
    return getattr(ann, "__name__", str(ann))


def _default(f: FieldInfo) -> str:
    if f.is_required():
        return "**required**"
    return f"`{f.default}`" if f.default is not None else "(derived)"


def field_reference() -> str:
    """The Markdown table: field, type or values, default, meaning, how the forecast uses it."""
    rows = ["| field | type / values | default | meaning | forecast uses it as |", "|---|---|---|---|---|"]
    for name, f in Architecture.model_fields.items():
        desc = (f.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{name}` | {_type(f)} | {_default(f)} | {desc} | {role(name)} |")
    return "\n".join(rows)


def replace_block(text: str) -> str:
    """``text`` with the generated table between the markers."""
    i, j = text.index(BEGIN), text.index(END)
    return text[: i + len(BEGIN)] + "\n" + field_reference() + "\n" + text[j:]


if __name__ == "__main__":
    import argparse
    from pathlib import Path

    ap = argparse.ArgumentParser(description="Print (or write into a file between its markers) the field reference.")
    ap.add_argument("--write", type=Path, default=None)
    a = ap.parse_args()
    if a.write:
        a.write.write_text(replace_block(a.write.read_text()))
    else:
        print(field_reference())
