"""An output file written whole: a crash or a second writer never leaves half of it, and others may read it as
the umask allows."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to a unique temp file beside ``path``, then rename it over ``path`` (atomic on POSIX):
    readers see the old file or the new one, and two writers never share a temp file.

    The temp file is created with mode 0o666 like ``open(path, "w")`` (the kernel applies the umask and
    any default ACL), not 0o600 like ``tempfile.mkstemp``: reports and plans are for others to read.
    """
    path = Path(path)
    fd, tmp = _create_unique(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _create_unique(path: Path) -> tuple[int, Path]:
    """Create and open a new file ``.NAME.<random>.tmp`` beside ``path`` (O_EXCL: never another's)."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no unused temporary name beside {path}")
