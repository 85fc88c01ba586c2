"""The compo study: cells come from the apps, tables from the committed JSON."""

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
RESULTS = ROOT / "simulations" / "results" / "zsl_compo"


@pytest.fixture(scope="module")
def study():
    """The study script as a module, registered so its ``module:attr`` workloads import."""
    spec = importlib.util.spec_from_file_location(
        "zsl_compo_study", ROOT / "simulations" / "zsl_compo_study.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _results() -> list[dict]:
    return json.loads((RESULTS / "results.json").read_text())


def test_tables_in_docs_are_the_committed_results(study):
    results = _results()
    docs = (ROOT / "docs" / "zsl.md").read_text()
    assert study.table(results) in docs
    assert study.results_readme(results) == (RESULTS / "README.md").read_text()
    assert study.compact_table(results) in docs  # the summary at the top of the page


def test_every_cell_follows_the_declared_protocol():
    results = _results()
    for cell in results:
        if cell["mode"] == "central":
            if cell["method"] in ("MLP", "ParsNets"):  # the same search budget for both
                assert len(cell["trials"]) == 20
            best = max(t["validation"]["AUSUC"] for t in cell["trials"])
            assert cell["validation"]["AUSUC"] == best
        elif cell["app"] is not None:
            config = cell["config"]
            assert config["gzsl-gamma"] == cell["gamma"]
            assert config["zsl-label-skew"] == cell["mode"].removeprefix("federated-")
            assert config["zsl-partition"] == "classes" and config["num-supernodes"] == 4
            assert config["zsl-dataset"] == "compo" and config["zsl-split"] == cell["split"]


def test_the_validation_run_uses_seen_training_data_only(study, tmp_path):
    mlp = next(m for m in study.METHODS if m.name == "MLP")
    config = study.federated_config(
        mlp, 0, {"mlp-width": 32}, "fedrs", validation=True, gamma=0.0, run_dir=tmp_path
    )
    assert config.workload == "zsl_mlp"
    assert config.zsl_validation_classes == study.VALIDATION_CLASSES
    assert config.mlp_width == 32 and config.zsl_label_skew == "fedrs"
    validation = build_workload(config)
    real = build_workload(config.replace(zsl_validation_classes=0))
    assert len(validation.data.unseen) == study.VALIDATION_CLASSES
    assert set(validation.data.unseen) <= set(real.data.seen)
    assert set(validation.data.test_unseen) <= set(real.data.trainval)


@pytest.mark.slow
def test_a_federated_cell_is_the_apps_own_run(study, tmp_path):
    mlp = next(m for m in study.METHODS if m.name == "MLP")
    tiny = dataclasses.replace(mlp, federation={"num-server-rounds": 2, "local-steps": 1})
    cell = study.federated_record(tiny, 1, {"mlp-width": 32}, "fedrs", tmp_path / "study")
    assert cell["app"] == "zsl_parsnets" and cell["config"]["zsl-label-skew"] == "fedrs"
    run_in_process(zsl_parsnets, zsl_parsnets.resolve_config(
        {**cell["config"], "out-dir": str(tmp_path / "a")}))  # fmt: skip
    app = json.loads((tmp_path / "a" / "history.json").read_text())[-1]["evaluate"]
    keys = ("T1", "acc-s", "acc-u", "H", "AUSUC")
    assert {k: cell["metrics"][k] for k in keys} == {k: app[k] for k in keys}
