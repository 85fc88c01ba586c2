"""``flwr run .`` (Flower's own CLI, local simulation) runs the diffusion and diffsr apps.

The same form as ``tests/core/test_flwr_run_slow.py`` for the other apps: ``app`` picks the
app, its own keys go in ``app-config``, and the federation decides the node count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLWR = Path(sys.executable).with_name("flwr")
# Flower installs a bundle of the app's code and text files: the shipped weights go by path.
PRIOR = ROOT / "simulations" / "results" / "diffsr" / "prior-federated"

# Two rounds at a tiny size (the shipped prior, one crop, few steps); the rest is the default.
APP_CONFIGS = {
    "diffusion": "local-steps=2 batch-size=4 heldout-crops=1",
    "diffsr": "local-steps=2 batch-size=4 heldout-crops=1 eval-crops=1 scales=3 sample-steps=4",
}


@pytest.mark.slow
@pytest.mark.parametrize("app", sorted(APP_CONFIGS))
def test_flwr_run_completes_two_rounds_of_the_diffusion_apps(app, tmp_path):
    out = tmp_path / "run"
    app_config = f"num-server-rounds=2 init-from={PRIOR} out-dir={out} {APP_CONFIGS[app]}"
    env = {**os.environ, "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}  # fmt: skip
    proc = subprocess.run(
        [str(FLWR), "run", ".", "--stream", "--federation-config", "num-supernodes=2",
         "--run-config", f'app="{app}" app-config="{app_config}"'],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    history = json.loads((out / "history.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert [r["round"] for r in history] == [1, 2], summary
    assert summary["stopped-early"] is None
    assert history[-1]["evaluate"]["denoise-loss"] > 0
    if app == "diffsr":
        metrics = history[-1]["client-evaluate"]
        assert metrics["prf-t-x3"] > 0 and metrics["bicubic-psnr-x3-s0"] > 15
    assert json.loads((out / "config.json").read_text())["app"] == app
