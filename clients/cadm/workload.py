"""The CaDM workload: the conditional decoder UNet trained on (clean, received) patch pairs.

The step (for THE loop, :func:`fedlab.training.train`): the residual target
``z = (clean - up) / residual_scale`` is noised to a uniform ``t`` (DDPM forward process),
concatenated with the conditioning frame ``up`` and the UNet regresses ``z`` (x0-prediction,
MSE), told the ``(r, b)`` pair as a class label (label 0 for every pair when unaware).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from functools import cached_property

import torch
import torch.nn.functional as F
from fedlab.clients.cadm.config import CadmConfig
from fedlab.clients.cadm.data import PairPatches, PatchTensors, patch_tensors, validation_clips
from fedlab.clients.cadm.model import (
    RESIDUAL_SCALE,
    T_START,
    build_decoder_unet,
    diffusion_scheduler,
)
from torch import nn

from fedlab.client import derive_seed
from fedlab.workload import Workload


@functools.lru_cache(maxsize=8)
def _client_patches(pid: int, num: int, count: int, seed: int, pairs: tuple, crfs: tuple,
                    patch: int, patches: int, cache: str) -> PatchTensors:  # fmt: skip
    """One client's precomputed patches, memoised per process (a ClientApp is rebuilt each
    round; a worker serves several clients) and stored in ``cache`` when one is given."""
    return patch_tensors(pid, num, clips=count, seed=seed, pairs=list(pairs), crfs=list(crfs),
                         patch=patch, count=patches, cache=cache)  # fmt: skip


def inference_timesteps(steps: int) -> list[int]:
    """The timesteps the decoder visits with ``steps`` DDIM steps from ``T_START``."""
    from fedlab.diffusion.sampling import plan

    return plan(diffusion_scheduler().config, T_START, sampler="ddim", steps=steps)[1]


def diffusion_step(scheduler, conditioned: bool, focus: list[int] | None = None,  # noqa: ANN001
                   focus_prob: float = 0.5, residual_scale: float = RESIDUAL_SCALE):  # noqa: ANN201  # fmt: skip
    """The decoder's training step (see the module docstring).

    With ``focus`` (the inference timesteps), a share ``focus_prob`` of the examples is drawn
    at those steps instead of uniformly: with two DDIM steps from pure noise only
    ``t = 999, 499`` are ever visited, which uniform sampling almost never trains.
    """
    total = scheduler.config.num_train_timesteps

    def step(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
        clean, up, labels = batch
        z = (clean - up) / residual_scale
        noise = torch.randn_like(z)
        t = torch.randint(0, total, (len(z),), device=z.device)
        if focus:
            chosen = torch.tensor(focus, device=z.device)[
                torch.randint(0, len(focus), (len(z),), device=z.device)
            ]
            t = torch.where(torch.rand(len(z), device=z.device) < focus_prob, chosen, t)
        xt = scheduler.add_noise(z, noise, t)
        labels = labels if conditioned else torch.zeros_like(labels)
        pred = model(torch.cat([xt, up * 2 - 1], dim=1), t, class_labels=labels).sample
        return F.mse_loss(pred, z), {}

    return step


class CadmWorkload(Workload):
    """Model, data and step of the ``streaming_cadm`` app."""

    config: CadmConfig

    @cached_property
    def scheduler(self):  # noqa: ANN201
        return diffusion_scheduler()

    def build_model(self) -> nn.Module:
        c = self.config
        return build_decoder_unet(c.unet, num_pairs=len(c.pair_list()),
                                  conditioned=c.conditioned, sample_size=c.patch_size)  # fmt: skip

    def client_dataset(self, partition_id: int, num_partitions: int) -> PatchTensors:
        c = self.config
        return _client_patches(partition_id, num_partitions, c.train_clips, c.clip_seed,
                               tuple(c.pair_list()), tuple(c.crf_list()), c.patch_size,
                               c.patches_per_client, c.patch_cache)  # fmt: skip

    @cached_property
    def _test(self) -> PairPatches:
        c = self.config
        crfs = c.crf_list()
        clips = validation_clips(c.clip_seed, c.validation_frames)
        return PairPatches(clips, c.pair_list(), [crfs[len(crfs) // 2]], c.patch_size, 64,
                           derive_seed(c.clip_seed, "cadm-val"))  # fmt: skip

    def test_dataset(self) -> PairPatches:
        return self._test

    def step(self, model: nn.Module, batch: tuple[torch.Tensor, ...]
             ) -> tuple[torch.Tensor, Mapping[str, float]]:  # fmt: skip
        c = self.config
        focus = inference_timesteps(c.sample_steps) if c.focus_prob > 0 else None
        step = diffusion_step(self.scheduler, c.conditioned, focus, c.focus_prob, c.residual_scale)
        return step(model, batch)
