"""Trained weights shipped as package data: ``<package>/weights/<name>/`` (safetensors and
their JSON configs only), found through :mod:`importlib.resources`, so a wheel install finds
them wherever it lies and whatever the current folder is."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def shipped_weights(package: str, name: str) -> Path:
    """The folder ``weights/<name>`` of ``package`` (e.g. ``"fedlab.clients.sr"``).

    Installed packages are plain folders (pip unpacks wheels), so the resource is a real path
    that ``from_pretrained`` and ``safetensors`` can open.
    """
    return Path(str(files(package).joinpath("weights", name)))
