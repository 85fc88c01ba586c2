"""The published Diff-SR tables are regenerated from the committed study JSON, not typed."""

from __future__ import annotations

import json
from pathlib import Path

from fedlab.clients.sr.report import compact, markdown, summary, with_prior_results

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "simulations" / "results" / "diffsr"


def _results() -> dict:
    results = with_prior_results(json.loads((RESULTS / "study.json").read_text()), ROOT)
    assert {"prior", "two-sample"} <= set(results)
    return results


def test_docs_and_study_md_are_the_committed_results():
    results = _results()
    full = markdown(results)
    assert (RESULTS / "study.md").read_text() == full + "\n"
    docs = (ROOT / "docs" / "diffsr.md").read_text()
    assert full in docs
    assert compact(results) in docs  # the summary at the top of the page


def test_goal_checks_are_computed_from_the_tables():
    info = summary(_results())
    assert 0 <= info["within-one-step"] <= info["scales"] == 6
    assert 0 <= info["control-within-one-step"] <= info["control-oracle-above-0"]
    assert info["control-scales"] == 6
    for metric in ("haarpsi", "detail"):
        assert set(info[f"{metric}-avg"]) >= {"bicubic", "prf", "ilvr", "ddnm", "cnn"}


def test_app_and_command_default_kappa_is_the_fitted_one():
    # The shipped constant is the kappa the committed study fitted (refit: update both).
    import inspect

    from fedlab.clients.sr.cli import super_resolve_file
    from fedlab.clients.sr.config import FITTED_KAPPA, DiffSRConfig

    fitted = _results()["calibration"]["kappa"]
    default = inspect.signature(super_resolve_file).parameters["kappa"].default
    assert DiffSRConfig().prf_kappa == fitted == FITTED_KAPPA == default
