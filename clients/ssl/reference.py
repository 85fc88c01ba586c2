"""The local-only SSL figure a ``fedfoa`` run is printed beside (issue 19's main-job rule).

``main_job_reference.json`` beside this module is written by
``simulations/fedfoa_main_job_reference.py``: the app's default setting run through the app
itself for FedFoA and for local-only SimCLR (``fedfoa-lambda=0``, the same models and seeds),
3 seeds each. A run whose setting differs (any key but the seed, the run folder and those that
do not change results) gets no reference: a figure from another setting would mislead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fedlab.config import coerce, field_types, to_field
from fedlab.key_groups import RunConfig

REFERENCE_FILE = Path(__file__).with_name("main_job_reference.json")

#: Keys that do not change what a run computes, or that name the method being compared.
NOT_SETTING = frozenset({"seed", "out-dir", "fedfoa-lambda", "round-timeout", "device"})


def setting_of(config: RunConfig) -> dict[str, Any]:
    """The keys of ``config`` that define the setting a reference figure holds for."""
    return {k: v for k, v in config.to_mapping().items() if k not in NOT_SETTING}


def same_setting(stored: dict[str, Any], config: RunConfig) -> bool:
    """Equal settings; a key added to the config after the reference was stored matches only
    at its default (which reproduces the behaviour from before the key existed)."""
    current = setting_of(config)
    defaults = setting_of(type(config)())
    stored = _as_typed(stored, type(config))
    added = {k for k in current if k not in stored}
    return stored == {k: v for k, v in current.items() if k not in added} and all(
        current[k] == defaults[k] for k in added
    )


def _as_typed(stored: dict[str, Any], cls: type[RunConfig]) -> dict[str, Any]:
    """The stored setting as the config holds it now: lists as tuples, and without keys the
    app no longer takes (e.g. ``workload``: it never honoured another value)."""
    types_ = field_types(cls)
    return {
        k: coerce(k, v, types_[to_field(k)])
        for k, v in stored.items()
        if to_field(k) in types_ and k not in NOT_SETTING
    }


def reference_line(config: RunConfig, path: Path = REFERENCE_FILE) -> str | None:
    """One log line with the stored local-only (and FedFoA) figures for ``config``'s setting,
    or None when nothing was stored for it."""
    if not path.is_file():
        return None
    stored = json.loads(path.read_text())
    if not same_setting(stored.get("setting") or {}, config):
        return None
    rows = stored["methods"]

    def fmt(name: str) -> str:
        row = rows[name]
        return f"{row['mean']:.3f} +- {row['std']:.3f} (seeds {', '.join(map(str, row['seeds']))})"

    return (
        f"same setting, stored reference ({stored['command']}): local-only SSL "
        f"{fmt('local-only')}, FedFoA {fmt('fedfoa')}"
    )
