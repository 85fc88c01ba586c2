"""The named apps: ``flower-simulation --app fedlab.apps:<name>``.

Each is an :class:`~fedlab.appspec.AppSpec`; a researcher's own module can define one the same
way and pass ``--app mymodule:myapp``. Apps are imported on first access, so running one does
not pay for the others' dependencies (Opacus, diffusers).
"""

from __future__ import annotations

import importlib
from typing import Any

from fedlab.appspec import AppSpec

APP_MODULES = {
    "fedavg": "clients.supervised.app",
    "dpfedavg": "clients.dpfedavg.app",
    "fedfoa": "clients.ssl.app",
    "zsl_parsnets": "clients.zsl.app",
    "zsl_ar2": "clients.zsl.app",
}

__all__ = ["AppSpec", *APP_MODULES]


def __getattr__(name: str) -> Any:
    if name not in APP_MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    spec = getattr(importlib.import_module(APP_MODULES[name]), name)
    globals()[name] = spec
    return spec


def __dir__() -> list[str]:
    return sorted(__all__)
