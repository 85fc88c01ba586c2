"""The published FreePIH tables are regenerated from the committed study JSON, not typed, and
the app's and the command's defaults are the setting the study chose on the tuning set."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "simulations" / "results" / "pih" / "study.json"

pytestmark = pytest.mark.skipif(not RESULTS.is_file(), reason="study not run")


def _study():
    spec = importlib.util.spec_from_file_location(
        "pih_study", ROOT / "simulations" / "pih_study.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_hold_the_table_of_the_committed_results():
    study = _study()
    data = json.loads(RESULTS.read_text())
    text = study.table(data)
    assert text in (ROOT / "docs" / "freepih.md").read_text()
    assert data["goals"] == json.loads(json.dumps(study.goals(data)))


def test_headline_follows_the_declared_tuning_rule_and_is_the_default():
    import argparse

    from fedlab.clients.harmonization.command import add_arguments
    from fedlab.clients.harmonization.config import HarmonizationConfig

    study = _study()
    data = json.loads(RESULTS.read_text())
    best = data["tuning"]["headline"]
    assert best == study.headline(data["tuning"]["rows"])
    config = HarmonizationConfig()
    (t,), (g,) = config.freepih_t, config.guidance
    assert best == f"freepih-t{t}-g{g:g}"
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--fg", "a", "--mask", "b", "--bg", "c", "--out", "d"])
    assert best == f"freepih-t{args.t}-g{args.guidance:g}"
