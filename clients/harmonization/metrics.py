"""Metrics held apart from FreePIH's guidance (the method must not optimise its own yardstick).

FreePIH's guidance uses box-filtered standardised grey levels (content) and the UNet's own
feature statistics (style); none of these is a metric here.

- **Content** (foreground against the source object, grey: :func:`fedlab.image_quality.luma`,
  ITU-R BT.601): ``ssim`` (:func:`fedlab.image_quality.ssim`, Gaussian window sigma 1.5, mean
  of the SSIM map inside the mask), ``haarpsi`` (:func:`fedlab.image_quality.haarpsi`, piq
  0.8.0's, on the mask's bounding box padded to >= 32 px, with the output's foreground pasted
  onto the source so that only the foreground differs), ``edge-f1`` (Canny, sigma 2,
  thresholds 0.05 / 0.15 on grey in [0, 1], inside the mask eroded by 2 px; an edge pixel
  matches if one of the other image lies within 1 px).
- **Style distance** between the output's foreground and its background:
  ``colour-dist`` = L2 distance of the per-channel mean and std in RGB [0, 1] (6 numbers);
  ``texture-dist`` = L1 distance of the uniform LBP histograms (P = 8, R = 1, 10 bins, on
  grey); ``style-dist`` = colour-dist + 0.5 texture-dist; ``style-dist-in``: the same with the
  output's foreground against the *input* background (differs only for SDEdit, which
  repaints the background too).
- **Background**: ``bg-error`` = max |output - input| outside the mask (0 = untouched).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import binary_dilation, binary_erosion
from skimage.feature import canny, local_binary_pattern

from fedlab import image_quality

CANNY_SIGMA, CANNY_LOW, CANNY_HIGH = 2.0, 0.05, 0.15
LBP_P, LBP_R = 8, 1
METRICS = ("ssim", "haarpsi", "edge-f1", "colour-dist", "texture-dist", "style-dist",
           "style-dist-in", "bg-error")  # fmt: skip


def grey(image: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` in [0, 1] -> ``(H, W)`` float64 grey (BT.601 luma)."""
    return image_quality.luma(image.double().clamp(0, 1))[0].numpy()


def _bbox(mask: np.ndarray, min_side: int = 32) -> tuple[slice, slice]:
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    out = []
    for lo, hi, size in ((ys.min(), ys.max() + 1, h), (xs.min(), xs.max() + 1, w)):
        side = min(size, max(min_side, hi - lo))
        start = int(np.clip((lo + hi - side) // 2, 0, size - side))
        out.append(slice(start, start + side))
    return out[0], out[1]


def haarpsi_fg(out: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    sy, sx = _bbox(mask)
    pasted = np.where(mask, out, ref)
    a = torch.from_numpy(pasted[sy, sx].copy()).float()[None, None]
    b = torch.from_numpy(ref[sy, sx].copy()).float()[None, None]
    return float(image_quality.haarpsi(a.clamp(0, 1), b.clamp(0, 1), data_range=1.0))


def edge_f1(out: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    """F1 of Canny edges of ``out`` against ``ref`` inside ``mask`` eroded by 2 px, 1-px
    tolerance; 1 when neither has an edge there."""
    region = binary_erosion(mask, iterations=2)
    eo = canny(out, CANNY_SIGMA, CANNY_LOW, CANNY_HIGH) & region
    er = canny(ref, CANNY_SIGMA, CANNY_LOW, CANNY_HIGH) & region
    if not eo.any() and not er.any():
        return 1.0
    precision = (eo & binary_dilation(er)).sum() / max(eo.sum(), 1)
    recall = (er & binary_dilation(eo)).sum() / max(er.sum(), 1)
    return float(0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))


def _lbp_hist(g: np.ndarray, region: np.ndarray) -> np.ndarray:
    codes = local_binary_pattern((g * 255).round().astype(np.uint8), LBP_P, LBP_R, "uniform")
    hist = np.bincount(codes[region].astype(int), minlength=LBP_P + 2).astype(np.float64)
    return hist / max(hist.sum(), 1.0)


def style_distances(image: torch.Tensor, mask: np.ndarray) -> dict[str, float]:
    """Colour-moment and LBP-texture distances of ``image``'s foreground against its
    background."""
    hwc = image.double().clamp(0, 1).permute(1, 2, 0).numpy()
    fg, bg = hwc[mask], hwc[~mask]
    moments = lambda p: np.concatenate([p.mean(0), p.std(0)])  # noqa: E731
    colour = float(np.linalg.norm(moments(fg) - moments(bg)))
    g = grey(image)
    texture = float(np.abs(_lbp_hist(g, mask) - _lbp_hist(g, ~mask)).sum())
    return {"colour-dist": colour, "texture-dist": texture, "style-dist": colour + 0.5 * texture}


def harmonization_metrics(
    out: torch.Tensor, source: torch.Tensor, background: torch.Tensor, mask: torch.Tensor
) -> dict[str, float]:
    """Every metric of :data:`METRICS` for one ``(3, H, W)`` output in [0, 1]."""
    m = mask.numpy().astype(bool)
    go, gs = grey(out), grey(source)
    bg_err = (out - background).abs().amax(0)[~mask]
    return {
        "ssim": image_quality.ssim(torch.from_numpy(go), torch.from_numpy(gs), mask=mask),
        "haarpsi": haarpsi_fg(go, gs, m),
        "edge-f1": edge_f1(go, gs, m),
        **style_distances(out, m),
        "style-dist-in": style_distances(torch.where(mask[None], out, background), m)["style-dist"],
        "bg-error": float(bg_err.max()) if bg_err.numel() else 0.0,
    }
