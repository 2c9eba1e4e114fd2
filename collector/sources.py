"""Where checkpoints come from: a hub repo with revisions, a suite preset, a local folder, one model.

A ``Checkpoint`` is one independent task: (series model name, revision label, training step,
location). ``location`` is a hub repo id (loaded with ``from_pretrained(repo, revision=...)``) or a
local folder. Local series: one sub-folder per checkpoint; the step comes from the folder name
(``step1000``, ``checkpoint-1000``, ``global_step1000``, ``iter_0001000``, ``ckpt_12``, ``1000``)
or from ``trainer_state.json`` (``global_step``) inside it.

Suite presets (``maforecast/data/suites.yaml``) name public suites with intermediate checkpoints;
their revision naming lives in that data file, not in code.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from collector.errors import (
    CollectorError,
    NetworkUnavailableError,
    NoModelError,
    UnknownRepoError,
    UnknownRevisionError,
    UnknownSuiteError,
)

_STEP_RE = re.compile(r"(?:^|[^a-z])(?:global[_-]?step|step|checkpoint|ckpt|iter|iteration)[_-]?0*(\d+)$", re.I)
_DIGITS_RE = re.compile(r"^0*(\d+)$")
_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class Checkpoint:
    model: str  # series name written to the stats table
    revision: str  # hub revision or checkpoint folder name
    step: int | None
    location: str  # hub repo id or local folder
    hub: bool

    @property
    def label(self) -> str:
        return f"{self.model}@{self.revision}"


# --------------------------------------------------------------------------- hub helpers


def hub_offline() -> bool:
    # settings are read when the hub is asked, not at import
    from maforecast.settings import get_settings

    return get_settings().hf_hub_offline


def network_hint(repo: str, revision: str | None = None) -> str:
    rev = f" --revision {revision}" if revision and revision != "main" else ""
    return (
        f"download it where the hub is reachable (hf download {repo}{rev}) into the local cache, "
        "or save the checkpoints locally and run 'maforecast collect PATH' on that folder"
    )


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def translate_hub_error(exc: BaseException, repo: str, revision: str | None) -> CollectorError | None:
    """Map huggingface_hub / transformers loading errors to one-line user errors (None: not a hub error)."""
    from huggingface_hub import errors as hf

    what = f"{repo}@{revision}" if revision else repo
    for e in _chain(exc):
        if isinstance(e, hf.RevisionNotFoundError):
            return UnknownRevisionError(f"unknown revision '{revision}' of {repo} on the Hugging Face hub")
        if isinstance(e, hf.GatedRepoError):
            return UnknownRepoError(f"{repo} is gated on the Hugging Face hub; accept its terms and log in (hf auth login)")
        if isinstance(e, hf.RepositoryNotFoundError):
            return UnknownRepoError(f"unknown Hugging Face repository '{repo}' (or it is private and you are not logged in)")
        if isinstance(e, hf.OfflineModeIsEnabled | hf.LocalEntryNotFoundError):
            why = "HF_HUB_OFFLINE is set" if hub_offline() else "the Hugging Face hub cannot be reached"
            # "owner/name" is also how a mistyped folder reads: say that first
            folder = "" if Path(repo).expanduser().exists() else f"no such folder '{repo}'; read as a Hugging Face repo id, "
            return NetworkUnavailableError(f"{folder}network unavailable: {why} and {what} is not in the local cache; "
                                           f"{network_hint(repo, revision)}")
        if isinstance(e, ConnectionError | TimeoutError) or type(e).__name__ in {"ConnectError", "ConnectTimeout", "ReadTimeout"}:
            return NetworkUnavailableError(
                f"network unavailable: cannot reach the Hugging Face hub for {what} ({type(e).__name__}); {network_hint(repo, revision)}"
            )
    msg = str(exc)
    if "couldn't connect" in msg.lower():
        return NetworkUnavailableError(f"network unavailable: cannot reach the Hugging Face hub for {what}; {network_hint(repo, revision)}")
    if "is not a valid git identifier" in msg:
        return UnknownRevisionError(f"unknown revision '{revision}' of {repo} on the Hugging Face hub")
    if "is not a local folder and is not a valid model identifier" in msg:
        return UnknownRepoError(f"unknown Hugging Face repository '{repo}' and no such local folder")
    return None


def hub_revisions(repo: str) -> list[str]:
    """Branch names of a hub model repo (needs network)."""
    if hub_offline():
        raise NetworkUnavailableError(
            f"network unavailable: HF_HUB_OFFLINE is set, so the revisions of {repo} cannot be listed; "
            f"give them with --revisions, or {network_hint(repo)}"
        )
    from huggingface_hub import HfApi

    try:
        refs = HfApi().list_repo_refs(repo)
    except Exception as exc:
        err = translate_hub_error(exc, repo, None)
        if err is not None:
            raise err from None
        raise
    return [b.name for b in refs.branches] + [t.name for t in getattr(refs, "tags", []) or []]


def validate_hub_revisions(repo: str, revisions: list[str]) -> None:
    """Fail early (before any download) on an unknown repo or revision; skipped when offline."""
    if hub_offline():
        return
    try:
        available = set(hub_revisions(repo))
    except NetworkUnavailableError:
        return  # loading will report it (or use the cache)
    missing = [r for r in revisions if r not in available and not re.fullmatch(r"[0-9a-f]{7,40}", r)]
    if missing:
        examples = ", ".join(sorted(available)[:5])
        raise UnknownRevisionError(
            f"unknown revision(s) {', '.join(missing[:5])} of {repo} (it has {len(available)} branches, e.g. {examples})"
        )


# --------------------------------------------------------------------------- steps


def step_from_name(name: str) -> int | None:
    m = _STEP_RE.search(name) or _DIGITS_RE.match(name)
    return int(m.group(1)) if m else None


def step_from_revision(revision: str) -> int | None:
    m = re.match(r"^(?:step|ckpt_?|checkpoint-?|global_step)0*(\d+)", revision)
    return int(m.group(1)) if m else None


def _trainer_state_step(folder: Path) -> int | None:
    path = folder / "trainer_state.json"
    if not path.exists():
        return None
    try:
        value = json.loads(path.read_text()).get("global_step")
    except (json.JSONDecodeError, OSError, AttributeError):
        return None
    return int(value) if isinstance(value, int | float) else None


def is_model_dir(folder: Path) -> bool:
    return (folder / "config.json").is_file()


def has_weights(folder: Path) -> bool:
    return any((folder / f).exists() for f in WEIGHT_FILES) or any(folder.glob("model-*.safetensors"))


# --------------------------------------------------------------------------- resolution


def local_series(path: Path, name: str | None = None) -> list[Checkpoint]:
    """Checkpoints in a local folder: the folder itself if it is a model, else its model sub-folders."""
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise NoModelError(f"no such folder: {path}")
    if not path.is_dir():
        raise NoModelError(f"{path} is a file; give a model folder (with config.json) or a folder of checkpoint folders")
    if is_model_dir(path):
        step = _trainer_state_step(path)
        if step is None:
            step = step_from_name(path.name)
        return [Checkpoint(name or path.name, path.name, step, str(path), hub=False)]
    subs = sorted(p for p in path.iterdir() if p.is_dir() and is_model_dir(p))
    if not subs:
        raise NoModelError(
            f"no model in {path}: expected config.json and weights there, or sub-folders (one per checkpoint) that have them"
        )
    out = []
    for sub in subs:
        step = _trainer_state_step(sub)
        if step is None:
            step = step_from_name(sub.name)
        out.append(Checkpoint(name or path.name, sub.name, step, str(sub), hub=False))
    steps = [c.step for c in out]
    if any(s is None for s in steps) and len(out) > 1:
        bad = [c.revision for c in out if c.step is None]
        raise CollectorError(
            f"cannot tell the training step of {', '.join(bad[:3])} in {path}: name folders like step1000 / "
            "checkpoint-1000 or put a trainer_state.json with global_step in them"
        )
    return sorted(out, key=lambda c: (c.step is None, c.step, c.revision))


def hub_series(repo: str, revisions: list[str] | None, name: str | None = None, steps: dict[str, int] | None = None) -> list[Checkpoint]:
    if not _REPO_RE.match(repo):
        raise UnknownRepoError(f"'{repo}' is neither a local folder nor a Hugging Face repository id (owner/name)")
    model = name or repo.split("/")[-1]
    revisions = revisions or ["main"]
    out = []
    for rev in revisions:
        step = (steps or {}).get(rev)
        if step is None:
            step = step_from_revision(rev)
        out.append(Checkpoint(model, rev, step, repo, hub=True))
    return out


def select_revisions(checkpoints: list[Checkpoint], wanted: list[str]) -> list[Checkpoint]:
    """Keep the checkpoints whose revision (or step) is in ``wanted``; unknown ones are an error."""
    by_rev = {c.revision: c for c in checkpoints}
    by_step = {str(c.step): c for c in checkpoints if c.step is not None}
    out, missing = [], []
    for w in wanted:
        c = by_rev.get(w) or by_step.get(w) or by_step.get(str(step_from_revision(w)))
        (out.append(c) if c else missing.append(w))
    if missing:
        have = ", ".join(c.revision for c in checkpoints[:6])
        raise UnknownRevisionError(f"unknown revision(s) {', '.join(missing)}; available: {have}{' ...' if len(checkpoints) > 6 else ''}")
    return out


def filter_every(checkpoints: list[Checkpoint], every: int | None) -> list[Checkpoint]:
    """Keep steps that are multiples of ``every`` plus the last checkpoint."""
    if not every:
        return checkpoints
    kept = [c for c in checkpoints if c.step is not None and c.step % every == 0]
    if checkpoints and checkpoints[-1] not in kept:
        kept.append(checkpoints[-1])
    return kept


# --------------------------------------------------------------------------- suites


def suites_file() -> Path:
    return Path(str(resources.files("maforecast") / "data" / "suites.yaml"))


def _expand_steps(spec) -> list[int]:
    steps: list[int] = []
    for part in spec or []:
        if isinstance(part, dict):
            steps.extend(range(int(part["start"]), int(part["stop"]) + 1, int(part.get("every", 1))))
        elif isinstance(part, list):
            steps.extend(int(s) for s in part)
        else:
            steps.append(int(part))
    return sorted(set(steps))


def load_suites(path: Path | None = None) -> dict[str, dict]:
    """All presets by name, families expanded."""
    data = yaml.safe_load((path or suites_file()).read_text()) or {}
    out: dict[str, dict] = {}
    for fam in (data.get("families") or {}).values():
        for member in fam["members"]:
            fmt = {"member": member, "member_upper": str(member).upper()}
            entry = {k: v for k, v in fam.items() if k not in {"pattern", "members"}}
            entry["repo"] = fam["repo"].format(**fmt)
            entry["model"] = fam.get("model", fam["pattern"]).format(**fmt)
            out[fam["pattern"].format(**fmt)] = entry
    out.update(data.get("suites") or {})
    return out


def suite_series(name: str, every: int | None = None, path: Path | None = None) -> list[Checkpoint]:
    suites = load_suites(path)
    if name not in suites:
        close = [s for s in suites if name.split("-")[0] in s][:8]
        raise UnknownSuiteError(f"unknown suite '{name}'" + (f"; did you mean one of: {', '.join(close)}" if close else "; see --list-suites"))
    s = suites[name]
    if "revisions_from_hub" in s:
        rx = re.compile(s["revisions_from_hub"])
        pairs = []
        for rev in hub_revisions(s["repo"]):
            m = rx.match(rev)
            if m:
                pairs.append((int(m.group(1)), rev))
        pairs.sort()
    else:
        pairs = [(st, s["revision_format"].format(step=st)) for st in _expand_steps(s.get("steps"))]
    cps = [Checkpoint(s["model"], rev, st, s["repo"], hub=True) for st, rev in pairs]
    return filter_every(cps, every)


def resolve_source(
    source: str | None,
    revisions: list[str] | None = None,
    suite: str | None = None,
    every: int | None = None,
    name: str | None = None,
) -> list[Checkpoint]:
    """Turn the CLI's SOURCE / --revisions / --suite / --every into an ordered list of checkpoints."""
    if suite:
        cps = suite_series(suite, every=None)
        if name:
            cps = [Checkpoint(name, c.revision, c.step, c.location, c.hub) for c in cps]
        if revisions:
            cps = select_revisions(cps, revisions)
        return filter_every(cps, every)
    if not source:
        raise CollectorError("give a SOURCE (hub repo id or local folder) or --suite NAME")
    path = Path(source).expanduser()
    if path.exists() or source.startswith((".", "/", "~")) or source.rstrip("/").count("/") > 1:
        cps = local_series(path, name)
        if revisions:
            cps = select_revisions(cps, revisions)
        return filter_every(cps, every)
    if revisions is None and every:
        raise CollectorError("--every needs a list of revisions: use --suite or --revisions")
    return filter_every(hub_series(source, revisions, name), every)
