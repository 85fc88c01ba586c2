"""A linear (softmax-regression) classifier workload for DP-FedAvg studies.

Central DP adds noise of std z*C/m to *every* coordinate while the averaged clipped signal has
norm at most C, so the noise-to-signal ratio grows with sqrt(d) / m. With m in the tens of
clients a model of a few hundred parameters learns at single-digit epsilon where a CNN of tens of
thousands does not; name it in a run config as
``workload = "clients.dpfedavg.linear:LinearWorkload"``.
"""

from __future__ import annotations

from torch import nn

from clients.supervised.workload import SupervisedWorkload


class LinearWorkload(SupervisedWorkload):
    """The supervised workload (same data, partitions, loss) with one linear layer on pixels."""

    def build_model(self) -> nn.Module:
        c, h, w = self.train_dataset.shape
        return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, self.train_dataset.num_classes))
