"""Trained weights the defaults use are package data (issue 28): each lies in a ``weights/``
folder of its package, is found through importlib.resources (not the repository root), holds
only safetensors and JSON (no pickle), and all of them fit the wheel's budget.

The per-family tests load each default with its own loader (tests/sr, tests/harmonization,
tests/arena, tests/cadm, tests/attacks/pgla, tests/zsl).
"""

from __future__ import annotations

import glob
import importlib
import tomllib
from importlib.resources import files
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: "module:attribute" of every default that names shipped weights -> the package holding them
DEFAULTS = {
    "fedlab.clients.sr.config:SHIPPED_PRIOR": "fedlab.clients.sr",
    "fedlab.clients.sr.config:SHIPPED_CNN": "fedlab.clients.sr",
    "fedlab.clients.harmonization.config:SHIPPED_PRIOR": "fedlab.clients.harmonization",
    "fedlab.clients.cadm.config:SHIPPED_DECODER": "fedlab.clients.cadm",
    "fedlab.clients.arena.cli:SHIPPED_WEIGHTS": "fedlab.clients.arena",
    "fedlab.clients.zsl.compo:WEIGHTS": "fedlab.clients.zsl",
    "fedlab.attacks.audit.config:SHIPPED_DENOISERS.pgla": "fedlab.attacks.pgla",
    "fedlab.attacks.audit.config:SHIPPED_DENOISERS.dncnn": "fedlab.attacks.pgla",
}
SHIPPABLE = (".safetensors", ".json")
#: the wheel stays at most 40 MB (issue 28), code and later weights included
BUDGET_BYTES = 40 * 2**20


def _resolve(spec: str) -> Path:
    module, _, attr = spec.partition(":")
    name, _, key = attr.partition(".")
    value = getattr(importlib.import_module(module), name)
    return Path(value[key] if key else value)


def _files(path: Path) -> list[Path]:
    return [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]


def _package_data_patterns() -> list[str]:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return setuptools["package-data"]["*"]


@pytest.mark.parametrize("spec", sorted(DEFAULTS))
def test_every_default_names_package_data(spec: str) -> None:
    path = _resolve(spec)
    weights = Path(str(files(DEFAULTS[spec]).joinpath("weights")))
    assert path.exists(), f"{spec} -> {path} is missing"
    assert path.is_relative_to(weights), f"{spec} -> {path} lies outside {weights}"
    shipped = _files(path)
    assert any(p.suffix == ".safetensors" for p in shipped)
    # what setuptools puts into the wheel: package-data globs, expanded recursively
    package_dir = weights.parent
    data = {package_dir / match for pat in _package_data_patterns()
            for match in glob.glob(pat, root_dir=package_dir, recursive=True)}  # fmt: skip
    for p in shipped:
        assert p.suffix in SHIPPABLE, f"{p} is neither safetensors nor JSON"
        assert p in data, f"{p} is not matched by the package-data patterns"


def _weights_folders() -> list[Path]:
    return sorted(p for folder in ("clients", "attacks", "strategies", "fedlab")
                  for p in (ROOT / folder).rglob("weights") if p.is_dir())  # fmt: skip


def test_weights_folders_hold_only_safetensors_and_json_within_budget() -> None:
    folders = _weights_folders()
    assert len(folders) >= 5
    everything = [p for folder in folders for p in _files(folder)]
    odd = [str(p.relative_to(ROOT)) for p in everything if p.suffix not in SHIPPABLE]
    assert odd == [], f"only safetensors and JSON ship (no pickle): {odd}"
    assert sum(p.stat().st_size for p in everything) < BUDGET_BYTES


def test_every_weights_folder_is_named_by_a_default() -> None:
    # nothing ships that no default uses (study-only models stay under simulations/results)
    named = {_resolve(spec) for spec in DEFAULTS}
    for folder in _weights_folders():
        for p in _files(folder):
            assert any(p.is_relative_to(n) for n in named), f"{p} is shipped but unused"
