"""Fine-tune the PGLA denoiser on gradients of the audited model, from public stand-in data.

The shipped denoiser learnt clean gradients of DLG's LeNet at DLG's uniform initialisation (a
fresh model per gradient). The audited model is one fixed model: the global parameters of the
traced round. Here the denoiser continues training (the same DDPM loss and loop as
``fedlab pgla train``) on clipped clean gradients of *that* model on images the attacker could
have: the ``sample-patches`` surrogate (crops of scikit-learn's two sample photos, with seeded
labels), never the victims' data. :func:`gradient_cosines` then scores shipped and fine-tuned
weights on the audited traces by the cosine of the denoised gradient with the true one (the
true gradient is computed from the recorded ground truth, for scoring only).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fedlab.attacks.base import AttackInput
from fedlab.attacks.pgla.pipeline import PGLAPipeline
from fedlab.attacks.pgla.schedule import make_scheduler
from fedlab.attacks.pgla.surrogate import clean_gradient, clip_l2, surrogate_images
from fedlab.attacks.pgla.train import pgla_loss
from fedlab.attacks.pgla.training import (
    DenoiserTrainConfig,
    resolve_checkpoint,
    run_loop,
    write_checkpoint,
)
from fedlab.attacks.pgla.transform import flatten_gradients

log = logging.getLogger("fedlab.audit")


def audited_stream(
    model: torch.nn.Module, *, clip_norm: float, batch_size: int, seed: int
) -> Iterator[torch.Tensor]:
    """Endless batches of clipped clean gradients of ``model`` on stand-in images."""
    images, labels = surrogate_images("sample-patches", seed=seed, count=1024)
    rng = np.random.default_rng(seed)
    while True:
        idx = rng.integers(len(images), size=batch_size)
        rows = [clean_gradient(model, images[i], labels[i]) for i in idx]
        yield clip_l2(torch.stack(rows), clip_norm)


def finetune(
    shipped: str | Path,
    audited: AttackInput,
    out: str | Path,
    *,
    steps: int,
    time_limit_s: float,
    clip_norm: float,
    seed: int = 0,
) -> dict[str, Any]:
    """Continue training the PGLA denoiser in ``shipped`` on the audited model's gradients."""
    out = Path(out)
    source = PGLAPipeline.from_pretrained(resolve_checkpoint(shipped))
    pipe = PGLAPipeline(unet=source.unet, scheduler=make_scheduler(), transform=source.transform)
    cfg = DenoiserTrainConfig(
        denoiser="pgla",
        surrogate="sample-patches",
        seed=seed,
        clip_norm=clip_norm,
        max_steps=steps,
        time_limit_s=time_limit_s,
        warmup_steps=1,
        checkpoint_every=steps,
        timesteps="noise-range",
        init_from=str(shipped),
        threads=1,
    )
    model = audited.build_model()
    loss_fn = pgla_loss(
        pipe,
        torch.device("cpu"),
        timesteps=cfg.timesteps,
        noise_range=(cfg.noise_range[0], cfg.noise_range[1]),
    )

    def save(step: int, opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        write_checkpoint(out, step, pipe.save_pretrained, state)

    stream = audited_stream(model, clip_norm=clip_norm, batch_size=cfg.batch_size, seed=seed)
    return run_loop(model=pipe.unet, stream=stream, loss_fn=loss_fn, cfg=cfg, save=save)


def true_gradient(inp: AttackInput, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The flat clean gradient of the recorded batch at the global parameters (scoring only)."""
    model = inp.build_model()
    return (
        clean_gradient(model, images[0], labels[0])
        if len(images) == 1
        else flatten_gradients(
            torch.autograd.grad(
                torch.nn.functional.cross_entropy(model(images), labels), list(model.parameters())
            )
        )
    )
