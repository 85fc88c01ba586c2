"""The style-conditioned prior's workload: a class-conditional epsilon-prediction UNet on random
crops of photos and their procedural paintings, labelled by style (photo = last label)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path

import torch
from fedlab.clients.harmonization.config import PIHPriorConfig
from fedlab.clients.harmonization.data import (
    HELDOUT_PHOTOS,
    STYLES,
    StyledCrops,
    client_pairs,
)
from torch import nn
from torch.utils.data import TensorDataset

from fedlab.client import derive_seed
from fedlab.diffusion import (
    build_unet,
    denoising_step,
    heldout_denoising_loss,
    load_unet,
    make_scheduler,
)
from fedlab.errors import FedlabError
from fedlab.workload import Workload

HELDOUT_SEED = 7
STYLES_FILE = "styles.json"
"""Written next to a saved prior: the style names of its labels (last label: photo)."""


def save_prior(unet: nn.Module, folder: str | Path) -> Path:
    """``save_pretrained`` plus ``styles.json`` (the label names)."""
    from fedlab.atomic import atomic_write_text

    folder = Path(folder)
    unet.save_pretrained(folder, safe_serialization=True)
    atomic_write_text(folder / STYLES_FILE, json.dumps({"styles": [*STYLES, "photo"]}) + "\n")
    return folder


def prior_styles(unet: nn.Module, folder: str | Path | None = None) -> list[str]:
    """The label names of a style-conditioned prior (last: photo), with a one-line error."""
    classes = unet.config.get("num_class_embeds")
    if not classes:
        raise FedlabError(
            "this UNet is not style-conditioned (no num_class_embeds); give a prior trained by "
            "the pih_prior app (simulations/pih_train_prior.py)"
        )
    names = [*STYLES, "photo"]
    if folder is not None and (Path(folder) / STYLES_FILE).is_file():
        names = json.loads((Path(folder) / STYLES_FILE).read_text())["styles"]
    if len(names) != classes:
        names = [f"label-{i}" for i in range(classes - 1)] + ["photo"]
    return names


@torch.no_grad()
def heldout_conditional_loss(
    model: nn.Module, scheduler: object, images: torch.Tensor, labels: torch.Tensor
) -> dict[str, float]:
    """The prior's held-out loss: the shared one at the steps FreePIH uses (t <= 500)."""
    return heldout_denoising_loss(
        model, scheduler, images, timesteps=(50, 150, 300, 500), class_labels=labels
    )


class PIHPriorWorkload(Workload):
    """Clients hold different photos and styles; the test set is ``heldout-crops`` fixed crops
    of each held-out photo in every style and raw, in [-1, 1], with labels."""

    config: PIHPriorConfig

    @cached_property
    def scheduler(self):  # noqa: ANN201  (diffusers DDPMScheduler)
        return make_scheduler()

    def build_model(self) -> nn.Module:
        if self.config.init_from:
            return load_unet(self.config.prior_folder()).train()
        return build_unet(
            self.config.unet, sample_size=self.config.crop_size, num_class_embeds=len(STYLES) + 1
        )

    def client_dataset(self, partition_id: int, num_partitions: int) -> StyledCrops:
        cfg = self.config
        return StyledCrops(
            client_pairs(partition_id, num_partitions), cfg.crop_size, cfg.crops_per_client,
            seed=derive_seed(cfg.seed, "pih-crops", partition_id) % 2**32,
        )  # fmt: skip

    @cached_property
    def _test(self) -> TensorDataset:
        pairs = [(p, s) for p in HELDOUT_PHOTOS for s in range(len(STYLES) + 1)]
        data = StyledCrops(pairs, self.config.crop_size, len(pairs) * self.config.heldout_crops,
                           seed=HELDOUT_SEED)  # fmt: skip
        items = [data[i] for i in range(len(data))]
        return TensorDataset(torch.stack([x for x, _ in items]), torch.stack([y for _, y in items]))

    def test_dataset(self) -> TensorDataset:
        return self._test

    def step(
        self, model: nn.Module, batch: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, Mapping[str, float]]:
        return denoising_step(self.scheduler, conditional=True)(model, batch)
