"""The PGLA denoiser: a UNet, a DDPM scheduler and the gradient-image transform, kept apart.

A folder written by :meth:`PGLAPipeline.save_pretrained` holds ``unet/`` (diffusers
``config.json`` + ``diffusion_pytorch_model.safetensors``), ``scheduler/``
(``scheduler_config.json``) and ``transform/`` (``transform_config.json``): every part a
diffusers ``ConfigMixin``. Loading reads local folders and safetensors only.

The reverse loop is in :meth:`PGLAPipeline.reverse`, in one place: start from
``sqrt(abar*) * y`` at the adaptive step (or a fixed one), and feed every step's output to the
next step down to ``t = 0`` (the released Mjolnir code re-feeds the original input at every
step; this does not).

The conditional variant (a UNet with two input channels, built with ``conditional=True``) sees
the scaled noisy gradient ``c = sqrt(abar*) * y`` beside ``x_t`` at every step and the noise
level as a class embedding (the adaptive start step ``t*(M)``, through the same sinusoidal
embedding as ``t``). It is trained like SR3 (``x_t`` noised independently of ``y``, any ``t``).
Sampling starts at the adaptive step from ``sqrt(abar*) y`` like PGLA (default), or from pure
noise at ``T - 1`` as SR3 does.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMScheduler, UNet2DModel
from fedlab.attacks.pgla.schedule import start_timestep, target_alpha_bar
from fedlab.attacks.pgla.transform import GradientImageTransform

from fedlab.diffusion.models import UNET_SPEC, load_scheduler, load_unet
from fedlab.diffusion.sampling import reverse as diffusion_reverse
from fedlab.errors import FedlabError
from fedlab.model_folder import check_model_folder

log = logging.getLogger(f"fedlab.{__name__}")

COND_STARTS = ("adaptive", "noise")


def build_unet(*, conditional: bool = False, **config: Any) -> UNet2DModel:
    """A one-channel ``UNet2DModel`` from keyword arguments (diffusers' names).

    ``conditional=True`` adds the noisy gradient as a second input channel and the noise level
    as a ``"timestep"`` class embedding.
    """
    extra = {"in_channels": 2, "class_embed_type": "timestep"} if conditional else {}
    config = {"in_channels": 1, "out_channels": 1, **config, **extra}
    try:
        return UNet2DModel(**config)
    except (TypeError, ValueError) as exc:
        raise FedlabError(
            f"invalid UNet config {config!r}: {exc}; see diffusers UNet2DModel"
        ) from None


def unet_requirements(side: int) -> dict[str, tuple[Any, ...]]:
    """What the pipeline runs: one-channel images of the transform's side (two channels in for
    the conditional variant)."""
    return {
        "in_channels": (1, 2),
        "out_channels": (1,),
        "sample_size": (side, [side, side], (side, side)),
    }


def check_pipeline_folder(folder: str | Path, *, max_parameters: int | None = None) -> int:
    """The pre-run check of a PGLA denoiser folder (or training run folder): everything
    :meth:`PGLAPipeline.from_pretrained` checks, with the UNet only built on the meta device.
    Returns the UNet's parameter count."""
    from fedlab.attacks.pgla.training import resolve_checkpoint

    folder = resolve_checkpoint(folder)
    if not folder.is_dir():
        raise FedlabError(
            f"denoiser folder {str(folder)!r} does not exist; give a folder written by "
            "`fedlab pgla train --out DIR`"
        )
    transform = GradientImageTransform.from_pretrained(folder)
    load_scheduler(folder / "scheduler", source="denoiser scheduler")  # at most 100k betas
    return check_model_folder(folder / "unet", UNET_SPEC, max_parameters=max_parameters,
                              require=unet_requirements(transform.side),
                              source="denoiser UNet")  # fmt: skip


class PGLAPipeline:
    """Denoise flat gradients with a diffusion model trained on clean gradients.

    Parameters
    ----------
    unet : UNet2DModel
        Epsilon-prediction network on ``(B, 1, side, side)`` images.
    scheduler : DDPMScheduler
        The training scheduler (T = 1000, linear betas).
    transform : GradientImageTransform
        Gradient <-> image mapping with the training statistics.
    """

    def __init__(
        self, *, unet: UNet2DModel, scheduler: DDPMScheduler, transform: GradientImageTransform
    ) -> None:
        if unet.config.sample_size not in (transform.side, (transform.side, transform.side)):
            raise FedlabError(
                f"UNet sample_size {unet.config.sample_size} does not match the transform's "
                f"side {transform.side}; build the UNet with sample_size={transform.side}"
            )
        if unet.config.in_channels not in (1, 2):
            raise FedlabError(
                f"UNet in_channels {unet.config.in_channels} is not 1 (PGLA) or 2 (conditional)"
            )
        self.unet = unet
        self.scheduler = scheduler
        self.transform = transform

    @property
    def conditional(self) -> bool:
        """Whether the UNet also takes the noisy gradient and its level (``pgla-cond``)."""
        return self.unet.config.in_channels == 2

    def predict_noise(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: torch.Tensor | None = None,
        level: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The UNet's epsilon for ``x`` at steps ``t`` (and condition ``cond`` at ``level``)."""
        if self.conditional:
            if cond is None or level is None:
                raise FedlabError("a conditional PGLA UNet needs the noisy gradient and its level")
            return self.unet(torch.cat([x, cond], dim=1), t, class_labels=level).sample
        return self.unet(x, t).sample

    # ----------------------------------------------------------------------------- persistence
    def save_pretrained(self, folder: str | Path) -> Path:
        """Write ``unet/``, ``scheduler/`` and ``transform/`` under ``folder``."""
        folder = Path(folder)
        self.unet.save_pretrained(folder / "unet", safe_serialization=True)
        self.scheduler.save_pretrained(folder / "scheduler")
        self.transform.save_pretrained(folder)
        return folder

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, *, max_parameters: int | None = None
    ) -> PGLAPipeline:
        """Load from a local folder written by :meth:`save_pretrained`.

        Each part goes through the model-folder step (:mod:`fedlab.model_folder`): the
        transform's and scheduler's configs typed and bounded, the UNet's config too, its
        parameter count taken on the meta device and checked against ``max_parameters``
        (default :data:`fedlab.limits.MAX_MODEL_PARAMETERS`), its weights' header against it,
        all before anything is allocated.

        Raises
        ------
        FedlabError
            One line naming the folder and the part at fault.
        """
        from fedlab.attacks.pgla.training import resolve_checkpoint

        folder = resolve_checkpoint(folder)
        if not folder.is_dir():
            raise FedlabError(
                f"denoiser folder {str(folder)!r} does not exist; give a folder written by "
                "`fedlab pgla train --out DIR`"
            )
        transform = GradientImageTransform.from_pretrained(folder)
        scheduler = load_scheduler(folder / "scheduler", source="denoiser scheduler")
        unet = load_unet(folder / "unet", max_parameters=max_parameters,
                         require=unet_requirements(transform.side),
                         source="denoiser UNet")  # fmt: skip
        return cls(unet=unet, scheduler=scheduler, transform=transform)

    # ------------------------------------------------------------------------------- sampling
    def start_step(self, m: float) -> int | None:
        """Adaptive start: first ``t`` with ``abar_t < 1 / (1 + M^2)``; ``None`` when ``M = 0``."""
        return start_timestep(self.scheduler.alphas_cumprod, m)

    @torch.no_grad()
    def reverse(
        self,
        x: torch.Tensor,
        t_start: int,
        *,
        sampler: str = "ddim",
        steps: int = 20,
        generator: torch.Generator | None = None,
        progress: bool = False,
        cond: torch.Tensor | None = None,
        level: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run the reverse process on ``x`` (already at noise level ``t_start``) down to 0.

        ``ddpm`` takes every step ``t_start, ..., 0`` (ancestral, stochastic); ``ddim`` takes
        about ``steps`` evenly spaced deterministic steps (eta = 0). ``cond`` and ``level``
        go to a conditional UNet at every step.
        """
        return diffusion_reverse(
            lambda xt, tt: self.predict_noise(xt, tt, cond, level),
            self.scheduler.config, x, t_start, sampler=sampler, steps=steps,
            generator=generator, progress=progress, desc="pgla",
        )  # fmt: skip

    def denoise_images(
        self,
        y: torch.Tensor,
        m: float,
        *,
        fixed_t: int | None = None,
        sampler: str = "ddim",
        steps: int = 20,
        generator: torch.Generator | None = None,
        start: str = "adaptive",
    ) -> torch.Tensor:
        """Denoise images ``y = x + M * eps`` of shape ``(B, 1, side, side)``.

        Adaptive (``fixed_t=None``): scale by ``sqrt(abar*)``, start at the first ``t`` with
        ``abar_t < abar*``. Fixed: scale by ``sqrt(abar_t)`` and start at ``fixed_t`` whatever
        ``M`` is (the non-adaptive ablation). ``M = 0`` returns ``y`` unchanged in both.
        """
        if m == 0:
            return y
        if self.conditional:
            return self._denoise_conditional(
                y,
                m,
                fixed_t=fixed_t,
                sampler=sampler,
                steps=steps,
                generator=generator,
                start=start,
            )
        if fixed_t is None:
            t0 = self.start_step(m)
            assert t0 is not None
            scale = math.sqrt(target_alpha_bar(m))
        else:
            total = self.scheduler.config.num_train_timesteps
            if not 0 <= fixed_t < total:
                raise FedlabError(f"fixed_t {fixed_t} must be in 0..{total - 1}")
            t0 = fixed_t
            scale = float(self.scheduler.alphas_cumprod[t0].sqrt())
        log.debug("pgla: M=%.4g start t=%d scale=%.4g", m, t0, scale)
        return self.reverse(y * scale, t0, sampler=sampler, steps=steps, generator=generator)

    def _denoise_conditional(
        self,
        y: torch.Tensor,
        m: float,
        *,
        fixed_t: int | None,
        sampler: str,
        steps: int,
        generator: torch.Generator | None,
        start: str,
    ) -> torch.Tensor:
        if fixed_t is not None:
            raise FedlabError(
                "fixed_t applies to the unconditional PGLA denoiser only; the conditional one "
                "starts at the adaptive step or from pure noise (start='adaptive'|'noise')"
            )
        if start not in COND_STARTS:
            raise FedlabError(f"unknown start {start!r}; allowed: {', '.join(COND_STARTS)}")
        cond = y * math.sqrt(target_alpha_bar(m))
        t_star = self.start_step(m)
        assert t_star is not None
        level = torch.full((y.shape[0],), float(t_star))
        if start == "adaptive":
            x, t0 = cond.clone(), t_star
        else:
            x = torch.randn(y.shape, generator=generator)
            t0 = self.scheduler.config.num_train_timesteps - 1
        return self.reverse(
            x, t0, sampler=sampler, steps=steps, generator=generator, cond=cond, level=level
        )

    def denoise(
        self,
        flat: torch.Tensor,
        noise_std: float,
        *,
        clip_norm: float | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Denoise flat gradients ``(num_params,)`` or ``(B, num_params)``.

        Parameters
        ----------
        flat : torch.Tensor
            Noisy gradients in gradient units.
        noise_std : float
            Noise std per coordinate in gradient units; ``M = noise_std / scale`` after
            bringing clip norm ``clip_norm`` to the denoiser's training clip norm.
        clip_norm : float, optional
            The victims' clip norm; the gradients are rescaled by ``transform.clip_norm /
            clip_norm`` before denoising and back afterwards.
        **kwargs
            Passed to :meth:`denoise_images` (``fixed_t``, ``sampler``, ``steps``, ``generator``).
        """
        if noise_std == 0:
            return flat
        ratio = 1.0 if clip_norm is None else self.transform.clip_norm / clip_norm
        batch = flat.reshape(-1, flat.shape[-1]).float() * ratio
        m = noise_std * ratio / self.transform.scale
        out = self.transform.from_image(
            self.denoise_images(self.transform.to_image(batch), m, **kwargs)
        )
        return (out / ratio).reshape(flat.shape)
