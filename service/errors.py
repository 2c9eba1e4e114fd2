"""Make every 4xx answer name the offending field(s) in one readable line.

BentoML answers a pydantic validation failure with 400 and
``{"error": "1 validation error for ArchitectureIODescriptor", "detail": [...]}``: the field
names are only inside ``detail``. ``FieldErrorMiddleware`` rewrites such bodies (and only those:
400 responses with a pydantic ``detail`` list) to::

    {"error": "invalid request: d_model: d_model (770) must be divisible by n_heads (12)",
     "fields": ["d_model", "n_heads"], "detail": [...]}

Model-level errors (``loc`` empty) name their fields in the message; those names are picked out
of the message so ``fields`` is never empty when a field is to blame.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from predictor.architecture import Architecture

_FIELD_NAMES = frozenset(Architecture.model_fields)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def describe(errors: Iterable[dict[str, Any]], known: frozenset[str] = _FIELD_NAMES) -> tuple[str, list[str]]:
    parts: list[str] = []
    fields: list[str] = []
    for err in errors:
        if not isinstance(err, dict):
            continue
        loc = [str(p) for p in err.get("loc") or ()]
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "json_invalid":
            parts.append(f"body: {msg}")
            fields.append("body")
            continue
        if loc:
            name = ".".join(loc)
            fields.append(name)
            if err.get("type") == "missing":
                msg = "field required (missing)"
            elif err.get("type") == "extra_forbidden":
                msg = "unknown field (not in the schema)"
            parts.append(f"{name}: {msg}")
        else:
            named = [w for w in dict.fromkeys(_WORD.findall(msg)) if w in known]
            fields.extend(named)
            parts.append(f"{named[0]}: {msg}" if named else msg)
    return "invalid request: " + "; ".join(parts), list(dict.fromkeys(fields))


def rewrite(body: bytes) -> bytes | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("detail"), list):
        return None
    message, fields = describe(data["detail"])
    return json.dumps({"error": message, "fields": fields, "detail": data["detail"]}).encode()


class FieldErrorMiddleware:
    """Pure ASGI: buffers only 400 responses and rewrites pydantic validation bodies."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":  # validation errors come from POSTs
            await self.app(scope, receive, send)
            return
        start: dict | None = None
        chunks: list[bytes] = []

        async def wrapped(message: dict) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                if message["status"] == 400:
                    start = message
                    return
                await send(message)
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            raw = b"".join(chunks)
            new = rewrite(raw)
            out = raw if new is None else new
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(out)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": out})

        await self.app(scope, receive, wrapped)
