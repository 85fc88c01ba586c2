"""Client side of FedFoA: the handlers keep a client's model in context.state, upload factors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fedlab.clients.ssl.client import (
    STATE_KEY,
    alignment_weight,
    handle_evaluate,
    handle_train,
    init_model,
    probe_metrics,
)
from fedlab.clients.ssl.config import SSLConfig
from fedlab.strategies.fedfoa import EIGVALS, EIGVECS, RELATION
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict

from fedlab.apps import fedfoa
from fedlab.errors import FedlabError
from fedlab.inprocess import run_in_process
from fedlab.workload import build_workload

TINY = dict(
    num_supernodes=2,
    num_server_rounds=2,
    local_steps=2,
    batch_size=16,
    encoders="cnn:4,resnet:2",
    proj_dim=8,
    proj_hidden=16,
    relation_rank=3,
    probe_size=200,
    partitioner="iid",
)


def _context(pid: int, state: RecordDict | None = None) -> Context:
    return Context(
        run_id=1,
        node_id=pid + 1,
        state=state or RecordDict(),
        run_config={},
        node_config={"partition-id": pid, "num-partitions": 2},
    )


def _train_msg(arrays: ArrayRecord, server_round: int) -> Message:
    content = RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": server_round})})
    return Message(content=content, dst_node_id=1, message_type="train")


def test_handle_train_uploads_rank_r_factors_and_keeps_the_model_in_state():
    config = SSLConfig(**TINY)
    context = _context(1)
    reply = handle_train(_train_msg(ArrayRecord(), 1), context, config)
    arrays = reply.content["arrays"]
    assert set(arrays) == {EIGVALS, EIGVECS}  # heterogeneous: no weights leave the client
    assert arrays[EIGVALS].numpy().shape == (3,) and arrays[EIGVECS].numpy().shape == (8, 3)
    assert reply.content["metrics"]["num-examples"] > 0
    first = context.state[STATE_KEY].to_torch_state_dict()
    assert any(".body." in k for k in first)  # partition 1 runs the resnet
    # round 2 starts from the stored model, not from a fresh init, and aligns to the relation
    relation = ArrayRecord({RELATION: Array(np.eye(8, dtype=np.float32))})
    reply2 = handle_train(_train_msg(relation, 2), context, config)
    assert reply2.content["metrics"]["align-weight"] == config.fedfoa_lambda
    # the identity is a correlation matrix no trained projector reproduces: a gap above 0
    assert 0.0 < reply2.content["metrics"]["relation-gap"] < 10.0
    assert "relation-gap" not in reply.content["metrics"]  # round 1 received no aggregate
    second = context.state[STATE_KEY].to_torch_state_dict()
    changed = [k for k in first if not torch.equal(first[k], second[k])]
    assert changed and len(changed) < len(first) + 1


def test_handle_evaluate_probes_the_clients_own_model():
    config = SSLConfig(**TINY)
    context = _context(0)
    handle_train(_train_msg(ArrayRecord(), 1), context, config)
    msg = Message(
        content=RecordDict({"arrays": ArrayRecord(), "config": ConfigRecord()}),
        dst_node_id=1,
        message_type="evaluate",
    )
    metrics = handle_evaluate(msg, context, config).content["metrics"]
    assert 0.0 <= metrics["probe-acc"] <= 1.0 and metrics["encoder-id"] == 0
    assert 0.0 <= metrics["probe-acc-own"] <= 1.0  # IID: the client holds every class
    assert metrics["probe-n-unseen"] == 0 and metrics["probe-acc-unseen"] == 0.0


def test_a_label_skewed_client_reports_its_probe_on_classes_it_never_saw():
    workload = build_workload(SSLConfig(**TINY))
    test_y = workload.test_dataset().labels.numpy()
    own = np.unique(test_y)[:2]
    metrics = probe_metrics(workload, init_model(workload, 0), seed=0, own_classes=own)
    n_own = np.isin(test_y, own).sum()
    # the overall accuracy is the example-weighted mean of the two parts
    assert metrics["probe-acc"] == pytest.approx(
        (metrics["probe-acc-own"] * n_own + metrics["probe-acc-unseen"] * (len(test_y) - n_own))
        / len(test_y)
    )


def test_warm_up_rounds_switch_the_alignment_off():
    config = SSLConfig(fedfoa_lambda=2.0, warmup_rounds=2)
    assert alignment_weight(config, 2, True) == 0.0
    assert alignment_weight(config, 3, True) == 2.0
    assert alignment_weight(config, 3, False) == 0.0


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [("constant", [0, 2, 2, 2, 2]), ("ramp", [0, 0.5, 1, 1.5, 2]), ("decay", [0, 2, 1.5, 1, 0.5])],
)
def test_the_pull_schedule_shapes_lambda_over_the_rounds_after_warm_up(schedule, expected):
    config = SSLConfig(fedfoa_lambda=2.0, warmup_rounds=1, num_server_rounds=5,
                       fedfoa_schedule=schedule)  # fmt: skip
    assert [alignment_weight(config, r, True) for r in range(1, 6)] == pytest.approx(expected)


def test_an_unknown_pull_schedule_is_refused():
    with pytest.raises(FedlabError, match="fedfoa-schedule"):
        SSLConfig(fedfoa_schedule="cosine").validate()


@pytest.mark.parametrize("partitioner", ["iid", "dirichlet"])
def test_in_process_federation_mixes_two_architectures(tmp_path, partitioner):
    """Label-skewed clients too: every client's reply carries the same metric keys."""
    mapping = {k.replace("_", "-"): v for k, v in TINY.items()}
    mapping["partitioner"] = partitioner
    config = fedfoa.resolve_config(mapping, {"out-dir": str(tmp_path)})
    run_in_process(fedfoa, config)
    history = json.loads((tmp_path / "history.json").read_text())
    final = history[-1]
    assert [h["round"] for h in history] == [1, 2]
    assert {"probe-acc-enc0", "probe-acc-enc1", "probe-acc-p0", "probe-acc-p1"} <= set(
        final["evaluate"]
    )
    assert final["train"]["upload-bytes-per-client"] < 4 * 8 * 4 + 400  # r (D + 1) floats
    assert final["train"]["align-weight"] == pytest.approx(1.0)
    assert final["train"]["relation-gap"] > 0  # round 2 received an aggregate
    if partitioner == "dirichlet":  # 2 clients cannot hold all 6 classes each at alpha 0.1
        assert 0.0 <= final["evaluate"]["probe-acc-unseen-mean"] <= 1.0


def test_encoder_relations_align_the_encoder_outputs(tmp_path):
    """``relation-features=encoder``: the matrices are of encoder outputs (cnn:2 and resnet:2
    both give 8 features), and the federation runs with the pull on."""
    mapping = {k.replace("_", "-"): v for k, v in TINY.items()}
    mapping.update({"encoders": "cnn:2,resnet:2", "proj-dim": 5, "relation-features": "encoder"})
    config = fedfoa.resolve_config(mapping, {"out-dir": str(tmp_path)})
    workload = build_workload(config)
    model = workload.build_model(0)
    assert workload.local_relation(model, workload.client_dataset(0, 2)).shape == (8, 8)
    run_in_process(fedfoa, config)
    final = json.loads((tmp_path / "history.json").read_text())[-1]["train"]
    assert final["align-weight"] == pytest.approx(1.0) and final["relation-gap"] > 0


def test_encoder_relations_refuse_encoders_of_different_output_sizes():
    with pytest.raises(FedlabError, match="one encoder output size"):
        SSLConfig.from_mapping({**TINY, "relation_features": "encoder"})  # 16 vs 8 features


def test_weight_averaging_refuses_mixed_encoders():
    with pytest.raises(FedlabError, match="weight-averaging needs one encoder"):
        SSLConfig.from_mapping({**TINY, "weight_averaging": True})


def test_a_partition_that_leaves_a_batch_of_one_still_trains():
    """17 examples in batches of 16 leave one: BatchNorm would refuse it (seed 3 at K = 16)."""
    from fedlab.clients.ssl.client import init_model, local_round

    from fedlab.training import TrainConfig

    config = SSLConfig.from_mapping(TINY)
    workload = build_workload(config)
    dataset = workload.client_dataset(0, 2)
    dataset = dataset.subset(np.arange(17))
    model = init_model(workload, 0)
    cfg = TrainConfig(batch_size=16, steps=3, lr=config.lr, optimizer="adam")
    done = local_round(workload, model, dataset, None, server_round=1, train_cfg=cfg, seed=0)
    assert done.num_examples > 0 and np.isfinite(done.metrics["train-loss"])
