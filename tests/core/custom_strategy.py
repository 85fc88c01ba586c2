"""A researcher's own strategy, named in a run config as tests.core.custom_strategy:MarkedFedAvg."""

from flwr.app import MetricRecord
from flwr.serverapp.strategy import FedAvg


class MarkedFedAvg(FedAvg):
    """FedAvg that adds a marker to the aggregated train metrics, so a test can see it ran."""

    def aggregate_train(self, server_round, replies):
        arrays, metrics = super().aggregate_train(server_round, replies)
        metrics = metrics or MetricRecord()
        metrics["custom-strategy"] = 1.0
        return arrays, metrics
