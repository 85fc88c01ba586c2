"""Shared fixtures.

Tests run single-threaded: CI has two cores, and one thread per test keeps timings stable.

Flower refuses to build a ``Message`` outside a run ("TaskIdentity.run_id is not set") unless an
earlier simulation in the same process set it, which makes mock-reply tests depend on their
order. ``flower_identity`` gives every test the same identity a simulation would set, and
restores the previous one afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch
from hypothesis import settings

from fedlab.flower_compat import saved_task_identity

# Property tests draw the same examples on every run (a CI result does not depend on luck) and
# keep no example database in the tree; HYPOTHESIS_PROFILE=explore draws new ones.
settings.register_profile("fedlab", derandomize=True, database=None, deadline=None)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fedlab"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``extended`` wins over a module's ``slow``: ``pytest -m slow`` leaves out a test marked
    both, unless the marker expression names ``extended`` itself."""
    if "extended" in (config.option.markexpr or ""):
        return
    left_out = [item for item in items if item.get_closest_marker("extended")]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not item.get_closest_marker("extended")]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def flower_identity() -> Iterator[None]:
    with saved_task_identity():
        yield


def _load_simulation(name: str):
    """A script under simulations/ as a module (they are not a package); its siblings import."""
    import importlib.util
    import sys
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "simulations"
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def simulation_script():
    """``simulation_script(name)``: the study script ``simulations/<name>.py`` as a module."""
    return _load_simulation
