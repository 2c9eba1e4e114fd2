"""service.repeat_cache in front of a small real Starlette app: what is kept, and when it is dropped."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from service.repeat_cache import RepeatCache


def make_app(generation: dict, **options):
    calls: list[bytes] = []

    async def echo(request: Request) -> Response:
        body = await request.body()
        calls.append(body)
        if body == b"bad":
            return JSONResponse({"error": "bad"}, status_code=400)
        return Response(b"answer:" + body + b":" + request.url.query.encode(), media_type="application/json")

    app = Starlette(routes=[Route("/predict", echo, methods=["POST"]), Route("/other", echo, methods=["POST"])])
    app.add_middleware(RepeatCache, paths=("/predict",), generation=lambda: generation["g"], **options)
    return TestClient(app), calls


def test_repeat_served_without_calling_the_app():
    client, calls = make_app({"g": 1})
    a = client.post("/predict?steps=1", content=b"x")
    b = client.post("/predict?steps=1", content=b"x")
    assert a.content == b.content == b"answer:x:steps=1"
    assert calls == [b"x"] and b.headers["x-maforecast-cache"] == "repeat"
    assert b.headers["content-type"] == a.headers["content-type"]
    client.post("/predict?steps=2", content=b"x")
    client.post("/predict?steps=1", content=b"y")
    client.post("/predict?steps=1", content=b"x", headers={"content-type": "text/plain"})
    assert len(calls) == 4  # query, body and content type are all part of the key


def test_errors_other_paths_and_no_predictor_are_not_cached():
    gen = {"g": None}
    client, calls = make_app(gen)
    for _ in range(2):
        client.post("/predict", content=b"x")  # no predictor loaded: nothing kept
        assert client.post("/predict", content=b"bad").status_code == 400
        client.post("/other", content=b"x")
    assert len(calls) == 6
    gen["g"] = 1
    for _ in range(2):
        assert client.post("/predict", content=b"bad").status_code == 400
    assert len(calls) == 8


def test_new_predictor_generation_drops_old_answers():
    gen = {"g": 1}
    client, calls = make_app(gen)
    client.post("/predict", content=b"x")
    client.post("/predict", content=b"x")
    gen["g"] = 2
    r = client.post("/predict", content=b"x")
    assert len(calls) == 2 and "x-maforecast-cache" not in r.headers


def test_bounded_entries_and_large_bodies_stream_through():
    client, calls = make_app({"g": 1}, max_entries=2, max_request_bytes=8)
    for body in (b"a", b"b", b"c", b"a"):  # a was evicted by c
        client.post("/predict", content=body)
    assert calls == [b"a", b"b", b"c", b"a"]
    big = b"z" * 100
    r1 = client.post("/predict", content=big)
    r2 = client.post("/predict", content=big)
    assert r1.content == r2.content == b"answer:" + big + b":" and calls.count(big) == 2
