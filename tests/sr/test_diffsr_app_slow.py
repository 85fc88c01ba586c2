"""The diffsr app through ``flower-simulation`` under Ray with the shipped prior (slow tier)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_diffsr_app_under_ray_reports_the_clients_sr_metrics(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    args = ["--num-supernodes", "2", "--run-config", "num-server-rounds=1", "local-steps=2",
            "eval-crops=1", 'scales="3"', "sample-steps=4"]  # fmt: skip
    proc = subprocess.run(
        [str(BIN / "flower-simulation"), "--app", "fedlab.apps:diffsr", "--out", str(out), *args],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    history = json.loads((out / "history.json").read_text())
    metrics = history[-1]["client-evaluate"]
    assert metrics["prf-t-x3"] > 0
    assert metrics["bicubic-psnr-x3-s0"] > 15 and 0 < metrics["prf-haarpsi-x3-s0"] <= 1
    assert history[-1]["evaluate"]["denoise-loss"] > 0
    assert (out / "prior" / "diffusion_pytorch_model.safetensors").is_file()
