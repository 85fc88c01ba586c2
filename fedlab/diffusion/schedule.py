"""The DDPM schedule and the noise-level -> start-step rule shared by every diffusion user.

An observation ``y = x + M * eps`` (``M`` the noise std in the model's data units, images in
[-1, 1]) matches the forward process ``x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps`` once scaled
by ``sqrt(abar*)`` with ``abar* = 1 / (1 + M^2)``. The reverse process starts at the first
``t`` with ``abar_t < abar*`` (PGLA's adaptive start; Diff-SR's PRF maps the energy an
upsampler could not recover to ``M^2`` and uses the same rule).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from diffusers import DDIMScheduler, DDPMScheduler

from fedlab.errors import FedlabError

SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_schedule": "linear",
    "beta_start": 1e-4,
    "beta_end": 0.02,
    "prediction_type": "epsilon",
    "clip_sample": False,
    "steps_offset": 0,
}
"""The DDPM of Ho et al.: T = 1000, linear betas 1e-4..0.02, timesteps 0..999."""


def make_scheduler(**overrides: Any) -> DDPMScheduler:
    """A fresh :class:`DDPMScheduler` with :data:`SCHEDULER_CONFIG` (and ``overrides``)."""
    return DDPMScheduler(**{**SCHEDULER_CONFIG, **overrides})


def make_ddim_scheduler(config: Any, **overrides: Any) -> DDIMScheduler:
    """A deterministic-capable :class:`DDIMScheduler` on the same betas as ``config``.

    ``set_alpha_to_one=True``: the last step goes to the clean image (``abar = 1``).
    """
    return DDIMScheduler.from_config(config, set_alpha_to_one=True, **overrides)


def target_alpha_bar(m: float) -> float:
    """``abar* = 1 / (1 + M^2)`` for a noise std ``M`` in data units.

    Raises
    ------
    FedlabError
        If ``M`` is negative or not finite.
    """
    if not (m >= 0 and math.isfinite(m)):
        raise FedlabError(f"noise std M={m!r} must be a finite number >= 0")
    return 1.0 / (1.0 + m * m)


def start_step(alphas_cumprod: torch.Tensor, m: float) -> int | None:
    """The first 0-based ``t`` with ``abar_t < abar*``; ``None`` for ``M = 0`` (nothing to do).

    A noise level beyond the schedule's last ``abar`` starts at ``T - 1``.
    """
    target_alpha_bar(m)  # validates M
    if m == 0:
        return None
    return int(start_steps(alphas_cumprod, torch.tensor([m], dtype=torch.float64))[0])


def start_steps(alphas_cumprod: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Vectorised :func:`start_step` for noise stds ``m > 0`` of shape ``(B,)``."""
    target = (1.0 / (1.0 + m.double() ** 2)).to(alphas_cumprod.dtype)  # as the scalar compares
    first_below = (alphas_cumprod[None, :] >= target[:, None]).sum(dim=1)
    return first_below.clamp_max(len(alphas_cumprod) - 1)


def noise_std_at(alphas_cumprod: torch.Tensor, t: int) -> float:
    """The noise std ``M = sqrt((1 - abar_t) / abar_t)`` (data units) that step ``t`` covers."""
    a = float(alphas_cumprod[t])
    return math.sqrt((1.0 - a) / a)
