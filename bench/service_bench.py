"""Latency of ``POST /predict`` on the served process vs a bare Starlette endpoint, over loopback.

    python -m bench.service_bench [--requests 400] [--concurrency 1,32] [--small]

Starts ``bentoml serve service.service:MAForecast`` (the same command ``maforecast serve`` runs)
on 127.0.0.1 and, beside it, a bare Starlette app under uvicorn whose one endpoint returns a
payload of the same size as the real answer. Both are driven by the same asyncio/httpx client at
each concurrency level; the table reports p50/p99 and their ratio. Targets: issue 5 (cached answers): p50 under
2x the bare endpoint, p99 under 50 ms at concurrency 32; issue 28 (new architectures, the default compact answer):
p50 at c=1 <= 2x bare + 1 ms, >= 300 answers/s at c=8 with no error, ``/predict_batch`` of 64 <= 150 ms, and the
default answer of a 32-layer design <= 40 KB (its full view beside it).

Rows ``repeat`` send the same architecture every time (the service answers from its cache, as a
design-review tool re-rendering a page would); rows ``distinct`` send a different architecture
each time (every request runs the predictor).

Needs a champion in the data home (``MAFORECAST_DATA_HOME``); when there is none (or with
``--bootstrap``) it runs ``maforecast bootstrap`` first (idempotent).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BODY = {
    "name": "bench-1b",
    "n_layers": 16,
    "d_model": 2048,
    "n_heads": 32,
    "n_kv_heads": 8,
    "d_ffn": 8192,
    "ffn_type": "glu",
    "activation": "silu",
    "norm_type": "rmsnorm",
    "precision_target": "int8_w8a8",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited ({proc.returncode}) before it was ready (see its log)")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} not ready after {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# ------------------------------------------------------------------------------------ bare app


def bare_app(payload_bytes: int):
    """Starlette app: POST /predict reads the JSON body and returns a fixed payload of that size."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    blob = json.dumps({"pad": "x" * max(payload_bytes - 11, 0)}).encode()

    async def predict(request: Request) -> Response:
        await request.json()
        return Response(blob, media_type="application/json")

    return Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/readyz", lambda r: Response("ok"))])


def run_bare(port: int, payload_bytes: int) -> None:
    import uvicorn

    uvicorn.run(bare_app(payload_bytes), host="127.0.0.1", port=port, log_level="warning", access_log=False)


# ------------------------------------------------------------------------------------ load


def _variant(i: int) -> dict:
    """A distinct, valid architecture per request (cache misses)."""
    heads = (8, 16, 32)[i % 3]
    return {**BODY, "name": f"bench-{i}", "n_layers": 8 + i % 24, "n_heads": heads, "n_kv_heads": heads,
            "d_ffn": 4096 + 64 * (i % 97)}


class Conn:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams.

    httpx spends milliseconds per 100 KB response on 2 cores, which would measure the client
    rather than the servers; this reads the status line, headers and Content-Length body only.
    """

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        await self.writer.drain()
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length, chunked = 0, False
        for line in lines[1:]:
            k, _, v = line.partition(":")
            k = k.strip().lower()
            if k == "content-length":
                length = int(v)
            elif k == "transfer-encoding" and "chunked" in v.lower():
                chunked = True
        if chunked:
            data = bytearray()
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                data += chunk[:-2]
            return status, bytes(data)
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()


async def drive(url: str, concurrency: int, n: int, distinct: bool, offset: int = 0) -> list[float]:
    """``n`` POSTs over ``concurrency`` keep-alive connections; per-request latencies in seconds."""
    from urllib.parse import urlsplit

    u = urlsplit(url)
    lat: list[float] = []
    bodies = [json.dumps(_variant(offset + i) if distinct else BODY).encode() for i in range(n)]
    conns = [Conn(u.hostname, u.port) for _ in range(concurrency)]
    counter = iter(range(n))

    async def worker(conn: Conn) -> None:
        for i in counter:
            t0 = time.perf_counter()
            status, data = await asyncio.wait_for(conn.post(u.path, bodies[i]), timeout=600)
            lat.append(time.perf_counter() - t0)
            if status != 200:
                raise SystemExit(f"{url}: HTTP {status}: {data[:300]!r}")

    try:
        # warm-up: open every connection (and, for the service, fill the cache for BODY)
        for c in conns:
            await c.post(u.path, json.dumps(BODY).encode())
        await asyncio.gather(*(worker(c) for c in conns))
    finally:
        for c in conns:
            await c.close()
    return lat


def batch_times(base: str, repeats: int = 5) -> dict[str, float]:
    """Median wall time of ``/predict_batch`` with 64 distinct architectures (full and summary view), until
    the last byte of the answer is read (the minimal client: httpx alone spends ~50 ms reading 7 MB)."""
    from urllib.parse import urlsplit

    u = urlsplit(base)

    async def timed(conn: Conn, body: bytes) -> tuple[float, int, bytes]:
        t0 = time.perf_counter()
        status, data = await asyncio.wait_for(conn.post("/predict_batch", body), timeout=600)
        return time.perf_counter() - t0, status, data

    async def run() -> dict[str, float]:
        out = {}
        conn = Conn(u.hostname, u.port)
        try:
            for k, view in enumerate(("compact", "summary", "full")):
                times = []
                for r in range(repeats):
                    archs = [_variant(500_000 + 1000 * r + i + 100 * k) for i in range(64)]
                    body = {"architectures": archs} if view == "compact" else {"architectures": archs, "view": view}
                    dt, status, data = await timed(conn, json.dumps(body).encode())
                    if status != 200:
                        raise SystemExit(f"/predict_batch answered {status}: {data[:300]!r}")
                    if r == 0 and len(json.loads(data)["results"]) != 64:
                        raise SystemExit("/predict_batch did not answer 64 results")
                    times.append(dt)
                out[f"/predict_batch 64 distinct, {view}" + (" (default)" if view == "compact" else "")] = statistics.median(times) * 1000
        finally:
            await conn.close()
        return out

    return asyncio.run(run())


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))] * 1000


def main(argv: list[str] | None = None) -> int:
    """``argv`` defaults to none (``python -m bench`` calls ``main()``); the CLI passes sys.argv."""
    argv = [] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=400, help="requests per measurement")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--bootstrap", action="store_true", help="run `maforecast bootstrap` first")
    ap.add_argument("--no-distinct", action="store_true", help="skip the cache-miss rows")
    ap.add_argument("--bare-server", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--payload-bytes", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.bare_server:
        run_bare(args.bare_server, args.payload_bytes)
        return 0

    import httpx

    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from maforecast.settings import get_settings
    from pipeline.bootstrap import _alias_version

    settings = get_settings()
    if args.bootstrap or _alias_version(settings, settings.model_alias) is None:
        print(f"no {settings.model_alias} in {settings.resolved_tracking_uri}: running `maforecast bootstrap` first", flush=True)
        subprocess.run([sys.executable, "-m", "maforecast.cli", "bootstrap"], check=True, cwd=ROOT)
    from service.cli import serve_command

    levels = [int(x) for x in args.concurrency.split(",")]
    svc_port, bare_port = free_port(), free_port()
    # server output goes to a file: an unread pipe fills up with access-log lines and blocks the server
    log_dir = Path(tempfile.mkdtemp(prefix="maforecast-bench-"))
    svc_log = open(log_dir / "service.log", "wb")  # noqa: SIM115 (closed in finally)
    svc = subprocess.Popen(serve_command("127.0.0.1", svc_port), cwd=ROOT, stdout=svc_log,
                           stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ})
    bare = None
    try:
        wait_ready(f"http://127.0.0.1:{svc_port}/readyz", svc)
        sample = httpx.post(f"http://127.0.0.1:{svc_port}/predict", json=BODY, timeout=60)
        if sample.status_code != 200:
            raise SystemExit(f"/predict answered {sample.status_code}: {sample.text[:300]}")
        size = len(sample.content)
        sizes = {(n, v): len(httpx.post(f"http://127.0.0.1:{svc_port}/predict" + (f"?view={v}" if v else ""),
                                        json={**BODY, "n_layers": n}, timeout=60).content)
                 for n in (16, 32) for v in ("", "full")}
        bare = subprocess.Popen([sys.executable, "-m", "bench.service_bench", "--bare-server", str(bare_port),
                                 "--payload-bytes", str(size)], cwd=ROOT, stdout=svc_log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        wait_ready(f"http://127.0.0.1:{bare_port}/readyz", bare)
        rows = []
        for c in levels:  # cached answers first, so cache-miss work does not disturb them
            n = max(args.requests, 4 * c)
            b = asyncio.run(drive(f"http://127.0.0.1:{bare_port}/predict", c, n, distinct=False))
            s = asyncio.run(drive(f"http://127.0.0.1:{svc_port}/predict", c, n, distinct=False))
            rows.append(("repeat", c, n, s, b))
        batch: dict[str, float] = {}
        if not args.no_distinct:
            for c in levels:
                nd = max(40, 8 * c)  # every one runs the predictor
                d = asyncio.run(drive(f"http://127.0.0.1:{svc_port}/predict", c, nd, distinct=True, offset=c * 100_000))
                rows.append(("distinct", c, nd, d, next(r[4] for r in rows if r[1] == c)))
            batch = batch_times(f"http://127.0.0.1:{svc_port}")
        access = "off" if os.environ.get("MAFORECAST_ACCESS_LOG", "1") == "0" else "on (MAFORECAST_ACCESS_LOG=0 turns it off)"
        print("\n/predict payload: " + "; ".join(f"{n} layers {v or 'compact (default)'} {b / 1024:.1f} KB"
                                                for (n, v), b in sizes.items()))
        print(f"/predict payload {size:,} bytes (the bare app returns as many); {os.cpu_count()} CPUs; client, service and bare app on one machine; "
              f"service access log {access}\n")
        head = f"{'body':9} {'conc':>4} {'n':>5} | {'svc p50':>8} {'svc p99':>8} | {'bare p50':>8} {'bare p99':>8} | {'p50 x':>6} {'p99 x':>6} | {'svc rps':>7}"
        print(head)
        print("-" * len(head))
        verdicts = []
        for kind, c, n, s, b in rows:
            sp50, sp99, bp50, bp99 = pct(s, 50), pct(s, 99), pct(b, 50), pct(b, 99)
            rps = n / sum(s) * c if s else 0.0
            print(f"{kind:9} {c:>4} {n:>5} | {sp50:8.2f} {sp99:8.2f} | {bp50:8.2f} {bp99:8.2f} | {sp50 / bp50:6.2f} {sp99 / bp99:6.2f} | {rps:7.0f}")
            if kind == "repeat" and c == max(levels):
                verdicts.append(f"p50 ratio at c={c}: {sp50 / bp50:.2f} (target < 2): {'PASS' if sp50 / bp50 < 2 else 'MISS'}")
                verdicts.append(f"p99 at c={c}: {sp99:.1f} ms (target < 50): {'PASS' if sp99 < 50 else 'MISS'}")
            if kind == "distinct" and c == 1:
                verdicts.append(f"new architecture p50 at c=1: {sp50:.2f} ms vs 2 x bare + 1 = {2 * bp50 + 1:.2f} ms: "
                                f"{'PASS' if sp50 <= 2 * bp50 + 1 else 'MISS'}")
            if kind == "distinct" and c == 8:
                verdicts.append(f"distinct forecasts/s at c=8: {rps:.0f} vs bare {n / sum(b) * c:.0f} (target >= 300, "
                                f"no error): {'PASS' if rps >= 300 else 'MISS'}")
        print("latencies in ms; ratio = service / bare; median of per-request latencies: "
              f"svc mean {statistics.mean(rows[0][3]) * 1000:.2f} ms at c={rows[0][1]}")
        for name, ms in batch.items():
            print(f"{name}: median of 5 requests {ms:.0f} ms")
        if "/predict_batch 64 distinct, compact (default)" in batch:
            ms = batch["/predict_batch 64 distinct, compact (default)"]
            verdicts.append(f"/predict_batch of 64 distinct, default view: {ms:.0f} ms (target <= 150): "
                            f"{'PASS' if ms <= 150 else 'MISS'}")
        kb = sizes[32, ""] / 1024
        verdicts.append(f"default answer of a 32-layer design: {kb:.1f} KB (full {sizes[32, 'full'] / 1024:.1f} KB; target "
                        f"<= 40): {'PASS' if kb <= 40 else 'MISS'}")
        for v in verdicts:
            print(v)
    finally:
        stop(svc)
        if bare is not None:
            stop(bare)
        svc_log.close()
        print(f"server logs: {log_dir / 'service.log'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
