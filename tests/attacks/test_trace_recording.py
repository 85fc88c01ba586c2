"""TraceRecording around Flower's FedAvg, on mock replies (no Ray, no simulation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fedlab.attacks.base import ModelSpec
from fedlab.strategies.trace_recording import TraceRecording
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg
from flwr.supercore.task_identity import TaskIdentity

from fedlab.errors import FedlabError
from fedlab.traces import TraceReader

SPEC = {"name": "lenet", "kwargs": {"num_classes": 10, "image_size": 16}}


@pytest.fixture(autouse=True)
def _run_id(monkeypatch):
    """Building a Message needs a run id; set one for this test only (order-independent)."""
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)


class _Grid:
    def __init__(self, nodes):
        self.nodes = nodes

    def get_node_ids(self):
        return list(self.nodes)


def _global():
    torch.manual_seed(0)
    return ModelSpec(SPEC["name"], SPEC["kwargs"]).build().state_dict()


def _reply(state, pid, n, truth=True, shift=0.0):
    content = RecordDict(
        {
            "arrays": ArrayRecord({k: v + shift for k, v in state.items()}),
            "metrics": MetricRecord(
                {
                    "num-examples": n,
                    "partition-id": pid,
                    "lr": 0.05,
                    "local-steps": 1,
                    "dp-std": 0.0,
                }
            ),
        }
    )
    if truth:
        content["ground-truth"] = ArrayRecord(
            {"images": torch.full((1, 3, 16, 16), 0.5 + pid / 10), "labels": torch.tensor([pid])}
        )
    return Message(content=content, dst_node_id=0, message_type="train")


def _wrapper(tmp_path, **kw):
    inner = FedAvg(min_train_nodes=2, min_available_nodes=2, min_evaluate_nodes=2)
    return TraceRecording(inner, trace_dir=tmp_path, model=SPEC, num_classes=10, **kw)


def test_configure_train_sets_trace_keys_only_in_recorded_rounds(tmp_path):
    strategy = _wrapper(tmp_path, rounds=[2], batch_size=4)
    state = _global()
    train_config = ConfigRecord({"lr": 0.05})
    for rnd, recorded in ((1, False), (2, True), (3, False)):
        msgs = list(strategy.configure_train(rnd, ArrayRecord(state), train_config, _Grid([1, 2])))
        assert len(msgs) == 2
        cfg = msgs[0].content["config"]
        assert cfg["fedsgd"] is recorded and cfg["send-ground-truth"] is recorded
        assert cfg["fedsgd-batch-size"] == 4 and cfg["lr"] == 0.05
    assert "fedsgd" not in train_config  # the caller's config is not mutated
    assert (tmp_path / "round-0002" / "global.safetensors").exists()
    assert not (tmp_path / "round-0001").exists()


def test_aggregate_train_records_strips_ground_truth_and_matches_plain_fedavg(tmp_path):
    strategy = _wrapper(tmp_path, clients=[3])
    state = _global()
    list(strategy.configure_train(1, ArrayRecord(state), ConfigRecord(), _Grid([1, 2])))
    replies = [_reply(state, 3, n=1, shift=1.0), _reply(state, 4, n=3, shift=-1.0)]
    arrays, metrics = strategy.aggregate_train(1, replies)
    assert all("ground-truth" not in r.content for r in replies)
    # FedAvg weighted by examples: (1 * (+1) + 3 * (-1)) / 4 = -0.5 shift
    agg = arrays.to_torch_state_dict()
    np.testing.assert_allclose(agg["fc.bias"].numpy(), (state["fc.bias"] - 0.5).numpy(), rtol=1e-6)
    assert metrics["lr"] == pytest.approx(0.05)
    reader = TraceReader(tmp_path)
    (record,) = reader.records  # client 4 is not recorded
    assert (record.round, record.client, record.lr, record.local_steps) == (1, 3, 0.05, 1)
    assert record.dp == {"std": 0.0} and record.image_shape == (3, 16, 16)
    inp = reader.attack_input(record)
    torch.testing.assert_close(inp.update[-1], torch.ones(10))
    images, labels = reader.ground_truth(record)
    assert labels.tolist() == [3] and float(images.mean()) == pytest.approx(0.8)


def test_unrecorded_rounds_still_strip_ground_truth_and_write_nothing(tmp_path):
    strategy = _wrapper(tmp_path, rounds=[5])
    state = _global()
    list(strategy.configure_train(1, ArrayRecord(state), ConfigRecord(), _Grid([1, 2])))
    replies = [_reply(state, 0, 2), _reply(state, 1, 2)]
    arrays, _ = strategy.aggregate_train(1, replies)
    assert arrays is not None
    assert not (tmp_path / "manifest.json").exists()


def test_reply_without_partition_id_is_a_clear_error(tmp_path):
    strategy = _wrapper(tmp_path)
    state = _global()
    list(strategy.configure_train(1, ArrayRecord(state), ConfigRecord(), _Grid([1, 2])))
    reply = _reply(state, 0, 2)
    del reply.content["metrics"]["partition-id"]
    with pytest.raises(FedlabError, match="partition-id"):
        strategy.aggregate_train(1, [reply])


def test_wrapper_delegates_attributes_and_evaluation(tmp_path):
    strategy = _wrapper(tmp_path)
    assert strategy.arrayrecord_key == "arrays"
    msgs = strategy.configure_evaluate(1, ArrayRecord(_global()), ConfigRecord(), _Grid([1, 2]))
    assert len(list(msgs)) == 2


def test_partition_id_from_a_config_record_and_lr_from_the_train_config(tmp_path):
    """fedlab's own clients: partition id in ConfigRecord "client", lr only in the config."""
    strategy = _wrapper(tmp_path)
    state = _global()
    list(strategy.configure_train(1, ArrayRecord(state), ConfigRecord({"lr": 0.2}), _Grid([1, 2])))
    replies = []
    for pid in (0, 1):
        reply = _reply(state, pid, 2)
        for key in ("partition-id", "lr", "local-steps", "dp-std"):
            del reply.content["metrics"][key]
        reply.content["client"] = ConfigRecord({"partition-id": pid})
        replies.append(reply)
    strategy.aggregate_train(1, replies)
    records = TraceReader(tmp_path).records
    assert [(r.client, r.lr, r.local_steps, r.dp) for r in records] == [
        (0, 0.2, 1, None),
        (1, 0.2, 1, None),
    ]
