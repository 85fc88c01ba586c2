"""The published audit figures are the committed JSON of a `fedlab audit` run, tabulated."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "simulations" / "results" / "audit" / "default"


def _script():
    spec = importlib.util.spec_from_file_location(
        "audit_study", ROOT / "simulations" / "audit_study.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_tables_are_the_committed_audit() -> None:
    data = json.loads((RESULTS / "audit.json").read_text())
    wall = json.loads((RESULTS / "timing.json").read_text())["wall_s"]
    script = _script()
    full, compact = script.table_from_audit(data, wall), script.compact_table(data, wall)
    assert full == (RESULTS / "table.md").read_text()
    assert compact == (RESULTS / "compact.md").read_text()
    docs = (ROOT / "docs" / "audit.md").read_text()
    assert full in docs
    assert compact in docs  # the summary at the top of the page
    assert data["config"]["max_iterations"] == 1000 and len(data["settings"]) == 5


def test_the_full_preset_table_is_its_committed_audit() -> None:
    folder = RESULTS.parent / "full"
    data = json.loads((folder / "audit.json").read_text())
    wall = json.loads((folder / "timing.json").read_text())["wall_s"]
    compact = _script().compact_table(data, wall)
    assert compact == (folder / "compact.md").read_text()
    assert compact in (ROOT / "docs" / "audit.md").read_text()
