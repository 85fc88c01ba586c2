"""A guard process that ends a run's processes when its driver dies without cleaning up.

A driver killed outright (SIGKILL, the OOM killer) runs no clean-up, and Ray's agents
(DashboardAgent, RuntimeEnvAgent, raylet, workers) are re-parented to init and live on. The
guard is started in its own session, so a signal to the driver's process group does not reach
it; it notes the driver's descendants once a second and, when the driver is gone, terminates
those still running (matched by start time, so a reused process id is never touched). On a
normal end the driver's own clean-up terminates the guard with the rest.

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


def terminate(started: dict[int, str], grace: float = GRACE_SECONDS) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds, the processes still matching their start."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = {pid for pid, start in started.items() if start_time(pid) == start}
        for pid in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while alive and time.monotonic() < deadline:
            time.sleep(0.1)
            alive = {pid for pid in alive if start_time(pid) == started[pid]}
        if not alive:
            return


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
