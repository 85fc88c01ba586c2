"""The harmonization app through ``flower-simulation`` under Ray with the shipped prior."""

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


def test_harmonization_app_under_ray_reports_the_clients_metrics(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    args = ["--num-supernodes", "2", "--run-config", "max-composites=2", "sample-steps=2",
            'methods="cut,freepih"']  # fmt: skip
    proc = subprocess.run(
        [str(BIN / "flower-simulation"), "--app", "fedlab.apps:harmonization", "--out", str(out),
         *args],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = json.loads((out / "history.json").read_text())[-1]["client-evaluate"]
    assert metrics["freepih-t300-g1-bg-error"] == 0.0
    assert metrics["cut-style-dist"] > 0 and 0 < metrics["freepih-t300-g1-ssim"] < 1
