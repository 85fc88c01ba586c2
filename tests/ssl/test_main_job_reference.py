"""The main job's end line: a stored local-only figure only for the very same setting."""

from __future__ import annotations

import json

from fedlab.clients.ssl.app import fedfoa
from fedlab.clients.ssl.reference import REFERENCE_FILE, reference_line, same_setting, setting_of


def _store(path, config, local=0.25, fed=0.27):
    methods = {
        "local-only": {"mean": local, "std": 0.01, "seeds": [0, 1, 2]},
        "fedfoa": {"mean": fed, "std": 0.02, "seeds": [0, 1, 2]},
    }
    path.write_text(json.dumps({"setting": setting_of(config), "methods": methods,
                                "command": "python x.py"}))  # fmt: skip


def test_the_reference_is_printed_for_the_same_setting_whatever_the_seed(tmp_path):
    stored = tmp_path / "ref.json"
    _store(stored, fedfoa.resolve_config())
    line = reference_line(fedfoa.resolve_config({"seed": 7, "fedfoa-lambda": 0.3}), stored)
    assert line is not None and "local-only SSL 0.250 +- 0.010" in line and "0.270" in line


def test_another_setting_gets_no_reference(tmp_path):
    stored = tmp_path / "ref.json"
    _store(stored, fedfoa.resolve_config())
    assert reference_line(fedfoa.resolve_config({"local-steps": 5}), stored) is None
    assert reference_line(fedfoa.resolve_config(), tmp_path / "missing.json") is None


def test_the_shipped_reference_matches_the_apps_defaults():
    """If the app's defaults change, the shipped figures no longer hold: rerun the script."""
    assert same_setting(
        json.loads(REFERENCE_FILE.read_text())["setting"], fedfoa.resolve_config()
    ), "rerun simulations/fedfoa_main_job_reference.py"
    assert reference_line(fedfoa.resolve_config()) is not None


def test_a_key_added_after_the_reference_matches_only_at_its_default(tmp_path):
    stored = tmp_path / "ref.json"
    _store(stored, fedfoa.resolve_config())
    old = json.loads(stored.read_text())
    del old["setting"]["fedfoa-schedule"]  # as if stored before the key existed
    stored.write_text(json.dumps(old))
    assert reference_line(fedfoa.resolve_config(), stored) is not None
    assert reference_line(fedfoa.resolve_config({"fedfoa-schedule": "ramp"}), stored) is None
