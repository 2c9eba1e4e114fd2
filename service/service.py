"""The BentoML service: POST an architecture, get the per-layer forecast, precision risk and mitigations.

Start it with ``maforecast serve`` (or ``bentoml serve service.service:MAForecast``). The
predictor is loaded once, at startup, straight from the MLflow registry
(``models:/<registered_model>@<alias>``; see service/README.md for why not the BentoML
model store). Configuration (environment, see ``maforecast.settings``):

- ``MAFORECAST_DATA_HOME`` / ``MLFLOW_TRACKING_URI`` / ``MAFORECAST_TRACKING_URI``: the store;
- ``MAFORECAST_REGISTERED_MODEL``, ``MAFORECAST_MODEL_ALIAS`` (default ``champion``);
- ``MAFORECAST_MODEL_VERSION``: pin a version instead of the alias;
- ``MAFORECAST_MODEL_URI``: any MLflow model URI (overrides the three above);
- ``MAFORECAST_RELOAD_S``: while no predictor is loaded, retry after this many seconds, doubling
  after each failure up to ``MAFORECAST_RELOAD_MAX_S`` (15, 120): a tracking server that is down
  at startup is retried with backoff, and ``/readyz`` stays 503 until the predictor loads;
- ``MAFORECAST_WORKERS`` (1), ``MAFORECAST_FORECAST_THREADS`` (1), ``MAFORECAST_TRACE_EXCLUDED``, ``MAFORECAST_ACCESS_LOG`` (1; 0 switches BentoML's access log off).

If no predictor can be loaded the service still starts: ``/readyz`` answers 503, ``/model_info``
and the forecast endpoints answer 503 with the message that says which command creates one.
Bad input is answered 4xx naming the field (pydantic validation -> 400; converter and forecast
errors -> 400/422), never 500.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import re
import threading
import time
from typing import Any

import anyio
import bentoml
import mlflow
from bentoml.exceptions import BadInput, BentoMLException, InternalServerError, UnprocessableEntity
from cachetools import LRUCache, cached
from fastapi import FastAPI
from fastapi.responses import JSONResponse as FastJSON
from pydantic import ValidationError
from starlette.responses import JSONResponse, Response

from maforecast.errors import UserError
from maforecast.settings import get_settings, quiet_telemetry
from plan.files import PLAN_FILENAMES, format_plan
from plan.files import render as render_plan
from predictor.architecture import Architecture
from predictor.hf_config import from_hf_config
from predictor.nowcast import NowcastRequest
from predictor.response import VIEWS, CompareResponse, NowcastResponse, PredictResponse, view_for
from predictor.schemas import parse_steps
from registry.loader import (
    BOOTSTRAP_HINT,
    RegisteredPredictor,
    StoreUnreachableError,
    load_predictor,
    resolve_model_uri,
)
from review.plot import render_png
from review.report import report_for
from service.errors import FieldErrorMiddleware, quiet_validation_logs
from service.openapi import OpenAPI30Middleware
from service.schemas import (
    BatchRequest,
    BatchResponse,
    CompareRequest,
    HFConfigRequest,
    ModelInfo,
    PlanRequest,
    PlanResponse,
)

quiet_telemetry()
quiet_validation_logs()
logger = logging.getLogger("maforecast.service")
# A tracking server that is down must not hold startup for minutes inside MLflow's own HTTP
# retries: fail fast and let _State's backoff retry (override by setting these yourself).
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")

NO_PREDICTOR_HINT = f"{BOOTSTRAP_HINT} to create a champion"


class Answers:
    """The loaded version plus the one answer cache: (architecture, steps, view, layers) -> the answer's
    JSON bytes (bytes, not objects: a thousand cached answers would otherwise be millions of objects for
    every full garbage collection to walk). The condition makes concurrent requests for one key compute it once."""

    def __init__(self, predictor: RegisteredPredictor, size: int = 1024):
        self.predictor = predictor
        self._cache: LRUCache = LRUCache(maxsize=size)
        self._cond = threading.Condition()
        # keyed by the key the caller already made (``lookup`` on the event loop): one ``model_dump_json`` per request
        self._one = cached(self._cache, key=lambda key, *args: key, condition=self._cond)(self._compute)

    @staticmethod
    def _key(arch: Architecture, steps=None, view: str | None = None, layers=None) -> tuple:
        return (arch.model_dump_json(), tuple(steps or ()), view_for(view, steps), None if layers is None else tuple(layers))

    def _compute(self, key: tuple, arch: Architecture, steps=None, view: str | None = None, layers=None) -> bytes:
        """The answer (``key``: the cache's, made once by ``lookup`` or ``one``)."""
        return self.predictor.answers_json([arch], steps, view, layers)[0]

    def one(self, arch: Architecture, steps=None, view: str | None = None, layers=None, key: tuple | None = None) -> bytes:
        """The answer, computed once per key (``key``: ``lookup``'s, when the caller has it)."""
        return self._one(key if key is not None else self._key(arch, steps, view, layers), arch, steps, view, layers)

    def lookup(self, arch: Architecture, steps=None, view: str | None = None, layers=None) -> tuple[tuple, bytes | None]:
        """(key, the answer if it is already cached): no computation, safe on the event loop; pass the key to ``one``."""
        key = self._key(arch, steps, view, layers)
        with self._cond:
            return key, self._cache.get(key)

    def many(self, archs: list[Architecture], steps=None, view: str | None = None, layers=None) -> list[bytes]:
        """Cached answers where there are any, the rest in one model call (and cached)."""
        keys = [self._key(a, steps, view, layers) for a in archs]
        with self._cond:
            hits = [self._cache.get(k) for k in keys]
        todo = {k: a for k, a, h in zip(keys, archs, hits, strict=True) if h is None}
        fresh = dict(zip(todo, self.predictor.answers_json(list(todo.values()), steps, view, layers), strict=True)) if todo else {}
        with self._cond:
            self._cache.update(fresh)
        return [h if h is not None else fresh[k] for k, h in zip(keys, hits, strict=True)]


class _State:
    """The loaded answers (or why there are none), shared by the BentoML APIs and the FastAPI views."""

    def __init__(self) -> None:
        self.answers: Answers | None = None
        self.error: str | None = None
        self.model_uri = resolve_model_uri()
        self.tracking_uri = get_settings().resolved_tracking_uri
        self.last_try = 0.0
        self.failures = 0
        self._lock = threading.Lock()
        self._loading = False
        self.last_alias_check = time.monotonic()
        self._alias_every = get_settings().reload_s  # read once: settings are built fresh per call
        self._alias_uri = re.fullmatch(r"models:/([^/@]+)@([^/]+)", self.model_uri or "")
        self._rejected: str | None = None

    def load(self) -> bool:
        with self._lock:
            if self.answers is not None:
                return True
            self.last_try = time.monotonic()
            try:
                t0 = time.perf_counter()
                answers = Answers(load_predictor(model_uri=self.model_uri, tracking_uri=self.tracking_uri))
                # one answer at startup so the first request does not pay for lazy imports and caches
                answers.predictor.answers_json([Architecture(name="warm-up", n_layers=6, d_model=512, n_heads=8, d_ffn=2048)])
                self.answers, self.error = answers, None
                # everything loaded so far lives as long as the process: keep it out of the
                # collector's generations so full collections do not pause requests (p99)
                gc.collect()
                gc.freeze()
                # An answer allocates tens of thousands of short-lived objects (arrays, dicts, pydantic models)
                # that reference counting frees as the answer is written, so the default gen0 threshold (700)
                # starts collections that find next to nothing: measured ~1 % of a single /predict and ~8 % of a
                # /predict_batch of 64 (issue 28); with 20000 ~0 % and ~5 %. Only cyclic garbage, which answers
                # hardly make, waits longer to be freed.
                gc.set_threshold(20_000, 50, 50)
                p = answers.predictor
                logger.info("loaded predictor %s (version %s) from %s in %.1fs", p.name, p.version, self.model_uri,
                            time.perf_counter() - t0)
                return True
            except StoreUnreachableError as exc:  # the version may exist: say the server is down, not "bootstrap"
                self.error = str(exc)
            except UserError as exc:
                self.error = f"no predictor loaded from {self.model_uri} ({self.tracking_uri}): {exc}"
                if "maforecast bootstrap" not in self.error:
                    self.error += f"; {NO_PREDICTOR_HINT}"
            except Exception as exc:  # a broken store must not stop the process: report, stay unready
                logger.exception("loading the predictor failed")
                self.error = (f"no predictor loaded from {self.model_uri} ({self.tracking_uri}): "
                              f"{type(exc).__name__}: {exc}; {NO_PREDICTOR_HINT}")
            self.failures += 1
            logger.warning("service not ready: %s; retrying in %.0fs", self.error, self.retry_interval())
            self.last_try = time.monotonic()  # retry interval counts from the end of this attempt
            return False

    def watch_alias(self) -> None:
        """A served alias (``@champion``) moved by ``maforecast promote``: look now and then (every ``reload_s``,
        off the request path) and swap in the version it names, so /model_info and the answers follow the
        registry without a restart."""
        m = self._alias_uri
        if m is None or self.answers is None or time.monotonic() - self.last_alias_check < self._alias_every:
            return
        with self._lock:  # one watcher at a time (requests arrive on the event loop and in FastAPI's thread pool)
            if self._loading:
                return
            self.last_alias_check = time.monotonic()
            self._loading = True

        def run() -> None:
            try:
                client = mlflow.MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
                now = str(client.get_model_version_by_alias(m.group(1), m.group(2)).version)
                if self.answers is not None and now not in (self.answers.predictor.version, self._rejected):
                    try:
                        answers = Answers(load_predictor(model_uri=self.model_uri, tracking_uri=self.tracking_uri))
                    except UserError as exc:  # unservable by this code: said once, not reloaded every few seconds
                        self._rejected = now
                        logger.warning("alias %s names version %s, which this process cannot serve (%s); keeping %s",
                                       m.group(2), now, exc, self.answers.predictor.version)
                        return
                    logger.info("alias %s moved: serving version %s (was %s)", m.group(2), now,
                                self.answers.predictor.version)
                    self.answers = answers
                    gc.unfreeze()  # the old version's objects may go now; what is loaded stays out of the collector
                    gc.collect()
                    gc.freeze()
            except Exception as exc:  # the registry is down: keep serving the loaded version
                logger.warning("alias check failed, keeping version %s: %s",
                               self.answers.predictor.version if self.answers else None, exc)
            finally:
                self._loading = False

        threading.Thread(target=run, name="maforecast-alias-watch", daemon=True).start()

    def retry_interval(self) -> float:
        """Exponential backoff: base * 2^(failures - 1), capped."""
        s = get_settings()
        return min(s.reload_max_s, s.reload_s * 2 ** max(self.failures - 1, 0))

    def retry_in_background(self) -> None:
        """While unready, retry loading now and then (the tracking server may be back, or a
        champion promoted since). Triggered by readiness probes and requests; never blocks them."""
        if self.answers is not None or self._loading or time.monotonic() - self.last_try < self.retry_interval():
            return
        self._loading = True

        def run() -> None:
            try:
                self.load()
            finally:
                self._loading = False

        threading.Thread(target=run, name="maforecast-reload", daemon=True).start()


STATE: _State | None = None  # set when the service instance starts


def _unavailable(ctx: bentoml.Context | None, message: str) -> JSONResponse:
    """503 with the message that says what to do (BentoML answers its own 5xx exceptions with a generic
    "unexpected error" body, which would hide it). An endpoint that takes ``ctx`` answers with ``ctx``'s
    status, so it is set there too."""
    if ctx is not None:
        ctx.response.status_code = 503
    return JSONResponse({"error": message, "fields": []}, status_code=503)


def _rejected(exc: Exception, prefix: str = "") -> BentoMLException:
    """A forecast-time error as BentoML's own exception type: 400 (bad value) or 422 (valid input that
    cannot be forecast). The message starts with the field it names (``field: ...``), which
    ``service.errors`` turns into the answer's ``fields``."""
    if isinstance(exc, UserError | ValueError):
        field = getattr(exc, "field", None)
        msg = str(exc) if not field or str(exc).startswith(f"{field}:") else f"{field}: {exc}"
        return (BadInput if isinstance(exc, ValueError) else UnprocessableEntity)(prefix + msg)
    logger.info("forecast rejected: %s: %s", type(exc).__name__, exc)
    return UnprocessableEntity(f"{prefix}cannot forecast this architecture: {exc}")


def _ints(ctx: bentoml.Context, name: str, example: str) -> list[int] | None:
    raw = ctx.request.query_params.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        return sorted({int(x) for x in raw.split(",") if x.strip()})
    except ValueError:
        raise BadInput(f"{name}: expected comma-separated non-negative integers, e.g. ?{name}={example}") from None


def _query(ctx: bentoml.Context) -> tuple[list[int] | None, str, list[int] | None]:
    """``?steps=0,1000,...``, ``?view=compact|full|summary`` and ``?layers=0,5``."""
    try:
        steps = parse_steps(_ints(ctx, "steps", "0,1000,143000"))
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    view = (ctx.request.query_params.get("view") or "").strip() or None  # None: the model's default for these steps
    if view is not None and view not in VIEWS:
        raise BadInput(f"view: expected one of {', '.join(VIEWS)}, got {view!r}")
    return steps, view, _ints(ctx, "layers", "0,5")


_LIMITER: anyio.CapacityLimiter | None = None


async def _offload(fn, *args):
    """Run forecast work off the event loop (health probes and cached answers stay responsive)."""
    global _LIMITER
    if _LIMITER is None:
        _LIMITER = anyio.CapacityLimiter(get_settings().forecast_threads)
    try:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args), limiter=_LIMITER)
    except ValidationError as exc:  # the request was validated on the way in: a schema error now is the answer's
        logger.exception("an answer failed its own schema")
        raise InternalServerError(f"internal error: the answer failed its own schema ({exc.error_count()} error(s): "
                                  f"{exc.errors()[0]['loc']}); this is a fault of the server, not of the request") from None
    except (UserError, ValueError, ArithmeticError) as exc:
        raise _rejected(exc) from None


def _json(raw: bytes) -> Response:
    return Response(raw, media_type="application/json")


_SETTINGS = get_settings()  # read once at import: BentoML takes these at class definition
info_app = FastAPI(title="maforecast info", docs_url=None, redoc_url=None, openapi_url=None)


@bentoml.service(
    name="maforecast",
    workers=_SETTINGS.workers,
    traffic={"timeout": 120},
    # No trace exporter is configured by default, so spans on the hot path cost ~0.3 ms and record
    # nothing; set MAFORECAST_TRACE_EXCLUDED="" (with an exporter in the BentoML config) to trace.
    logging={"access": {"enabled": _SETTINGS.access_log}},
    tracing={"excluded_urls": _SETTINGS.trace_excluded},
)
@bentoml.asgi_app(info_app, path="/")
class MAForecast:
    """Forecast massive-activation emergence for a proposed transformer, before training."""

    def __init__(self) -> None:
        global STATE
        self.state = _State()
        STATE = self.state
        self.state.load()

    def __is_ready__(self) -> bool:
        if self.state.answers is None:
            self.state.retry_in_background()
        return self.state.answers is not None

    def _answers(self, ctx: bentoml.Context | None = None) -> tuple[Answers | None, Response | None]:
        ans = self.state.answers
        if ans is None:
            self.state.retry_in_background()
            return None, _unavailable(ctx, self.state.error or f"predictor not loaded yet; {NO_PREDICTOR_HINT}")
        self.state.watch_alias()
        return ans, None

    @bentoml.api(route="/predict", input_spec=Architecture)
    async def predict(self, ctx: bentoml.Context, **fields: Any) -> PredictResponse:
        """Per-layer forecast, precision risk and ranked mitigations for one architecture (the body, bare).

        The default answer is compact (per-layer essentials, no trajectories: ``VIEW_HELP``); ``?view=full`` adds
        the per-step trajectories, every format and every mitigation, ``?view=summary`` drops the layers (sweeps).
        Optional query ``?steps=0,1000,...`` sets the trajectory steps (default: log-spaced) and ``?layers=0,5``
        keeps only those layers.
        """
        ans, err = self._answers(ctx)
        if err is not None:
            return err
        steps, view, layers = _query(ctx)
        arch = Architecture.model_validate(fields)
        key, raw = ans.lookup(arch, steps, view, layers)  # fast path: answered before, no thread hop
        return _json(raw if raw is not None else await _offload(ans.one, arch, steps, view, layers, key))

    @bentoml.api(route="/predict_hf_config", input_spec=HFConfigRequest)
    async def predict_hf_config(self, config: dict, training: dict | None = None,
                                steps: list[int] | None = None) -> PredictResponse:
        """A Hugging Face config.json (+ optional training fields) converted and answered as /predict."""
        ans, err = self._answers()
        if err is not None:
            return err
        try:
            arch, notes = from_hf_config(config, training)
        except UserError as exc:
            raise BadInput(str(exc) if str(exc).startswith(("config", "training")) else f"config: {exc}") from None
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise BadInput(f"config: cannot convert this config.json: {type(exc).__name__}: {exc}") from None
        resp = PredictResponse.model_validate_json(await _offload(ans.one, arch, steps))
        return resp.model_copy(update={"inferred": notes, "architecture_input": arch})

    @bentoml.api(route="/predict_batch", input_spec=BatchRequest)
    async def predict_batch(self, architectures: list[Architecture], steps: list[int] | None = None,
                            view: str | None = None, layers: list[int] | None = None) -> BatchResponse:
        """Several architectures in one request (at most ``MAX_BATCH``; more is a 400 naming ``architectures``),
        each answer in ``view`` (by default as /predict's) and/or only ``layers``."""
        ans, err = self._answers()
        if err is not None:
            return err
        try:  # all together: one model call for what is not cached
            raws = await _offload(ans.many, architectures, steps, view, layers)
        except BentoMLException:
            for i, arch in enumerate(architectures):  # name the architecture that cannot be answered
                try:
                    await _offload(ans.one, arch, steps, view, layers)
                except BentoMLException as exc:
                    raise type(exc)(f"architectures[{i}]: {exc.message}") from None
            raise
        # BatchResponse's JSON around the answers' (cached) JSON, not re-read into objects
        head = b'{"predictor":' + ans.predictor.predictor.model_dump_json().encode() + b',"results":['
        return _json(head + b",".join(raws) + b"]}")

    @bentoml.api(route="/compare", input_spec=CompareRequest)
    async def compare(self, variants: dict[str, Architecture], steps: list[int] | None = None) -> CompareResponse:
        """Two or more named variants: per-variant summary and what each change does (vs the first)."""
        ans, err = self._answers()
        if err is not None:
            return err
        return await _offload(ans.predictor.compare, variants, steps)

    @bentoml.api(route="/plot", input_spec=Architecture)
    async def plot(self, ctx: bentoml.Context, **fields: Any) -> bytes:
        """PNG of the predicted per-layer ratio curves with intervals and precision limits."""
        ans, err = self._answers(ctx)
        if err is not None:
            return err
        steps, _view, _layers = _query(ctx)
        answer = PredictResponse.model_validate_json(await _offload(ans.one, Architecture.model_validate(fields), steps, "full"))
        return Response(await _offload(render_png, answer), media_type="image/png")

    @bentoml.api(route="/nowcast", input_spec=NowcastRequest)
    async def nowcast(self, **fields: Any) -> NowcastResponse:
        """The /predict answer updated by a run's measured checkpoints (``observations``), with per-layer
        observed vs forecast, deviation and ``left_band`` (``predictor.answer.Answerer.nowcast``)."""
        ans, err = self._answers()
        if err is not None:
            return err
        req = NowcastRequest.model_construct(**fields)
        return await _offload(ans.predictor.nowcast, req.architecture, req.observations, req.steps)

    @bentoml.api(route="/plan", input_spec=PlanRequest)
    async def plan(self, architecture: Architecture, tool: str, format: str | None = None,  # noqa: A002 (the field's name)
                   model_type: str = "llama") -> PlanResponse:
        """The answer's precision plan as a file for torchao, llm-compressor, Megatron-LM, TE debug or JSON
        (``maforecast plan``): the layers to keep in high precision for the precision target, with why."""
        ans, err = self._answers()
        if err is not None:
            return err
        answer = PredictResponse.model_validate_json(await _offload(ans.one, architecture, None, "full"))
        try:
            content = render_plan(answer, architecture, tool, format, model_type)
        except UserError as exc:
            msg = str(exc)
            raise BadInput(msg if msg.startswith(("format", "model_type", "tool")) else f"format: {msg}") from None
        fmt = format_plan(answer, format, tool).format
        return PlanResponse(tool=tool, format=fmt, filename=PLAN_FILENAMES[tool], content=content)

    @bentoml.api(route="/report", input_spec=Architecture)
    async def report(self, ctx: bentoml.Context, **fields: Any) -> str:
        """Self-contained HTML design-review report (verdict against the default policy of its precision_target)."""
        ans, err = self._answers(ctx)
        if err is not None:
            return err
        page = await _offload(report_for, ans.predictor, Architecture.model_validate(fields))
        return Response(page, media_type="text/html; charset=utf-8")

    @info_app.get("/model_info", response_model=ModelInfo, responses={503: {"model": ModelInfo}})
    def model_info(self):
        """Registry name, version, alias, training metrics and data digest of the loaded predictor."""
        state = self.state
        if state.answers is None:
            state.retry_in_background()
            body = ModelInfo(ready=False, tracking_uri=state.tracking_uri, error=state.error or NO_PREDICTOR_HINT)
            return FastJSON(body.model_dump(mode="json"), status_code=503)
        state.watch_alias()
        p = state.answers.predictor
        return ModelInfo(ready=True, predictor=p.predictor, tracking_uri=state.tracking_uri, info=p.info())


# The two middlewares BentoML has no setting for (everything else, caching included, is gone):
# BentoML serves /docs.json as "openapi: 3.0.2" with JSON Schema 2020-12 inside, which 3.0 tools
# (client generators, schemathesis) reject; and its 4xx bodies name no field (a pydantic "detail"
# list, or a one-element list around its exceptions' message) and its form parser answers a
# multipart body without a boundary with a 500. See service/openapi.py and service/errors.py.
MAForecast.add_asgi_middleware(OpenAPI30Middleware)
MAForecast.add_asgi_middleware(FieldErrorMiddleware)

_ASGI: list = []


def asgi_app():
    """``MAForecast.to_asgi()``, built once per process and reused (in-process tests, embedding).

    BentoML registers its Prometheus metrics per app, so a second ``to_asgi()`` in one process
    fails. Each lifespan run (e.g. each ``with TestClient(app)``) creates a fresh service instance
    that reads the environment (data home, alias, version) at that moment; lifespans of the same
    app must not overlap.
    """
    if not _ASGI:
        _ASGI.append(MAForecast.to_asgi())
    return _ASGI[0]
