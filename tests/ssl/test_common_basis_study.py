"""The common-basis study (issue 31): cells are app runs, it resumes, its tables are its JSON."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "simulations" / "results" / "fedfoa"
TINY = {"dataset": "textured-shapes", "image-size": 16, "num-supernodes": 2,
        "encoders": "cnn:4", "num-server-rounds": 2, "local-steps": 2, "batch-size": 16,
        "probe-size": 100, "min-partition-size": 2, "proj-dim": 8, "proj-hidden": 16}  # fmt: skip


def _study():
    sys.path.insert(0, str(ROOT / "simulations"))  # it imports fedfoa_compare beside it
    try:
        spec = importlib.util.spec_from_file_location(
            "fedfoa_common_basis", ROOT / "simulations" / "fedfoa_common_basis.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "simulations"))
    return module


def test_a_cell_is_an_app_run_written_at_once_and_never_run_twice(tmp_path, monkeypatch):
    study = _study()
    monkeypatch.setattr(study, "SETTING", TINY)
    monkeypatch.setattr(study, "OUT", tmp_path)
    out = tmp_path / "common_basis_select.json"
    cells = [("iid", "fedfoa anchor-gram", 0, study.METHODS["fedfoa anchor-gram"])]
    study.run_stage("select", cells, out)
    (row,) = json.loads(out.read_text())["rows"]
    run_dir = tmp_path / "runs" / "common_basis_select" / "iid-fedfoa-anchor-gram-seed0"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert row["probe-acc-mean"] == summary["final"]["evaluate"]["probe-acc-mean"]
    assert (
        json.loads((run_dir / "config.json").read_text())["run-config"]["relation-kind"]
        == "anchor-gram"
    )

    def must_not_run(config):
        raise AssertionError("a finished cell ran again")

    monkeypatch.setattr(study, "run_cell", must_not_run)
    study.run_stage("select", cells, out)
    assert len(json.loads(out.read_text())["rows"]) == 1


def test_the_ablation_is_the_variant_without_its_pull():
    study = _study()
    for variant in study.VARIANTS:
        ablation = study.ablation_of(variant)
        assert ablation["fedfoa-lambda"] == 0.0
        assert {k: v for k, v in ablation.items() if k != "fedfoa-lambda"} == {
            k: v for k, v in study.METHODS[variant].items() if k != "fedfoa-lambda"
        }


def test_an_ablation_that_trains_as_a_baseline_is_that_baseline():
    study = _study()
    assert study.ablation_name("fedfoa+fedavg") == "fedavg-ssl"
    assert study.ablation_name("fedfoa") == "local-only"
    assert study.ablation_name("fedfoa anchor-gram") == "local-only"
    assert study.ablation_name("fedfoa shared-init") == "fedfoa shared-init lambda=0"


def test_the_published_tables_are_the_committed_results():
    study = _study()
    text = study.report(study.load_rows("select"), study.load_rows("confirm"))
    assert text + "\n" == (RESULTS / "common_basis.md").read_text()
    assert text in (ROOT / "docs" / "fedfoa.md").read_text()
