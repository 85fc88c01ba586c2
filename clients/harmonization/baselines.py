"""Training-free baselines: cut-and-paste, histogram matching and Reinhard colour transfer
inside the mask (SDEdit is in :mod:`fedlab.clients.harmonization.freepih`, it needs the prior).

All take and return ``(3, H, W)`` tensors in [0, 1] with a ``(H, W)`` bool mask; the pixels
outside the mask are returned unchanged.
"""

from __future__ import annotations

import numpy as np
import torch


def _pixels(image: torch.Tensor, mask: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    hwc = image.permute(1, 2, 0).double().numpy()
    m = mask.numpy()
    return hwc[m], hwc[~m]


def _put(image: torch.Tensor, mask: torch.Tensor, values: np.ndarray) -> torch.Tensor:
    out = image.permute(1, 2, 0).numpy().copy()
    out[mask.numpy()] = np.clip(values, 0, 1).astype(out.dtype)
    return torch.from_numpy(out.transpose(2, 0, 1).copy())


def cut_and_paste(composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The composite itself."""
    return composite.clone()


def histogram_matching(composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``skimage.exposure.match_histograms`` of the foreground pixels to the background's,
    channel by channel."""
    from skimage.exposure import match_histograms

    fg, bg = _pixels(composite, mask)
    matched = match_histograms(fg[:, None, :], bg[:, None, :], channel_axis=-1)[:, 0, :]
    return _put(composite, mask, matched)


def reinhard(composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Reinhard et al. colour transfer: per-channel mean and std of the foreground moved to
    the background's in CIE Lab (scikit-image's ``rgb2lab`` / ``lab2rgb``)."""
    from skimage.color import lab2rgb, rgb2lab

    fg, bg = _pixels(composite, mask)
    lab_f, lab_b = rgb2lab(fg[:, None, :])[:, 0], rgb2lab(bg[:, None, :])[:, 0]
    scale = lab_b.std(0) / (lab_f.std(0) + 1e-6)
    moved = (lab_f - lab_f.mean(0)) * scale + lab_b.mean(0)
    return _put(composite, mask, lab2rgb(moved[:, None, :])[:, 0])


BASELINES = {"cut": cut_and_paste, "histogram": histogram_matching, "reinhard": reinhard}
