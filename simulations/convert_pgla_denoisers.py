"""Convert PGLA / DnCNN denoiser folders to the diffusers-mixin layout, without retraining.

Before the diffusers mixins a denoiser folder held ``transform.json`` at its top (and, for
DnCNN, ``dncnn_config.json`` + ``dncnn.safetensors``). Now the transform is a ``ConfigMixin``
saved as ``transform/transform_config.json`` and DnCNN a ``ModelMixin`` saved as ``dncnn/``
(``config.json`` + ``diffusion_pytorch_model.safetensors``); PGLA's ``unet/`` and
``scheduler/`` were diffusers folders already and stay as they are. The weights are copied
tensor for tensor and checked bit-equal after reloading; the old files are removed only then.

Usage::

    python simulations/convert_pgla_denoisers.py runs/my-old-pgla runs/my-old-dncnn

Each argument is a denoiser folder or a training run folder (every ``checkpoints/step-*`` in it
is converted); folders already converted are left alone, so running it twice is harmless. The
shipped denoisers (package data, ``attacks/pgla/weights/``) are converted already.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch
from fedlab.attacks.pgla.dncnn import MODEL_SUBFOLDER, DnCNN, load_dncnn
from fedlab.attacks.pgla.transform import (
    LEGACY_TRANSFORM_FILE,
    TRANSFORM_FIELDS,
    GradientImageTransform,
)
from safetensors.torch import load_file

from fedlab.errors import FedlabError

log = logging.getLogger("fedlab.convert_pgla_denoisers")

LEGACY_DNCNN_CONFIG = "dncnn_config.json"
LEGACY_DNCNN_WEIGHTS = "dncnn.safetensors"


def denoiser_folders(folder: Path) -> list[Path]:
    """``folder`` itself, or every checkpoint of the training run folder ``folder``."""
    checkpoints = sorted((folder / "checkpoints").glob("step-*"))
    return checkpoints or [folder]


def convert_folder(folder: Path) -> bool:
    """Convert one denoiser folder in place; ``False`` when it was already converted.

    Raises
    ------
    FedlabError
        If the folder is in neither layout, or a reloaded tensor differs from the original.
    """
    legacy_transform = folder / LEGACY_TRANSFORM_FILE
    if not legacy_transform.is_file():
        GradientImageTransform.from_pretrained(folder)  # refuses a folder in neither layout
        return False
    data = json.loads(legacy_transform.read_text())
    transform = GradientImageTransform(**{name: data[name] for name in TRANSFORM_FIELDS})
    transform.save_pretrained(folder)
    if GradientImageTransform.from_pretrained(folder) != transform:
        raise FedlabError(f"the converted transform in {folder} differs from {legacy_transform}")
    legacy_files = [legacy_transform]
    if (folder / LEGACY_DNCNN_CONFIG).is_file():
        config = json.loads((folder / LEGACY_DNCNN_CONFIG).read_text())
        weights = load_file(str(folder / LEGACY_DNCNN_WEIGHTS))
        model = DnCNN(**config)
        model.load_state_dict(weights, strict=True)
        model.save_pretrained(folder / MODEL_SUBFOLDER, safe_serialization=True)
        reloaded = load_dncnn(folder)[0].state_dict()
        if reloaded.keys() != weights.keys() or not all(
            torch.equal(reloaded[name], tensor) for name, tensor in weights.items()
        ):
            raise FedlabError(f"the converted DnCNN weights in {folder} differ from the original")
        legacy_files += [folder / LEGACY_DNCNN_CONFIG, folder / LEGACY_DNCNN_WEIGHTS]
    for path in legacy_files:
        path.unlink()
    return True


def main(argv: list[str] | None = None) -> int:
    """Convert every folder named on the command line; exit code 2 on a bad folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="denoiser or training run folders")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        for run in args.folders:
            if not run.is_dir():
                raise FedlabError(f"{run} is not a folder; give a denoiser or training run folder")
            for folder in denoiser_folders(run):
                state = "converted" if convert_folder(folder) else "already converted"
                log.info("%s: %s", folder, state)
    except FedlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
