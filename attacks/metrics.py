"""Reconstruction quality on images in [0, 1]: MSE, PSNR and SSIM (scikit-image), labels.

A batch is reconstructed in no particular order, so :func:`match_order` pairs each true image
with the reconstruction closest to it (Hungarian assignment on MSE) before scoring.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def _hwc(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().double().clamp(0, 1).permute(1, 2, 0).numpy()


def mse(truth: torch.Tensor, recon: torch.Tensor) -> float:
    """Mean squared error of two ``(C, H, W)`` images in [0, 1]."""
    return float(np.mean((_hwc(truth) - _hwc(recon)) ** 2))


def psnr(truth: torch.Tensor, recon: torch.Tensor) -> float:
    """PSNR in dB with data_range 1 (inf-safe: identical images give 100 dB)."""
    if mse(truth, recon) == 0.0:
        return 100.0
    return float(peak_signal_noise_ratio(_hwc(truth), _hwc(recon), data_range=1.0))


def ssim(truth: torch.Tensor, recon: torch.Tensor) -> float:
    """SSIM with data_range 1 over channels (window shrunk for images under 7 pixels)."""
    t, r = _hwc(truth), _hwc(recon)
    win = min(7, t.shape[0], t.shape[1])
    win -= 1 - win % 2  # odd
    return float(structural_similarity(t, r, data_range=1.0, channel_axis=-1, win_size=max(win, 3)))


def match_order(truth: torch.Tensor, recon: torch.Tensor) -> np.ndarray:
    """Index ``j[i]`` of the reconstruction paired with true image ``i`` (min total MSE)."""
    cost = np.array([[mse(t, r) for r in recon] for t in truth])
    rows, cols = linear_sum_assignment(cost)
    return cols[np.argsort(rows)]


def label_accuracy(truth: torch.Tensor, predicted: torch.Tensor) -> float:
    """Fraction of true labels recovered, as multisets (order-free)."""
    t = torch.bincount(truth.long().flatten(), minlength=1)
    p = torch.bincount(predicted.long().flatten(), minlength=1)
    n = max(len(t), len(p))
    t = torch.nn.functional.pad(t, (0, n - len(t)))
    p = torch.nn.functional.pad(p, (0, n - len(p)))
    return float(torch.minimum(t, p).sum()) / max(int(truth.numel()), 1)


def score(
    truth: torch.Tensor, truth_labels: torch.Tensor, recon: torch.Tensor, labels: torch.Tensor
) -> dict[str, float]:
    """Mean MSE, PSNR, SSIM over the matched batch, and label accuracy.

    Parameters
    ----------
    truth, recon : torch.Tensor
        ``(B, C, H, W)`` images in [0, 1].
    truth_labels, labels : torch.Tensor
        ``(B,)`` true and predicted labels.
    """
    order = match_order(truth, recon)
    pairs = [(truth[i], recon[j]) for i, j in enumerate(order)]
    return {
        "mse": float(np.mean([mse(t, r) for t, r in pairs])),
        "psnr": float(np.mean([psnr(t, r) for t, r in pairs])),
        "ssim": float(np.mean([ssim(t, r) for t, r in pairs])),
        "label_accuracy": label_accuracy(truth_labels, labels),
    }
