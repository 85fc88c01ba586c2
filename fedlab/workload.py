"""The workload plugin: what a client trains (model, data, loss); training.py says how."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from functools import cached_property
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from fedlab.data.datasets import ImageDataset, load_dataset
from fedlab.data.partition import partition_indices, train_test_split
from fedlab.errors import FedlabError
from fedlab.key_groups import DataKeys, RunConfig
from fedlab.registry import WORKLOADS


class Workload(ABC):
    """Base class of client workloads.

    A workload is built from the resolved run config, in the ServerApp (for the initial model
    and central evaluation) and in every ClientApp call (for local training).

    Parameters
    ----------
    config : RunConfig
        The run's validated config (an app's subclass of it).
    """

    def __init__(self, config: RunConfig) -> None:
        self.config = config

    @abstractmethod
    def build_model(self) -> nn.Module:
        """A freshly initialised model (seeded by the caller)."""

    @abstractmethod
    def client_dataset(self, partition_id: int, num_partitions: int) -> Dataset:
        """The training data of one client partition."""

    @abstractmethod
    def test_dataset(self) -> Dataset:
        """Held-out data the server evaluates the global model on."""

    @abstractmethod
    def step(
        self, model: nn.Module, batch: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, Mapping[str, float]]:
        """Loss and per-batch metrics of one batch (used for training and evaluation)."""

    def model_spec(self) -> dict[str, Any]:
        """``{"name", "kwargs"}`` that rebuilds :meth:`build_model` through
        ``fedlab.registry.MODELS`` (a registered name), for gradient traces."""
        raise FedlabError(
            f"workload {type(self).__name__} has no model spec, so its updates cannot be "
            "recorded as traces; implement Workload.model_spec or set record-traces=false"
        )


class PartitionedImageWorkload(Workload):
    """A workload on one image dataset: a fixed stratified split held out for the server, the
    rest partitioned among clients by the run config's partitioner.

    Subclasses add the model and the loss (:meth:`build_model`, :meth:`step`).
    """

    #: Dirichlet partitions are redrawn until each client holds at least this many examples.
    min_partition_size: ClassVar[int] = 1

    config: DataKeys

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
            self.train_dataset.labels.numpy(), num_partitions, method=cfg.partitioner,
            seed=cfg.seed, alpha=cfg.dirichlet_alpha, shards_per_partition=cfg.shards_per_partition,
            min_partition_size=self.min_partition_size,
        )  # fmt: skip
        return self.train_dataset.subset(parts[partition_id])


def build_workload(config: RunConfig) -> Workload:
    """Instantiate the workload this config names (``workload`` key or the app's own)."""
    return WORKLOADS.get(config.workload_name)(config)
