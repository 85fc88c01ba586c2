"""The workload plugin: what a client trains (model, data, loss); training.py says how."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from fedlab.config import RunConfig
from fedlab.errors import FedlabError
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
        ``attacks.models.MODELS`` (a name or ``module:attr``), for gradient traces."""
        raise FedlabError(
            f"workload {type(self).__name__} has no model spec, so its updates cannot be "
            "recorded as traces; implement Workload.model_spec or set record-traces=false"
        )


def build_workload(config: RunConfig) -> Workload:
    """Instantiate the workload named by ``config.workload``."""
    return WORKLOADS.get(config.workload)(config)
