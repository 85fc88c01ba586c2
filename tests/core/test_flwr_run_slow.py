"""``flwr run .`` (Flower's own CLI, local simulation) completes two rounds for every app.

The federation, not the app, decides the node count (``--federation-config num-supernodes``):
each app must accept that, validate its population-dependent keys against it and write its run
folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fedlab.run_guard import start_time, terminate

ROOT = Path(__file__).resolve().parents[2]
FLWR = Path(sys.executable).with_name("flwr")

# The app bundle holds no code (pyproject's fab-include): the components and the shipped prior
# (package data, init-from's default) come from the installed fedlab, so no path is passed.
_SR = "local-steps=2 batch-size=4 heldout-crops=1"

# Two rounds at a tiny size; everything else is the app's default.
APP_CONFIGS = {
    "fedavg": "local-epochs=1",
    "dpfedavg": "sample-rate=0.5",
    "fedfoa": "local-steps=2 batch-size=32 probe-size=100",
    "zsl_parsnets": "local-steps=2",
    "zsl_ar2": "ar2-pretrain-rounds=1",
    "diffusion": _SR,
    "diffsr": f"{_SR} eval-crops=1 scales=3 sample-steps=4",
}
SUPERNODES = {"diffusion": 2, "diffsr": 2}  # the rest: 4


#: `flwr run` starts a local SuperLink and SuperExec that outlive it; this module stops them.
LOCAL_FLOWER = (b"flower-superlink", b"flower-superexec")


def _local_flower_processes() -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if any(name in cmdline for name in LOCAL_FLOWER):
                pids.add(int(entry.name))
    return pids


@pytest.fixture(scope="module", autouse=True)
def stop_what_flwr_run_started():
    """Tests stop what they start: the SuperLink and SuperExec that `flwr run` left running."""
    before = _local_flower_processes()
    yield
    started = {pid: start_time(pid) for pid in _local_flower_processes() - before}
    terminate({pid: start for pid, start in started.items() if start is not None})


#: Run in CI's slow tier: the main job's app and the one that needs the shipped weights; the rest
#: are the extended tier (`pytest -m extended`; dpfedavg runs under Ray in the slow tier through
#: tests/strategies/test_dp_slow.py).
CI_APPS = ("fedavg", "diffsr")


@pytest.mark.parametrize(
    "app",
    [pytest.param(a, marks=pytest.mark.slow if a in CI_APPS else pytest.mark.extended)
     for a in sorted(APP_CONFIGS)],
)  # fmt: skip
def test_flwr_run_completes_two_rounds(app, tmp_path):
    out = tmp_path / "run"
    app_config = f"num-server-rounds=2 out-dir={out} {APP_CONFIGS[app]}"
    # `flwr run` starts `flower-superlink` from PATH: the venv's, also when pytest runs unactivated
    env = {**os.environ, "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PATH": f"{FLWR.parent}{os.pathsep}{os.environ.get('PATH', '')}"}  # fmt: skip
    proc = subprocess.run(
        [str(FLWR), "run", ".", "--stream", "--federation-config",
         f"num-supernodes={SUPERNODES.get(app, 4)}",
         "--run-config", f'app="{app}" app-config="{app_config}"'],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=420,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    history = json.loads((out / "history.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert [r["round"] for r in history] == [1, 2], summary
    assert summary["stopped-early"] is None
    assert json.loads((out / "config.json").read_text())["app"] == app
    if app in ("diffusion", "diffsr"):
        assert history[-1]["evaluate"]["denoise-loss"] > 0
    if app == "diffsr":
        metrics = history[-1]["client-evaluate"]
        assert metrics["prf-t-x3"] > 0 and metrics["bicubic-psnr-x3-s0"] > 15
