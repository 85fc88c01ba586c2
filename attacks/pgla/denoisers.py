"""The denoiser registry: ``none``, ``gaussian``, ``wiener``, ``wavelet``, ``dncnn``, ``pgla``,
``pgla-fixed``, ``pgla-cond``.

Every denoiser has one front door, ``denoise(flat, *, noise_std, clip_norm=None)``, on flat
gradients ``(num_params,)`` or ``(B, num_params)`` in gradient units; ``noise_std`` is the
perturbation std per coordinate of the gradient (``None``: estimated blind with
:func:`fedlab.attacks.pgla.schedule.estimate_noise_std`). Build one with :func:`load_denoiser`.
The classical ones work on the same square image as PGLA (zero-padded, row-major), so every
method sees the same layout.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from fedlab.attacks.pgla.schedule import estimate_noise_std
from fedlab.attacks.pgla.transform import GradientImageTransform
from scipy import ndimage, signal

from fedlab.errors import FedlabError
from fedlab.registry import DENOISERS


class Denoiser(Protocol):
    """What :func:`fedlab.attacks.pgla.compose.denoise_attack_input` needs."""

    name: str

    def denoise(
        self, flat: torch.Tensor, *, noise_std: float | None, clip_norm: float | None = None
    ) -> torch.Tensor: ...


def _levels(flat: torch.Tensor, noise_std: float | None, clip_norm: float | None) -> list[float]:
    """Per-row noise std: given, or estimated blind from each row."""
    rows = flat.reshape(-1, flat.shape[-1])
    if noise_std is not None:
        if not (noise_std >= 0 and math.isfinite(noise_std)):
            raise FedlabError(f"noise_std {noise_std!r} must be a finite number >= 0")
        return [float(noise_std)] * rows.shape[0]
    return [estimate_noise_std(r, clip_norm) for r in rows]


class _ImageDenoiser:
    """Applies ``self._image(array, sigma) -> array`` to each row laid out as a square image."""

    name = "classical"

    def denoise(
        self, flat: torch.Tensor, *, noise_std: float | None, clip_norm: float | None = None
    ) -> torch.Tensor:
        rows = flat.reshape(-1, flat.shape[-1]).double()
        tf = GradientImageTransform.for_size(rows.shape[1], multiple=1)
        out = []
        for row, sigma in zip(rows, _levels(rows, noise_std, clip_norm), strict=True):
            if sigma == 0:
                out.append(row)
                continue
            img = tf.to_image(row)[0, 0].numpy()
            den = self._image(img, sigma)
            out.append(tf.from_image(torch.from_numpy(np.ascontiguousarray(den))[None, None])[0])
        return torch.stack(out).to(flat.dtype).reshape(flat.shape)

    def _image(self, img: np.ndarray, sigma: float) -> np.ndarray:
        raise NotImplementedError


@DENOISERS.register("none")
class NoDenoiser:
    """The identity: the noisy gradient as received."""

    name = "none"

    def denoise(
        self, flat: torch.Tensor, *, noise_std: float | None, clip_norm: float | None = None
    ) -> torch.Tensor:
        return flat


@DENOISERS.register("gaussian")
class GaussianDenoiser(_ImageDenoiser):
    """Gaussian blur whose width minimises Stein's unbiased risk estimate (SURE).

    For a linear filter ``H``, ``SURE = ||Hy - y||^2 - n sigma^2 + 2 sigma^2 tr(H)``, with
    ``tr(H) ~ n h0^2`` (``h0`` the 1-D kernel's centre tap). Width 0 (identity) is a candidate,
    so the filter is not applied where it would hurt on average.

    Parameters
    ----------
    widths : tuple of float
        Candidate standard deviations of the Gaussian kernel, in pixels.
    """

    name = "gaussian"

    def __init__(self, widths: tuple[float, ...] = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)) -> None:
        self.widths = widths

    def _image(self, img: np.ndarray, sigma: float) -> np.ndarray:
        best, best_risk = img, 0.0  # identity: SURE = n sigma^2 - ... = constant offset 0 here
        n = img.size
        for w in self.widths:
            radius = int(4 * w + 0.5)
            x = np.arange(-radius, radius + 1)
            h0 = 1.0 / np.exp(-(x**2) / (2 * w * w)).sum()
            den = ndimage.gaussian_filter(img, w, mode="reflect")
            risk = float(((den - img) ** 2).sum()) + 2 * sigma**2 * n * (h0**2 - 1)
            if risk < best_risk:
                best, best_risk = den, risk
        return best


@DENOISERS.register("wiener")
class WienerDenoiser(_ImageDenoiser):
    """scipy's local adaptive Wiener filter with the known noise power.

    Parameters
    ----------
    size : int
        Window side in pixels.
    """

    name = "wiener"

    def __init__(self, size: int = 3) -> None:
        self.size = size

    def _image(self, img: np.ndarray, sigma: float) -> np.ndarray:
        return signal.wiener(img, mysize=self.size, noise=sigma**2)


@DENOISERS.register("wavelet")
class WaveletDenoiser(_ImageDenoiser):
    """scikit-image BayesShrink soft wavelet thresholding (needs PyWavelets).

    The image is divided by its largest magnitude first, since scikit-image clips its output to
    [-1, 1].

    Parameters
    ----------
    wavelet : str
        PyWavelets name.
    """

    name = "wavelet"

    def __init__(self, wavelet: str = "db2") -> None:
        self.wavelet = wavelet

    def _image(self, img: np.ndarray, sigma: float) -> np.ndarray:
        from skimage.restoration import denoise_wavelet

        peak = float(np.abs(img).max()) or 1.0
        out = denoise_wavelet(
            img / peak,
            sigma=sigma / peak,
            wavelet=self.wavelet,
            mode="soft",
            method="BayesShrink",
            rescale_sigma=True,
        )
        return out * peak


@DENOISERS.register("dncnn")
class DnCNNDenoiser:
    """The learned non-diffusion baseline (see :mod:`fedlab.attacks.pgla.dncnn`)."""

    name = "dncnn"

    def __init__(self, folder: str | Path, *, max_parameters: int | None = None) -> None:
        from fedlab.attacks.pgla.dncnn import load_dncnn
        from fedlab.attacks.pgla.training import resolve_checkpoint

        self.model, self.transform = load_dncnn(
            resolve_checkpoint(folder), max_parameters=max_parameters
        )

    @torch.no_grad()
    def denoise(
        self, flat: torch.Tensor, *, noise_std: float | None, clip_norm: float | None = None
    ) -> torch.Tensor:
        rows = flat.reshape(-1, flat.shape[-1]).float()
        ratio = 1.0 if clip_norm is None else self.transform.clip_norm / clip_norm
        levels = _levels(rows, noise_std, clip_norm)
        m = torch.tensor(levels, dtype=torch.float32) * ratio / self.transform.scale
        x = self.transform.to_image(rows * ratio)
        den = self.transform.from_image(self.model(x, m.clamp_min(1e-8))) / ratio
        keep = m == 0
        den[keep] = rows[keep]
        return den.to(flat.dtype).reshape(flat.shape)


@DENOISERS.register("pgla")
class PGLADenoiser:
    """PGLA with the adaptive start step (see :mod:`fedlab.attacks.pgla.pipeline`).

    Parameters
    ----------
    folder : str or Path
        A denoiser folder or a training run folder (its latest checkpoint is used).
    sampler : str
        ``"ddim"`` (``steps`` deterministic steps) or ``"ddpm"`` (every step from the start).
    steps : int
        DDIM steps.
    seed : int
        Seeds DDPM's ancestral noise.
    fixed_t : int, optional
        Non-adaptive start step (the ablation); ``None`` for the adaptive one.
    max_parameters : int, optional
        Cap on the UNet's parameters (default :data:`fedlab.limits.MAX_MODEL_PARAMETERS`),
        checked on the meta device before anything is allocated.
    """

    name = "pgla"

    def __init__(
        self,
        folder: str | Path,
        *,
        sampler: str = "ddim",
        steps: int = 20,
        seed: int = 0,
        fixed_t: int | None = None,
        max_parameters: int | None = None,
    ) -> None:
        from fedlab.attacks.pgla.pipeline import PGLAPipeline

        self.pipe = PGLAPipeline.from_pretrained(folder, max_parameters=max_parameters)
        if self.pipe.conditional != (self.name == "pgla-cond"):
            kind, use = ("conditional", "pgla-cond") if self.pipe.conditional else ("", "pgla")
            raise FedlabError(
                f"{folder} holds a {kind or 'unconditional'} PGLA denoiser; load it as "
                f"--denoise {use}"
            )
        self.options: dict[str, Any] = {"sampler": sampler, "steps": steps, "fixed_t": fixed_t}
        self.seed = seed

    def denoise(
        self, flat: torch.Tensor, *, noise_std: float | None, clip_norm: float | None = None
    ) -> torch.Tensor:
        rows = flat.reshape(-1, flat.shape[-1])
        gen = torch.Generator().manual_seed(self.seed)
        out = [
            self.pipe.denoise(r, s, clip_norm=clip_norm, generator=gen, **self.options)
            for r, s in zip(rows, _levels(rows, noise_std, clip_norm), strict=True)
        ]
        return torch.stack(out).reshape(flat.shape)

    def denoise_batch(
        self, flat: torch.Tensor, noise_std: float, clip_norm: float | None = None
    ) -> torch.Tensor:
        """All rows at one known noise level in one batched reverse pass (faster)."""
        gen = torch.Generator().manual_seed(self.seed)
        return self.pipe.denoise(
            flat, noise_std, clip_norm=clip_norm, generator=gen, **self.options
        )


@DENOISERS.register("pgla-fixed")
class PGLAFixedDenoiser(PGLADenoiser):
    """PGLA without the adaptive start: always from ``fixed_t`` (default 100)."""

    name = "pgla-fixed"

    def __init__(self, folder: str | Path, *, fixed_t: int = 100, **kwargs: Any) -> None:
        super().__init__(folder, fixed_t=fixed_t, **kwargs)


@DENOISERS.register("pgla-cond")
class PGLACondDenoiser(PGLADenoiser):
    """The conditional variant: the UNet sees the noisy gradient and its level at every step
    (trained with ``fedlab pgla train --config cond-small``).

    Parameters
    ----------
    folder : str or Path
        A ``pgla-cond`` denoiser folder or training run folder.
    start : str
        ``"adaptive"`` (PGLA's start step, from the scaled noisy gradient) or ``"noise"``
        (pure noise at ``T - 1``, as SR3).
    **kwargs
        ``sampler``, ``steps``, ``seed`` as for ``pgla``.
    """

    name = "pgla-cond"

    def __init__(self, folder: str | Path, *, start: str = "adaptive", **kwargs: Any) -> None:
        super().__init__(folder, **kwargs)
        self.options["start"] = start


NEEDS_FOLDER = ("dncnn", "pgla", "pgla-fixed", "pgla-cond")


def load_denoiser(name: str, folder: str | Path | None = None, **options: Any) -> Denoiser:
    """Build the registered denoiser ``name`` (learned ones need ``folder``).

    Raises
    ------
    FedlabError
        For an unknown name, or a learned denoiser without a folder.
    """
    cls = DENOISERS.get(name)
    if name in NEEDS_FOLDER:
        if folder is None:
            raise FedlabError(
                f"denoiser {name!r} is learned and needs a folder (--denoiser DIR) written by "
                "`fedlab pgla train`; classical ones (none, gaussian, wiener, wavelet) do not"
            )
        return cls(folder, **options)
    return cls(**options)
