"""Full-reference image quality, the one module for it: PSNR, SSIM, BT.601 luma, HaarPSI, GMSD
and a spectral detail error.

Every figure of image quality the project reports (the gradient-leakage attacks, Diff-SR,
harmonization, CaDM) comes from here, and callers reach it as ``image_quality.psnr(...)``
(module attribute, not a name imported from it), so that one definition holds everywhere and a
test can replace it (``tests/test_shared_jobs.py`` does).

- :func:`psnr` and :func:`ssim` score one image against a reference and return a float;
  :func:`psnr` also takes a whole clip or batch (the MSE is pooled over all its pixels).
- :func:`luma` is ITU-R BT.601's luma ``0.299 R + 0.587 G + 0.114 B``: the grey level of the
  harmonization metrics, FreePIH's content guidance and CaDM's VMAF, and the Y of the YIQ space
  that HaarPSI and GMSD compare colour images in.
- :func:`haarpsi` and :func:`gmsd` are ports of piq 0.8.0 (``piq.haarpsi.haarpsi`` and
  ``piq.gmsd.gmsd``), operation for operation, with piq's defaults, so that they give piq's
  figures without piq: piq's package ``__init__`` imports torchvision, whose PyPI wheels need a
  CUDA torch and break diffusers next to the CPU torch used here.
  ``tests/test_image_quality.py`` checks them against figures that piq 0.8.0 computed on fixed
  scikit-image crops (``simulations/image_metrics_reference.py`` regenerates those figures
  where piq is installed). They take batches ``(N, C, H, W)`` with ``C`` = 1 (grey) or 3 (RGB)
  and values in ``[0, data_range]``.
- :func:`spectral_detail_error` compares the high-frequency power of an image's radially
  averaged spectrum (:func:`radial_power_spectrum`) with its reference's: a detail measure
  that, unlike the four above, does not reward blur, and needs no downloaded weights.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity

from fedlab.errors import FedlabError

__all__ = ["BT601_LUMA", "gmsd", "haarpsi", "luma", "psnr", "rgb2yiq", "ssim"]

PSNR_MAX_DB = 100.0
"""The PSNR of identical images (instead of infinity) and the most :func:`psnr` reports."""

SSIM_SIGMA = 1.5
"""Standard deviation (px) of SSIM's Gaussian window (Wang et al. 2004)."""

SSIM_RADIUS = 5
"""Radius of SSIM's window: scikit-image truncates the Gaussian at 3.5 sigma,
``int(3.5 * 1.5 + 0.5)`` = 5 px, an 11 x 11 window as Wang et al.'s."""

SSIM_K1, SSIM_K2 = 0.01, 0.03
"""SSIM's stability constants: ``C1 = (K1 L)^2``, ``C2 = (K2 L)^2`` with ``L`` the data range."""

BT601_LUMA = (0.299, 0.587, 0.114)
"""ITU-R BT.601's luma weights of R, G and B (the Y row of the YIQ/NTSC transform)."""

YCBCR_FULL_RANGE = (
    BT601_LUMA,
    (-0.168736, -0.331264, 0.5),
    (0.5, -0.418688, -0.081312),
)
"""Full-range BT.601 RGB -> YCbCr (JPEG/JFIF): luma, then the blue and red colour
differences, each chroma row summing to 0 (grey has zero chroma before the offset)."""

HAAR_SCALES = 3
"""HaarPSI's number of Haar scales: fixed at the paper's 3 (piq 0.8.0's ``scales`` argument
fails at any other value: the coarsest scale's channels are hard-coded as the weights)."""

GMSD_T = 170 / (255.0**2)
"""GMSD's stability constant for images in [0, 1] (Xue et al.'s 170 for [0, 255], as piq)."""

_YIQ = (
    BT601_LUMA,
    (0.5959, -0.2746, -0.3213),
    (0.2115, -0.5227, 0.3112),
)


def _check_pair(x: torch.Tensor, y: torch.Tensor, data_range: float, name: str) -> None:
    if not (torch.is_tensor(x) and torch.is_tensor(y)):
        raise FedlabError(f"{name}: x and y must be torch tensors, got {type(x)} and {type(y)}")
    if x.shape != y.shape:
        raise FedlabError(
            f"{name}: x and y must have one shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if not data_range > 0:
        raise FedlabError(f"{name}: data_range must be > 0, got {data_range}")


def _clipped(x: torch.Tensor, data_range: float) -> torch.Tensor:
    """``x`` as float64 on the CPU, clipped to ``[0, data_range]`` (what a display shows)."""
    return x.detach().cpu().double().clamp(0, data_range)


def psnr(x: torch.Tensor, y: torch.Tensor, *, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio (dB) of ``x`` against ``y``.

    ``10 log10(data_range^2 / MSE)``, the MSE averaged over *every* element of the two tensors,
    in float64, after clipping both to ``[0, data_range]``. One image ``(C, H, W)`` gives its
    PSNR. A clip or batch ``(T, C, H, W)`` gives the PSNR of the MSE pooled over all its frames
    (the whole-clip PSNR), which is not the mean of the per-frame PSNRs: a caller that reports
    that mean takes it over this function applied to each frame. Symmetric in ``x`` and ``y``.

    Parameters
    ----------
    x, y : torch.Tensor
        Tensors of one shape with values in ``[0, data_range]``.
    data_range : float
        The value of white (1 for [0, 1] images, 255 for 8-bit ones).

    Returns
    -------
    float
        At most :data:`PSNR_MAX_DB` (100 dB, what identical inputs give instead of infinity).

    Raises
    ------
    FedlabError
        For non-tensors, shapes that differ or ``data_range <= 0``.
    """
    _check_pair(x, y, data_range, "psnr")
    mse = float(torch.mean((_clipped(x, data_range) - _clipped(y, data_range)) ** 2))
    if mse == 0.0:
        return PSNR_MAX_DB
    return min(PSNR_MAX_DB, 10 * math.log10(data_range**2 / mse))


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float = 1.0,
    mask: torch.Tensor | None = None,
) -> float:
    """Structural similarity (SSIM) of one image ``x`` against ``y``, Wang et al.'s.

    The window is a Gaussian of sigma :data:`SSIM_SIGMA` = 1.5 px truncated at 3.5 sigma (11 x 11
    taps, normalised; borders reflected), the constants ``C1 = (0.01 L)^2`` and
    ``C2 = (0.03 L)^2`` with ``L = data_range``, and the variances and covariance are the
    window's population ones (not sample ones). The SSIM map is computed per channel by
    scikit-image's ``structural_similarity`` (``gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False``) in float64, after clipping both images to
    ``[0, data_range]``. Symmetric in ``x`` and ``y``.

    The score is the mean of the map over the channels and

    - without ``mask``: over the pixels at least the window's radius (5 px) from the border
      (scikit-image's crop against edge effects); on images under 11 px a side the radius
      shrinks to the largest that fits (the window itself stays the same);
    - with ``mask``: over the pixels inside ``mask``, the border included.

    Parameters
    ----------
    x, y : torch.Tensor
        One image, ``(C, H, W)`` or grey ``(H, W)``, of one shape, values in
        ``[0, data_range]``.
    data_range : float
        The value of white (1 for [0, 1] images, 255 for 8-bit ones).
    mask : torch.Tensor, optional
        ``(H, W)`` bool: average the map inside it only.

    Returns
    -------
    float
        1 for identical images, lower is worse (down to -1).

    Raises
    ------
    FedlabError
        For non-tensors, shapes that differ or are not 2-D/3-D, a mask of another size or an
        empty one, or ``data_range <= 0``.

    References
    ----------
    Z. Wang, A. C. Bovik, H. R. Sheikh and E. P. Simoncelli, "Image quality assessment: from
    error visibility to structural similarity", IEEE Transactions on Image Processing 13(4)
    (2004) 600-612.
    """
    _check_pair(x, y, data_range, "ssim")
    if x.dim() not in (2, 3):
        raise FedlabError(f"ssim: give one image (C, H, W) or (H, W), got {tuple(x.shape)}")
    radius = min(SSIM_RADIUS, (min(x.shape[-2:]) - 1) // 2)
    a = _clipped(x, data_range).numpy()
    b = _clipped(y, data_range).numpy()
    mean, smap = structural_similarity(
        a, b, data_range=data_range, channel_axis=0 if x.dim() == 3 else None,
        gaussian_weights=True, sigma=SSIM_SIGMA, use_sample_covariance=False, K1=SSIM_K1,
        K2=SSIM_K2, win_size=2 * radius + 1, full=True,
    )  # fmt: skip
    if mask is None:
        return float(mean)
    inside = np.asarray(torch.as_tensor(mask).cpu(), dtype=bool)
    if inside.shape != tuple(x.shape[-2:]) or not inside.any():
        raise FedlabError(
            f"ssim: mask must be a non-empty (H, W) = {tuple(x.shape[-2:])} bool map, got "
            f"{inside.shape} with {int(inside.sum())} pixels set"
        )
    return float(smap[..., inside].mean(dtype=np.float64))


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """Full-range BT.601 YCbCr of RGB values in [0, 255], channels last: ``(..., 3)`` ->
    ``(..., 3)`` with chroma offset by 128 (:data:`YCBCR_FULL_RANGE`), in ``rgb``'s dtype."""
    matrix = torch.tensor(YCBCR_FULL_RANGE, dtype=rgb.dtype, device=rgb.device)
    offset = torch.tensor((0.0, 128.0, 128.0), dtype=rgb.dtype, device=rgb.device)
    return rgb @ matrix.T + offset


def ycbcr_to_rgb(ycc: torch.Tensor) -> torch.Tensor:
    """The exact inverse of :func:`rgb_to_ycbcr` (unclipped), channels last."""
    matrix = torch.tensor(YCBCR_FULL_RANGE, dtype=torch.float64, device=ycc.device)
    offset = torch.tensor((0.0, 128.0, 128.0), dtype=ycc.dtype, device=ycc.device)
    return (ycc - offset) @ torch.linalg.inv(matrix).T.to(ycc.dtype)


def luma(x: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` of RGB images (:data:`BT601_LUMA`).

    Parameters
    ----------
    x : torch.Tensor
        RGB images, channels on axis -3: ``(3, H, W)``, ``(N, 3, H, W)``, ...

    Returns
    -------
    torch.Tensor
        The luma, on the same scale, dtype and device, the channel axis kept with size 1:
        ``(..., 1, H, W)``. Differentiable.
    """
    if x.dim() < 3 or x.size(-3) != 3:
        raise FedlabError(f"luma: images must be RGB (..., 3, H, W), got {tuple(x.shape)}")
    weights = torch.tensor(BT601_LUMA, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x * weights).sum(-3, keepdim=True)


def rgb2yiq(x: torch.Tensor) -> torch.Tensor:
    """RGB to YIQ (NTSC) for a batch ``(N, 3, H, W)``, with piq 0.8.0's weights.

    Parameters
    ----------
    x : torch.Tensor
        RGB images, shape ``(N, 3, H, W)``.

    Returns
    -------
    torch.Tensor
        YIQ images, shape ``(N, 3, H, W)``; channel 0 is the luma Y.
    """
    weights = torch.tensor(_YIQ, dtype=x.dtype, device=x.device).t()
    return torch.matmul(x.permute(0, 2, 3, 1), weights).permute(0, 3, 1, 2)


def _check(x: torch.Tensor, y: torch.Tensor, data_range: float, name: str) -> None:
    if not (torch.is_tensor(x) and torch.is_tensor(y)):
        raise FedlabError(f"{name}: x and y must be torch tensors, got {type(x)} and {type(y)}")
    if x.dim() != 4 or x.shape != y.shape:
        raise FedlabError(
            f"{name}: x and y must be batches (N, C, H, W) of one shape, got "
            f"{tuple(x.shape)} and {tuple(y.shape)}"
        )
    if x.size(1) not in (1, 3):
        raise FedlabError(f"{name}: images must have 1 (grey) or 3 (RGB) channels, got {x.size(1)}")
    if x.device != y.device:
        raise FedlabError(f"{name}: x is on {x.device} and y on {y.device}; use one device")
    if not data_range > 0:
        raise FedlabError(f"{name}: data_range must be > 0, got {data_range}")
    for t in (x, y):
        lo, hi = float(t.min()), float(t.max())
        if not (0 <= lo and hi <= data_range):
            raise FedlabError(
                f"{name}: values must lie in [0, {data_range}] (data_range), got [{lo}, {hi}]"
            )


def _reduce(score: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return score
    if reduction == "mean":
        return score.mean(dim=0)
    if reduction == "sum":
        return score.sum(dim=0)
    raise FedlabError(f"unknown reduction {reduction!r}; use 'none', 'mean' or 'sum'")


def _halve(x: torch.Tensor) -> torch.Tensor:
    """2x2 average pooling, after one row and one column of zeros at the bottom and right when
    the height *or* the width is odd (piq's padding, kept for its figures)."""
    pad = max(x.shape[2] % 2, x.shape[3] % 2)
    return F.avg_pool2d(F.pad(x, pad=[0, pad, 0, pad]), kernel_size=2, stride=2, padding=0)


def _similarity(a: torch.Tensor, b: torch.Tensor, constant: float) -> torch.Tensor:
    return (2.0 * a * b + constant) / (a**2 + b**2 + constant)


def _haar_kernels(size: int, x: torch.Tensor) -> torch.Tensor:
    """Horizontal and vertical Haar filters of side ``size``, shape ``(2, 1, size, size)``."""
    kernel = torch.ones((size, size), dtype=x.dtype, device=x.device) / size
    kernel[size // 2 :, :] = -kernel[size // 2 :, :]
    kernel = kernel.unsqueeze(0)
    return torch.stack([kernel, kernel.transpose(-1, -2)])


def haarpsi(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float = 1.0,
    subsample: bool = True,
    c: float = 30.0,
    alpha: float = 4.2,
    reduction: str = "mean",
) -> torch.Tensor:
    """Haar wavelet-based perceptual similarity index (HaarPSI) of ``x`` against ``y``.

    A port of ``piq.haarpsi.haarpsi`` from piq 0.8.0, which follows the authors' reference
    code: images are rescaled to [0, 255], colour images converted to YIQ, both halved by 2x2
    average pooling (``subsample``), and the luma decomposed by Haar filters of sides 2, 4, 8
    (the paper's 3 scales). The two finest scales give the local similarities (constant ``c``)
    in the horizontal and vertical orientations, the coarsest their weights; for colour images
    the I and Q channels, 2x2 box-filtered, add a third similarity map weighted by the mean of
    the other two weights. The score is ``(logit(s) / alpha) ** 2`` of the weighted mean ``s``
    of the logistic ``sigmoid(alpha * similarity)``: 1 (to float rounding) for identical
    images, lower is worse. Odd sizes are padded with zeros at the bottom and right before
    halving, as piq does.

    Parameters
    ----------
    x, y : torch.Tensor
        Images ``(N, C, H, W)``, ``C`` = 1 or 3 (RGB), values in ``[0, data_range]``; height
        and width at least 16 px (piq's minimum, whatever ``subsample``).
    data_range : float
        The value of white (1 for [0, 1] images, 255 for 8-bit ones).
    subsample : bool
        Halve the images first (the paper's model of the viewing distance).
    c : float
        Stability constant of the similarity maps, on the [0, 255] scale (paper: 30).
    alpha : float
        Slope of the logistic function (paper: 4.2).
    reduction : {"mean", "sum", "none"}
        How to reduce the ``N`` scores.

    Returns
    -------
    torch.Tensor
        A scalar, or shape ``(N,)`` for ``reduction="none"``.

    Raises
    ------
    FedlabError
        For mismatched or non-4-D shapes, channel counts other than 1 and 3, values outside
        ``[0, data_range]`` or images smaller than 16 px.

    References
    ----------
    R. Reisenhofer, S. Bosse, G. Kutyniok and T. Wiegand, "A Haar wavelet-based perceptual
    similarity index for image quality assessment", Signal Processing: Image Communication 61
    (2018) 33-43. https://github.com/rgcda/haarpsi

    piq 0.8.0, ``piq/haarpsi.py`` (https://github.com/photosynthesis-team/piq), whose figures
    this port reproduces.
    """
    _check(x, y, data_range, "haarpsi")
    if x.size(-1) < 2 ** (HAAR_SCALES + 1) or x.size(-2) < 2 ** (HAAR_SCALES + 1):
        raise FedlabError(
            f"haarpsi: images of {x.size(-2)}x{x.size(-1)} px are below HaarPSI's minimum of "
            "16 px (twice its coarsest Haar filter); use images of >= 16 px"
        )
    x = x / float(data_range) * 255
    y = y / float(data_range) * 255

    colour = x.size(1) == 3
    x_yiq, y_yiq = (rgb2yiq(x), rgb2yiq(y)) if colour else (x, y)
    if subsample:
        x_yiq, y_yiq = _halve(x_yiq), _halve(y_yiq)

    coefficients_x, coefficients_y = [], []
    for scale in range(HAAR_SCALES):
        size = 2 ** (scale + 1)
        kernels = _haar_kernels(size, x)
        # asymmetric padding for the even filter, as MATLAB's conv2(A, B, 'same')
        pad = [size // 2 - 1, size // 2, size // 2 - 1, size // 2]
        coefficients_x.append(F.conv2d(F.pad(x_yiq[:, :1], pad=pad, mode="constant"), kernels))
        coefficients_y.append(F.conv2d(F.pad(y_yiq[:, :1], pad=pad, mode="constant"), kernels))
    coeff_x = torch.cat(coefficients_x, dim=1)  # (N, 6, H, W): scales 1, 2, 3 x 2 orientations
    coeff_y = torch.cat(coefficients_y, dim=1)

    # the coarsest scale's coefficients weight the two finer scales' similarities
    weights = torch.max(torch.abs(coeff_x[:, 4:]), torch.abs(coeff_y[:, 4:]))
    sim_map = []
    for orientation in range(2):
        magnitude_x = torch.abs(coeff_x[:, (orientation, orientation + 2)])
        magnitude_y = torch.abs(coeff_y[:, (orientation, orientation + 2)])
        sim_map.append(_similarity(magnitude_x, magnitude_y, c).sum(dim=1, keepdim=True) / 2)

    if colour:
        x_yiq = F.pad(x_yiq, pad=[0, 1, 0, 1])
        y_yiq = F.pad(y_yiq, pad=[0, 1, 0, 1])
        iq_x = torch.abs(F.avg_pool2d(x_yiq[:, 1:], kernel_size=2, stride=1, padding=0))
        iq_y = torch.abs(F.avg_pool2d(y_yiq[:, 1:], kernel_size=2, stride=1, padding=0))
        weights = torch.cat([weights, weights.mean(dim=1, keepdim=True)], dim=1)
        sim_map.append(_similarity(iq_x, iq_y, c).sum(dim=1, keepdim=True) / 2)
    sim = torch.cat(sim_map, dim=1)

    eps = torch.finfo(sim.dtype).eps
    score = (((sim * alpha).sigmoid() * weights).sum(dim=[1, 2, 3]) + eps) / (
        torch.sum(weights, dim=[1, 2, 3]) + eps
    )
    score = (torch.log(score / (1 - score)) / alpha) ** 2
    return _reduce(score, reduction)


def gmsd(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float = 1.0,
    t: float = GMSD_T,
    reduction: str = "mean",
) -> torch.Tensor:
    """Gradient magnitude similarity deviation (GMSD) of ``x`` against ``y``.

    A port of ``piq.gmsd.gmsd`` from piq 0.8.0: images are rescaled to [0, 1], colour images
    reduced to their YIQ luma, both halved by 2x2 average pooling, and the gradient magnitudes
    taken with the 3x3 Prewitt filters (divided by 3, zero padding). The score is the standard
    deviation over the pixels of the gradient magnitude similarity
    ``(2 m_x m_y + t) / (m_x^2 + m_y^2 + t)``. 0 for identical images, higher is worse.

    Parameters
    ----------
    x, y : torch.Tensor
        Images ``(N, C, H, W)``, ``C`` = 1 or 3 (RGB), values in ``[0, data_range]``.
    data_range : float
        The value of white (1 for [0, 1] images, 255 for 8-bit ones).
    t : float
        Stability constant on the [0, 1] scale (the paper's 170 on [0, 255], i.e. 170 / 255^2).
    reduction : {"mean", "sum", "none"}
        How to reduce the ``N`` scores.

    Returns
    -------
    torch.Tensor
        A scalar, or shape ``(N,)`` for ``reduction="none"``.

    Raises
    ------
    FedlabError
        For mismatched or non-4-D shapes, channel counts other than 1 and 3 or values outside
        ``[0, data_range]``.

    References
    ----------
    W. Xue, L. Zhang, X. Mou and A. C. Bovik, "Gradient magnitude similarity deviation: a
    highly efficient perceptual image quality index", IEEE Transactions on Image Processing
    23(2) (2014) 684-695. https://arxiv.org/abs/1308.3052

    piq 0.8.0, ``piq/gmsd.py`` (https://github.com/photosynthesis-team/piq), whose figures
    this port reproduces.
    """
    _check(x, y, data_range, "gmsd")
    x = x / float(data_range)
    y = y / float(data_range)
    if x.size(1) == 3:
        x = rgb2yiq(x)[:, :1]
        y = rgb2yiq(y)[:, :1]
    x, y = _halve(x), _halve(y)

    prewitt = torch.tensor([[[-1.0, 0.0, 1.0]] * 3], dtype=x.dtype, device=x.device) / 3
    kernels = torch.stack([prewitt, prewitt.transpose(-1, -2)])
    grad_x = torch.sqrt(torch.sum(F.conv2d(x, kernels, padding=1) ** 2, dim=-3, keepdim=True))
    grad_y = torch.sqrt(torch.sum(F.conv2d(y, kernels, padding=1) ** 2, dim=-3, keepdim=True))

    gms = _similarity(grad_x, grad_y, t)
    mean_gms = torch.mean(gms, dim=[1, 2, 3], keepdim=True)
    score = torch.pow(gms - mean_gms, 2).mean(dim=[1, 2, 3]).sqrt()
    return _reduce(score, reduction)


def radial_power_spectrum(x: torch.Tensor, *, bins: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Radially averaged power spectrum of each image's luma (grey images as they are).

    The image, mean removed and under a 2-D Hann window (so its borders add no false high
    frequencies), is Fourier transformed; the power ``|F|^2`` is averaged over rings of radial
    frequency ``sqrt(fx^2 + fy^2)`` in ``bins`` equal bins from 0 to 0.5 cycles per pixel.

    Parameters
    ----------
    x : torch.Tensor
        ``(N, C, H, W)``, ``C`` = 1 or 3, at least 8 x 8 pixels.
    bins : int

    Returns
    -------
    tuple of torch.Tensor
        The bin centres ``(bins,)`` in cycles per pixel and the power ``(N, bins)`` (float64).
    """
    if x.dim() != 4 or x.size(1) not in (1, 3) or min(x.shape[-2:]) < 8:
        raise FedlabError(
            f"radial_power_spectrum: images must be (N, 1 or 3, H, W) with H, W >= 8, got "
            f"{tuple(x.shape)}"
        )
    grey = (luma(x) if x.size(1) == 3 else x)[:, 0].detach().cpu().double()
    height, width = grey.shape[-2:]
    window = torch.hann_window(height, periodic=False, dtype=torch.float64)[:, None]
    window = window * torch.hann_window(width, periodic=False, dtype=torch.float64)[None, :]
    grey = (grey - grey.mean(dim=(1, 2), keepdim=True)) * window
    power = torch.fft.fft2(grey).abs().pow(2)
    fy = torch.fft.fftfreq(height, dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(width, dtype=torch.float64)[None, :]
    radius = (fx.pow(2) + fy.pow(2)).sqrt()
    edges = torch.linspace(0.0, 0.5, bins + 1, dtype=torch.float64)
    index = torch.bucketize(radius, edges[1:-1], right=True)  # 0 .. bins - 1
    inside = (radius <= 0.5).flatten()
    index = index.flatten()[inside]
    flat = power.flatten(1)[:, inside]
    total = torch.zeros(len(x), bins, dtype=torch.float64).index_add_(1, index, flat)
    count = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, torch.ones_like(flat[0]))
    return (edges[:-1] + edges[1:]) / 2, total / count.clamp_min(1)


def spectral_detail_error(
    x: torch.Tensor, reference: torch.Tensor, *, band: tuple[float, float] = (0.25, 0.5),
    bins: int = 32,
) -> torch.Tensor:  # fmt: skip
    """Detail error in dB: how far an image's high-frequency power lies from its reference's.

    The mean over the radial-frequency bins whose centre lies in ``band`` (cycles per pixel;
    by default the upper half of the spectrum) of ``|10 log10 P_x(f) - 10 log10 P_ref(f)|``,
    with ``P`` from :func:`radial_power_spectrum`. 0 for an image with the reference's amount
    of fine detail at every frequency, whatever its phase; missing detail (blur) and added
    detail (noise, invented texture) both raise it. Needs no trained network.

    Returns
    -------
    torch.Tensor
        ``(N,)`` float64.
    """
    if x.shape != reference.shape:
        raise FedlabError(
            f"spectral_detail_error: x and reference must have one shape, got "
            f"{tuple(x.shape)} and {tuple(reference.shape)}"
        )
    if not 0 <= band[0] < band[1] <= 0.5:
        raise FedlabError(f"spectral_detail_error: band {band} must satisfy 0 <= lo < hi <= 0.5")
    freq, px = radial_power_spectrum(x, bins=bins)
    _, pr = radial_power_spectrum(reference, bins=bins)
    chosen = (freq >= band[0]) & (freq <= band[1])
    tiny = 1e-20  # a flat image has no power at all
    gap = 10 * (px[:, chosen] + tiny).log10() - 10 * (pr[:, chosen] + tiny).log10()
    return gap.abs().mean(dim=1)
