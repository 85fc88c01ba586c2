"""A guard process that ends a run's processes when its driver dies without cleaning up.

A driver killed outright (SIGKILL, the OOM killer) runs no clean-up, and Ray's agents
(DashboardAgent, RuntimeEnvAgent, raylet, workers) are re-parented to init and live on. The
guard is started in its own session, so a signal to the driver's process group does not reach
it; it notes the driver's descendants once a second and, when the driver is gone, terminates
those still running (matched by start time, so a reused process id is never touched). On a
normal end the driver's own clean-up ends the guard (:func:`stop_guard`) and then the rest.

:func:`terminate` is fedlab's one process terminator: the guard and the driver's clean-up
(:mod:`fedlab.simulation`) both end processes through it, and no other module sends SIGTERM or
SIGKILL (``tests/test_shared_jobs.py`` checks).

Linux only (it reads /proc); elsewhere :func:`start_guard` does nothing. Standard library only,
so it starts in a few tens of milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_SECONDS = 1.0
GRACE_SECONDS = 5.0


def start_guard(driver_pid: int | None = None) -> subprocess.Popen | None:
    """Start the guard for ``driver_pid`` (default: this process); None where /proc is absent."""
    if not Path("/proc/self/stat").exists():
        return None
    pid = os.getpid() if driver_pid is None else driver_pid
    return subprocess.Popen(
        [sys.executable, "-m", "fedlab.run_guard", str(pid)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def stop_guard(guard: subprocess.Popen | None) -> None:
    """End ``guard`` (from :func:`start_guard`; None is allowed) once its driver has cleaned up.

    SIGTERM ends it at once, before it has terminated anything: it acts only when its driver
    is gone.
    """
    if guard is not None:
        guard.terminate()
        guard.wait()


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name, or None for a gone or zombie process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else fields


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22), or None if it is gone."""
    fields = _stat(pid)
    return fields[19] if fields else None


def descendants(pid: int) -> set[int]:
    """Process ids of every living descendant of ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        fields = _stat(int(entry.name))
        if fields:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _reap(pid: int) -> None:
    """Collect the exit status of ``pid`` if it is a zombie child of this process.

    A driver that is a child subreaper (:mod:`fedlab.simulation`) inherits the run's orphans,
    and their zombies would stay until it exits; for anyone else's process ``waitpid`` fails
    with ECHILD and nothing happens.
    """
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def terminate(started: dict[int, str], grace: float = GRACE_SECONDS) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds, the processes still matching their start.

    The one process terminator of fedlab: the guard and the simulation driver's clean-up both
    end processes through it. ``started`` maps each process id to its :func:`start_time` when it
    was noted; a process whose id now belongs to another start (a reused id) is never signalled.
    Those that ended and are this process's zombie children are reaped.
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = _still_running(started)
        for pid in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while alive and time.monotonic() < deadline:
            time.sleep(0.1)
            alive = _still_running({pid: started[pid] for pid in alive})
        if not alive:
            return


def _still_running(started: dict[int, str]) -> set[int]:
    """Those of ``started`` still running as the process noted; the others are reaped where
    they are this process's zombie children."""
    alive = set()
    for pid, start in started.items():
        now = start_time(pid)
        if now == start:
            alive.add(pid)
        elif now is None:  # gone, or a zombie
            _reap(pid)
    return alive


def started_at(pids: set[int]) -> dict[int, str]:
    """``pid -> start time`` of those of ``pids`` still running (the input of :func:`terminate`)."""
    started = {pid: start_time(pid) for pid in pids}
    return {pid: start for pid, start in started.items() if start is not None}


def guard(driver_pid: int, poll: float = POLL_SECONDS) -> None:
    """Watch ``driver_pid``; once it is gone, terminate every descendant it was seen with."""
    me = os.getpid()
    driver_start = start_time(driver_pid)
    seen: dict[int, str] = {}
    while driver_start is not None and start_time(driver_pid) == driver_start:
        for pid in descendants(driver_pid) - {me}:
            start = start_time(pid)
            if start is not None:
                seen[pid] = start
        time.sleep(poll)
    terminate(seen)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    guard(int(sys.argv[1]))
