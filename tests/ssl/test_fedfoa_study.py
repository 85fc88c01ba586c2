"""The FedFoA study's figures are the fedfoa app's own, and its published tables are its JSON."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from fedlab.apps import fedfoa
from fedlab.errors import FedlabError
from fedlab.inprocess import run_in_process

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "simulations" / "results" / "fedfoa"

TINY_STUDY = argparse.Namespace(
    clients=2, rounds=2, steps=2, batch_size=16, probe_size=200,
    hetero="cnn:4,resnet:2", homo="cnn:4", lam=1.0, rank=3, warmup=1, sweep=False,
    partitioner="dirichlet", alpha=0.1, dataset="textured-shapes", min_partition_size=2,
)  # fmt: skip
# Small enough for a fast test; the study's projector (64) would dominate its run time.
TINY_MODEL = {"proj-dim": 8, "proj-hidden": 16, "partitioner": "iid"}


def _without_timings(figures: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in figures.items() if not k.endswith("seconds")}


def _script(name: str = "fedfoa_compare"):
    """A study script under simulations/, loaded as a module (they are not a package)."""
    if str(ROOT / "simulations") not in sys.path:  # the scripts import their siblings
        sys.path.insert(0, str(ROOT / "simulations"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "simulations" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("method", ["hetero fedfoa", "homo fedavg-ssl"])
def test_a_study_cell_equals_the_apps_own_run(method, tmp_path):
    """The script's cell and ``run_in_process`` of the same resolved config give equal figures."""
    script = _script()
    setting = {**script.study_setting(TINY_STUDY), **TINY_MODEL}
    changes = script.methods(TINY_STUDY)[method]
    config = script.cell_config(setting, changes, seed=3, run_dir=tmp_path / "study")
    cell = script.run_cell(config)

    app_config = fedfoa.resolve_config({**config.to_mapping(), "out-dir": str(tmp_path / "app")})
    run_in_process(fedfoa, app_config)
    summary = json.loads((tmp_path / "app" / "summary.json").read_text())
    final = summary["final"]
    app_figures = {**final["train"], **final["evaluate"]}
    assert cell.keys() == app_figures.keys()
    # Wall time is the one figure two runs of the same config cannot share.
    assert _without_timings(cell) == _without_timings(app_figures)
    assert cell["probe-acc-mean"] == final["evaluate"]["probe-acc-mean"]
    # The study's cell is a normal run folder of the app, config included.
    written = json.loads((tmp_path / "study" / "config.json").read_text())
    assert written["app"] == "fedfoa" and written["seed"] == 3
    assert (tmp_path / "study" / "history.json").is_file()


def test_random_init_probe_is_the_clientapps_answer_before_training(tmp_path):
    """The random-init baseline equals the evaluate handler's probe of each client's init model."""
    from fedlab.clients.ssl.client import init_model, probe_metrics

    from fedlab.workload import build_workload

    script = _script()
    setting = {**script.study_setting(TINY_STUDY), **TINY_MODEL}
    config = script.cell_config(
        setting, {"encoders": TINY_STUDY.hetero}, seed=1, run_dir=tmp_path / "init"
    )
    workload = build_workload(config)
    expected = [
        probe_metrics(workload, init_model(workload, p), seed=1)["probe-acc"]
        for p in range(config.num_supernodes)
    ]
    assert script.random_init_probe(config) == pytest.approx(sum(expected) / len(expected))


def test_a_run_folder_without_a_final_probe_is_refused(tmp_path):
    script = _script()
    (tmp_path / "summary.json").write_text(
        json.dumps({"stopped-early": "round 1: 0 of 4 clients replied", "final": None})
    )
    with pytest.raises(FedlabError, match="no final probe accuracy"):
        script.figures_from_run_folder(tmp_path)


def test_docs_tables_are_the_committed_results():
    """Each published FedFoA table is regenerated from its JSON by the script's table function."""
    script = _script()
    short = json.loads((RESULTS / "fedfoa_compare.json").read_text())["runs"]
    long = json.loads((RESULTS / "fedfoa_compare_long.json").read_text())["runs"]
    docs = (ROOT / "docs" / "fedfoa.md").read_text()
    scaling = [
        (json.loads(path.read_text())["runs"], path.stem)
        for path in sorted(RESULTS.glob("scaling_?.json"))
    ]
    assert [name for _, name in scaling][:1] == ["scaling_A"]
    for runs, name in [(short, "fedfoa_compare"), (long, "fedfoa_compare_long"), *scaling]:
        table = script.summarize(runs)
        assert table + "\n" == (RESULTS / f"{name}.md").read_text()
        assert table in docs
    assert script.readme_rows(short, long) in docs  # the summary at the top of the page


def test_seeds_without_a_partition_are_refused_before_any_cell_runs():
    script = _script()
    args = argparse.Namespace(
        clients=4, rounds=1, steps=1, batch_size=16, probe_size=50, partitioner="dirichlet",
        alpha=0.1, dataset="textured-shapes", min_partition_size=700,
    )  # fmt: skip
    with pytest.raises(FedlabError, match=r"for seeds \[0\].*run the next seeds"):
        script.check_partitions_exist(args, [0])
    args.min_partition_size = 2
    script.check_partitions_exist(args, [0])  # exists: no error


def test_evidence_has_no_never_held_probe_where_every_client_holds_every_class():
    row = {"probe-acc-mean": 0.2, "probe-acc-own-mean": 0.2, "relation-gap": 2.9}
    regimes = {
        "B": {"runs": {"fedfoa": [{**row, "probe-acc-unseen-mean": 0.1}]}},
        "C": {"runs": {"fedfoa": [row], "raw pixels": [{"probe-acc-mean": 0.16}]}},
    }
    lines = _script("fedfoa_scaling").evidence(regimes).splitlines()[2:]
    assert lines == ["| B | fedfoa | 0.200 | 0.100 | 2.90 |", "| C | fedfoa | 0.200 | - | 2.90 |"]


def test_the_scaling_summary_is_regenerated_from_the_regime_files():
    """scaling.md and its tables in docs, all from the scaling_<regime>.json files."""
    module = _script("fedfoa_scaling")
    regimes = module.load_regimes(RESULTS)
    table, evidence = module.table(regimes), module.evidence(regimes)
    assert (RESULTS / "scaling.md").read_text() == table + "\n\n" + evidence + "\n"
    docs = (ROOT / "docs" / "fedfoa.md").read_text()
    assert table in docs and evidence in docs
