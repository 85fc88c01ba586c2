"""THE degradation of this workload: one antialiased downsampler, one upsampler, everywhere.

Published PSNR at non-integer scales is irreproducible when downsamplers differ, so every
low-resolution image here (training the CNN, calibration, test crops, the LR-consistency
metric, ILVR's low-pass filter, DDNM's projection, the ``fedlab sr`` command) comes from
:func:`downsample`:

- images are float tensors ``(B, C, H, W)`` in [0, 1];
- the low-resolution size is ``(round(H / s), round(W / s))`` for scale ``s`` (Python's
  ``round``), so the effective factor at non-integer scales is ``H / round(H / s)``;
- ``torch.nn.functional.interpolate(mode="bicubic", antialias=True, align_corners=False)``
  (PIL-style antialiasing: the cubic kernel widened by the factor), then clamped to [0, 1].

:func:`upsample` is plain bicubic (``antialias=False``, ``align_corners=False``) to a given
size, clamped to [0, 1]: the bicubic baseline and the start of every diffusion method.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fedlab.errors import FedlabError


def check_scale(scale: float) -> float:
    """``scale`` as a float if it is a finite number >= 1, else a one-line error."""
    if not (isinstance(scale, int | float) and math.isfinite(scale) and scale >= 1):
        raise FedlabError(
            f"scale {scale!r} must be a finite number >= 1 (an upscaling factor, e.g. 2 or 2.5); "
            "this is super-resolution, not downscaling"
        )
    return float(scale)


def lr_size(hr_size: tuple[int, int], scale: float) -> tuple[int, int]:
    """Low-resolution size of an ``hr_size`` image at ``scale``: ``round(side / scale)``."""
    scale = check_scale(scale)
    h, w = (max(1, round(side / scale)) for side in hr_size)
    return h, w


def sr_size(lr: tuple[int, int], scale: float) -> tuple[int, int]:
    """Output size of super-resolving an ``lr`` image by ``scale``: ``round(side * scale)``."""
    scale = check_scale(scale)
    return round(lr[0] * scale), round(lr[1] * scale)


def _resize(
    x: torch.Tensor, size: tuple[int, int], antialias: bool, clamp: bool = True
) -> torch.Tensor:
    if x.ndim != 4:
        raise FedlabError(f"expected images of shape (B, C, H, W), got {tuple(x.shape)}")
    out = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=antialias)
    return out.clamp(0.0, 1.0) if clamp else out


def downsample(x: torch.Tensor, scale: float) -> torch.Tensor:
    """The one antialiased bicubic downsampler: ``x`` to ``lr_size(x, scale)``."""
    return _resize(x, lr_size(tuple(x.shape[-2:]), scale), antialias=True)


def downsample_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The same downsampler to an explicit size (LR-consistency of an output)."""
    return _resize(x, size, antialias=True)


def upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic upsampling to ``size`` (the bicubic baseline)."""
    return _resize(x, size, antialias=False)


def lowpass(x: torch.Tensor, lr: tuple[int, int]) -> torch.Tensor:
    """``upsample(downsample(x))`` through ``lr`` size without clamping (a linear operator on
    any values, e.g. noisy diffusion states in [-1, 1] units): ILVR's low-pass filter."""
    size = tuple(x.shape[-2:])
    return _resize(_resize(x, lr, antialias=True, clamp=False), size, antialias=False, clamp=False)


def back_project(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``x + up(y - down(x))`` without clamping: one DDNM-style range-space correction that
    moves ``x``'s low-resolution content onto the observation ``y`` (bicubic ``up`` stands in
    for the pseudo-inverse of the antialiased ``down``)."""
    size = tuple(x.shape[-2:])
    residual = y - _resize(x, tuple(y.shape[-2:]), antialias=True, clamp=False)
    return x + _resize(residual, size, antialias=False, clamp=False)
