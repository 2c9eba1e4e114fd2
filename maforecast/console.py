"""The terminal every command prints its tables to."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


def console() -> Console:
    """Rich console at the terminal's width; piped output (a CI log, a file, a review tool) gets $COLUMNS or 180
    columns, so tables are not wrapped and intervals not cut to an ellipsis at rich's default of 80."""
    from rich.console import Console  # rich only where a table is printed: `maforecast --help` stays fast

    if sys.stdout.isatty():
        return Console()
    return Console(width=int(os.environ.get("COLUMNS") or 180))
