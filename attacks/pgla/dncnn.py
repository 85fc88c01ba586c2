"""A DnCNN-style learned baseline (Zhang et al. 2017): residual CNN with a noise-level map.

Input: the noisy gradient image and a constant channel holding the noise std ``M`` (FFDNet's
noise map, so one network serves every level and gets the same side information PGLA gets);
output: the predicted noise, subtracted from the input. Trained on the same clean clipped
surrogate gradients as PGLA with Gaussian noise of std drawn log-uniform in ``noise_range``.
A diffusers ``ModelMixin`` + ``ConfigMixin``: a denoiser folder holds ``dncnn/``
(``config.json`` + ``diffusion_pytorch_model.safetensors``, written by ``save_pretrained``) and
``transform/transform_config.json``; loading reads local safetensors only, never a pickle.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from fedlab.attacks.pgla.transform import (
    CONVERT_HINT,
    LEGACY_TRANSFORM_FILE,
    GradientImageTransform,
)
from torch import nn

from fedlab.errors import FedlabError
from fedlab.field_rules import Int
from fedlab.model_folder import MAX_CHANNELS, MAX_LAYERS, ModelSpec, check_model_folder, load_model

MODEL_SUBFOLDER = "dncnn"


class DnCNN(ModelMixin, ConfigMixin):
    """Conv-BN-ReLU stack predicting the noise of a one-channel image.

    Parameters
    ----------
    depth : int
        Convolution layers (>= 2).
    channels : int
        Feature channels.
    """

    @register_to_config
    def __init__(self, depth: int = 8, channels: int = 32) -> None:
        super().__init__()
        if depth < 2 or channels < 1:
            raise FedlabError(
                f"DnCNN needs depth >= 2 and channels >= 1, got depth {depth}, channels "
                f"{channels}; raise them in the training config's model"
            )
        layers: list[nn.Module] = [nn.Conv2d(2, channels, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [
                nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                nn.GroupNorm(min(8, channels), channels),
                nn.ReLU(inplace=True),
            ]
        layers.append(nn.Conv2d(channels, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Denoised ``y`` given per-image noise stds ``m`` of shape ``(B,)``."""
        level = torch.log1p(m).view(-1, 1, 1, 1).expand_as(y)
        return y - self.net(torch.cat([y, level], dim=1)) * m.view(-1, 1, 1, 1)


def dncnn_loss(
    model: DnCNN,
    transform: GradientImageTransform,
    noise_range: tuple[float, float],
    device: torch.device | None = None,
) -> Any:
    """``loss_fn(flat_batch, generator)`` for :func:`fedlab.attacks.pgla.training.run_loop`."""
    lo, hi = math.log(noise_range[0]), math.log(noise_range[1])

    def loss_fn(flat: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        x = transform.to_image(flat)
        m = torch.exp(lo + (hi - lo) * torch.rand(x.shape[0], generator=gen))
        y = x + m.view(-1, 1, 1, 1) * torch.randn(x.shape, generator=gen)
        x, y, m = x.to(device), y.to(device), m.to(device)
        # error relative to the noise level, so every level weighs the same
        return ((model(y, m) - x) / m.view(-1, 1, 1, 1)).pow(2).mean()

    return loss_fn


def save_dncnn(model: DnCNN, transform: GradientImageTransform, folder: str | Path) -> Path:
    """Write ``dncnn/`` (config + safetensors weights) and ``transform/`` under ``folder``."""
    folder = Path(folder)
    model.save_pretrained(folder / MODEL_SUBFOLDER, safe_serialization=True)
    transform.save_pretrained(folder)
    return folder


DNCNN_SPEC = ModelSpec(
    name="DnCNN",
    fields={"depth": Int(2, MAX_LAYERS), "channels": Int(1, MAX_CHANNELS)},
    build=DnCNN,
    hint="fix config.json or train one with `fedlab pgla train --config dncnn-small`",
)
"""How a ``dncnn/`` folder is validated and built (:mod:`fedlab.model_folder`)."""


def _check_layout(folder: str | Path) -> Path:
    folder = Path(folder)
    if not (folder / MODEL_SUBFOLDER).is_dir():
        if (folder / LEGACY_TRANSFORM_FILE).is_file():
            raise FedlabError(
                f"{folder} holds a DnCNN in the layout before the diffusers mixins "
                f"(dncnn_config.json, dncnn.safetensors); {CONVERT_HINT}"
            )
        raise FedlabError(
            f"cannot load a DnCNN denoiser from {str(folder)!r}: it has no {MODEL_SUBFOLDER}/ "
            "folder (train one with `fedlab pgla train --config dncnn-small`)"
        )
    return folder


def check_dncnn_folder(folder: str | Path, *, max_parameters: int | None = None) -> int:
    """The pre-run check of a DnCNN denoiser folder: everything :func:`load_dncnn` checks, the
    model only built on the meta device. Returns its parameter count."""
    folder = _check_layout(folder)
    GradientImageTransform.from_pretrained(folder)
    return check_model_folder(folder / MODEL_SUBFOLDER, DNCNN_SPEC,
                              max_parameters=max_parameters, source="DnCNN")  # fmt: skip


def load_dncnn(
    folder: str | Path, *, max_parameters: int | None = None
) -> tuple[DnCNN, GradientImageTransform]:
    """Load what :func:`save_dncnn` wrote, from local safetensors only.

    ``dncnn/`` goes through :func:`fedlab.model_folder.load_model`: config typed and bounded,
    the parameter count on the meta device against ``max_parameters`` (default
    :data:`fedlab.limits.MAX_MODEL_PARAMETERS`), the weights' header, before any allocation.

    Raises
    ------
    FedlabError
        If files are missing, in the old layout, or do not match the architecture.
    """
    folder = _check_layout(folder)
    transform = GradientImageTransform.from_pretrained(folder)
    model = load_model(folder / MODEL_SUBFOLDER, DNCNN_SPEC, max_parameters=max_parameters,
                       source="DnCNN")  # fmt: skip
    return model, transform  # type: ignore[return-value]
