"""Optional dependency families (pip extras) and the one-line message when one is missing.

A core install (``pip install fedlab``) runs ``fedavg``, ``dpfedavg``, ``fedfoa``, the ZSL apps,
traces and the DLG/iDLG/IG attacks. The diffusion family (``diffusion``, ``diffsr``, the
harmonization apps, PGLA and the audit's learned denoisers) needs ``fedlab[diffusion]``; the video
family (Arena, CaDM) ``fedlab[video]`` (CaDM both). ``pip install "fedlab[dev]"`` pulls all.
"""

from __future__ import annotations

import importlib.util

from fedlab.errors import FedlabError

#: extra -> (import name, distribution) of what it adds; kept equal to pyproject.toml's extras
#: (tests/core/test_extras.py checks that).
EXTRAS: dict[str, tuple[tuple[str, str], ...]] = {
    "diffusion": (("diffusers", "diffusers"), ("pywt", "PyWavelets")),
    "video": (
        ("av", "av"),
        ("skvideo", "scikit-video"),
        ("pycocotools", "pycocotools"),
        ("vmaf_torch", "vmaf-torch"),
        ("yuvio", "yuvio"),
    ),
}


class MissingExtra(FedlabError):
    """An optional dependency family is not installed; the message says which extra to add.

    ``extra`` and ``absent`` let a caller name the missing piece its own way (:meth:`for_`).
    """

    def __init__(self, extra: str, what: str, absent: list[str]) -> None:
        super().__init__(install_hint(extra, what, absent))
        self.extra, self.absent = extra, absent

    def for_(self, what: str) -> MissingExtra:
        """The same error, naming ``what`` (``"`fedlab sr`"``, ``"app 'diffsr'"``)."""
        return MissingExtra(self.extra, what, self.absent)


def extra_of(module: str) -> str | None:
    """The extra that provides the top-level import ``module``, if any."""
    top = module.split(".")[0]
    return next((name for name, mods in EXTRAS.items() if top in dict(mods)), None)


def missing(extra: str) -> list[str]:
    """The distributions of ``extra`` that cannot be imported here."""
    if extra not in EXTRAS:
        raise FedlabError(f"unknown extra {extra!r}; known: {', '.join(EXTRAS)}")
    return [dist for mod, dist in EXTRAS[extra] if importlib.util.find_spec(mod) is None]


def install_hint(extra: str, what: str, absent: list[str]) -> str:
    return (
        f"{what} needs the '{extra}' extra ({', '.join(absent)} not installed); install it with "
        f"pip install 'fedlab[{extra}]'"
    )


def require(extras: tuple[str, ...] | list[str], what: str) -> None:
    """Raise a one-line :class:`FedlabError` naming the first extra of ``extras`` not installed.

    ``what`` names the app or command, e.g. ``"app 'diffsr'"``.
    """
    for extra in extras:
        absent = missing(extra)
        if absent:
            raise MissingExtra(extra, what, absent)


def explain_missing_module(exc: ModuleNotFoundError, what: str) -> MissingExtra | None:
    """The one-line error for an import that failed because an extra is missing, or None."""
    name = exc.name or ""
    extra = extra_of(name)
    if extra is None:
        return None
    return MissingExtra(extra, what, missing(extra) or [name])
