"""Compose a denoiser with any attack: denoise the gradient an :class:`AttackInput` carries."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import torch
from fedlab.attacks.base import AttackInput
from fedlab.attacks.pgla.denoisers import Denoiser, load_denoiser
from fedlab.attacks.pgla.schedule import dp_value, noise_std_from_dp
from fedlab.attacks.pgla.transform import flatten_gradients, unflatten_gradients

from fedlab.errors import FedlabError

log = logging.getLogger(f"fedlab.{__name__}")


def gradient_noise_std(inp: AttackInput) -> float | None:
    """Noise std per gradient coordinate from ``inp.dp``, or ``None`` when it is not recorded.

    The DP metadata describes the noise on what was sent: for an update (FedSGD, ``update =
    -lr * g``) the noise on the gradient is that std divided by ``lr``.
    """
    std = noise_std_from_dp(inp.dp)
    if std is None or inp.gradients is not None:
        return std
    if inp.lr is None or not inp.lr > 0:
        raise FedlabError(
            f"lr {inp.lr!r} must be positive to convert the update's noise std to gradient units"
        )
    return std / inp.lr


def denoise_attack_input(
    inp: AttackInput, denoiser: Denoiser, *, noise_std: float | None = None
) -> AttackInput:
    """A copy of ``inp`` whose gradients are denoised by ``denoiser``.

    Parameters
    ----------
    inp : AttackInput
        What the server saw (gradients, or a FedSGD update with its lr).
    denoiser : Denoiser
        From :func:`fedlab.attacks.pgla.denoisers.load_denoiser`.
    noise_std : float, optional
        Per-coordinate noise std of the gradient; default: from ``inp.dp`` (see
        :func:`gradient_noise_std`), else estimated blind by the denoiser.

    Returns
    -------
    AttackInput
        With ``gradients`` set to the denoised gradients, ``update`` cleared, and
        ``dp["denoised_by"]`` naming the denoiser.
    """
    grads = inp.target_gradients()
    std = noise_std if noise_std is not None else gradient_noise_std(inp)
    clip = None
    if dp_value(inp.dp, "clip") is not None:
        clip = float(dp_value(inp.dp, "clip"))
        clip /= inp.lr if inp.gradients is None and inp.lr else 1.0
    log.info("denoising with %s (noise std %s, clip %s)", denoiser.name, std, clip)
    flat = denoiser.denoise(flatten_gradients(grads), noise_std=std, clip_norm=clip)
    if not torch.isfinite(flat).all():
        raise FedlabError(f"denoiser {denoiser.name!r} produced NaN or Inf; check its folder")
    dp = {**(inp.dp or {}), "denoised_by": denoiser.name}
    return dataclasses.replace(inp, gradients=unflatten_gradients(flat, grads), update=None, dp=dp)


def denoising(
    make_input: Callable[..., AttackInput], name: str, folder: str | None = None
) -> Callable[..., AttackInput]:
    """Wrap an ``AttackInput`` factory so that its gradients come out denoised.

    The denoiser is loaded once, here (so a bad name or folder fails before any attack runs);
    this is the hook of ``fedlab attack --denoise NAME --denoiser DIR``.
    """
    denoiser = load_denoiser(name, folder)

    def make(*args: object, **kwargs: object) -> AttackInput:
        return denoise_attack_input(make_input(*args, **kwargs), denoiser)

    return make
