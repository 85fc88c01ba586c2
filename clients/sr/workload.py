"""The diffusion-prior workload: an epsilon-prediction UNet on random crops of bundled images."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property

import torch
from fedlab.clients.sr.config import DiffusionConfig
from fedlab.clients.sr.data import HELDOUT_IMAGES, RandomCrops, client_images, fixed_crops
from torch import nn
from torch.utils.data import TensorDataset

from fedlab.client import derive_seed
from fedlab.diffusion import build_unet, denoising_step, load_unet, make_scheduler
from fedlab.workload import Workload

HELDOUT_SEED = 7


class DiffusionWorkload(Workload):
    """Clients hold different training images (:func:`fedlab.clients.sr.data.client_images`); the
    test set is ``heldout-crops`` fixed crops of each held-out image, in [-1, 1]."""

    config: DiffusionConfig

    @cached_property
    def scheduler(self):  # noqa: ANN201  (diffusers DDPMScheduler)
        return make_scheduler()

    def build_model(self) -> nn.Module:
        if self.config.init_from:
            return load_unet(self.config.prior_folder()).train()
        return build_unet(self.config.unet, sample_size=self.config.crop_size)

    def client_dataset(self, partition_id: int, num_partitions: int) -> RandomCrops:
        cfg = self.config
        return RandomCrops(
            client_images(partition_id, num_partitions), cfg.crop_size, cfg.crops_per_client,
            seed=derive_seed(cfg.seed, "crops", partition_id) % 2**32,
        )  # fmt: skip

    @cached_property
    def _test(self) -> TensorDataset:
        crops = fixed_crops(HELDOUT_IMAGES, self.config.crop_size, self.config.heldout_crops,
                            seed=HELDOUT_SEED)  # fmt: skip
        return TensorDataset(crops * 2 - 1)

    def test_dataset(self) -> TensorDataset:
        return self._test

    def step(
        self, model: nn.Module, batch: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, Mapping[str, float]]:
        return denoising_step(self.scheduler)(model, batch)
