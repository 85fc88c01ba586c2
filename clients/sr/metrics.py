"""Image-quality metrics, offline only: PSNR and SSIM (scikit-image), HaarPSI and GMSD (piq),
and the consistency of an output with its low-resolution input.

No LPIPS, DISTS or FID: their backbones are pretrained weights we cannot download here.
piq's MS-SSIM is not used (its 5 default scales need larger images than our 64-px crops).

piq's top-level ``import piq`` imports torchvision (for its VGG-based metrics), and the only
torchvision wheels available need a CUDA torch. HaarPSI and GMSD need neither, so their
modules are loaded without running piq's package ``__init__`` when torchvision is missing
(:func:`piq_function`).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import math
import sys
import types
from collections.abc import Callable

import numpy as np
import torch
from fedlab.clients.sr.degrade import downsample_to
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from fedlab.errors import FedlabError

log = logging.getLogger("fedlab.sr")

METRICS = ("psnr", "ssim", "haarpsi", "gmsd", "lr-psnr")
"""Higher is better for all but ``gmsd`` (a deviation: lower is better)."""


def piq_function(module: str, name: str) -> Callable:
    """``piq.<module>.<name>``, imported without piq's ``__init__`` if torchvision is absent.

    Raises
    ------
    FedlabError
        If piq is not installed.
    """
    if "piq" not in sys.modules:
        spec = importlib.util.find_spec("piq")
        if spec is None or not spec.submodule_search_locations:
            raise FedlabError(
                "piq is not installed; install it with `pip install --no-deps piq` (HaarPSI and "
                "GMSD need only torch; its torchvision dependency would break diffusers here)"
            )
        if importlib.util.find_spec("torchvision") is not None:
            importlib.import_module("piq")
        else:  # a bare package object, so that piq.<module> imports without piq/__init__.py
            package = types.ModuleType("piq")
            package.__path__ = list(spec.submodule_search_locations)
            package.__spec__ = spec
            sys.modules["piq"] = package
    return getattr(importlib.import_module(f"piq.{module}"), name)


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
    haarpsi = piq_function("haarpsi", "haarpsi")
    gmsd = piq_function("gmsd", "gmsd")
    out, ref = out.clamp(0, 1).float(), ref.clamp(0, 1).float()
    down = downsample_to(out, tuple(lr.shape[-2:]))
    return {
        "psnr": [psnr(o, r) for o, r in zip(out, ref, strict=True)],
        "ssim": [ssim(o, r) for o, r in zip(out, ref, strict=True)],
        "haarpsi": haarpsi(out, ref, data_range=1.0, reduction="none").tolist(),
        "gmsd": gmsd(out, ref, data_range=1.0, reduction="none").tolist(),
        "lr-psnr": [psnr(d, r) for d, r in zip(down, lr, strict=True)],
    }
