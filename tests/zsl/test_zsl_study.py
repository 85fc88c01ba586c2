"""Published ZSL figures: federated cells come from the apps, tables from the committed JSON."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from fedlab.apps import zsl_parsnets
from fedlab.inprocess import run_in_process
from fedlab.workload import build_workload

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "simulations" / "results" / "zsl"
TINY_FEDERATION = {"num-server-rounds": 2, "local-steps": 1, "lr": 0.003}


@pytest.fixture(scope="module")
def script():
    """The benchmark script as a module, registered so its ``module:attr`` workloads import."""
    spec = importlib.util.spec_from_file_location(
        "zsl_benchmark", ROOT / "simulations" / "zsl_benchmark.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _last_evaluation(folder: Path) -> dict:
    return json.loads((folder / "history.json").read_text())[-1]["evaluate"]


@pytest.mark.extended  # 10 s; the slow tier reproduces a ZSL compo cell the same way
def test_a_federated_cell_equals_the_apps_own_run(script, tmp_path):
    """The script's federated cell and run_in_process of the same config and seed write the
    same T1, acc-s, acc-u and H; its uncalibrated H is the app's run at gzsl-gamma 0."""
    parsnets = next(m for m in script.METHODS if m.name == "ParsNets")
    tiny = dataclasses.replace(parsnets, federation=TINY_FEDERATION)
    cell = script.federated_cell(tiny, "shapes", 1, {}, 2.5, tmp_path / "study")

    assert cell["app"] == "zsl_parsnets"
    assert cell["config"]["gzsl-gamma"] == 2.5 and cell["config"]["num-server-rounds"] == 2
    same = {**cell["config"], "out-dir": str(tmp_path / "a")}
    run_in_process(zsl_parsnets, zsl_parsnets.resolve_config(same))
    app = _last_evaluation(tmp_path / "a")
    assert {k: cell["metrics"][k] for k in ("T1", "acc-s", "acc-u", "H")} == {
        k: app[k] for k in ("T1", "acc-s", "acc-u", "H")
    }
    uncalibrated = {**cell["config"], "gzsl-gamma": 0.0, "out-dir": str(tmp_path / "b")}
    run_in_process(zsl_parsnets, zsl_parsnets.resolve_config(uncalibrated))
    assert cell["metrics"]["H-uncalibrated"] == pytest.approx(
        _last_evaluation(tmp_path / "b")["H"], abs=1e-12
    )


def test_the_validation_run_uses_the_validation_task_only(script, tmp_path):
    """The federated calibration run is the app on seen training data: its unseen classes are
    seen classes of the real split, chosen by the workload's zsl-validation-classes key."""
    parsnets = next(m for m in script.METHODS if m.name == "ParsNets")
    config = script.federated_config(
        parsnets, "shapes", 0, {}, validation=True, gamma=0.0, run_dir=tmp_path
    )
    assert config.workload == "zsl_parsnets"
    assert config.zsl_validation_classes == script.VALIDATION_CLASSES
    validation = build_workload(config)
    real = build_workload(config.replace(zsl_validation_classes=0))
    assert set(validation.data.unseen) <= set(real.data.seen)
    assert set(validation.data.test_unseen) <= set(real.data.trainval)


def test_docs_tables_are_the_committed_results(script):
    results = json.loads((RESULTS / "results.json").read_text())
    full = script.table(results, script.feature_flops())
    docs = (ROOT / "docs" / "zsl.md").read_text()
    assert full.replace("### ", "#### ") in docs
    assert script.results_readme(results) == (RESULTS / "README.md").read_text()
    assert script.compact_table(results, "shapes") in docs  # the summary at the top


def test_every_federated_cell_names_the_app_run_it_came_from():
    """Trained methods' federated figures come from an app run whose config is recorded."""
    results = json.loads((RESULTS / "results.json").read_text())
    for cell in results:
        run = cell["federated-run"]
        if cell["method"] == "ESZSL":
            assert run["app"] is None  # closed form, federated exactly by statistics
        else:
            assert run["app"] in ("zsl_parsnets", "zsl_ar2")
            assert run["config"]["gzsl-gamma"] == cell["gamma"]["federated"]
