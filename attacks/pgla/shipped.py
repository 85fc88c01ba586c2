"""The trained denoisers shipped as package data of ``fedlab.attacks.pgla``: ``weights/pgla``
(UNet, scheduler, gradient transform) and ``weights/dncnn`` (DnCNN, gradient transform), each a
plain denoiser folder that :func:`fedlab.attacks.pgla.denoisers.load_denoiser` loads.

They were trained by ``fedlab pgla train`` (see docs/pgla.md); the training runs (their
``train_config.json``, ``latest.json`` and the optimizer state, which is pickle and so not
shipped) stay under ``simulations/results/pgla/denoisers/``. Light on purpose: no torch.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def shipped_denoiser(name: str) -> Path:
    """The folder of the shipped denoiser ``name`` (``pgla`` or ``dncnn``)."""
    return Path(str(files("fedlab.attacks.pgla").joinpath("weights", name)))


#: denoiser registry name -> shipped folder (the audit's defaults)
SHIPPED_DENOISERS = {name: shipped_denoiser(name) for name in ("pgla", "dncnn")}
