"""Under Ray, ``flower-simulation --app myapp:app`` from the researcher's folder (its default
``--app-dir`` is that folder) runs, and so does a fedlab app from the same folder; the user's
strategies.py, attacks.py and clients/ are the ones their client handlers import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.user_app import RUN, write_user_folder

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "app",
    [pytest.param("myapp:app", marks=pytest.mark.slow),
     pytest.param("fedlab.apps:fedavg", marks=pytest.mark.extended)],
)  # fmt: skip
def test_flower_simulation_runs_from_the_users_folder(app, tmp_path):
    folder = write_user_folder(tmp_path / "research")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    out = folder / "runs" / "x"
    proc = subprocess.run(
        [str(BIN / "flower-simulation"), "--app", app, "--out", str(out), *RUN],
        cwd=folder, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds-finished"] == 1 and summary["stopped-early"] is None
