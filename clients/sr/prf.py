"""The Perceptual Recoverable Field (PRF): the start step of Diff-SR per scale (ours).

Li et al. (arXiv 2306.00714) choose the noise level per scale with a "Perceptual Recoverable
Field" whose formula is not public. This reconstruction is ours, not theirs:

1. **Unrecovered energy per scale.** On calibration crops (training images only), the energy
   the upsampler cannot recover at scale ``s`` is ``E(s) = mean((x - up(down(x, s)))^2)`` in
   the prior's units ([-1, 1]), with the workload's one downsampler. It is tabulated on a grid
   of scales and made non-decreasing (a running maximum), so ``t`` is monotone in the scale.
2. **Noise that covers it.** Noise of variance ``M^2 = kappa * E(s)`` is just enough to
   "cover" what is missing; the reverse process then starts at the project's shared
   noise-level -> start-step rule (:func:`fedlab.diffusion.start_step`): the first ``t`` with
   ``abar_t < 1 / (1 + M^2)``. ``kappa = 1`` is the plain rule; it is fitted on the
   calibration crops (the value whose ``t`` is closest to the calibration oracle's).
3. **Per image** (optional): ``E`` is scaled by the low-resolution input's own detail, the
   energy that one more downsampling by 2 removes from it, relative to the calibration
   crops' mean at that scale (clipped to [1/4, 4]).

A scale of 1 (nothing lost) gives ``t = 0``: the upsampled input is returned unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from fedlab.clients.sr.degrade import check_scale, downsample, upsample

from fedlab.diffusion import start_step

TABLE_SCALES: tuple[float, ...] = tuple(float(s) for s in np.arange(1.0, 8.01, 0.25))


def unrecovered_energy(hr: torch.Tensor, scale: float) -> float:
    """``mean((x - up(down(x, s)))^2)`` in [-1, 1] units over a batch ``hr`` in [0, 1]."""
    if scale == 1:
        return 0.0
    up = upsample(downsample(hr, scale), tuple(hr.shape[-2:]))
    return float(((hr - up) * 2).pow(2).mean())


def self_detail(lr: torch.Tensor) -> torch.Tensor:
    """Per image: the energy one more downsampling by 2 removes from ``lr`` ([-1, 1] units)."""
    if min(lr.shape[-2:]) < 4:
        return torch.zeros(len(lr))
    up = upsample(downsample(lr, 2.0), tuple(lr.shape[-2:]))
    return ((lr - up) * 2).pow(2).mean(dim=(1, 2, 3))


@dataclass(frozen=True)
class PRF:
    """Perceptual Recoverable Field (ours): scale (and LR image) -> start step ``t``.

    Parameters
    ----------
    scales, energy : tuple of float
        The calibration table: unrecovered energy per scale, non-decreasing.
    detail : tuple of float
        Mean :func:`self_detail` of the calibration LR images per scale (per-image mode).
    kappa : float
        Noise power per unit of unrecovered energy.
    """

    scales: tuple[float, ...]
    energy: tuple[float, ...]
    detail: tuple[float, ...]
    kappa: float = 1.0

    @classmethod
    def calibrate(cls, hr: torch.Tensor, *, kappa: float = 1.0) -> PRF:
        """Tabulate ``E(s)`` on calibration crops ``hr`` ``(B, 3, H, W)`` in [0, 1]."""
        energy = np.maximum.accumulate([unrecovered_energy(hr, s) for s in TABLE_SCALES])
        detail = [float(self_detail(downsample(hr, s)).mean()) for s in TABLE_SCALES]
        return cls(TABLE_SCALES, tuple(float(e) for e in energy), tuple(detail), kappa)

    def with_kappa(self, kappa: float) -> PRF:
        return PRF(self.scales, self.energy, self.detail, kappa)

    def energy_at(self, scale: float) -> float:
        """``E(s)``, linear in ``log s`` between table entries, held beyond the last."""
        scale = check_scale(scale)
        return float(np.interp(math.log(scale), np.log(self.scales), self.energy))

    def noise_std(self, scale: float, lr: torch.Tensor | None = None) -> torch.Tensor:
        """``M`` per image: ``sqrt(kappa * E(s) [* rho(lr)])``; shape ``(B,)`` or ``(1,)``."""
        e = torch.tensor([self.kappa * self.energy_at(scale)], dtype=torch.float64)
        if lr is not None:
            ref = float(np.interp(math.log(scale), np.log(self.scales), self.detail))
            rho = (self_detail(lr).double() / max(ref, 1e-12)).clamp(0.25, 4.0)
            e = e * rho
        return e.sqrt()

    def start_steps(
        self, scale: float, alphas_cumprod: torch.Tensor, lr: torch.Tensor | None = None
    ) -> list[int]:
        """The start step per image (one entry without ``lr``); 0 where nothing is missing."""
        return [start_step(alphas_cumprod, float(m)) or 0 for m in self.noise_std(scale, lr)]

    def start_step(self, scale: float, alphas_cumprod: torch.Tensor) -> int:
        """The per-scale start step."""
        return self.start_steps(scale, alphas_cumprod)[0]


def fit_kappa(
    prf: PRF,
    oracle: dict[float, int],
    alphas_cumprod: torch.Tensor,
    grid: tuple[float, ...] = tuple(2.0**k for k in np.arange(-10, 4.01, 0.25)),
    *,
    log_scale: bool = False,
) -> float:
    """The ``kappa`` of ``grid`` whose per-scale ``t`` is closest to the ``oracle`` t's
    (mean absolute difference over the scales, of ``log2(1 + t)`` with ``log_scale``: the
    distance a log-spaced oracle grid can resolve; ties: the smaller kappa)."""

    def gap(a: float, b: float) -> float:
        return abs(np.log2(1 + a) - np.log2(1 + b)) if log_scale else abs(a - b)

    def cost(k: float) -> float:
        p = prf.with_kappa(k)
        return float(np.mean([gap(p.start_step(s, alphas_cumprod), t) for s, t in oracle.items()]))

    return min(grid, key=lambda k: (cost(k), k))
