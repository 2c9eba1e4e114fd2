"""Run every benchmark module in this folder (``bench/*_bench.py``) and print their tables."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import bench


def main(argv: list[str]) -> int:
    only = set(argv)
    names = sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.endswith("_bench"))
    unknown = sorted(n for n in only if n not in names and f"{n}_bench" not in names)
    if unknown:
        print(f"error: no benchmark named {', '.join(unknown)} (have: {', '.join(n.removesuffix('_bench') for n in names)})")
        return 2
    failed = 0
    for name in names:
        if only and name.removesuffix("_bench") not in only and name not in only:
            continue
        print(f"\n=== {name} ===", flush=True)
        start = time.perf_counter()
        saved, sys.argv = sys.argv, [f"bench.{name}"]  # the names given here are not its options
        try:
            importlib.import_module(f"bench.{name}").main()
        except (Exception, SystemExit) as exc:  # one broken benchmark must not hide the others
            if not (isinstance(exc, SystemExit) and exc.code in (None, 0)):
                failed += 1
                print(f"{name} failed: {type(exc).__name__}: {exc}")
        finally:
            sys.argv = saved
        print(f"({name}: {time.perf_counter() - start:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
