"""A pure-ASGI middleware that rewrites the body of some responses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class BodyRewriteMiddleware:
    """Buffer the responses selected by ``applies(scope)`` and ``wants(status)`` and replace their
    body with ``rewrite(body)`` (``None`` keeps it). Everything else streams through untouched."""

    def __init__(
        self,
        app: Any,
        applies: Callable[[dict], bool],
        wants: Callable[[int], bool],
        rewrite: Callable[[bytes], bytes | None],
    ) -> None:
        self.app = app
        self.applies, self.wants, self.rewrite = applies, wants, rewrite

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.applies(scope):
            await self.app(scope, receive, send)
            return
        start: dict | None = None
        chunks: list[bytes] = []

        async def rewriting_send(message: dict) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                if self.wants(message["status"]):
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
            new = self.rewrite(raw)
            out = raw if new is None else new
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(out)).encode())]})
            await send({"type": "http.response.body", "body": out})

        await self.app(scope, receive, rewriting_send)
