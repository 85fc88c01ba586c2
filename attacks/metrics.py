"""Reconstruction quality on images in [0, 1]: MSE, PSNR, SSIM and label accuracy.

A batch is reconstructed in no particular order, so :func:`match_order` pairs each true image
with the reconstruction closest to it (Hungarian assignment on MSE) before scoring. PSNR and
SSIM are :mod:`fedlab.image_quality`'s (data range 1, per image, then the mean over the batch).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from fedlab import image_quality


def _hwc(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().double().clamp(0, 1).permute(1, 2, 0).numpy()


def mse(truth: torch.Tensor, recon: torch.Tensor) -> float:
    """Mean squared error of two ``(C, H, W)`` images in [0, 1]."""
    return float(np.mean((_hwc(truth) - _hwc(recon)) ** 2))


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
        "psnr": float(np.mean([image_quality.psnr(t, r) for t, r in pairs])),
        "ssim": float(np.mean([image_quality.ssim(t, r) for t, r in pairs])),
        "label_accuracy": label_accuracy(truth_labels, labels),
    }
