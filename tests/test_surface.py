"""The code's surfaces, checked on the source: the forecast engine and each of its fitted parts is a fitted object
that only its own module writes (a consumer that needs a variant asks the object for a new one), and every
``predictor`` module says which of its names the rest of the code may use (``__all__``)."""

from __future__ import annotations

import ast
import functools
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "predictor" / "engine.py"
PACKAGES = ("maforecast", "collector", "fitting", "registry", "predictor", "review", "plan", "pipeline", "service", "bench")
# the engine's fitted parts: (module, class, learned attributes and methods each must have)
PARTS = (
    ("emergence_clock", "EmergenceClock", {"p_", "curves_", "effects_", "clock_fit_", "timing_checks_", "tau_e", "with_p"}),
    ("trajectory", "TrajectoryClasses", {"prior_", "evidence_", "posterior_probabilities_", "probabilities", "given"}),
    ("level", "LineageLevel", {"lineages_", "support_", "hyper_"}),
    ("effects", "ControlledEffects", {"comparisons_", "estimate_of"}),
    ("engine", "DepthProfile", {"reg_", "sd_"}),
)


def _sources(own: Path = ENGINE) -> list[Path]:
    """The repository's Python sources outside the module ``own`` and the tests."""
    out = []
    for pkg in PACKAGES:
        out += [p for p in sorted((ROOT / pkg).rglob("*.py")) if p != own]
    return out


def _engine_names(path: Path = ENGINE, name: str = "ForecastEngine") -> set[str]:
    """The attributes (every ``self.x = ...`` in its methods) and methods of class ``name`` (ForecastEngine's)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)
    names = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    for node in ast.walk(cls):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and isinstance(node.value, ast.Name) \
                and node.value.id == "self":
            names.add(node.attr)
    return names


def _targets(node: ast.AST):
    if isinstance(node, ast.Tuple | ast.List):
        for e in node.elts:
            yield from _targets(e)
    elif isinstance(node, ast.Starred):
        yield from _targets(node.value)
    else:
        yield node


def _engine_writes(path: Path, names: set[str], root: Path = ROOT) -> list[str]:
    """Assignments to an engine attribute or method on another object than ``self``, ``setattr`` of one,
    and writes through another object's ``__dict__``/``vars``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    rel = path.relative_to(root)
    bad = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Assign):
            targets = [t for tt in node.targets for t in _targets(tt)]
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = list(_targets(node.target))
        for t in targets:
            while isinstance(t, ast.Subscript):  # engine.level_["abs"] = ...
                t = t.value
            if isinstance(t, ast.Attribute) and t.attr in names and not (isinstance(t.value, ast.Name) and t.value.id == "self"):
                bad.append(f"{rel}:{node.lineno}: assigns .{t.attr}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr"):
            key = node.args[1] if len(node.args) > 1 else None
            obj = ast.unparse(node.args[0]) if node.args else ""
            if (isinstance(key, ast.Constant) and key.value in names) or "eng" in obj:
                bad.append(f"{rel}:{node.lineno}: {node.func.id}({obj}, ...)")
        if isinstance(node, ast.Attribute) and node.attr == "__dict__" and not (isinstance(node.value, ast.Name)
                                                                                and node.value.id == "self"):
            bad.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "vars" and node.args \
                and "eng" in ast.unparse(node.args[0]):
            bad.append(f"{rel}:{node.lineno}: vars({ast.unparse(node.args[0])})")
    return bad


def test_nothing_outside_the_engine_module_writes_the_engine():
    names = _engine_names()
    assert {"level_", "quality_", "caveats_", "controlled_", "layer_curves", "class_probabilities", "clock_model_",
            "trajectory_classes_"} <= names
    bad = [b for p in _sources() for b in _engine_writes(p, names)]
    assert not bad, "set or replaced from outside predictor/engine.py (ask ForecastEngine for a new fitted object):\n" \
        + "\n".join(bad)


def test_the_check_catches_the_ways_an_engine_is_written(tmp_path):
    names = _engine_names()
    src = tmp_path / "x.py"
    src.write_text("import copy\n"
                   "eng = copy.copy(engine)\n"
                   "eng.quality_ = {}\n"
                   "eng.level_['abs'] = None\n"
                   "a.association_sd_, a.association_pairs_ = 1, 2\n"
                   "eng.layer_curves = lambda *a: None\n"
                   "setattr(eng, 'caveats_', [])\n"
                   "engine.__dict__.update(x=1)\n"
                   "self.quality_ = {}\n")  # a class's own attribute: not an engine from outside
    bad = _engine_writes(src, names, root=tmp_path)
    assert len(bad) == 7, bad


@pytest.mark.parametrize(("module", "cls", "expected"), PARTS, ids=[p[1] for p in PARTS])
def test_nothing_outside_a_parts_module_writes_the_part(module, cls, expected):
    """A part's learned attributes are set in its own ``fit`` (or a method of its module returning a new fitted
    part): the engine composes the parts, it does not patch them."""
    own = ROOT / "predictor" / f"{module}.py"
    names = _engine_names(own, cls)
    assert expected <= names
    bad = [b for p in _sources(own) for b in _engine_writes(p, names)]
    assert not bad, f"{cls}'s attributes set from outside predictor/{module}.py (ask it for a new fitted object):\n" \
        + "\n".join(bad)


def test_the_check_catches_a_part_patched_through_the_engine(tmp_path):
    names = _engine_names(ROOT / "predictor" / "emergence_clock.py", "EmergenceClock")
    src = tmp_path / "x.py"
    src.write_text("eng.clock_model_.p_ = 2.5\n"
                   "clock = eng.clock_model_\n"
                   "clock.curves_['pythia-1b'] = None\n"
                   "clock.tau_e = lambda arch: (3.0, 0.1)\n"
                   "self.p_ = 1.0\n")  # a class's own attribute: not a part from outside
    assert len(_engine_writes(src, names, root=tmp_path)) == 3


def _predictor_modules() -> list[str]:
    return [p.stem for p in sorted((ROOT / "predictor").glob("*.py")) if p.stem != "__init__"]


def _declares_all(path: Path) -> bool:
    return any(isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets)
               for n in ast.parse(path.read_text(encoding="utf-8")).body)


def test_every_predictor_module_declares_its_public_names():
    missing, unknown = [], []
    for stem in _predictor_modules():
        mod = importlib.import_module(f"predictor.{stem}")
        if not hasattr(mod, "__all__"):
            missing.append(stem)
            continue
        unknown += [f"predictor.{stem}.{n}" for n in mod.__all__ if not hasattr(mod, n)]
        assert len(set(mod.__all__)) == len(mod.__all__), f"predictor.{stem}.__all__ repeats a name"
    assert not missing, f"no __all__ in predictor modules: {missing}"
    assert not unknown, f"__all__ names that do not exist: {unknown}"


@functools.cache
def _uses() -> dict[Path, tuple[dict[str, set[str]], dict[str, str], set[tuple[str, str]]]]:
    """Per source and test file: the names it imports from each module, its aliases of ``predictor`` modules and
    the ``<name>.<attribute>`` reads it makes (one pass over each file)."""
    out = {}
    for p in [*_sources(), ENGINE, *sorted((ROOT / "tests").rglob("*.py"))]:
        imports: dict[str, set[str]] = {}
        aliases: dict[str, str] = {}
        reads: set[tuple[str, str]] = set()
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                imports.setdefault(node.module, set()).update(a.name for a in node.names)
                if node.module == "predictor":
                    aliases.update({a.asname or a.name: f"predictor.{a.name}" for a in node.names})
            elif isinstance(node, ast.Import):
                aliases.update({a.asname: a.name for a in node.names if a.asname})
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                reads.add((node.value.id, node.attr))
        out[p] = (imports, aliases, reads)
    return out


def _used_outside(module: str) -> set[str]:
    """Names imported from ``predictor.<module>`` or read as ``<alias>.<name>`` by any other source or test."""
    used = set()
    full = f"predictor.{module}"
    for p, (imports, aliases, reads) in _uses().items():
        if p == ROOT / "predictor" / f"{module}.py":
            continue
        used |= imports.get(full, set())
        mine = {a for a, m in aliases.items() if m == full}
        used |= {attr for name, attr in reads if name in mine}
    return used


def test_predictor_all_lists_the_names_used_outside_their_module():
    """``__all__`` is the module's surface: each name in it is used by another module or a test, and every name
    another module imports from it is in it."""
    unused, undeclared = [], []
    for stem in _predictor_modules():
        mod = importlib.import_module(f"predictor.{stem}")
        declared = set(getattr(mod, "__all__", ()))
        used = _used_outside(stem)
        unused += [f"predictor.{stem}.{n}" for n in sorted(declared - used)]
        undeclared += [f"predictor.{stem}.{n}" for n in sorted(used - declared)]
    assert not undeclared, f"used outside their module but not in its __all__: {undeclared}"
    assert not unused, f"in __all__ but used nowhere else: {unused}"
