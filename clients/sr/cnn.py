"""A small trained arbitrary-scale super-resolution CNN: the trained baseline (LIIF-like).

LIIF (Chen et al.) serves every scale with one network queried at continuous coordinates.
This baseline keeps that property with less: a residual CNN on the bicubic-upsampled input,
told the scale through an extra constant channel (``log s``), as in VDSR with a scale map. It
is trained through THE loop on the prior's training crops with the same budget (steps, batch,
learning rate) as the prior, scales drawn uniformly in [1.5, 6] per batch, LR images from the
workload's one downsampler, L1 loss. A diffusers ``ModelMixin`` + ``ConfigMixin``
(``save_pretrained``/``from_pretrained``, safetensors).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from fedlab.clients.sr.data import TRAIN_IMAGES, RandomCrops
from fedlab.clients.sr.degrade import downsample, upsample
from torch import nn

from fedlab.diffusion import train_with_checkpoints
from fedlab.field_rules import Int
from fedlab.model_folder import MAX_CHANNELS, MAX_LAYERS, ModelSpec, load_model
from fedlab.training import TrainConfig

SCALE_RANGE = (1.5, 6.0)


class ArbitraryScaleCNN(ModelMixin, ConfigMixin):
    """Residual CNN: ``out = up + f([up, log s])``, images in [0, 1]."""

    @register_to_config
    def __init__(self, channels: int = 3, width: int = 48, depth: int = 8) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels + 1, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(width, channels, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, up: torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
        s = torch.as_tensor(scale, dtype=up.dtype).reshape(-1, 1, 1, 1)
        s_map = torch.log(s).expand(up.shape[0], 1, *up.shape[-2:])
        return up + self.net(torch.cat([up * 2 - 1, s_map], dim=1))

    @torch.no_grad()
    def super_resolve(self, lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``lr`` in [0, 1] to ``size``; the scale fed is the effective one, ``H / h``."""
        up = upsample(lr, size)
        return self(up, size[0] / lr.shape[-2]).clamp(0, 1)


CNN_SPEC = ModelSpec(
    name="ArbitraryScaleCNN",
    fields={
        "channels": Int(1, MAX_CHANNELS),
        "width": Int(1, MAX_CHANNELS),
        "depth": Int(2, MAX_LAYERS),
    },
    build=ArbitraryScaleCNN,
    hint="fix config.json or train the CNN again (simulations/diffsr_train_prior.py cnn)",
)
"""How a CNN folder is validated and built (:mod:`fedlab.model_folder`)."""


def load_cnn(folder: str | Path, *, max_parameters: int | None = None) -> ArbitraryScaleCNN:
    """The baseline CNN from a ``save_pretrained`` folder, checked before anything is allocated
    (:func:`fedlab.model_folder.load_model`): RGB (``channels`` 3), the parameter count on the
    meta device against ``max_parameters`` (default :data:`fedlab.limits.MAX_MODEL_PARAMETERS`).
    """
    model = load_model(
        folder, CNN_SPEC, max_parameters=max_parameters, require={"channels": (3,)}, source="CNN"
    )
    return model  # type: ignore[return-value]


def cnn_step(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
    """One batch: a random scale, LR by the one downsampler, L1 to the HR crop."""
    hr = (batch[0] + 1) / 2
    lo, hi = SCALE_RANGE
    scale = lo + (hi - lo) * float(torch.rand(()))
    lr = downsample(hr, scale)
    size = tuple(hr.shape[-2:])
    pred = model(upsample(lr, size), size[0] / lr.shape[-2])
    return F.l1_loss(pred, hr), {}


def train_cnn(
    out: str | Path, *, steps: int, batch_size: int = 16, lr: float = 1e-3, seed: int = 0
) -> list[dict[str, Any]]:
    """Train the baseline through THE loop with checkpoints; final model in ``out/cnn``."""
    out = Path(out)
    torch.manual_seed(seed)
    model = ArbitraryScaleCNN()
    dataset = RandomCrops(TRAIN_IMAGES, 32, 16384, seed=12)
    result = train_with_checkpoints(
        model, dataset, cnn_step,
        TrainConfig(steps=1, batch_size=batch_size, optimizer="adam", lr=lr),
        out=out, total_steps=steps, checkpoint_every=max(1, min(200, steps)), seed=seed,
    )  # fmt: skip
    model.eval().save_pretrained(out / "cnn", safe_serialization=True)
    return result["history"]
