"""One logger hierarchy, configured once by the console scripts; ``--verbose`` and
``--list-keys`` work."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from fedlab.cli import flower_simulation_main, setup_logging

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("fedlab", "strategies", "attacks", "clients", "simulations")
FOREIGN = {"flwr", "absl"}  # third-party loggers we only turn up or down


@pytest.fixture(autouse=True)
def _restore_fedlab_logger():
    logger = logging.getLogger("fedlab")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


def test_plugin_log_lines_reach_the_cli_handler_and_verbose_adds_debug(capsys):
    plugin = logging.getLogger("fedlab.attacks.pgla.train")
    setup_logging(verbose=False)
    plugin.info("step 10 loss 0.5")
    plugin.debug("hidden detail")
    shown = capsys.readouterr().out
    assert "step 10 loss 0.5" in shown and "hidden detail" not in shown
    setup_logging(verbose=True)
    plugin.debug("hidden detail")
    assert "hidden detail" in capsys.readouterr().out


def test_every_module_logs_under_fedlab():
    outside = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not (
                    isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "getLogger"
                ):
                    continue
                if not node.args:
                    outside.append(f"{path}: root logger")
                    continue
                arg = node.args[0]
                if isinstance(arg, ast.Name) and arg.id == "__name__":
                    outside.append(f"{path}: getLogger(__name__) is outside 'fedlab'")
                elif isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    name = arg.value
                    if name != "fedlab" and not name.startswith("fedlab.") and name not in FOREIGN:
                        outside.append(f"{path}: {name!r}")
    assert not outside, outside


def test_list_keys_prints_type_value_and_meaning(capsys):
    assert flower_simulation_main(["--app", "fedlab.apps:dpfedavg", "--list-keys",
                                   "--run-config", "clip-norm=0.7"]) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    clip = next(line for line in lines if line.startswith("clip-norm "))
    assert clip.startswith("clip-norm (float) = 0.7  # C: L2 bound")
    assert all(" # " in line and "(" in line for line in lines)
