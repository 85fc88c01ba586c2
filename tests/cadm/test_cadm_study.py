"""The published CaDM tables are the study's own output, regenerated from study.json."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STUDY = ROOT / "simulations" / "results" / "cadm" / "study.json"


def _study_module():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location(
        "cadm_study", ROOT / "simulations" / "cadm_study.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not STUDY.is_file(), reason="study not run yet")
def test_table_in_docs_is_regenerated_from_study_json() -> None:
    module = _study_module()
    study = json.loads(STUDY.read_text())
    summary = module.summarise(study)
    assert json.dumps(summary, sort_keys=True) == json.dumps(study["summary"], sort_keys=True)
    table = module.table(study, summary)
    assert table == (STUDY.parent / "table.md").read_text()
    assert table.strip() in (ROOT / "docs" / "cadm.md").read_text()


@pytest.mark.skipif(not STUDY.is_file(), reason="study not run yet")
def test_study_covers_the_declared_grid() -> None:
    study = json.loads(STUDY.read_text())
    rows = study["rows"]
    for clip in ("carphone", "bikes"):
        for method in ("bicubic", "cnn", "diffsr", "cadm-unaware", "cadm"):
            cells = {(r["r"], r["b"], r["crf"]) for r in rows
                     if r["clip"] == clip and r["method"] == method}  # fmt: skip
            assert cells == {(r, b, c) for r, b in [(2, 8), (2, 6), (4, 8), (4, 5)]
                             for c in (23, 28, 33, 38)}  # fmt: skip
        assert all(r["frames"] == 30 for r in rows if r["clip"] == clip)
