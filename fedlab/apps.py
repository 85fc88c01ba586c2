"""The named apps: ``flower-simulation --app fedlab.apps:<name>``.

Each is an :class:`~fedlab.appspec.AppSpec` declared in the ``fedlab.apps`` entry-point group
(fedlab's own in its pyproject.toml, a researcher's in theirs), so ``fedlab.apps:<name>``
resolves any installed app by name; a module of one's own also works directly as
``--app mymodule:myapp``. An app is imported on first access, so running one does not pay for
the others' dependencies (Opacus, diffusers).
"""

from __future__ import annotations

from typing import Any

from fedlab.appspec import AppSpec
from fedlab.registry import APPS

__all__ = ["AppSpec", "names"]


def names() -> list[str]:
    """Names of the installed apps, sorted."""
    return APPS.names()


def __getattr__(name: str) -> Any:
    if name.startswith("__") or name not in APPS:
        raise AttributeError(
            f"module {__name__!r} has no attribute {name!r}; installed apps: {', '.join(names())}"
        )
    return APPS.get(name, allow_import=False)


def __dir__() -> list[str]:
    return sorted(["AppSpec", "names", *names()])
