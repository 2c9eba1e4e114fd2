"""Load test of ``POST /predict`` on a real ``bentoml serve`` process, over loopback only.

    python -m bench load                       # defaults: step concurrency, then 60 s at the best level
    python -m bench.load_bench --duration 60 --levels 1,2,4,8,16 --step-seconds 8 --workers 1

A bounded closed-loop generator (asyncio + aiohttp, ``c`` connections, each sending its next
request when the previous one is answered) drives the service that ``maforecast serve`` runs, on
127.0.0.1 and a free port. It first steps the concurrency (``--levels``, ``--step-seconds`` each)
and picks the lowest level that reaches 95 % of the best throughput with no error (more
connections after that only add queueing delay), then holds that level for ``--duration`` seconds
and reports the rate, p50/p90/p99/max latency and the error count (any non-200 or transport
error; it must be 0). Every loop stops at its deadline or after ``--max-requests``.

Bodies: ``distinct`` (default) sends a different architecture every request (sizes, heads, FFN,
planned steps drawn from a seeded generator), so every request runs the predictor and the
service's answer cache never helps; ``repeat`` sends one body (cache hits: the upper bound).

The generator and the server share the machine's cores: the rate measured is what this box
sustains end to end, not the server alone. Needs a champion in the data home
(``MAFORECAST_DATA_HOME``, default ``./.maforecast``); without one it runs ``maforecast bootstrap``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def architectures(seed: int = 0):
    """An endless stream of distinct, valid architectures (Pythia-like and Llama-like)."""
    rng = random.Random(seed)
    i = 0
    while True:
        i += 1
        heads = rng.choice([4, 8, 12, 16, 32])
        head_dim = rng.choice([32, 64, 128])
        d = heads * head_dim
        glu = rng.random() < 0.5
        body = {
            "name": f"load-{i}",
            "n_layers": rng.randint(4, 40),
            "d_model": d,
            "n_heads": heads,
            "d_ffn": d * (rng.choice([8, 11]) // 3 if glu else 4),
            "total_steps": rng.randint(20_000, 300_000),
        }
        if glu:
            body.update(ffn_type="glu", activation="silu", norm_type="rmsnorm", n_kv_heads=max(1, heads // rng.choice([1, 2, 4])))
        yield body


REPEAT_BODY = {"name": "neox-400m", "n_layers": 24, "d_model": 1024, "n_heads": 16, "d_ffn": 4096, "total_steps": 143000}


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


async def drive(url: str, concurrency: int, seconds: float, bodies, max_requests: int) -> dict:
    """Closed loop: ``concurrency`` clients, each one request at a time, until the deadline."""
    import aiohttp

    latencies: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    deadline = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=60)

    async def client(session):
        nonlocal sent
        while time.monotonic() < deadline and sent < max_requests:
            sent += 1
            body = json.dumps(next(bodies)).encode()
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=body, headers={"content-type": "application/json"}) as r:
                    await r.read()
                    status = r.status
            except (TimeoutError, aiohttp.ClientError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            if status == 200:
                latencies.append(time.perf_counter() - t0)
            else:
                errors[f"http {status}"] = errors.get(f"http {status}", 0) + 1

    conn = aiohttp.TCPConnector(limit=concurrency)
    t_start = time.monotonic()
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    elapsed = time.monotonic() - t_start
    lat = sorted(latencies)
    return {
        "concurrency": concurrency, "seconds": round(elapsed, 1), "ok": len(lat), "errors": sum(errors.values()),
        "error_kinds": errors, "rate": len(lat) / elapsed if elapsed else 0.0,
        "p50_ms": percentile(lat, 50) * 1e3, "p90_ms": percentile(lat, 90) * 1e3,
        "p99_ms": percentile(lat, 99) * 1e3, "max_ms": (lat[-1] * 1e3) if lat else float("nan"),
    }


def row(r: dict, label: str) -> str:
    return (f"| {label} | {r['concurrency']} | {r['seconds']:.0f} | {r['ok']} | {r['rate']:.1f} | {r['p50_ms']:.0f} | "
            f"{r['p90_ms']:.0f} | {r['p99_ms']:.0f} | {r['max_ms']:.0f} | {r['errors']} |")


HEADER = ("| phase | concurrency | s | requests | req/s | p50 ms | p90 ms | p99 ms | max ms | errors |\n"
          "|---|---|---|---|---|---|---|---|---|---|")


def ensure_champion(env: dict) -> None:
    exe = Path(sys.executable).with_name("maforecast")
    t0 = time.perf_counter()
    r = subprocess.run([str(exe), "bootstrap"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if r.returncode:
        raise RuntimeError(f"maforecast bootstrap failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    print(f"bootstrap: {time.perf_counter() - t0:.1f}s ({r.stdout.strip().splitlines()[-1]})", flush=True)


def start_server(env: dict, port: int, workers: int | None, log_path: Path) -> subprocess.Popen:
    from service.cli import serve_command

    env = {**env, "MAFORECAST_WORKERS": str(workers)} if workers else env
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(serve_command("127.0.0.1", port), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def stop_server(proc: subprocess.Popen) -> None:
    """SIGINT (graceful), then SIGKILL of the whole process group (workers included)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 240) -> float:
    import httpx

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"bentoml serve exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{base}/readyz not ready within {timeout}s")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of the sustained run")
    ap.add_argument("--levels", default="1,2,4,8,16", help="concurrency levels to step through")
    ap.add_argument("--step-seconds", type=float, default=8.0)
    ap.add_argument("--workers", type=int, default=None,
                    help="service worker processes (default: the service's default, 1)")
    ap.add_argument("--bodies", choices=("distinct", "repeat"), default="distinct")
    ap.add_argument("--max-requests", type=int, default=200_000, help="hard cap per phase")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv if argv is not None else [])
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1"}
    ensure_champion(env)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"load-bench-serve-{port}.log"
    t0 = time.perf_counter()
    proc = start_server(env, port, args.workers, log_path)
    from maforecast.settings import get_settings

    workers = args.workers or get_settings().workers
    result: dict = {"cpus": os.cpu_count(), "workers": workers, "bodies": args.bodies}
    try:
        result["ready_s"] = round(wait_ready(base, proc), 1)
        import httpx

        first = next(architectures(seed=12345))
        t1 = time.perf_counter()
        r = httpx.post(f"{base}/predict", json=first, timeout=60)
        result["first_request_ms"] = round((time.perf_counter() - t1) * 1e3, 1)
        assert r.status_code == 200, r.text[:300]
        print(f"ready {result['ready_s']}s after start ({time.perf_counter() - t0:.1f}s incl. this); "
              f"first request {result['first_request_ms']} ms", flush=True)

        stream = architectures(seed=1) if args.bodies == "distinct" else iter(lambda: REPEAT_BODY, None)
        url = f"{base}/predict"
        steps = []
        print(HEADER, flush=True)
        for c in [int(x) for x in args.levels.split(",") if x.strip()]:
            res = asyncio.run(drive(url, c, args.step_seconds, stream, args.max_requests))
            steps.append(res)
            print(row(res, "step"), flush=True)
        clean = [s for s in steps if s["errors"] == 0] or steps
        best = max(s["rate"] for s in clean)
        chosen = min((s for s in clean if s["rate"] >= 0.95 * best), key=lambda s: s["concurrency"])
        sustained = asyncio.run(drive(url, chosen["concurrency"], args.duration, stream, args.max_requests))
        print(row(sustained, f"**sustained {args.duration:.0f} s**"), flush=True)
        if sustained["errors"]:
            print(f"ERRORS: {sustained['error_kinds']}", flush=True)
        result.update(steps=steps, sustained=sustained)
    finally:
        stop_server(proc)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    out = main(sys.argv[1:])
    sys.exit(1 if out.get("sustained", {}).get("errors", 1) else 0)
