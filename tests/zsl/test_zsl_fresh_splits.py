"""The fresh-split ZSL rerun: schedule chosen without test data, tables from the JSON."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fresh(simulation_script):
    return simulation_script("zsl_fresh_splits")


def _schedule_cells(fresh, auc_of) -> list[dict]:
    return [{"stage": "schedule", "split": s, "schedule": i, "validation": {"AUSUC": auc_of(i, s)}}
            for i in range(len(fresh.SCHEDULES)) for s in fresh.SPLITS]  # fmt: skip


def test_the_schedule_is_the_best_mean_validation_ausuc_and_ties_go_to_the_cheaper(fresh):
    cells = _schedule_cells(fresh, lambda i, s: 0.1 + 0.01 * (i == 5) + 0.001 * s)
    assert fresh.selected_schedule(cells) == 5
    tied = _schedule_cells(fresh, lambda i, s: 0.2)
    cost = [s["num-server-rounds"] * s["local-steps"] for s in fresh.SCHEDULES]
    assert cost[fresh.selected_schedule(tied)] == min(cost)
    assert fresh.selected_schedule(cells[:-1]) is None  # one validation run missing


def test_the_new_splits_are_unseen_by_the_first_study(fresh):
    assert set(fresh.SPLITS).isdisjoint({0, 1, 2})
    assert len(fresh.SCHEDULES) == len({tuple(s.items()) for s in fresh.SCHEDULES})


def test_docs_tables_are_the_committed_results(fresh):
    results = fresh.load_all(fresh.OUT)
    assert set(results) == set(fresh.METHOD_NAMES)
    assert fresh.tables(results) in (ROOT / "docs" / "zsl.md").read_text()
    assert fresh.results_readme(results) == (fresh.OUT / "README.md").read_text()
    readme = " ".join((ROOT / "README.md").read_text().split())  # wrapped at 100 columns
    assert fresh.readme_summary(results) in readme


def test_every_committed_cell_follows_the_declared_protocol(fresh):
    results = fresh.load_all(fresh.OUT)
    for name, records in results.items():
        central = {r["split"]: r for r in records if r["stage"] == "central"}
        assert sorted(central) == list(fresh.SPLITS)
        if name == "ESZSL":
            continue
        assert all(len(c["trials"]) == 20 for c in central.values())
        chosen = fresh.selected_schedule(records)
        assert chosen is not None
        federated = [r for r in records if r["stage"] == "federated"]
        assert {(r["split"], r["remedy"]) for r in federated} == {
            (s, m) for s in fresh.SPLITS for m in fresh.REMEDIES
        }
        for cell in federated:
            config = cell["config"]
            assert cell["schedule"] == chosen
            assert {k: config[k] for k in fresh.SCHEDULES[chosen]} == fresh.SCHEDULES[chosen]
            assert config["zsl-validation-classes"] == 0 and config["gzsl-gamma"] == cell["gamma"]
            assert config["zsl-split"] == cell["split"]
            assert config["zsl-label-skew"] == cell["remedy"]
            for k, v in central[cell["split"]]["selected"].items():
                assert k == "lr" or config[k] == v  # the split's selected hyperparameters
