"""Supervised image classification on an offline or local dataset."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from fedlab.clients.supervised.models import build_classifier
from torch import nn

from fedlab.registry import WORKLOADS
from fedlab.workload import PartitionedImageWorkload


@WORKLOADS.register("supervised")
class SupervisedWorkload(PartitionedImageWorkload):
    """Cross-entropy classification; clients hold partitions of a fixed training split."""

    def build_model(self) -> nn.Module:
        c, h, _ = self.train_dataset.shape
        return build_classifier(self.config.model, c, h, self.train_dataset.num_classes)

    def model_spec(self) -> dict[str, Any]:
        c, h, _ = self.train_dataset.shape
        kwargs = {"in_channels": c, "image_size": h, "num_classes": self.train_dataset.num_classes}
        name = self.config.model
        return {"name": name if name == "lenet" else f"fedlab.clients.supervised.models:{name}",
                "kwargs": kwargs}  # fmt: skip

    def step(
        self, model: nn.Module, batch: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, Mapping[str, float]]:
        images, labels = batch[0], batch[1]
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.argmax(1) == labels).float().mean().item()
        return loss, {"accuracy": accuracy}
