"""CaDM's measurements: PSNR, SSIM, VMAF, temporal flicker and the Bjontegaard delta rate.

- PSNR and SSIM of a clip: the means over its frames of :func:`fedlab.image_quality.psnr` and
  :func:`fedlab.image_quality.ssim` of each RGB frame in [0, 1] (data range 1; SSIM with the
  shared Gaussian window, sigma 1.5);
- VMAF by ``vmaf-torch`` (its embedded default model v0.6.1, no download) on the BT.601 luma
  (:func:`fedlab.image_quality.luma`) of the frames in 0..255, per frame with motion, then
  averaged over the clip;
- flicker: the mean absolute frame-to-frame change (0..255 scale) of a clip, reported for the
  restored clip beside the source's, and the temporal error ``mean |d(out) - d(src)|``;
- BD-rate: the standard Bjontegaard delta rate, **hand-written with numpy** (no library):
  ``log10(bytes)`` is fitted as a cubic polynomial of quality for each curve (lower degree
  below 4 points), both fits are integrated over the overlapping quality interval only, and the
  mean log-rate difference ``d`` gives ``(10^d - 1) * 100`` percent (negative: fewer bytes for
  the same quality). An overlap below ``min_overlap`` (1 dB of PSNR, 1 VMAF point) gives
  ``None`` ("n/a").
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch

from fedlab import image_quality


def per_frame_mean(
    metric: Callable[[torch.Tensor, torch.Tensor], float], out: torch.Tensor, ref: torch.Tensor
) -> float:
    """Mean over the frames of ``metric(out_t, ref_t)``, clips ``(T, 3, H, W)`` in [0, 1]."""
    return float(np.mean([metric(o, r) for o, r in zip(out, ref, strict=True)]))


def luma(frames: torch.Tensor) -> torch.Tensor:
    """BT.601 luma in 0..255, ``(T, 1, H, W)``."""
    return image_quality.luma(frames) * 255


@functools.lru_cache(maxsize=1)
def _vmaf_model():  # noqa: ANN202
    from vmaf_torch import VMAF

    return VMAF(temporal_pooling=False, enable_motion=True, clip_score=True).eval()


@torch.no_grad()
def vmaf(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Mean VMAF (0-100) of a clip, ``vmaf-torch``'s embedded default model."""
    score = _vmaf_model()(luma(ref).float(), luma(out).float())
    return float(score.mean())


def flicker(frames: torch.Tensor) -> float:
    """Mean absolute frame-to-frame change (0..255); 0 for a single frame."""
    if len(frames) < 2:
        return 0.0
    return float((frames[1:] - frames[:-1]).abs().mean() * 255)


def temporal_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """``mean |(out_t - out_{t-1}) - (ref_t - ref_{t-1})|`` (0..255)."""
    if len(out) < 2:
        return 0.0
    return float(((out[1:] - out[:-1]) - (ref[1:] - ref[:-1])).abs().mean() * 255)


def clip_metrics(out: torch.Tensor, ref: torch.Tensor, *, with_vmaf: bool = True) -> dict:
    """PSNR, SSIM, VMAF and flicker of a restored clip against its source."""
    metrics = {
        "psnr": per_frame_mean(image_quality.psnr, out, ref),
        "ssim": per_frame_mean(image_quality.ssim, out, ref),
        "flicker": flicker(out), "flicker-source": flicker(ref),
        "temporal-error": temporal_error(out, ref),
    }  # fmt: skip
    if with_vmaf:
        metrics["vmaf"] = vmaf(out, ref)
    return metrics


def bd_rate(rate_ref: list[float], quality_ref: list[float], rate_test: list[float],
            quality_test: list[float], *, min_overlap: float = 1.0) -> float | None:  # fmt: skip
    """Bjontegaard delta rate (%) of ``test`` against ``ref`` over the overlapping quality.

    Returns ``None`` where the overlap is below ``min_overlap`` or a curve has < 2 points.
    """
    if min(len(rate_ref), len(rate_test)) < 2:
        return None
    q_ref, q_test = np.asarray(quality_ref, float), np.asarray(quality_test, float)
    lr_ref = np.log10(np.asarray(rate_ref, float))
    lr_test = np.log10(np.asarray(rate_test, float))
    low = max(q_ref.min(), q_test.min())
    high = min(q_ref.max(), q_test.max())
    if high - low < min_overlap:
        return None
    p_ref = np.polyfit(q_ref, lr_ref, min(3, len(q_ref) - 1))
    p_test = np.polyfit(q_test, lr_test, min(3, len(q_test) - 1))
    int_ref, int_test = np.polyint(p_ref), np.polyint(p_test)
    area_ref = np.polyval(int_ref, high) - np.polyval(int_ref, low)
    area_test = np.polyval(int_test, high) - np.polyval(int_test, low)
    diff = (area_test - area_ref) / (high - low)
    return float((10**diff - 1) * 100)
