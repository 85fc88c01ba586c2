"""Local DP parameters travel with each reply into a recorded gradient trace."""

from __future__ import annotations

import pytest
import torch
from dp_helpers import context
from fedlab.attacks.base import ModelSpec
from fedlab.strategies.dp_mods import LocalDpClipNoiseMod
from fedlab.strategies.trace_recording import TraceRecording
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg

from fedlab.traces import TraceReader

SPEC = {"name": "lenet", "kwargs": {"num_classes": 10, "image_size": 16}}


class _Grid:
    def get_node_ids(self):
        return [1]


@pytest.mark.parametrize("noise", ["gaussian", "laplace"])
def test_trace_records_carry_the_local_dp_mechanism(tmp_path, noise):
    torch.manual_seed(0)
    state = ModelSpec(SPEC["name"], SPEC["kwargs"]).build().state_dict()
    strategy = TraceRecording(FedAvg(min_train_nodes=1, min_available_nodes=1),
                              trace_dir=tmp_path, model=SPEC, num_classes=10)  # fmt: skip
    (msg,) = strategy.configure_train(1, ArrayRecord(state), ConfigRecord(), _Grid())

    def train(m, c):
        content = RecordDict({
            "arrays": ArrayRecord({k: v + 0.01 for k, v in state.items()}),
            "metrics": MetricRecord({"num-examples": 1}),
            "client": ConfigRecord({"partition-id": 0}),
            "ground-truth": ArrayRecord({"images": torch.rand(1, 3, 16, 16),
                                         "labels": torch.tensor([3])}),
        })  # fmt: skip
        return Message(content=content, dst_node_id=0, message_type="train")

    mod = LocalDpClipNoiseMod(clip_norm=0.5, epsilon=4.0, delta=1e-5, noise=noise)
    reply = mod(msg, context(pid=0), train)
    strategy.aggregate_train(1, [reply])
    (record,) = TraceReader(tmp_path).records
    assert record.dp["mechanism"] == "local" and record.dp["noise"] == noise
    assert record.dp["clip-norm"] == 0.5 and record.dp["epsilon"] == 4.0
    assert record.dp["noise-std"] == pytest.approx(mod.noise_std)
