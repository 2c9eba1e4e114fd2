"""A server run in the foreground that leaves nothing behind when told to stop (``maforecast serve``, ``ui``):
SIGTERM (systemd, Docker, CI), SIGINT or SIGHUP reach its whole process group, and whatever outlives a grace
period, in its group or not (BentoML's workers, MLflow's job consumers), is killed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psutil

# what systemd, Docker and CI (SIGTERM), a terminal (SIGINT) and a closed terminal (SIGHUP) send to stop a command
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name))
# BentoML and MLflow stop in about a second; Docker kills after 10 s, so the port is free well before that
STOP_GRACE_S = 5.0



class _Stop(Exception):
    """A stop signal arrived while the server was running."""


def run_server(cmd: list[str], env: dict[str, str], cwd: str | None = None, grace: float = STOP_GRACE_S) -> int:
    """Run the server ``cmd`` until it exits and return its exit status (``maforecast serve`` and ``ui``).

    A plain ``subprocess.call`` dies of SIGTERM and leaves the server (and its workers) holding the
    port. Here the server runs in its own process group; SIGTERM, SIGINT or SIGHUP is passed to that
    group, every process of the server gets ``grace`` seconds (after a second signal: none) before
    SIGKILL, and then this process dies of the same signal, so that systemd or a shell sees how it stopped.
    """
    received: list[int] = []
    armed = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal armed
        received.append(signum)
        if armed:  # raised once, and only while waiting for the server: never half-way through Popen
            armed = False
            raise _Stop

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, start_new_session=True)
        try:
            armed = True
            if not received:
                proc.wait()
            armed = False
        except _Stop:
            pass
        if received:
            print(f"{signal.Signals(received[0]).name}: stopping the server", file=sys.stderr, flush=True)
        # also after the server exited by itself: whatever it started must not keep running
        _stop_server(proc, received[0] if received else signal.SIGTERM, grace, hurry=lambda: len(received) > 1)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        _exit_by(received[0])
    return proc.returncode


def _stop_server(proc: subprocess.Popen, signum: int, grace: float, hurry: Callable[[], bool]) -> None:
    """Send ``signum`` to the server's process group; SIGKILL every process of the server still running
    after ``grace`` seconds (or once ``hurry()``)."""
    procs = _server_processes(proc.pid)
    _killpg(proc.pid, signum)
    deadline = time.monotonic() + grace
    while any(_running(p) for p in procs):
        proc.poll()  # reap the leader: until then it is a zombie of ours
        if time.monotonic() > deadline or hurry():
            print(f"the server did not stop within {grace:.0f}s: killing it", file=sys.stderr, flush=True)
            for p in {*procs, *_server_processes(proc.pid)}:
                _kill(p)
            _killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.1)
    proc.wait()


def _server_processes(pgid: int) -> list[psutil.Process]:
    """The processes of the server's group and all their descendants (BentoML's workers leave the
    group: circus calls setsid for each)."""
    import psutil  # BentoML's dependency; only needed once the server stops

    found: dict[int, psutil.Process] = {}
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid:
                found[p.pid] = p
                found.update((c.pid, c) for c in p.children(recursive=True))
        except (ProcessLookupError, psutil.Error):
            continue
    return list(found.values())


def _running(p: psutil.Process) -> bool:
    """Alive and not a zombie (an orphan's zombie may never be reaped where PID 1 does not reap)."""
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _kill(p: psutil.Process) -> None:
    import psutil

    with contextlib.suppress(psutil.Error):
        p.kill()  # psutil checks that the pid was not reused meanwhile


def _killpg(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
        os.killpg(pgid, signum)


def _exit_by(signum: int) -> None:
    """End this process by ``signum`` (not by an exit status), as a process that did not catch it would."""
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    sys.exit(128 + signum)  # only if the signal is not delivered at once
