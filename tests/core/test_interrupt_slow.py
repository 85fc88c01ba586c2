"""Ctrl-C under Ray through the console script: the run stops after the current round, says why
and leaves no process behind (slow tier: `pytest -m slow`)."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PLANNED = 500


def _stat_fields(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def processes_in_group(pgid: int) -> dict[int, str]:
    """Living (non-zombie) processes of process group ``pgid``, with their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields(int(entry.name))
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found[int(entry.name)] = cmdline
    return found


def processes_mentioning(text: str) -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if text in cmdline and _stat_fields(int(entry.name))[0] != "Z":
                    found[int(entry.name)] = cmdline
            except (OSError, IndexError, UnicodeDecodeError):
                continue
    return found


def wait_until(condition, timeout: float, step: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def rounds_in(history: Path) -> int:
    try:
        return len(json.loads(history.read_text()))
    except (OSError, ValueError):
        return 0  # not written yet, or caught mid-write


def start_run(out: Path, cwd: Path) -> subprocess.Popen:
    """``flower-simulation`` of PLANNED rounds in its own process group, as a terminal's
    foreground job has; its output is read back with ``communicate``."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [
            str(BIN / "flower-simulation"),
            "--app",
            "fedlab.apps:fedavg",
            "--out",
            str(out),
            "--num-supernodes",
            "2",
            "--gpu",
            "off",
            "--run-config",
            f"num-server-rounds={PLANNED}",
            "local-epochs=1",
            "model=mlp",
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )


def test_ctrl_c_to_the_process_group_stops_after_the_round_and_leaves_nothing(tmp_path):
    out = tmp_path / "interrupted"
    proc = start_run(out, tmp_path)
    try:
        assert wait_until(lambda: rounds_in(out / "history.json") >= 1, 60), "no round in 60 s"
        group = processes_in_group(proc.pid)
        assert any("ray::" in cmd or "raylet" in cmd for cmd in group.values()), group
        sessions = {m for cmd in group.values() for m in re.findall(r"/session_[\w\-.]+", cmd)}
        assert sessions, group

        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    assert proc.returncode == 130, output[-3000:]
    finished = rounds_in(out / "history.json")
    assert 1 <= finished < PLANNED
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds-finished"] == finished and summary["rounds-planned"] == PLANNED
    assert "interrupted by SIGINT" in summary["stopped-early"], summary
    assert "stopped early: round" in output and "interrupted by SIGINT" in output

    def nothing_left() -> bool:
        alive = {pid for pid in group if Path(f"/proc/{pid}").exists() and _alive(pid)}
        return (
            not alive
            and not processes_in_group(proc.pid)
            and not any(processes_mentioning(session) for session in sessions)
        )

    assert wait_until(nothing_left, 20), (processes_in_group(proc.pid), sessions)


def _alive(pid: int) -> bool:
    try:
        return _stat_fields(pid)[0] != "Z"
    except (OSError, IndexError):
        return False


def test_a_sigkilled_driver_leaves_no_ray_process(tmp_path):
    out = tmp_path / "killed"
    proc = start_run(out, tmp_path)
    try:
        assert wait_until(lambda: rounds_in(out / "history.json") >= 1, 60), "no round in 60 s"
        group = processes_in_group(proc.pid)
        sessions = {m for cmd in group.values() for m in re.findall(r"/session_[\w\-.]+", cmd)}
        assert sessions, group
        proc.kill()  # SIGKILL to the driver alone: none of its own clean-up runs
        proc.wait()

        def nothing_left() -> bool:
            alive = {pid for pid in group if pid != proc.pid and _alive(pid)}
            return not alive and not any(processes_mentioning(s) for s in sessions)

        assert wait_until(nothing_left, 30), {s: processes_mentioning(s) for s in sessions}
    finally:
        if processes_in_group(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
