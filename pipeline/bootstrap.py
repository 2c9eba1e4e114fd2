"""``maforecast bootstrap``: reference data -> stats -> fits -> trained predictor -> champion.

Each stage runs what its command runs (`maforecast fit` logs its MLflow run here too, and the
trained version is tagged with that run: the champion has its lineage) and records, in
``<data home>/bootstrap.json``, the digest of its input and what it produced. A stage whose input
digest matches the record and whose output still exists is skipped and says so, so a second run
changes nothing. ``--force`` reruns everything.

Serving serves the champion: when a champion this code can serve exists, new evidence (rows that
``maforecast collect`` or ``monitor`` added) is announced with the command that trains a challenger
(``maforecast bootstrap --retrain``), not trained silently. A champion this code cannot serve (logged
with another model interface or predictor code) is replaced: that is the upgrade path of a data home.

The stages import their dependencies inside the functions: ``maforecast --help`` imports this
module, and MLflow, scipy and the fitting code take seconds to import.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from maforecast.settings import Settings, fits_path, get_settings, stats_path

Echo = Callable[[str], Any]
STAGES = ("import", "fit", "train", "promote")


class State:
    def __init__(self, settings: Settings):
        self.path = settings.home / "bootstrap.json"
        try:
            self.data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}
        except ValueError:
            self.data = {}

    def get(self, stage: str) -> dict[str, Any]:
        return dict(self.data.get(stage) or {})

    def put(self, stage: str, record: dict[str, Any]) -> None:
        self.data[stage] = {**record, "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        tmp = self.path.with_name(".bootstrap.json.tmp")
        tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True, default=str))
        tmp.replace(self.path)


def _table_digest(path: Path, row_model) -> str | None:
    # deferred, see the module docstring
    from maforecast.tables import digest, read_table

    if not Path(path).exists():
        return None
    return digest(read_table(path, row_model))


# ------------------------------------------------------------------------------------ stages


def stage_import(settings: Settings, state: State, force: bool, echo: Echo) -> bool:
    # deferred, see the module docstring
    from collector import reference, store
    from maforecast.tables import StatsRow, conform, digest

    path = stats_path(settings)
    rows = conform(reference.load_reference_stats(bos=None), StatsRow)
    want = digest(rows)
    if not force and path.exists():
        have = store.load(path)
        have = have[have["source"].isin(set(rows["source"]))].reset_index(drop=True)
        if len(have) == len(rows) and digest(conform(have, StatsRow)) == want:
            echo(f"[1/4] import: the {len(rows)} reference rows are already in {path}; unchanged")
            return False
    written, replaced = store.upsert(path, rows)
    state.put("import", {"reference_digest": want, "rows": written})
    echo(f"[1/4] import: {written} reference rows into {path} ({replaced} replaced)")
    return True


def _held(echo: Echo, stage: str, held: str) -> bool:
    echo(f"{stage}: the stats table has new evidence since champion version {held} was trained; serving version {held} "
         "unchanged (`maforecast bootstrap --retrain` fits and trains a challenger on it)")
    return False


def stage_fit(settings: Settings, state: State, force: bool, echo: Echo, held: str | None = None) -> bool:
    # deferred, see the module docstring
    from maforecast.tables import FitRow, StatsRow, read_table, write_table

    stats_digest = _table_digest(stats_path(settings), StatsRow)
    out = fits_path(settings)
    rec = state.get("fit")
    if not force and rec.get("stats_digest") == stats_digest and rec.get("fits_digest") == _table_digest(out, FitRow):
        echo(f"[2/4] fit: fits in {out} are up to date with the stats table; unchanged")
        return False
    if held:
        return _held(echo, "[2/4] fit", held)
    # deferred, see the module docstring
    from fitting.batch import fit_table
    from fitting.tracking import log_fit_run
    from maforecast.tables import locked
    from maforecast.tracking import configure

    t0 = time.perf_counter()
    stats = read_table(stats_path(settings), StatsRow)
    with locked(out, timeout=None):
        fits = fit_table(stats)
        write_table(fits, out, FitRow)
    configure(settings)
    # the run `maforecast fit` logs (stats in, fits out): the champion's lineage starts here
    fit_run = log_fit_run(stats, fits, params={"metrics": "ratio,top1", "source": "bootstrap"}, plots=False, run_name="bootstrap")
    state.put("fit", {"stats_digest": stats_digest, "fits_digest": _table_digest(out, FitRow), "rows": len(fits),
                      "run_id": fit_run})
    echo(f"[2/4] fit: {len(fits)} curves fitted in {time.perf_counter() - t0:.1f}s -> {out} (MLflow run {fit_run})")
    return True


def stage_train(settings: Settings, state: State, force: bool, echo: Echo, held: str | None = None) -> bool:
    # deferred, see the module docstring
    from maforecast.tables import FitRow, StatsRow
    from predictor.pyfunc import INTERFACE as PYFUNC_INTERFACE

    inputs = {
        "fits_digest": _table_digest(fits_path(settings), FitRow),
        "stats_digest": _table_digest(stats_path(settings), StatsRow),
        "pyfunc_interface": PYFUNC_INTERFACE,  # a new model interface needs a new version
    }  # other predictor code needs one only if it answers differently (``_version_servable``)
    rec = state.get("train")
    version = rec.get("version")
    if not force and all(rec.get(k) == v for k, v in inputs.items()) and version and _version_servable(settings, version):
        echo(f"[3/4] train: predictor version {version} was trained on these tables; unchanged")
        return False
    if held:
        return _held(echo, "[3/4] train", held)
    # deferred, see the module docstring
    from registry.cli import load_training_stats
    from registry.training import train

    stats = load_training_stats(reference=False)
    # both questions the gate compares on (a new lineage, a new member of a known lineage)
    kwargs: dict[str, Any] = {"settings": settings, "run_name": "bootstrap", "cv": ("lineage", "model")}
    t0 = time.perf_counter()
    result = train(stats, **kwargs)
    version = str(result.version)
    _link_fit_run(settings, state.get("fit").get("run_id"), result.run_id, version)
    state.put("train", {**inputs, "version": version, "run_id": result.run_id})
    echo(
        f"[3/4] train: registered {settings.registered_model} version {version} as challenger "
        f"in {time.perf_counter() - t0:.1f}s (run {result.run_id})"
    )
    return True


def stage_promote(settings: Settings, state: State, force: bool, echo: Echo, held: str | None = None) -> bool:
    version = state.get("train").get("version")
    current = _alias_version(settings, settings.model_alias)
    if current is not None and (current == version or held):
        echo(f"[4/4] promote: {settings.model_alias} already points at version {current}; unchanged")
        return False
    # deferred, see the module docstring
    from registry.training import promote

    result = promote(force=False, settings=settings)
    if not result.promoted and current is None:  # nothing to serve otherwise: serve it, labelled as below the baseline
        result = promote(force=True, settings=settings)
        echo(f"[4/4] promote: WARNING the only predictor does not beat the constant baseline; serving it labelled as such "
             f"(model_info beats_baseline=false): {result.message}")
    else:
        echo(f"[4/4] promote: {result.message}")
    state.put("promote", {"version": _alias_version(settings, settings.model_alias), "promoted": result.promoted})
    return bool(result.promoted)


def _link_fit_run(settings: Settings, fit_run: str | None, train_run: str, version: str) -> None:
    """Lineage in the MLflow UI: the training run and the registered version name the fit run of the same stats."""
    if not fit_run:
        return
    client = _client(settings)
    client.set_tag(train_run, "maforecast.fit_run_id", fit_run)
    client.set_model_version_tag(settings.registered_model, version, "fit_run_id", fit_run)


def _client(settings: Settings):
    # deferred, see the module docstring
    from maforecast.tracking import configure

    return configure(settings)


def _version_servable(settings: Settings, version: str) -> bool:
    """The version exists and this code answers for it as it was logged (``registry.loader.version_servable``)."""
    # deferred, see the module docstring
    from registry.training import servable

    try:
        mv = _client(settings).get_model_version(settings.registered_model, str(version))
    except Exception:  # no such version (or no registry yet): train one
        return False
    return servable(mv)


def _alias_version(settings: Settings, alias: str) -> str | None:
    try:
        return str(_client(settings).get_model_version_by_alias(settings.registered_model, alias).version)
    except Exception:
        return None


def servable_champion(settings: Settings) -> str | None:
    """The champion's version if this code can serve it (its interface and predictor code), else None."""
    # deferred, see the module docstring
    from registry.training import servable

    try:
        mv = _client(settings).get_model_version_by_alias(settings.registered_model, settings.model_alias)
    except Exception:
        return None
    return str(mv.version) if servable(mv) else None


def run(force: bool = False, echo: Echo = print, settings: Settings | None = None, retrain: bool = False) -> bool:
    """Run all stages; returns whether anything changed. ``retrain``: fit and train on new evidence even
    when a servable champion exists (otherwise new evidence is announced, not trained)."""
    s = settings or get_settings()
    state = State(s)
    held = None if force or retrain else servable_champion(s)
    changed = stage_import(s, state, force, echo)
    changed |= stage_fit(s, state, force, echo, held)
    changed |= stage_train(s, state, force, echo, held)
    changed |= stage_promote(s, state, force, echo, held)
    return changed
