"""A pure-ASGI base for middlewares that rewrite the body of some responses."""

from __future__ import annotations

from typing import Any


class BodyRewriteMiddleware:
    """Buffer the responses ``applies(scope)`` and ``wants(status)`` select, and replace their body
    with ``rewrite(body)`` (``None`` keeps it). Everything else streams through untouched."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def applies(self, scope: dict) -> bool:
        raise NotImplementedError

    def wants(self, status: int) -> bool:
        raise NotImplementedError

    def rewrite(self, body: bytes) -> bytes | None:
        raise NotImplementedError

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
