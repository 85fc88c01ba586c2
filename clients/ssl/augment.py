"""Batched, on-device image augmentations for self-supervised views (no PIL, no per-image loop).

For ``textured-shapes`` the class is the outline, so the views must disagree on everything else:
position and scale (random resized crop that keeps most of the image, since a tight crop can
cut the object away), mirror image, colour (brightness, contrast, saturation, channel order)
and, sometimes, colour altogether (grey). All randomness comes from the ``generator`` passed in,
so a client's views are fixed by its seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Strength of each augmentation; ``crop_scale`` is the range of the kept area fraction."""

    crop_scale: tuple[float, float] = (0.35, 1.0)
    flip: float = 0.5
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    channel_shuffle: float = 0.8
    grayscale: float = 0.2


def _uniform(n: int, low: float, high: float, g: torch.Generator, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g).to(device)


def random_resized_crop(
    x: torch.Tensor, scale: tuple[float, float], flip: float, g: torch.Generator
) -> torch.Tensor:
    """Crop a random area fraction in ``scale`` (aspect 3/4..4/3), resize back, maybe mirror."""
    n, dev = len(x), x.device
    area = _uniform(n, *scale, g, dev)
    log_ratio = _uniform(n, -0.2877, 0.2877, g, dev)  # log(3/4), log(4/3)
    ratio = torch.exp(log_ratio)
    sw = torch.sqrt(area * ratio).clamp(max=1.0)
    sh = torch.sqrt(area / ratio).clamp(max=1.0)
    tx = (torch.rand(n, generator=g).to(dev) * 2 - 1) * (1 - sw)
    ty = (torch.rand(n, generator=g).to(dev) * 2 - 1) * (1 - sh)
    mirror = torch.where(torch.rand(n, generator=g).to(dev) < flip, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0] = sw * mirror
    theta[:, 0, 2] = tx
    theta[:, 1, 1] = sh
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def colour_jitter(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Brightness, contrast and saturation factors, channel shuffles and grey, per image."""
    n, dev = len(x), x.device
    shape = (n, 1, 1, 1)
    x = x * _uniform(n, 1 - cfg.brightness, 1 + cfg.brightness, g, dev).view(shape)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * _uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, g, dev).view(shape) + mean
    grey = x.mean(dim=1, keepdim=True)
    x = (x - grey) * _uniform(n, 1 - cfg.saturation, 1 + cfg.saturation, g, dev).view(shape) + grey
    perms = torch.stack([torch.randperm(3, generator=g) for _ in range(n)]).to(dev)
    shuffle = (torch.rand(n, generator=g) < cfg.channel_shuffle).to(dev)
    perms = torch.where(shuffle[:, None], perms, torch.arange(3, device=dev))
    x = torch.gather(x, 1, perms[:, :, None, None].expand_as(x))
    to_grey = (torch.rand(n, generator=g) < cfg.grayscale).to(dev).view(shape)
    x = torch.where(to_grey, x.mean(dim=1, keepdim=True).expand_as(x), x)
    return x.clamp(0.0, 1.0)


def augment(x: torch.Tensor, g: torch.Generator, cfg: AugmentConfig | None = None) -> torch.Tensor:
    """One random view of a batch ``x`` (N, C, H, W) in [0, 1]; colour steps need C = 3."""
    cfg = cfg or AugmentConfig()
    x = random_resized_crop(x, cfg.crop_scale, cfg.flip, g)
    return colour_jitter(x, cfg, g) if x.shape[1] == 3 else x.clamp(0.0, 1.0)
