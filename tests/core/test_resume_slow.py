"""``flower-simulation --resume`` under Ray after a SIGKILL and after Ctrl-C: the resumed run
ends where the uninterrupted one does (slow tier: `pytest -m slow`).

The uninterrupted reference runs in process (fedlab.inprocess): the same server and client code
without Ray, which gives the same bits on the same machine (test_resume.py checks the in-process
side). ``FEDLAB_HOLD_AFTER_ROUND=k`` makes the server stop for good right after round k's
checkpoint, so the SIGKILL lands at a known point.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.test_resume import (
    DP_ALL,
    EPSILONS,
    FEDFOA,
    assert_same_run,
    client_ledgers,
    without_timings,
)
from fedlab.apps import dpfedavg, fedavg, fedfoa
from fedlab.checkpoint import checkpoint_path
from fedlab.inprocess import run_in_process
from fedlab.server import HOLD_AFTER_ROUND_ENV

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def as_args(settings: dict) -> list[str]:
    args = []
    for key, value in settings.items():
        if key in ("num-supernodes", "device"):
            continue
        text = str(value).lower() if isinstance(value, bool) else str(value)
        args.append(f'{key}="{text}"' if isinstance(value, str) else f"{key}={text}")
    return ["--num-supernodes", str(settings["num-supernodes"]), "--gpu", "off",
            "--run-config", *args]  # fmt: skip


def simulation(args: list[str], cwd: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "flower-simulation"), *args], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, env={**ENV, **env}, cwd=cwd,
        start_new_session=True,
    )  # fmt: skip


def kill_after(proc: subprocess.Popen, checkpoint: Path, timeout: float = 150) -> None:
    """SIGKILL the whole run (its process group) once ``checkpoint`` exists."""
    deadline = time.monotonic() + timeout
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert checkpoint.exists(), (proc.poll(), proc.stdout.read()[-3000:] if proc.stdout else "")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def rounds_in(history: Path) -> int:
    try:
        return len(json.loads(history.read_text()))
    except (OSError, ValueError):
        return 0  # not written yet


def finish(proc: subprocess.Popen, code: int = 0) -> str:
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == code, output[-4000:]
    return output


def run_killed_then_resumed(app: str, settings: dict, tmp_path: Path, kill_round: int) -> Path:
    out = tmp_path / "resumed"
    args = ["--app", app, "--out", str(out), *as_args(settings)]
    proc = simulation(args, tmp_path, **{HOLD_AFTER_ROUND_ENV: str(kill_round)})
    kill_after(proc, checkpoint_path(out, kill_round))
    output = finish(simulation(["--resume", str(out), "--gpu", "off"], tmp_path))
    assert f"resuming {out} after round {kill_round}" in output
    return out


def test_fedadam_ctrl_c_then_sigkill_then_resume_equals_the_uninterrupted_run(tmp_path):
    # Eight rounds: a Ctrl-C sent after round 2 must land before the last round begins, or
    # the run simply finishes (exit 130, nothing stopped early) and the test proves nothing.
    settings = {"num-server-rounds": 8, "num-supernodes": 3, "local-epochs": 1, "model": "mlp",
                "strategy": "fedadam", "seed": 5}  # fmt: skip
    run_in_process(fedavg, fedavg.resolve_config(
        settings, {"out-dir": str(tmp_path / "ref"), "device": "cpu"}))  # fmt: skip
    out = tmp_path / "resumed"
    proc = simulation(["--app", "fedlab.apps:fedavg", "--out", str(out), *as_args(settings)],
                      tmp_path, **{HOLD_AFTER_ROUND_ENV: "1"})  # fmt: skip
    kill_after(proc, checkpoint_path(out, 1))
    # Ctrl-C during the resumed run: it stops after the round in progress.
    proc = simulation(["--resume", str(out), "--gpu", "off"], tmp_path)
    while rounds_in(out / "history.json") < 2 and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    finish(proc, code=130)
    stopped = json.loads((out / "summary.json").read_text())
    assert "SIGINT" in (stopped["stopped-early"] or ""), stopped
    assert 2 <= stopped["rounds-finished"] < 8
    finish(simulation(["--resume", str(out), "--gpu", "off"], tmp_path))
    assert_same_run(tmp_path / "ref", out)
    summary = json.loads((out / "summary.json").read_text())
    assert [r["after-round"] for r in summary["resumes"]] == [1, stopped["rounds-finished"]]


def test_fedfoa_sigkill_and_resume_equals_the_uninterrupted_run(tmp_path):
    run_in_process(fedfoa, fedfoa.resolve_config(FEDFOA, {"out-dir": str(tmp_path / "ref")}))
    out = run_killed_then_resumed("fedlab.apps:fedfoa", FEDFOA, tmp_path, kill_round=2)
    assert_same_run(tmp_path / "ref", out)


def test_dp_sigkill_and_resume_reports_the_uninterrupted_epsilons(tmp_path):
    """Central DP with adaptive clipping, local noise and DP-SGD in one run: the server's
    accountant and the clients' ledgers (kept by the clients themselves under Ray)."""
    run_in_process(dpfedavg, dpfedavg.resolve_config(DP_ALL, {"out-dir": str(tmp_path / "ref")}))
    out = run_killed_then_resumed("fedlab.apps:dpfedavg", DP_ALL, tmp_path, kill_round=2)
    ref = json.loads((tmp_path / "ref" / "server-private" / "rounds.json").read_text())
    got = json.loads((out / "server-private" / "rounds.json").read_text())
    for a, b in zip(ref, got, strict=True):
        assert {k: a["train"][k] for k in EPSILONS} == {k: b["train"][k] for k in EPSILONS}
    assert without_timings(ref) == without_timings(got)  # seeded noise: the same run
    assert client_ledgers(out) == client_ledgers(tmp_path / "ref")
