"""A linear (softmax-regression) classifier workload for DP-FedAvg studies.

Central DP adds noise of std z*C/m to *every* coordinate while the averaged clipped signal has
norm at most C, so the noise-to-signal ratio grows with sqrt(d) / m. With m in the tens of
clients a model of a few hundred parameters learns at single-digit epsilon where a CNN of tens of
thousands does not; name it in a run config as
``workload = "fedlab.clients.dpfedavg.linear:LinearWorkload"``.
"""

from __future__ import annotations

from typing import Any

from fedlab.clients.supervised.workload import SupervisedWorkload
from torch import nn


def softmax_regression(in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    """One linear layer on the flattened pixels of a square image."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size**2, num_classes))


class LinearWorkload(SupervisedWorkload):
    """The supervised workload (same data, partitions, loss) with one linear layer on pixels.

    It ignores the ``model`` key; its traces name :func:`softmax_regression`, so an attack
    rebuilds this model and not the one ``model`` names.
    """

    def build_model(self) -> nn.Module:
        c, h, _ = self.train_dataset.shape
        return softmax_regression(c, h, self.train_dataset.num_classes)

    def model_spec(self) -> dict[str, Any]:
        c, h, _ = self.train_dataset.shape
        kwargs = {"in_channels": c, "image_size": h, "num_classes": self.train_dataset.num_classes}
        return {"name": "fedlab.clients.dpfedavg.linear:softmax_regression", "kwargs": kwargs}
