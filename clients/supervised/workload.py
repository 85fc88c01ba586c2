"""Supervised image classification on an offline or local dataset."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clients.supervised.models import build_classifier
from fedlab.data.datasets import ImageDataset, load_dataset
from fedlab.data.partition import partition_indices, train_test_split
from fedlab.registry import WORKLOADS
from fedlab.workload import Workload


@WORKLOADS.register("supervised")
class SupervisedWorkload(Workload):
    """Cross-entropy classification; clients hold partitions of a fixed training split."""

    @cached_property
    def _data(self) -> tuple[ImageDataset, ImageDataset]:
        cfg = self.config
        full = load_dataset(cfg.dataset, cfg.data_path, cfg.image_size)
        train_idx, test_idx = train_test_split(full.labels.numpy(), cfg.test_fraction)
        return full.subset(train_idx), full.subset(test_idx)

    @property
    def train_dataset(self) -> ImageDataset:
        return self._data[0]

    def test_dataset(self) -> ImageDataset:
        return self._data[1]

    def client_dataset(self, partition_id: int, num_partitions: int) -> ImageDataset:
        cfg = self.config
        parts = partition_indices(
            self.train_dataset.labels.numpy(),
            num_partitions,
            method=cfg.partitioner,
            seed=cfg.seed,
            alpha=cfg.dirichlet_alpha,
            shards_per_partition=cfg.shards_per_partition,
        )
        return self.train_dataset.subset(parts[partition_id])

    def build_model(self) -> nn.Module:
        c, h, _ = self.train_dataset.shape
        return build_classifier(self.config.model, c, h, self.train_dataset.num_classes)

    def model_spec(self) -> dict[str, Any]:
        c, h, _ = self.train_dataset.shape
        kwargs = {"in_channels": c, "image_size": h, "num_classes": self.train_dataset.num_classes}
        name = self.config.model
        return {"name": name if name == "lenet" else f"clients.supervised.models:{name}",
                "kwargs": kwargs}  # fmt: skip

    def step(
        self, model: nn.Module, batch: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, Mapping[str, float]]:
        images, labels = batch[0], batch[1]
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.argmax(1) == labels).float().mean().item()
        return loss, {"accuracy": accuracy}
