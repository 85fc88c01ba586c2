"""A researcher's own app runs from its folder beside fedlab's apps, and every import resolves to
its owner (issue 28): the folder holds strategies.py, attacks.py and clients/ of the user's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.user_app import WHERE, write_user_folder

ROOT = Path(__file__).resolve().parents[2]
RUN_BOTH = """
from fedlab.cli import add_app_dir, resolve_app
from fedlab.inprocess import run_in_process

add_app_dir(".")  # what flower-simulation does with its default --app-dir
for name in ("myapp:app", "fedlab.apps:fedavg"):
    spec = resolve_app(name)
    config = spec.resolve_config({"num-supernodes": 2, "num-server-rounds": 1,
                                  "local-epochs": 1, "out-dir": f"runs/{spec.name}"})
    assert run_in_process(spec, config)["rounds-finished"] == 1
"""


@pytest.mark.extended  # 15 s; the slow tier runs the same folder under Ray
def test_a_users_app_and_a_fedlab_app_run_from_the_users_folder(tmp_path):
    folder = write_user_folder(tmp_path / "research")
    env = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    ran = subprocess.run([sys.executable, "-c", RUN_BOTH], cwd=folder, env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert json.loads((folder / "runs" / "myapp" / "config.json").read_text())["app"] == "myapp"
    assert (folder / "runs" / "fedavg" / "history.json").is_file()
    where = subprocess.run([sys.executable, "-c", WHERE], cwd=folder, env=env,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert where.returncode == 0, where.stderr[-3000:]
    files = json.loads(where.stdout)
    for name in ("attacks", "strategies", "clients.helper", "myapp"):
        assert Path(files[name]).is_relative_to(folder), (name, files[name])
    for name in ("fedlab.strategies.fedfoa", "fedlab.attacks.dlg", "fedlab.clients.supervised.app"):
        assert not Path(files[name]).is_relative_to(folder), (name, files[name])


def test_app_dir_must_be_a_folder(tmp_path, capsys):
    from fedlab.cli import flower_simulation_main

    code = flower_simulation_main(["--app", "myapp:app", "--app-dir", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--app-dir" in err
