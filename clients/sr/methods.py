"""Diff-SR and its baselines on one prior: bicubic, SDEdit at a fixed t, PRF (ours),
ILVR-style low-pass guidance and a DDNM-style range-space correction.

Every diffusion method upsamples the low-resolution input ``lr`` (bicubic, to the output
size), maps it to the prior's [-1, 1], noises it to a start step ``t`` with the forward process
and runs the shared reverse process (:func:`fedlab.diffusion.reverse`, 20 DDIM steps by
default). They differ only in ``t`` and in a per-step guidance hook:

- ``sdedit``: a fixed ``t`` for every scale (SDEdit, Meng et al.).
- ``prf``: ``t`` from the Perceptual Recoverable Field (ours, :mod:`fedlab.clients.sr.prf`).
- ``ilvr``: after each step, replace the state's low-pass content (down then up through the
  LR size) by that of the upsampled input noised to the same step (ILVR, Choi et al.).
- ``ddnm``: after each step, correct the clean-image estimate ``x0`` by one back-projection
  ``x0 + up(y - down(x0))`` and move the state consistently (range-space step of DDNM,
  Wang et al.; ``up`` is bicubic, not the exact pseudo-inverse).

ILVR and DDNM start at the PRF step (so they differ from PRF by their guidance only).
``t = 0`` returns the upsampled input unchanged. Images whose side is not a multiple of the
UNet's downsampling factor are reflect-padded, processed and cropped back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from fedlab.clients.sr.degrade import back_project, lowpass, upsample
from fedlab.clients.sr.prf import PRF

from fedlab.diffusion import noise_to, reverse
from fedlab.diffusion.sampling import Guidance, check_tile, tiled_eps, unet_eps
from fedlab.errors import FedlabError

log = logging.getLogger("fedlab.sr")

DIFFUSION_METHODS = ("sdedit", "prf", "ilvr", "ddnm")


class DiffSR:
    """Super-resolution with an unconditional diffusion prior.

    Parameters
    ----------
    unet : UNet2DModel
        Epsilon prediction on RGB images in [-1, 1].
    scheduler : DDPMScheduler
        Its training schedule.
    steps : int
        DDIM steps of each reverse process.
    progress : bool
        tqdm bars while sampling.
    tile : int
        0: the UNet sees the whole image at every step. Otherwise larger images are denoised
        in overlapping windows of this side (:func:`fedlab.diffusion.sampling.tiled_eps`), so
        time and memory grow linearly with the output pixels; a multiple of the UNet's
        downsampling factor.
    tile_overlap : int, optional
        Pixels shared by neighbouring windows; default a quarter of ``tile``.
    """

    def __init__(
        self, unet: Any, scheduler: Any, *, steps: int = 20, progress: bool = False,
        tile: int = 0, tile_overlap: int | None = None,
    ) -> None:  # fmt: skip
        self.unet = unet.eval()
        self.scheduler = scheduler
        self.steps = steps
        self.progress = progress
        self.factor = 2 ** (len(unet.config.block_out_channels) - 1)
        if tile < 0 or tile % self.factor:
            raise FedlabError(
                f"tile {tile} must be 0 (no tiling) or a positive multiple of the UNet's "
                f"downsampling factor {self.factor}"
            )
        self.tile = tile
        self.tile_overlap = tile // 4 if tile_overlap is None else tile_overlap
        if tile:
            check_tile(tile, self.tile_overlap)

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self.scheduler.alphas_cumprod

    def check_size(self, size: tuple[int, int]) -> None:
        """Refuse outputs smaller than the prior's training crop."""
        crop = self.unet.config.sample_size
        crop = crop if isinstance(crop, int) else min(crop)
        if min(size) < crop:
            raise FedlabError(
                f"output size {size[0]}x{size[1]} is smaller than the prior's training crop "
                f"({crop} px); use a larger image or scale (the output side must be >= {crop})"
            )

    def run(
        self,
        lr: torch.Tensor,
        size: tuple[int, int],
        t: int,
        *,
        guidance: str = "none",
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Super-resolve ``lr`` ``(B, 3, h, w)`` in [0, 1] to ``size`` starting at step ``t``.

        ``guidance``: ``none`` (SDEdit/PRF), ``ilvr`` or ``ddnm``. Returns [0, 1] images.
        """
        self.check_size(size)
        up = upsample(lr, size)
        if t == 0:
            return up
        x0, crop = self._pad(up * 2 - 1)
        noise = torch.randn(x0.shape, generator=generator)
        hook = self._guidance(guidance, x0, lr * 2 - 1, noise, crop)
        x = noise_to(x0, t, noise, self.alphas_cumprod)
        eps = unet_eps(self.unet)
        if self.tile:
            eps = tiled_eps(eps, self.tile, self.tile_overlap)
        out = reverse(
            eps, self.scheduler.config, x, t, steps=self.steps,
            progress=self.progress, desc=f"diffsr {guidance}", guidance=hook, clip_x0=True,
        )  # fmt: skip
        h, w = size
        return ((out[..., :h, :w] + 1) / 2).clamp(0, 1)

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.factor, (-w) % self.factor
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect")
        return x, (h, w)

    def _guidance(
        self, kind: str, x0: torch.Tensor, y: torch.Tensor, noise: torch.Tensor,
        crop: tuple[int, int],
    ) -> Guidance | None:  # fmt: skip
        if kind == "none":
            return None
        h, w = crop
        lr_size = tuple(y.shape[-2:])
        ac = self.alphas_cumprod

        def inside(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            x = x.clone()
            x[..., :h, :w] = fn(x[..., :h, :w])
            return x

        if kind == "ilvr":
            return _ilvr(lr_size, x0, noise, ac, crop)
        if kind == "ddnm":

            def ddnm(x_prev: torch.Tensor, x0_est: torch.Tensor, t: int, t_prev: int,
                     weight: float) -> torch.Tensor:  # fmt: skip
                corrected = inside(lambda z: back_project(z, y), x0_est)
                return x_prev + weight * (corrected - x0_est)

            return ddnm
        raise FedlabError(f"unknown guidance {kind!r}; allowed: none, ilvr, ddnm")

    # ---------------------------------------------------------------- the named methods
    def bicubic(self, lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return upsample(lr, size)

    def back_projection(
        self, lr: torch.Tensor, size: tuple[int, int], iterations: int
    ) -> torch.Tensor:
        """Iterative back-projection without any prior: ``x <- x + up(y - down(x))`` from the
        bicubic input, ``iterations`` times (what DDNM's correction does on its own)."""
        self.check_size(size)
        x = upsample(lr, size) * 2 - 1
        y = lr * 2 - 1
        for _ in range(iterations):
            x = back_project(x, y)
        return ((x + 1) / 2).clamp(0, 1)

    def sdedit(self, lr: torch.Tensor, size: tuple[int, int], t: int, **kw: Any) -> torch.Tensor:
        return self.run(lr, size, t, **kw)

    def prf(
        self, lr: torch.Tensor, size: tuple[int, int], prf: PRF, scale: float, *,
        per_image: bool = False, **kw: Any,
    ) -> tuple[torch.Tensor, list[int]]:  # fmt: skip
        """PRF (ours): returns the outputs and the start step of each image."""
        ts = prf.start_steps(scale, self.alphas_cumprod, lr if per_image else None)
        if len(ts) == 1:
            return self.run(lr, size, ts[0], **kw), ts * len(lr)
        outs = [self.run(lr[i : i + 1], size, t, **kw) for i, t in enumerate(ts)]
        return torch.cat(outs), ts


def _ilvr(
    lr_size: tuple[int, int], x0: torch.Tensor, noise: torch.Tensor, ac: torch.Tensor,
    crop: tuple[int, int],
) -> Guidance:  # fmt: skip
    """ILVR's step: ``x - lowpass(x) + lowpass(q(x0_up, t_prev))`` inside the crop."""
    h, w = crop

    def hook(x_prev: torch.Tensor, x0_est: torch.Tensor, t: int, t_prev: int,
             weight: float) -> torch.Tensor:  # fmt: skip
        ref = x0 if t_prev < 0 else noise_to(x0, t_prev, noise, ac)
        out = x_prev.clone()
        z, r = x_prev[..., :h, :w], ref[..., :h, :w]
        out[..., :h, :w] = z - lowpass(z, lr_size) + lowpass(r, lr_size)
        return out

    return hook
