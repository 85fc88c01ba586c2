"""The fedfoa app through ``flower-simulation`` under Ray, mixing a CNN and a ResNet (slow tier)."""

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


def test_fedfoa_app_with_two_encoder_architectures_completes(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    args = [
        "--num-supernodes",
        "2",
        "--run-config",
        "num-server-rounds=2",
        "local-steps=2",
        'encoders="cnn:4,resnet:4"',
        "probe-size=300",
        "probe-every=1",
        "batch-size=16",
    ]
    proc = subprocess.run(
        [str(BIN / "flower-simulation"), "--app", "fedlab.apps:fedfoa", "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "probe" in proc.stdout
    history = json.loads((out / "history.json").read_text())
    assert [h["round"] for h in history] == [1, 2]
    for rec in history:
        assert rec["replies"] == 2 and rec["failures"] == 0
        assert {"probe-acc-enc0", "probe-acc-enc1", "probe-acc-mean"} <= set(rec["evaluate"])
        # factors: r (D + 1) float32 with the default rank 16 and proj-dim 64, not weights
        assert 4 * 16 * 65 <= rec["train"]["upload-bytes-per-client"] < 4 * 16 * 65 + 400
    assert history[1]["train"]["align-weight"] == 1.0  # warm-up of 1 round, then aligned
