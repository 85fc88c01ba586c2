"""The population study's published figures: its table in docs/dp.md is the script's rendering
of its JSON, and every epsilon in it is the independent composition of the rounds it ran."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dp_accounting import dp_event
from dp_accounting.rdp import rdp_privacy_accountant as rdp
from fedlab.strategies.dp_accounting import RDP_ORDERS

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "simulations" / "results" / "population"


def test_the_docs_table_is_the_scripts_rendering_of_the_json(simulation_script):
    study = simulation_script("population_study")
    cells = json.loads((RESULTS / "study.json").read_text())["cells"]
    assert len(cells) == len(study.cells())
    assert study.table(cells) in (ROOT / "docs" / "dp.md").read_text()


def test_every_published_epsilon_is_the_independent_composition(simulation_script):
    study = simulation_script("population_study")
    cells = json.loads((RESULTS / "study.json").read_text())["cells"]
    private = [c for c in cells if c["epsilon"] is not None]
    assert len(private) == 9
    for cell in private:
        event = dp_event.PoissonSampledDpEvent(
            100 / cell["population"], dp_event.GaussianDpEvent(cell["noise-multiplier"])
        )
        accountant = rdp.RdpAccountant(RDP_ORDERS, rdp.NeighborRel.ADD_OR_REMOVE_ONE)
        accountant.compose(event, study.ROUNDS)
        assert cell["epsilon"] == pytest.approx(accountant.get_epsilon(study.DELTA), rel=1e-9)
        if "target" in cell:
            assert cell["epsilon"] <= cell["target"]


def test_the_benchmark_table_is_the_scripts_rendering_and_meets_its_goal(simulation_script):
    bench = simulation_script("population_bench")
    results = json.loads((RESULTS / "bench.json").read_text())
    assert bench.table(results) in (ROOT / "docs" / "dp.md").read_text()
    rows = {row["population"]: row["ours"] for row in results["rows"]}
    small, large = rows[1000], rows[1_000_000]
    assert large["median-round-seconds"] <= 1.5 * small["median-round-seconds"]
    assert large["peak-rss-mb"] <= 1.2 * small["peak-rss-mb"]
