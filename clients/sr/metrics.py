"""Image-quality metrics, offline only: PSNR and SSIM (scikit-image), HaarPSI and GMSD
(:mod:`fedlab.clients.image_metrics`, ported from piq 0.8.0 and checked against its figures),
and the consistency of an output with its low-resolution input.

No LPIPS, DISTS or FID: their backbones are pretrained weights we cannot download here.
MS-SSIM is not used (piq's 5 default scales need larger images than our 64-px crops).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from fedlab.clients.image_metrics import gmsd, haarpsi
from fedlab.clients.sr.degrade import downsample_to
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

log = logging.getLogger("fedlab.sr")

METRICS = ("psnr", "ssim", "haarpsi", "gmsd", "lr-psnr")
"""Higher is better for all but ``gmsd`` (a deviation: lower is better)."""


def _hwc(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().double().clamp(0, 1).permute(1, 2, 0).numpy()


def psnr(out: torch.Tensor, ref: torch.Tensor) -> float:
    """PSNR in dB of one ``(C, H, W)`` image in [0, 1] (data range 1); 100 for identical."""
    value = peak_signal_noise_ratio(_hwc(ref), _hwc(out), data_range=1.0)
    return 100.0 if math.isinf(value) else float(value)


def ssim(out: torch.Tensor, ref: torch.Tensor) -> float:
    """SSIM of one ``(C, H, W)`` image (scikit-image, Gaussian window as Wang et al.)."""
    return float(structural_similarity(
        _hwc(ref), _hwc(out), data_range=1.0, channel_axis=2, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False,
    ))  # fmt: skip


def image_metrics(out: torch.Tensor, ref: torch.Tensor, lr: torch.Tensor) -> dict[str, list[float]]:
    """Every metric of :data:`METRICS` for a batch ``(B, C, H, W)`` against ``ref``; ``lr`` is
    the low-resolution input (LR-consistency: PSNR of the downsampled output against it)."""
    out, ref = out.clamp(0, 1).float(), ref.clamp(0, 1).float()
    down = downsample_to(out, tuple(lr.shape[-2:]))
    return {
        "psnr": [psnr(o, r) for o, r in zip(out, ref, strict=True)],
        "ssim": [ssim(o, r) for o, r in zip(out, ref, strict=True)],
        "haarpsi": haarpsi(out, ref, data_range=1.0, reduction="none").tolist(),
        "gmsd": gmsd(out, ref, data_range=1.0, reduction="none").tolist(),
        "lr-psnr": [psnr(d, r) for d, r in zip(down, lr, strict=True)],
    }
