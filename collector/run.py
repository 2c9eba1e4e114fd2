"""Collect a checkpoint series: measure each checkpoint, append its rows at once, track in MLflow.

Flow of ``collect_series``:

1. Rows already in the stats table for (model, revision, probe digest, source) are skipped, so a
   rerun resumes where a crash or Ctrl-C stopped it.
2. Each remaining checkpoint is an independent task (``measure_checkpoint``), run in-process or as
   a Ray task (``executor="ray"``; local Ray by default, ``ray_address`` to attach to a cluster).
3. As soon as a checkpoint's rows arrive they are upserted into the stats table (atomic write), a
   child MLflow run is logged for it, and the per-layer metrics are also appended to the series'
   parent run with ``step=<training step>`` so the MLflow UI charts emergence per layer.
4. At the end (also after an interruption) the series' rows are logged to the parent run as a
   dataset input and as a parquet artifact.

``source`` in the rows is ``collector`` for float32 and ``collector:<dtype>`` otherwise, so
measurements in different dtypes are kept side by side rather than replacing each other.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from collector import store
from collector.errors import CollectorError
from collector.probe import ProbeSet, build_probe, check_vocab
from collector.sources import Checkpoint
from maforecast.settings import stats_path
from maforecast.tables import StatsRow, conform

log = logging.getLogger(__name__)

SOURCE = "collector"
EXECUTORS = ("inprocess", "ray")


@dataclass(frozen=True)
class CollectOptions:
    dtype: str = "float32"
    batch_size: int = 8
    device: str = "cpu"

    @property
    def source(self) -> str:
        from collector.loading import dtype_name, parse_dtype

        name = dtype_name(parse_dtype(self.dtype))
        return SOURCE if name == "float32" else f"{SOURCE}:{name}"


@dataclass
class SeriesResult:
    out: Path
    probe_digest: str
    measured: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    rows_written: int = 0
    parent_run_id: str | None = None
    seconds: float = 0.0


# --------------------------------------------------------------------------- one checkpoint


@contextlib.contextmanager
def _quiet_transformers():
    """No per-checkpoint 'Loading weights' bars under our own progress bar."""
    from transformers.utils import logging as tlog

    was = tlog.is_progress_bar_enabled()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            tlog.enable_progress_bar()


def measure_checkpoint(cp: Checkpoint, input_ids: np.ndarray, options: CollectOptions) -> pd.DataFrame:
    """Load one checkpoint, run the probe through it with reduction hooks, return its stats rows."""
    import torch

    from collector.hooks import measure
    from collector.loading import dtype_name, load_model, parse_dtype

    dtype = parse_dtype(options.dtype)
    with _quiet_transformers():
        model = load_model(cp, dtype=dtype, device=options.device)
    try:
        vocab = getattr(model.config.get_text_config(), "vocab_size", None)
        check_vocab(ProbeSet(input_ids, "probe"), vocab, cp.label)
        rows = measure(model, torch.from_numpy(np.asarray(input_ids, dtype=np.int64)), options.batch_size, what=cp.label)
    finally:
        del model
        gc.collect()
    df = pd.DataFrame(rows)
    df["model"] = cp.model
    df["step"] = cp.step
    df["revision"] = cp.revision
    df["probe_digest"] = ProbeSet(input_ids, "probe").digest
    df["source"] = options.source
    df["protocol"] = "seq_mean"  # mean over probe sequences of per-sequence maxima, as 2508.03616
    df["dtype"] = dtype_name(dtype)
    return conform(df, StatsRow)


def layer_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per layer: top1_mean, median_mean and ratio (Eq. 8) over the probe sequences."""
    g = rows.groupby("layer").agg(top1=("top1", "mean"), median=("median", "mean"))
    g["ratio"] = g["top1"] / g["median"]
    return g


# --------------------------------------------------------------------------- executors


def _iter_inprocess(todo: list[Checkpoint], input_ids: np.ndarray, options: CollectOptions):
    for cp in todo:
        yield cp, measure_checkpoint(cp, input_ids, options)


def _project_root() -> str:
    return str(Path(__file__).resolve().parent.parent)


def _iter_ray(
    todo: list[Checkpoint],
    input_ids: np.ndarray,
    options: CollectOptions,
    address: str | None,
    num_cpus: int | None,
) -> Iterator[tuple[Checkpoint, pd.DataFrame]]:
    try:
        import ray
        from ray.exceptions import RayTaskError
    except ImportError:
        raise CollectorError("--executor ray needs the 'ray' package (pip install 'ray[default]')") from None
    started = False
    if not ray.is_initialized():
        kwargs: dict = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
        if address:
            kwargs["address"] = address
        else:
            if num_cpus:
                kwargs["num_cpus"] = num_cpus
            # local cluster: let workers import this checkout even when it is not pip-installed
            path = os.pathsep.join(p for p in (_project_root(), os.environ.get("PYTHONPATH", "")) if p)
            kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": path}}
        try:
            ray.init(**kwargs)
        except ConnectionError as exc:
            raise CollectorError(f"cannot connect to the Ray cluster at {address}: {exc}") from None
        started = True
    task = ray.remote(num_cpus=1, max_retries=0)(measure_checkpoint)
    ids_ref = ray.put(np.asarray(input_ids, dtype=np.int64))
    pending = {task.remote(cp, ids_ref, options): cp for cp in todo}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                cp = pending.pop(ref)
                try:
                    rows = ray.get(ref)
                except RayTaskError as exc:
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, Exception):
                        raise cause from None
                    raise
                yield cp, rows
    finally:
        for ref in pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


# --------------------------------------------------------------------------- MLflow


class _Tracker:
    """Parent run per series (reused on resume), child run per checkpoint, via MlflowClient."""

    def __init__(self, model: str, series_key: str, tags: dict[str, str], params: dict[str, str]):
        # MLflow loads only when a run is logged
        from maforecast import tracking

        self.client = tracking.configure()
        self.exp_id = tracking.experiment_id("collection")
        found = self.client.search_runs(
            [self.exp_id], filter_string=f"tags.`maforecast.series_key` = '{series_key}'", max_results=1
        )
        if found:
            self.parent_id = found[0].info.run_id
            self.client.update_run(self.parent_id, status="RUNNING")
        else:
            run = self.client.create_run(
                self.exp_id,
                run_name=f"{model} series",
                tags={"maforecast.series_key": series_key, "maforecast.stage": "collection", **tags},
            )
            self.parent_id = run.info.run_id
            self.client.log_batch(self.parent_id, params=_params(params))
        self.model = model

    def log_checkpoint(self, cp: Checkpoint, rows: pd.DataFrame, params: dict[str, str], seconds: float) -> None:
        from mlflow.entities import Metric

        step = cp.step if cp.step is not None else 0
        ts = int(time.time() * 1000)
        summary = layer_summary(rows)
        metrics = []
        for layer, r in summary.iterrows():
            for name in ("ratio", "top1", "median"):
                value = float(r[name])
                if np.isfinite(value):
                    metrics.append(Metric(f"{name}/layer_{int(layer):02d}", value, ts, step))
        if len(summary):
            metrics.append(Metric("ratio_max", float(summary["ratio"].max()), ts, step))
        child = self.client.create_run(
            self.exp_id,
            run_name=cp.label,
            tags={
                "mlflow.parentRunId": self.parent_id,
                "maforecast.stage": "collection",
                "maforecast.model": cp.model,
                "maforecast.revision": cp.revision,
            },
        )
        cid = child.info.run_id
        child_params = {**params, "revision": cp.revision, "step": str(cp.step), "location": cp.location}
        child_metrics = [*metrics, Metric("seconds", seconds, ts, step)]
        for i in range(0, len(child_metrics), 900):
            self.client.log_batch(cid, metrics=child_metrics[i : i + 900], params=_params(child_params) if i == 0 else [])
        self.client.set_terminated(cid, "FINISHED")
        for i in range(0, len(metrics), 900):
            self.client.log_batch(self.parent_id, metrics=metrics[i : i + 900])

    def finish(self, table: pd.DataFrame, out: Path, status: str) -> None:
        import mlflow

        # MLflow loads only when a run is logged
        from maforecast.tracking import log_dataset

        if len(table):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dataset = mlflow.data.from_pandas(table, source=str(out), name=f"stats-{self.model}")
            log_dataset(dataset, context="collected", run_id=self.parent_id, client=self.client)
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"stats-{self.model}.parquet"
                table.to_parquet(path, index=False)
                self.client.log_artifact(self.parent_id, str(path))
        self.client.set_terminated(self.parent_id, status)


def _params(d: dict[str, str]):
    from mlflow.entities import Param

    return [Param(k, str(v)[:6000]) for k, v in d.items()]


# --------------------------------------------------------------------------- the series


def done_checkpoints(out: Path, source: str) -> set[tuple[str, str, str]]:
    """(model, revision, probe_digest) already in the table for this source."""
    df = store.load(out)
    if not len(df):
        return set()
    df = df[df["source"].astype(str) == source]
    return set(zip(df["model"].astype(str), df["revision"].astype(str), df["probe_digest"].astype(str), strict=True))


def series_key(checkpoints: list[Checkpoint], digest: str, options: CollectOptions) -> str:
    first = checkpoints[0]
    root = first.location if first.hub else str(Path(first.location).parent if len(checkpoints) > 1 else first.location)
    raw = f"{first.model}|{root}|{digest}|{options.source}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def preflight(checkpoints: list[Checkpoint]) -> None:
    """Fail fast, before any download of weights or MLflow run: unknown repo/revision (checked
    against the hub's branches when online), network unavailable, path without a model,
    encoder-only or unsupported architecture (from the first checkpoint's config)."""
    from collector.loading import load_config
    from collector.sources import validate_hub_revisions

    if not checkpoints:
        return
    if checkpoints[0].hub:
        validate_hub_revisions(checkpoints[0].location, [c.revision for c in checkpoints])
    load_config(checkpoints[0])


def collect_series(
    checkpoints: list[Checkpoint],
    probe: ProbeSet,
    out: Path | None = None,
    options: CollectOptions | None = None,
    executor: str = "inprocess",
    ray_address: str | None = None,
    ray_num_cpus: int | None = None,
    track: bool = True,
    progress: bool = True,
    on_checkpoint: Callable[[Checkpoint, pd.DataFrame], None] | None = None,
) -> SeriesResult:
    """Measure every checkpoint not yet in ``out`` and append its rows as soon as it is done."""
    if executor not in EXECUTORS:
        raise CollectorError(f"unknown executor '{executor}'; use one of {', '.join(EXECUTORS)}")
    if not checkpoints:
        raise CollectorError("no checkpoints to collect")
    options = options or CollectOptions()
    out = Path(out) if out else stats_path()
    digest = probe.digest
    source = options.source
    done = done_checkpoints(out, source)
    todo = [c for c in checkpoints if (c.model, c.revision, digest) not in done]
    result = SeriesResult(out=out, probe_digest=digest, skipped=[c.label for c in checkpoints if c not in todo])
    t_start = time.perf_counter()
    if not todo:
        log.info("all %d checkpoints already collected in %s", len(checkpoints), out)
        return result

    preflight(todo)

    params = {
        "model": checkpoints[0].model,
        "location": checkpoints[0].location,
        "probe_digest": digest,
        "probe": probe.source,
        "n_sequences": str(probe.n_sequences),
        "seq_len": str(probe.seq_len),
        "dtype": options.dtype,
        "batch_size": str(options.batch_size),
        "device": options.device,
    }
    tracker = None
    if track:
        tracker = _Tracker(
            checkpoints[0].model,
            series_key(checkpoints, digest, options),
            tags={"maforecast.model": checkpoints[0].model, "maforecast.probe_digest": digest},
            params={**params, "n_checkpoints": str(len(checkpoints)), "executor": executor},
        )
        result.parent_run_id = tracker.parent_id

    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc=f"collect {checkpoints[0].model}", unit="ckpt", disable=None if progress else True, dynamic_ncols=True)
    if executor == "ray":
        results = _iter_ray(todo, probe.input_ids, options, ray_address, ray_num_cpus)
    else:
        results = _iter_inprocess(todo, probe.input_ids, options)
    status = "FAILED"
    last = time.perf_counter()
    try:
        for cp, rows in results:
            written, _ = store.upsert(out, rows)
            result.rows_written += written
            result.measured.append(cp.label)
            now = time.perf_counter()
            if tracker is not None:
                tracker.log_checkpoint(cp, rows, params, now - last)
            last = now
            bar.set_postfix_str(cp.revision, refresh=False)
            bar.update(1)
            if on_checkpoint is not None:
                on_checkpoint(cp, rows)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if hasattr(results, "close"):
            results.close()
        bar.close()
        result.seconds = time.perf_counter() - t_start
        if tracker is not None:
            table = store.load(out)
            mine = table[
                (table["model"].astype(str) == checkpoints[0].model)
                & (table["probe_digest"].astype(str) == digest)
                & (table["source"].astype(str) == source)
            ].reset_index(drop=True)
            try:
                tracker.finish(mine, out, status)
            except Exception as exc:  # never mask the real error with a tracking error
                if status == "FINISHED":
                    raise
                log.warning("could not finish the MLflow run: %s", exc)
    return result


# --------------------------------------------------------------------------- probe for a series


def probe_for_series(
    checkpoints: list[Checkpoint],
    spec: str | Path | None = None,
    n_sequences: int = 10,
    seq_len: int = 256,
    tokenizer: str | None = None,
) -> ProbeSet:
    """Tokenize the probe once, with ``tokenizer`` or the first checkpoint's tokenizer."""
    from collector.loading import load_tokenizer
    from collector.sources import translate_hub_error

    if tokenizer:
        is_local = Path(tokenizer).expanduser().exists()
        tok = load_tokenizer(str(Path(tokenizer).expanduser()) if is_local else tokenizer, hub=not is_local)
    else:
        first = checkpoints[0]
        if first.hub:
            try:
                tok = load_tokenizer(first.location, first.revision, hub=True)
            except CollectorError:
                raise
            except Exception as exc:
                err = translate_hub_error(exc, first.location, first.revision)
                raise (err or exc) from None
        else:
            parent = str(Path(first.location).parent)
            tok = load_tokenizer(first.location, fallbacks=(parent,))
    return build_probe(tok, spec, n_sequences=n_sequences, seq_len=seq_len)
