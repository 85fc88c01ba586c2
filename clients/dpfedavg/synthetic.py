"""Softmax regression on Synthetic(alpha, beta): any population, each client's data made from
its id when it is sampled (:mod:`fedlab.data.synthetic`).

``dataset=synthetic`` in the ``dpfedavg`` app selects this workload. The server evaluates on
``eval-clients`` held-out clients, ids 10^9, 10^9 + 1, ..., which no population reaches, so the
held-out set is the same whatever N is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from fedlab.data.synthetic import SyntheticFederation
from fedlab.errors import FedlabError
from fedlab.key_groups import PopulationKeys
from fedlab.workload import Workload


@dataclass
class FeatureDataset(Dataset):
    """Feature vectors with integer labels."""

    features: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features[index], self.labels[index]


class SyntheticWorkload(Workload):
    """Synthetic(alpha, beta) clients (60 features, 10 classes) and one linear layer."""

    config: PopulationKeys

    @cached_property
    def federation(self) -> SyntheticFederation:
        cfg = self.config
        return SyntheticFederation(alpha=cfg.synthetic_alpha, beta=cfg.synthetic_beta,
                                   seed=cfg.seed, size_mu=cfg.synthetic_size_mu,
                                   size_sigma=cfg.synthetic_size_sigma,
                                   min_size=cfg.synthetic_min_size,
                                   max_size=cfg.synthetic_max_size,
                                   iid=cfg.synthetic_iid)  # fmt: skip

    def build_model(self) -> nn.Module:
        fed = self.federation
        return nn.Linear(fed.num_features, fed.num_classes)

    def client_dataset(self, partition_id: int, num_partitions: int) -> FeatureDataset:
        if not 0 <= partition_id < num_partitions:
            raise FedlabError(f"client id {partition_id} is outside the population of "
                              f"{num_partitions}")  # fmt: skip
        x, y = self.federation.client_data(partition_id)
        return FeatureDataset(torch.from_numpy(x), torch.from_numpy(y))

    def test_dataset(self) -> FeatureDataset:
        ids = range(PopulationKeys.HELD_OUT_BASE,
                    PopulationKeys.HELD_OUT_BASE + self.config.eval_clients)  # fmt: skip
        parts = [self.federation.client_data(k) for k in ids]
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        return FeatureDataset(torch.from_numpy(x), torch.from_numpy(y))

    def step(
        self, model: nn.Module, batch: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, Mapping[str, float]]:
        features, labels = batch[0], batch[1]
        logits = model(features)
        accuracy = (logits.argmax(1) == labels).float().mean().item()
        return F.cross_entropy(logits, labels), {"accuracy": accuracy}
