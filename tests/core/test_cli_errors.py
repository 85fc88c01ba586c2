"""Bad input: one line naming the value, exit code 2, no traceback, before Ray starts."""

import subprocess
import sys
from pathlib import Path

import pytest

from fedlab.cli import flower_simulation_main

APP = "fedlab.apps:fedavg"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--app", "fedlab.apps:nope"], "has no attribute 'nope'"),
        (["--app", "fedlab.nothere:app"], "cannot import module 'fedlab.nothere'"),
        (["--app", "fedlab.key_groups:RunConfig"], "not a fedlab AppSpec"),
        (["--app", APP, "--run-config", "strategy=fedfoo"], "unknown strategy 'fedfoo'; known:"),
        (["--app", APP, "--run-config", "dataset=cifar100"], "unknown dataset 'cifar100'; known:"),
        (["--app", APP, "--run-config", "learning-rate=0.1"], "unknown run-config key"),
        (["--app", APP, "--run-config", "num-server-rounds=many"], "must be int"),
        (
            ["--app", APP, "--run-config", "dataset=cifar10", "data-path=/no/such/dir"],
            "is not a folder",
        ),
        (["--app", APP, "--run-config", "dataset=mnist"], "needs data-path"),
        (["--app", APP, "--num-supernodes", "5000"], "5000 partitions"),
        (["--app", APP, "--run-config", "missing.toml"], "does not exist"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert flower_simulation_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1 and err.startswith("error: ")


def test_console_script_prints_no_traceback(tmp_path):
    exe = Path(sys.executable).parent / "flower-simulation"
    proc = subprocess.run(
        [str(exe), "--app", APP, "--run-config", "partitioner=random"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "partitioner 'random' is not one of: iid, dirichlet, shards" in proc.stderr


def test_list_keys(capsys):
    assert flower_simulation_main(["--app", APP, "--list-keys"]) == 0
    out = capsys.readouterr().out
    assert "num-server-rounds (int) = 10  # rounds of federated training" in out
    assert "local-epochs (int) = 3" in out


def test_a_broken_command_plugin_leaves_the_others_working(monkeypatch, capsys):
    from fedlab import cli
    from fedlab.registry import COMMANDS

    COMMANDS.names()  # the entry points are read before one is broken
    monkeypatch.setitem(COMMANDS._lazy, "brokenplugin", "no_such_pkg.cli:register")
    assert cli.fedlab_main(["apps"]) == 0
    assert "fedlab.apps:fedfoa" in capsys.readouterr().out
    assert cli.fedlab_main(["brokenplugin", "--x"]) == 2
    err = capsys.readouterr().err.strip()
    assert "command 'brokenplugin' could not be loaded" in err and "no_such_pkg" in err
    assert "\n" not in err
