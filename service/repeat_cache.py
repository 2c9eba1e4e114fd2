"""Answer byte-identical repeats of a forecast request without re-entering BentoML's endpoint.

Design-review tools re-send the same architecture whenever a page is rendered. The engine already
caches forecasts by architecture, but a cached answer still pays for BentoML's endpoint machinery
(routing, request context, body validation, dispatch): about half of the in-process cost of a
repeat. This pure-ASGI middleware sits inside BentoML's metrics, tracing, access-log and
concurrency middlewares (so every request is still counted, logged and limited) and serves a
repeat from the bytes of the earlier 200 answer to the same (predictor, path, query, content type,
body). Only successful answers are kept; anything else, and every first request, goes through the
endpoint as usual, so validation and errors are unchanged.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Any

HIT_HEADER = (b"x-maforecast-cache", b"repeat")  # marks answers served by this cache


def _header(scope: dict, name: bytes) -> bytes:
    for k, v in scope.get("headers") or ():
        if k.lower() == name:
            return v
    return b""


class RepeatCache:
    """LRU of successful answers keyed by the exact request; ``generation()`` names the loaded
    predictor (``None`` while none is loaded: nothing is cached or served then)."""

    def __init__(
        self,
        app: Any,
        paths: Iterable[str] = ("/predict",),
        generation: Callable[[], Hashable | None] = lambda: None,
        max_entries: int = 256,
        max_request_bytes: int = 64 * 1024,
        max_response_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.app = app
        self.paths = frozenset(paths)
        self.generation = generation
        self.max_entries = max_entries
        self.max_request_bytes = max_request_bytes
        self.max_response_bytes = max_response_bytes
        # touched only from the event loop's thread, so no lock
        self._entries: OrderedDict[tuple, tuple[list[tuple[bytes, bytes]], bytes]] = OrderedDict()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") not in self.paths:
            await self.app(scope, receive, send)
            return
        gen = self.generation()
        if gen is None:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # client went away: let the app see it
                await self.app(scope, _replay(chunks, message, receive), send)
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_request_bytes:  # too big to key on: pass it (and the rest) through
                await self.app(scope, _replay(chunks, None, receive, more=more), send)
                return
        body = b"".join(chunks)
        key = (gen, scope["path"], scope.get("query_string", b""), _header(scope, b"content-type"), body)
        hit = self._entries.get(key)
        if hit is not None:
            self._entries.move_to_end(key)
            headers, payload = hit
            await send({"type": "http.response.start", "status": 200, "headers": [*headers, HIT_HEADER]})
            await send({"type": "http.response.body", "body": payload})
            return
        await self.app(scope, _replay([body], None, receive), self._recorder(key, send))

    def _recorder(self, key: tuple, send: Any) -> Callable[[dict], Any]:
        state: dict[str, Any] = {"keep": False, "headers": [], "parts": [], "size": 0}

        async def recording_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                state["keep"] = message["status"] == 200
                state["headers"] = [
                    (k, v) for k, v in message.get("headers", []) if not k.lower().startswith(b"x-bentoml-")
                ]
            elif message["type"] == "http.response.body" and state["keep"]:
                part = message.get("body", b"")
                state["size"] += len(part)
                if state["size"] > self.max_response_bytes:
                    state["keep"], state["parts"] = False, []
                else:
                    state["parts"].append(part)
                    if not message.get("more_body"):
                        self._store(key, state["headers"], b"".join(state["parts"]))
            await send(message)

        return recording_send

    def _store(self, key: tuple, headers: list[tuple[bytes, bytes]], payload: bytes) -> None:
        self._entries[key] = (headers, payload)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


def _replay(chunks: list[bytes], pending: dict | None, receive: Any, more: bool = False) -> Callable[[], Any]:
    """A ``receive`` that first returns what was already read, then defers to the real one."""
    queue: list[dict] = [{"type": "http.request", "body": b"".join(chunks), "more_body": more}]
    if pending is not None:
        queue.append(pending)

    async def replayed() -> dict:
        if queue:
            return queue.pop(0)
        return await receive()

    return replayed
