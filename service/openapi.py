"""Serve ``/docs.json`` as valid OpenAPI 3.0.

BentoML declares ``openapi: 3.0.2`` but embeds pydantic's JSON Schema 2020-12 output: numeric
``exclusiveMinimum``, ``anyOf [X, {"type": "null"}]`` for optional fields (and, in request bodies,
only ``X`` with ``default: null`` after its own flattening), ``const``. OpenAPI 3.0 tools (client
generators, validators, schemathesis) reject or misread those. ``to_openapi30`` rewrites them to
the 3.0 forms (``minimum`` + ``exclusiveMinimum: true``, ``nullable: true``, ``enum``); the
middleware applies it to the document BentoML serves, leaving every other route untouched.
"""

from __future__ import annotations

import json
from typing import Any

from service.asgi import BodyRewriteMiddleware

_NULL = {"type": "null"}
_DATA = frozenset({"default", "example", "enum"})  # values, not schemas: left as they are
_MAPPINGS = frozenset({"properties", "patternProperties", "$defs", "definitions", "schemas"})  # name -> schema
DOC_PATHS = frozenset({"/docs.json"})


def to_openapi30(node: Any) -> Any:
    """A copy of ``node`` with JSON Schema 2020-12 constructs rewritten to OpenAPI 3.0."""
    if isinstance(node, list):
        return [to_openapi30(x) for x in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    for combiner in ("anyOf", "oneOf"):
        options = node.get(combiner)
        if isinstance(options, list) and _NULL in options:
            rest = [o for o in options if o != _NULL]
            del node[combiner]
            if len(rest) == 1 and "$ref" in rest[0]:
                node["allOf"] = rest  # 3.0 ignores siblings of $ref; allOf keeps `nullable` meaningful
            elif len(rest) == 1:
                node = {**rest[0], **node}
            elif rest:
                node[combiner] = rest
            node["nullable"] = True
    node = {k: _walk(k, v) for k, v in node.items()}
    for key, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = node.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            node[bound], node[key] = value, True
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if node.get("type") == "null":
        node.pop("type")
        node["nullable"] = True
    if "default" in node and node["default"] is None and ("type" in node or "allOf" in node or "$ref" in node):
        node["nullable"] = True  # an optional field BentoML flattened to its non-null branch
        if "$ref" in node:
            node["allOf"] = [{"$ref": node.pop("$ref")}]
    if isinstance(node.get("examples"), list):
        examples = node.pop("examples")
        if examples:
            node.setdefault("example", examples[0])
    return node


def _walk(key: str, value: Any) -> Any:
    if key in _DATA:
        return value
    if key in _MAPPINGS and isinstance(value, dict):  # names here are field names, never keywords
        return {name: to_openapi30(schema) for name, schema in value.items()}
    return to_openapi30(value)


def _rewrite_doc(body: bytes) -> bytes | None:
    try:
        return json.dumps(to_openapi30(json.loads(body))).encode()
    except ValueError:
        return None


class OpenAPI30Middleware(BodyRewriteMiddleware):
    """Rewrites the body of ``GET /docs.json`` with :func:`to_openapi30`."""

    def __init__(self, app: Any) -> None:
        super().__init__(app, applies=lambda scope: scope.get("method") == "GET" and scope.get("path") in DOC_PATHS,
                         wants=lambda status: status == 200, rewrite=_rewrite_doc)
