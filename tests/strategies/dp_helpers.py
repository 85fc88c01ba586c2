"""Mock grids, messages and contexts for the DP-FedAvg tests (no Ray, no simulation)."""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict


class Grid:
    """Offers fixed node ids; the strategies under test build the messages."""

    def __init__(self, nodes):
        self.nodes = list(nodes)

    def get_node_ids(self):
        return list(self.nodes)


def arrays(values: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.asarray(v, dtype=np.float32)) for k, v in values.items()})


def reply(values: dict[str, np.ndarray], examples: int = 10, **content) -> Message:
    record = RecordDict({"arrays": arrays(values),
                         "metrics": MetricRecord({"num-examples": examples, "train-loss": 1.0}),
                         **content})  # fmt: skip
    return Message(content=record, dst_node_id=0, message_type="train")


def as_numpy(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {k: v.numpy().astype(np.float64) for k, v in record.items()}


def context(pid: int = 0, num_partitions: int = 10) -> Context:
    node_config = {"partition-id": pid, "num-partitions": num_partitions}
    return Context(run_id=1, node_id=pid, node_config=node_config, state=RecordDict(),
                   run_config={})  # fmt: skip
