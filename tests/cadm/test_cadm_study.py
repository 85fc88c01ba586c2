"""The published CaDM tables are the study's own output, regenerated from study.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STUDY = ROOT / "simulations" / "results" / "cadm" / "study.json"


@pytest.mark.skipif(not STUDY.is_file(), reason="study not run yet")
def test_table_in_docs_is_regenerated_from_study_json(simulation_script) -> None:
    module = simulation_script("cadm_study")
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
    assert {"bicubic", "cnn", "cadm-unaware", "cadm"} <= set(study["protocol"]["methods"])
    for clip in ("carphone", "bikes"):
        for method in study["protocol"]["methods"]:
            cells = {(r["r"], r["b"], r["crf"]) for r in rows
                     if r["clip"] == clip and r["method"] == method}  # fmt: skip
            assert cells == {(r, b, c) for r, b in [(2, 8), (2, 6), (4, 8), (4, 5)]
                             for c in (23, 28, 33, 38)}  # fmt: skip
        assert all(r["frames"] == 30 for r in rows if r["clip"] == clip)


def test_what_the_fix_alone_moved_is_regenerated_from_both_studies(simulation_script) -> None:
    module = simulation_script("cadm_study")
    before, after = (
        json.loads((STUDY.parent / f"study-{tag}.json").read_text())
        for tag in ("first-old-path", "old-decoders-fixed-path")
    )
    table = module.fix_table(before, after)
    assert table == (STUDY.parent / "table-fix.md").read_text()
    assert table.strip() in (ROOT / "docs" / "cadm.md").read_text()


@pytest.mark.skipif(not (STUDY.parent / "training-validate.json").is_file(),
                    reason="training not validated yet")  # fmt: skip
def test_training_tables_in_docs_are_regenerated_from_their_json(simulation_script) -> None:
    module = simulation_script("cadm_train")
    out = STUDY.parent
    validation = module.validation_table(json.loads((out / "training-validate.json").read_text()))
    central = json.loads((out / "training-central.json").read_text())
    federated = {n: json.loads((out / f"training-federated-{n}.json").read_text())
                 for n in ("aware", "unaware")}  # fmt: skip
    curve = module.curve_table(central, federated)
    docs = (ROOT / "docs" / "cadm.md").read_text()
    for table, name in ((validation, "table-validation.md"), (curve, "table-training.md")):
        assert table == (out / name).read_text()
        assert table.strip() in docs
