"""`python -m bench NAME` runs the named benchmark (its own options are not confused with the names)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _bench(*names: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *names], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)


def test_named_benchmark_runs_and_prints_its_table():
    r = _bench("fitting")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "=== fitting_bench ===" in r.stdout and "ratio series:" in r.stdout and "synthetic: 1000 series" in r.stdout
    assert "collector_bench" not in r.stdout


def test_unknown_benchmark_name_is_a_one_line_error():
    r = _bench("nope")
    assert r.returncode == 2 and r.stdout.strip().startswith("error: no benchmark named nope"), r.stdout + r.stderr


def test_benchmark_sees_no_dispatcher_arguments(monkeypatch):
    """`python -m bench collector` once failed: collector_bench parsed 'collector' as its own option."""
    import bench.__main__ as dispatcher
    import bench.collector_bench

    seen = []
    monkeypatch.setattr(bench.collector_bench, "main", lambda: seen.append(list(sys.argv)))
    monkeypatch.setattr(sys, "argv", ["python -m bench", "collector"])
    assert dispatcher.main(["collector"]) == 0
    assert seen == [["bench.collector_bench"]] and sys.argv == ["python -m bench", "collector"]


def test_paired_answers_compares_this_tree_with_a_commit():
    """`python -m bench.paired_answers` answers in two trees in turn and prints each side and the paired ratio; against
    HEAD itself (the same code) every ratio is a ratio of like timings, and the worktree it made is gone afterwards."""
    before = subprocess.run(["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True).stdout
    r = subprocess.run([sys.executable, "-m", "bench.paired_answers", "--old", "HEAD", "--pairs", "2"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rows = [line for line in r.stdout.splitlines() if line.startswith(("new 32-layer", "service bench", "64 new"))]
    assert len(rows) == 4, r.stdout
    for row in rows:
        old, new, ratio = (float(x) for x in row.split()[-3:])
        assert old > 0 and new > 0 and 0.1 < ratio < 10, row
    assert subprocess.run(["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True).stdout == before
