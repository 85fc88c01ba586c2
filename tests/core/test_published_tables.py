"""Published privacy-utility figures come from the dpfedavg app and its committed JSON."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pytest

from fedlab.apps import dpfedavg
from fedlab.inprocess import run_in_process

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "simulations" / "results" / "privacy_utility"


def _script():
    spec = importlib.util.spec_from_file_location(
        "privacy_utility", ROOT / "simulations" / "privacy_utility.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_tables_are_the_committed_results():
    full, compact = _script().tables_from_results(
        json.loads((RESULTS / "privacy_utility.json").read_text())
    )
    assert full == (RESULTS / "privacy_utility.md").read_text()
    docs = (ROOT / "docs" / "dp.md").read_text()
    assert full in docs
    assert compact in docs  # the summary under "Privacy-utility"


# The DP cell stays in the fast tier; the no-DP one (11 s) is extended (fast-tier budget).
@pytest.mark.parametrize("setting", [pytest.param("no-dp", marks=pytest.mark.extended), "eps-8"])
def test_a_study_cell_equals_the_apps_own_run(setting, tmp_path):
    """The script's cell (a subprocess through the app) and run_in_process of the same config,
    with seeded DP noise, write the same figures."""
    script = _script()
    args = argparse.Namespace(
        out=tmp_path / "study", rounds=2, num_supernodes=10, sample_rate=0.5, delta=1e-5,
        seed=3, draws=1, backend="inprocess", seeded_noise=True, reuse=False,
    )  # fmt: skip
    overrides = dict(script.settings([8.0]))[setting]
    cell = script.run_one(setting, 0, overrides, args)
    config = dpfedavg.resolve_config({**cell["config"], "out-dir": str(tmp_path / "app")})
    run_in_process(dpfedavg, config)
    history = json.loads((tmp_path / "app" / "history.json").read_text())
    assert cell["accuracy-by-round"] == [r["evaluate"]["accuracy"] for r in history]
    assert cell["epsilon"] == history[-1]["train"].get("dp-client-epsilon")
