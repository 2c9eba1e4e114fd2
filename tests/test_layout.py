"""The layout's rules, checked on the source: imports go one way between the top-level packages, and a
function-local import across packages says why it is deferred (a comment on it or above its block)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# package -> the packages it may import (data flows collector -> fitting -> registry; service -> review ->
# registry -> predictor -> maforecast; pipeline runs the stages in order)
ALLOWED = {
    "maforecast": set(),
    "collector": {"maforecast"},
    "fitting": {"maforecast", "collector"},
    "predictor": {"maforecast"},
    "registry": {"predictor", "maforecast", "collector", "fitting"},
    "review": {"registry", "predictor", "maforecast"},
    "plan": {"review", "registry", "predictor", "maforecast"},
    "pipeline": {"registry", "review", "predictor", "maforecast", "collector", "fitting"},
    "service": {"plan", "review", "registry", "predictor", "maforecast"},
}


def _imports(path: Path):
    """(line, imported top-level package, at module level, the import's text with the lines above it)."""
    src = path.read_text(encoding="utf-8")
    lines = src.splitlines()
    tree = ast.parse(src)
    top = {id(n) for n in tree.body}
    guarded = {id(n) for node in tree.body if isinstance(node, ast.If) for n in node.body}  # if TYPE_CHECKING:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            above = lines[max(0, node.lineno - 6): node.end_lineno]
            for name in names:
                yield node.lineno, name.split(".")[0], id(node) in top or id(node) in guarded, above


def _block_comment(above: list[str]) -> bool:
    """A comment on the import, or on a line above it within its block of imports."""
    for line in reversed(above):
        s = line.strip()
        if "#" in s:
            return True
        if s and not s.startswith(("from ", "import ", ")", "(")) and not s.endswith((",", "(")):
            return False
    return False


def test_imports_go_one_way_and_deferred_ones_say_why():
    wrong, silent = [], []
    for pkg, allowed in ALLOWED.items():
        for path in sorted((ROOT / pkg).glob("*.py")):
            for line, target, module_level, above in _imports(path):
                if target not in ALLOWED or target == pkg:
                    continue
                where = f"{path.relative_to(ROOT)}:{line} imports {target}"
                if target not in allowed:
                    wrong.append(where)
                elif not module_level and not _block_comment(above):
                    silent.append(where)
    assert not wrong, "imports against the layout:\n" + "\n".join(wrong)
    assert not silent, "function-local imports across packages without a reason:\n" + "\n".join(silent)


def test_the_registered_model_ships_only_what_answers():
    """predictor/ is exactly the code a version ships: it imports no training, registry, presentation
    or serving code (the check above), and the shipped ``maforecast`` modules are the ones it imports."""
    from predictor.pyfunc import SHARED_MODULES

    used = {name for path in (ROOT / "predictor").glob("*.py") for _, name, _, _ in _imports(path)}
    assert "maforecast" in used
    shared = set()
    for path in (ROOT / "predictor").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("maforecast."):
                shared.add(node.module.split(".")[1] + ".py")
    assert shared <= set(SHARED_MODULES), shared - set(SHARED_MODULES)
