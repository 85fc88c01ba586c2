"""Noise level -> diffusion timestep: the adaptive start of PGLA.

A noisy gradient image ``y = x + M * eps`` (``M`` the perturbation std in the denoiser's units)
matches the forward process ``x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps`` once scaled by
``sqrt(abar*)`` with ``abar* = 1 / (1 + M^2)``: then ``sqrt(abar*) y = sqrt(abar*) x +
sqrt(1 - abar*) eps``. The reverse process starts at the first ``t`` with ``abar_t < abar*``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from diffusers import DDPMScheduler

from fedlab.diffusion.schedule import SCHEDULER_CONFIG, target_alpha_bar
from fedlab.diffusion.schedule import make_scheduler as _make_scheduler
from fedlab.diffusion.schedule import start_step as start_timestep
from fedlab.diffusion.schedule import start_steps as start_timesteps
from fedlab.errors import FedlabError

# The schedule and the noise-level -> start-step rule are the project's shared ones
# (fedlab.diffusion.schedule); these names stay for PGLA's callers.
__all__ = [
    "SCHEDULER_CONFIG", "make_scheduler", "start_timestep", "start_timesteps", "target_alpha_bar",
    "dp_value", "noise_std_from_dp", "estimate_noise_std",
]  # fmt: skip


def make_scheduler() -> DDPMScheduler:
    """A fresh :class:`DDPMScheduler` with :data:`SCHEDULER_CONFIG`."""
    return _make_scheduler()


DP_KEY_ALIASES: dict[str, tuple[str, ...]] = {
    "std": ("std", "noise-std", "noise_std"),
    "scale": ("scale", "noise-scale", "noise_scale"),
    "clip": ("clip", "clip-norm", "clip_norm"),
    "noise_multiplier": ("noise_multiplier", "noise-multiplier"),
}
"""Spellings of each DP value: the trace format's example (``std``, ``clip``) and what the
``dpfedavg`` app records (``noise-std``, ``clip-norm``, with ``mechanism: "local"`` and the
distribution under ``noise``)."""


def dp_value(dp: dict[str, Any] | None, name: str) -> Any:
    """The first of ``name``'s spellings (:data:`DP_KEY_ALIASES`) present in ``dp``, else None."""
    if not dp:
        return None
    for key in DP_KEY_ALIASES.get(name, (name,)):
        if dp.get(key) is not None:
            return dp[key]
    return None


def noise_std_from_dp(dp: dict[str, Any] | None) -> float | None:
    """Noise std per coordinate of what was sent, from a DP metadata dict, or ``None``.

    Reads ``std`` (Gaussian or Laplace), else ``scale`` (Laplace: std = sqrt(2) * scale, or
    Gaussian: std = scale), else ``noise_multiplier * clip`` (each under any spelling of
    :data:`DP_KEY_ALIASES`). The distribution is ``mechanism``, or ``noise`` when
    ``mechanism`` is ``"local"`` (as the ``dpfedavg`` app records it).

    Raises
    ------
    FedlabError
        If the mechanism is neither Gaussian nor Laplace, or a value is negative.
    """
    if not dp:
        return None
    mech = str(dp.get("mechanism", "gaussian")).lower()
    if mech == "local":
        mech = str(dp.get("noise", "gaussian")).lower()
    if mech not in ("gaussian", "laplace", "none"):
        raise FedlabError(
            f"DP mechanism {mech!r} is not supported; allowed: gaussian, laplace, none "
            "(or give the noise std explicitly)"
        )
    if mech == "none":
        return 0.0
    std, scale = dp_value(dp, "std"), dp_value(dp, "scale")
    multiplier, clip = dp_value(dp, "noise_multiplier"), dp_value(dp, "clip")
    if std is not None:
        std = float(std)
    elif scale is not None:
        std = float(scale) * (math.sqrt(2.0) if mech == "laplace" else 1.0)
    elif multiplier is not None and clip is not None:
        std = float(multiplier) * float(clip)
    else:
        return None
    if not (std >= 0 and math.isfinite(std)):
        raise FedlabError(f"DP noise std {std!r} from {dp!r} must be a finite number >= 0")
    return std


def estimate_noise_std(flat: torch.Tensor, clip_norm: float | None = None) -> float:
    """Blind estimate of the per-coordinate noise std of a noisy flat gradient.

    With a known clip norm ``C`` (the clean gradient has norm at most ``C``, and exactly ``C``
    when it was clipped), ``E||y||^2 = ||g||^2 + n sigma^2`` gives
    ``sigma^2 ~ max(||y||^2 - C^2, 0) / n``. Without it, the median absolute difference of
    neighbouring coordinates is used (robust, but it counts clean variation as noise, so it
    overestimates at low noise).
    """
    flat = flat.reshape(-1).double()
    n = flat.numel()
    if clip_norm is not None:
        return math.sqrt(max(float(flat.pow(2).sum()) - clip_norm**2, 0.0) / n)
    diffs = (flat[1:] - flat[:-1]).abs()
    return float(diffs.median()) / (0.6745 * math.sqrt(2.0))
