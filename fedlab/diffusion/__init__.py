"""The project's one diffusion module: UNet factories, schedulers, training step, sampling.

Core infrastructure: it imports torch, diffusers and numpy only (no plugin package), so PGLA
(``attacks/pgla``), Diff-SR (``clients/sr``) and later workloads share one copy of each piece:

- :mod:`fedlab.diffusion.models`: ``UNet2DModel`` factories (unconditional, class-conditional
  through ``num_class_embeds``), named configs (diffusers' tiny test config, the CPU prior, a
  larger GPU config) and loading/saving ``save_pretrained`` folders with one-line errors.
- :mod:`fedlab.diffusion.schedule`: the DDPM schedule (T = 1000, linear betas 1e-4..0.02),
  DDIM from it, and the noise-level -> start-step rule.
- :mod:`fedlab.diffusion.training`: the epsilon-prediction step for
  :func:`fedlab.training.train`, held-out denoising loss, and training with checkpoints and
  resume through that same loop.
- :mod:`fedlab.diffusion.sampling`: the reverse process from a given start step (DDPM or
  DDIM, tqdm progress, an optional per-step guidance hook), in one place.
"""

from fedlab.diffusion.models import (
    CPU_PRIOR_CONFIG,
    GPU_PRIOR_CONFIG,
    TINY_TEST_CONFIG,
    build_unet,
    load_unet,
)
from fedlab.diffusion.sampling import noise_to, reverse
from fedlab.diffusion.schedule import (
    SCHEDULER_CONFIG,
    make_ddim_scheduler,
    make_scheduler,
    noise_std_at,
    start_step,
    start_steps,
    target_alpha_bar,
)
from fedlab.diffusion.training import (
    denoising_step,
    heldout_denoising_loss,
    train_with_checkpoints,
)

__all__ = [
    "CPU_PRIOR_CONFIG",
    "GPU_PRIOR_CONFIG",
    "SCHEDULER_CONFIG",
    "TINY_TEST_CONFIG",
    "build_unet",
    "denoising_step",
    "heldout_denoising_loss",
    "load_unet",
    "make_ddim_scheduler",
    "make_scheduler",
    "noise_std_at",
    "noise_to",
    "reverse",
    "start_step",
    "start_steps",
    "target_alpha_bar",
    "train_with_checkpoints",
]
