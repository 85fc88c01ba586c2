"""Diff-SR's image metrics, offline only: PSNR, SSIM, HaarPSI and GMSD of each output against
its high-resolution crop (all :mod:`fedlab.image_quality`'s, data range 1), the consistency
of an output with its low-resolution input (PSNR of the downsampled output against it), and
``detail``: :func:`fedlab.image_quality.spectral_detail_error` (dB gap between the output's and
the reference's high-frequency power, 0.25-0.5 cycles per pixel), the one measure here that
does not reward blur: full-reference metrics prefer a smooth guess to plausible detail.

No LPIPS, DISTS or FID: their backbones are pretrained weights we cannot download here.
MS-SSIM is not used (piq's 5 default scales need larger images than our 64-px crops).
"""

from __future__ import annotations

import logging

import torch
from fedlab.clients.sr.degrade import downsample_to

from fedlab import image_quality

log = logging.getLogger("fedlab.sr")

METRICS = ("psnr", "ssim", "haarpsi", "gmsd", "lr-psnr", "detail")
"""Higher is better for all but ``gmsd`` and ``detail`` (deviations: lower is better)."""


def image_metrics(out: torch.Tensor, ref: torch.Tensor, lr: torch.Tensor) -> dict[str, list[float]]:
    """Every metric of :data:`METRICS` for a batch ``(B, C, H, W)`` against ``ref``; ``lr`` is
    the low-resolution input (LR-consistency: PSNR of the downsampled output against it)."""
    out, ref = out.clamp(0, 1).float(), ref.clamp(0, 1).float()
    down = downsample_to(out, tuple(lr.shape[-2:]))
    return {
        "psnr": [image_quality.psnr(o, r) for o, r in zip(out, ref, strict=True)],
        "ssim": [image_quality.ssim(o, r) for o, r in zip(out, ref, strict=True)],
        "haarpsi": image_quality.haarpsi(out, ref, data_range=1.0, reduction="none").tolist(),
        "gmsd": image_quality.gmsd(out, ref, data_range=1.0, reduction="none").tolist(),
        "lr-psnr": [image_quality.psnr(d, r) for d, r in zip(down, lr, strict=True)],
        "detail": image_quality.spectral_detail_error(out, ref).tolist(),
    }
