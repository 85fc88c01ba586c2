"""The reverse process from a given start step: the one denoising loop of the project.

``reverse`` takes an image already at noise level ``t_start`` (e.g. ``noise_to(x0, t, eps)``,
or a scaled noisy observation) and runs it down to ``t = 0``: DDPM takes every step
``t_start, ..., 0`` (ancestral, stochastic), DDIM about ``steps`` evenly spaced deterministic
steps (eta = 0). Each step's output feeds the next. An optional ``guidance`` hook sees every
step's output and the model's clean-image estimate and may change the output (ILVR-style
low-pass replacement, DDNM-style null-space projection); ``x0_weight`` is the coefficient of
the clean estimate in that step's output, so a hook can move the estimate consistently.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from diffusers import DDPMScheduler

from fedlab.diffusion.schedule import make_ddim_scheduler
from fedlab.errors import FedlabError

SAMPLERS = ("ddpm", "ddim")

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``(x_t, t) -> predicted noise`` (``t`` a long tensor of shape ``(B,)``)."""

Guidance = Callable[[torch.Tensor, torch.Tensor, int, int, float], torch.Tensor]
"""``(x_prev, x0_estimate, t, t_prev, x0_weight) -> x_prev``; ``t_prev = -1`` at the end."""


def unet_eps(unet: Any, class_labels: torch.Tensor | None = None) -> EpsFn:
    """The epsilon function of a diffusers ``UNet2DModel`` (class-conditional if labels)."""

    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if class_labels is None:
            return unet(x, t).sample
        return unet(x, t, class_labels=class_labels).sample

    return eps


def tiled_eps(eps_fn: EpsFn, tile: int, overlap: int, *, batch: int = 16) -> EpsFn:
    """``eps_fn`` over overlapping ``tile`` x ``tile`` windows, blended into one prediction.

    Every reverse step predicts the noise of each window of the whole state and averages the
    overlapping predictions with weights that ramp linearly over ``overlap`` pixels from each
    window edge (MultiDiffusion, Bar-Tal et al., ICML 2023). The state stays one image, so no
    seam can form between separately finished tiles; the cost and memory grow linearly with
    the pixels instead of with the square of the positions a global self-attention sees.
    Images no larger than ``tile`` go through ``eps_fn`` whole.

    Parameters
    ----------
    eps_fn : EpsFn
    tile : int
        Window side; a multiple of the UNet's downsampling factor (the prior's training crop).
    overlap : int
        Pixels shared by neighbouring windows, ``0 <= overlap < tile``.
    batch : int
        Windows per call of ``eps_fn`` (times the images in ``x``).
    """
    check_tile(tile, overlap)

    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if height <= tile and width <= tile:
            return eps_fn(x, t)
        th, tw = min(tile, height), min(tile, width)
        rows, cols = _starts(height, th, overlap), _starts(width, tw, overlap)
        windows = [(i, j) for i in rows for j in cols]
        ramp = (_ramp(th, overlap)[:, None] * _ramp(tw, overlap)[None, :]).to(x)
        out = torch.zeros_like(x)
        weight = torch.zeros((height, width), dtype=x.dtype, device=x.device)
        for k in range(0, len(windows), batch):
            chunk = windows[k : k + batch]
            crops = torch.cat([x[..., i : i + th, j : j + tw] for i, j in chunk])
            pred = eps_fn(crops, t.repeat(len(chunk))).split(len(x))
            for (i, j), p in zip(chunk, pred, strict=True):
                out[..., i : i + th, j : j + tw] += p * ramp
                weight[i : i + th, j : j + tw] += ramp
        return out / weight

    return eps


def check_tile(tile: int, overlap: int) -> None:
    """Refuse a window side below 1 or an overlap outside ``0 .. tile - 1``, in one line."""
    if tile < 1 or not 0 <= overlap < tile:
        raise FedlabError(f"tile overlap {overlap} must be in 0..{tile - 1} for tile {tile}")


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Window offsets covering ``0 .. length`` with at least ``overlap`` shared pixels."""
    stride = tile - overlap
    starts = list(range(0, max(length - tile, 0) + 1, stride))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def _ramp(length: int, overlap: int) -> torch.Tensor:
    """Blending weights along one side: rising over ``overlap`` pixels at each end, > 0."""
    k = torch.arange(length, dtype=torch.float64)
    edge = torch.minimum(k + 1, length - k) / (overlap + 1)
    return edge.clamp(max=1.0)


def noise_to(
    x0: torch.Tensor, t: int, noise: torch.Tensor, alphas_cumprod: torch.Tensor
) -> torch.Tensor:
    """The forward process at step ``t``: ``sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``."""
    a = alphas_cumprod[t].to(x0.dtype)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def plan(
    scheduler_config: Any, t_start: int, *, sampler: str, steps: int, clip_x0: bool = False
) -> tuple[Any, list[int]]:
    """The stepping scheduler and the timesteps visited from ``t_start`` down (with
    ``clip_x0``, a scheduler that clips each clean-image estimate to [-1, 1]).

    DDIM's stride is ``ceil((t_start + 1) / steps)`` rounded to a divisor-compatible value
    (DDIM steps from ``t`` to ``t - T // n``), so about ``steps`` steps are taken.
    """
    if sampler not in SAMPLERS:
        raise FedlabError(f"unknown sampler {sampler!r}; allowed: {', '.join(SAMPLERS)}")
    if steps < 1:
        raise FedlabError(f"steps {steps} must be >= 1")
    total = scheduler_config.num_train_timesteps
    if not 0 <= t_start < total:
        raise FedlabError(f"start step {t_start} must be in 0..{total - 1}")
    clip = {"clip_sample": True, "clip_sample_range": 1.0} if clip_x0 else {}
    if sampler == "ddpm":
        sched: Any = DDPMScheduler.from_config(scheduler_config, **clip)
        sched.set_timesteps(total)  # stride 1: previous step of t is t - 1
        return sched, list(range(t_start, -1, -1))
    stride = max(1, math.ceil((t_start + 1) / steps))
    sched = make_ddim_scheduler(scheduler_config, **clip)
    sched.set_timesteps(total // stride)  # DDIM's step goes from t to t - total // n
    stride = total // sched.num_inference_steps
    return sched, list(range(t_start, -1, -stride))


def _x0_weight(alphas_cumprod: torch.Tensor, t: int, t_prev: int, sampler: str) -> float:
    a_t = float(alphas_cumprod[t])
    a_prev = float(alphas_cumprod[t_prev]) if t_prev >= 0 else 1.0
    if sampler == "ddim":
        return math.sqrt(a_prev)
    beta_t = 1.0 - a_t / a_prev
    return math.sqrt(a_prev) * beta_t / (1.0 - a_t)


@torch.no_grad()
def reverse(
    eps_fn: EpsFn,
    scheduler_config: Any,
    x: torch.Tensor,
    t_start: int,
    *,
    sampler: str = "ddim",
    steps: int = 20,
    generator: torch.Generator | None = None,
    progress: bool = False,
    desc: str = "reverse",
    guidance: Guidance | None = None,
    clip_x0: bool = False,
) -> torch.Tensor:
    """Run the reverse process on ``x`` (already at noise level ``t_start``) down to 0.

    Parameters
    ----------
    eps_fn : callable
        ``(x_t, t) -> eps`` (see :func:`unet_eps`).
    scheduler_config : diffusers config
        The training scheduler's config (``scheduler.config``).
    x : torch.Tensor
        ``(B, C, H, W)`` at noise level ``t_start``.
    t_start : int
    sampler : str
        ``ddim`` (deterministic, about ``steps`` steps) or ``ddpm`` (every step).
    steps : int
    generator : torch.Generator, optional
        DDPM's noise.
    progress : bool
        Show a tqdm bar.
    guidance : callable, optional
        Applied to each step's output, see :data:`Guidance`.
    clip_x0 : bool
        Clip every clean-image estimate to [-1, 1] before the step uses it (Ho et al.'s
        ``clip_denoised``, diffusers' ``clip_sample``): for image priors, whose data lie in
        [-1, 1]. At large ``t`` the estimate divides the noise error by ``sqrt(abar_t)``
        (about 0.006 at t = 999); unclipped, a small prior's estimate runs far out of range
        and DDIM carries it to saturated colours.
    """
    sched, ts = plan(scheduler_config, t_start, sampler=sampler, steps=steps, clip_x0=clip_x0)
    iterator: Any = ts
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(ts, desc=f"{desc} ({sampler}, t={t_start})", leave=False)
    for i, t in enumerate(iterator):
        tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        eps = eps_fn(x, tt)
        if sampler == "ddpm":
            out = sched.step(eps, t, x, generator=generator)
        else:
            out = sched.step(eps, t, x, eta=0.0)
        x = out.prev_sample
        if guidance is not None:
            t_prev = ts[i + 1] if i + 1 < len(ts) else -1
            weight = _x0_weight(sched.alphas_cumprod, t, t_prev, sampler)
            x = guidance(x, out.pred_original_sample, t, t_prev, weight)
    return x
