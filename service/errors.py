"""Make every 4xx answer name the offending field(s) in one readable line.

The endpoints raise BentoML's own exception types (``BadInput`` 400, ``UnprocessableEntity``
422) with messages that start with the field (``steps: ...``). BentoML answers them, and pydantic
validation failures, with bodies that carry no field list: ``[{"error": "steps: ..."}]`` (a
one-element list) and ``{"error": "1 validation error for ...", "detail": [...]}`` (the names
only inside ``detail``). This is the one thing BentoML cannot be configured to do, so
``FieldErrorMiddleware`` rewrites those 4xx bodies (and only those) to::

    {"error": "invalid request: d_model: d_model (770) must be divisible by n_heads (12)",
     "fields": ["d_model", "n_heads"], "detail": [...]}

Model-level errors (``loc`` empty) name their fields in the message; those names are picked out
of the message so ``fields`` is never empty when a field is to blame.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from typing import Any

from bentoml.exceptions import BentoMLException
from pydantic import ValidationError

from predictor.architecture import Architecture
from service.asgi import BodyRewriteMiddleware

_FIELD_NAMES = frozenset(Architecture.model_fields)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _named(message: str, known: frozenset[str]) -> list[str]:
    return [w for w in dict.fromkeys(_WORD.findall(message)) if w in known]


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
            named = _named(msg, known)
            fields.extend(named)
            parts.append(f"{named[0]}: {msg}" if named else msg)
    fields = list(dict.fromkeys(fields))
    hf = HF_CONFIG_KEYS & {f.rsplit(".", 1)[-1] for f in fields}
    if len(hf) >= 2:  # a config.json posted to /predict: say where it goes before listing 20 unknown fields
        return ("invalid request: this looks like a Hugging Face config.json (" + ", ".join(sorted(hf)) + "): POST it to "
                "/predict_hf_config, or send the /predict schema (GET /docs). " + "; ".join(parts)), fields
    return "invalid request: " + "; ".join(parts), fields


# keys every Hugging Face decoder config has and the /predict schema does not
HF_CONFIG_KEYS = frozenset({"model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                            "architectures", "max_position_embeddings", "torch_dtype"})


_LEAD = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*(?:\[\d+\])?(?:\.[A-Za-z0-9_]+)*): ")


def message_fields(message: str, known: frozenset[str] = _FIELD_NAMES) -> list[str]:
    """The field a message names: its leading ``field: `` (``architectures[3]`` -> ``architectures.3``),
    else the schema field names that occur in it."""
    m = _LEAD.match(message)
    if m:
        return [m.group(1).replace("[", ".").replace("]", "")]
    return _named(message, known)


def rewrite(body: bytes) -> bytes | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict) and "error" in data[0]:
        message = str(data[0]["error"])  # a BentoML exception's 4xx body
        return json.dumps({"error": message, "fields": message_fields(message)}).encode()
    if not isinstance(data, dict) or not isinstance(data.get("detail"), list):
        return None
    message, fields = describe(data["detail"])
    return json.dumps({"error": message, "fields": fields, "detail": data["detail"]}).encode()


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token: type and subtype


def content_type_error(scope: dict) -> tuple[int, str] | None:
    """(status, message) when a POST's Content-Type is not JSON; None when it is, or is absent.

    BentoML cannot be told which media types an API takes: it picks a deserializer by the header
    and falls back to JSON for unknown types, but ``multipart/form-data`` and
    ``application/x-www-form-urlencoded`` go to its form parser, whose errors (a multipart body
    without a boundary, or not multipart at all) it does not map and answers with a 500. Every
    endpoint here takes a JSON body (that is what the OpenAPI document declares), so anything
    else is refused up front: 400 for a header that is not a ``type/subtype`` media type, 415 for
    any other media type. A missing or empty header is JSON, as BentoML reads it.
    """
    raw = next((v for k, v in scope.get("headers", ()) if k.lower() == b"content-type"), b"")
    text = raw.decode("latin-1").strip()
    media = text.split(";", 1)[0].strip()
    if not media:
        return None
    kind, _, sub = media.partition("/")
    if not (_TOKEN.fullmatch(kind) and _TOKEN.fullmatch(sub)):
        return 400, f"malformed Content-Type {text!r}: expected a media type such as application/json"
    if media.lower() == "application/json":
        return None
    return 415, f"unsupported Content-Type {text!r}: this endpoint takes application/json"


class FieldErrorMiddleware(BodyRewriteMiddleware):
    """Rewrites the pydantic validation bodies of 400 answers (validation errors come from POSTs),
    and refuses a POST whose Content-Type is not JSON (see :func:`content_type_error`)."""

    def __init__(self, app: Any) -> None:
        super().__init__(app, applies=lambda scope: scope.get("method") == "POST", wants=lambda status: 400 <= status < 500,
                         rewrite=rewrite)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        refused = content_type_error(scope) if scope["type"] == "http" and scope.get("method") == "POST" else None
        if refused is None:
            await super().__call__(scope, receive, send)
            return
        status, message = refused
        body = json.dumps({"error": message, "fields": ["Content-Type"]}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class QuietValidationErrors(logging.Filter):
    """BentoML logs every rejected request at ERROR with a full traceback; a 4xx for bad input is
    not a server error. Such records become one INFO line naming the path and the problem."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if isinstance(record.exc_info, tuple) else None
        if isinstance(exc, BentoMLException) and exc.error_code.value < 500:
            message = str(exc)
        elif isinstance(exc, ValidationError):
            try:
                message, _ = describe(exc.errors(include_context=False, include_input=False))
            except Exception:  # never let logging fail a request
                message = str(exc).splitlines()[0]
        else:
            return True
        path = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        record.msg, record.args = "rejected request on %s: %s", (path, message.removeprefix("invalid request: "))
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def quiet_validation_logs() -> None:
    """Install :class:`QuietValidationErrors` on BentoML's request-exception logger (idempotent)."""
    log = logging.getLogger("bentoml._internal.server.http_app")
    if not any(isinstance(f, QuietValidationErrors) for f in log.filters):
        log.addFilter(QuietValidationErrors())
