"""FedFoA strategy on mock replies (no Ray): rebuild, weighted mean, weights, errors, bytes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from fedlab.clients.ssl.relation import factorize, rebuild
from fedlab.strategies.fedfoa import (
    EIGVALS,
    EIGVECS,
    RELATION,
    FedFoA,
    aggregate_relations,
    probe_summary,
    rebuild_reply,
)
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from flwr.serverapp.exception import InconsistentMessageReplies
from flwr.serverapp.strategy import FedAvg

from fedlab.errors import FedlabError


@dataclass
class _Meta:
    src_node_id: int


@dataclass
class _Reply:
    """Stand-in for a Flower reply Message: ``content``, ``metadata``, ``has_error()``."""

    content: RecordDict
    metadata: _Meta = field(default_factory=lambda: _Meta(1))
    error: bool = False

    def has_error(self) -> bool:
        return self.error


class _Grid:
    def __init__(self, nodes):
        self.nodes = nodes

    def get_node_ids(self):
        return list(self.nodes)


def _spd(d, seed):
    a = np.random.default_rng(seed).normal(size=(d, d))
    return a @ a.T / d


def _reply(matrix, rank, n, weights=None, node=1, error=False):
    vals, vecs = factorize(matrix, rank)
    arrays = ArrayRecord({k: Array(v) for k, v in (weights or {}).items()})
    arrays[EIGVALS] = Array(vals)
    arrays[EIGVECS] = Array(vecs)
    content = RecordDict(
        {"arrays": arrays, "metrics": MetricRecord({"num-examples": n, "train-loss": float(n)})}
    )
    return _Reply(content, _Meta(node), error)


def test_aggregate_equals_hand_computed_weighted_mean_of_rebuilt_matrices():
    d, rank = 6, 3
    mats, ns = [_spd(d, s) for s in range(3)], [10, 30, 60]
    replies = [_reply(m, rank, n, node=i) for i, (m, n) in enumerate(zip(mats, ns, strict=True))]
    arrays, metrics = FedFoA().aggregate_train(1, replies)
    # by hand: truncate each matrix to its top-3 eigenpairs, then 0.1 R1 + 0.3 R2 + 0.6 R3
    expected = np.zeros((d, d))
    for m, w in zip(mats, (0.1, 0.3, 0.6), strict=True):
        lam, u = np.linalg.eigh(m)
        lam, u = lam[::-1][:rank], u[:, ::-1][:, :rank]
        expected += w * (u * lam) @ u.T
    np.testing.assert_allclose(arrays[RELATION].numpy(), expected, atol=1e-5)
    assert set(arrays) == {RELATION}
    assert metrics["train-loss"] == pytest.approx(0.1 * 10 + 0.3 * 30 + 0.6 * 60)
    # bytes: the serialized factors, r (D + 1) float32 plus the .npy headers
    assert 4 * rank * (d + 1) <= metrics["upload-bytes-per-client"] < 4 * rank * (d + 1) + 400
    assert metrics["upload-bytes-total"] == pytest.approx(3 * metrics["upload-bytes-per-client"])


def test_full_rank_factors_reproduce_the_exact_weighted_mean():
    mats = [_spd(5, 7), _spd(5, 8)]
    arrays, _ = FedFoA().aggregate_train(1, [_reply(mats[0], 5, 1), _reply(mats[1], 5, 3)])
    np.testing.assert_allclose(arrays[RELATION].numpy(), 0.25 * mats[0] + 0.75 * mats[1], atol=1e-5)


def test_uniform_weights_ignore_example_counts():
    mats = [_spd(4, 1), _spd(4, 2)]
    arrays, _ = FedFoA(uniform_weights=True).aggregate_train(
        1, [_reply(mats[0], 4, 1), _reply(mats[1], 4, 99)]
    )
    np.testing.assert_allclose(arrays[RELATION].numpy(), (mats[0] + mats[1]) / 2, atol=1e-5)


def test_failed_replies_are_left_out():
    mats = [_spd(4, 1), _spd(4, 2)]
    replies = [_reply(mats[0], 4, 5), _reply(mats[1], 4, 5, error=True)]
    arrays, _ = FedFoA().aggregate_train(1, replies)
    np.testing.assert_allclose(arrays[RELATION].numpy(), mats[0], atol=1e-5)
    assert FedFoA().aggregate_train(1, [replies[1]]) == (None, None)


def test_factors_of_different_sizes_give_a_clear_error():
    replies = [_reply(_spd(8, 1), 4, 5), _reply(_spd(6, 2), 4, 5)]
    with pytest.raises(FedlabError, match=r"different sizes.*proj-dim"):
        FedFoA().aggregate_train(1, replies)


def test_a_reply_without_factors_gives_a_clear_error():
    content = RecordDict(
        {
            "arrays": ArrayRecord({"w": Array(np.ones(3))}),
            "metrics": MetricRecord({"num-examples": 1}),
        }
    )
    with pytest.raises(FedlabError, match="fedfoa ClientApp"):
        FedFoA().aggregate_train(1, [_Reply(content)])


def test_composes_with_weight_averaging_for_homogeneous_models():
    mats = [_spd(4, 1), _spd(4, 2)]
    w1 = {"layer.weight": np.full((2, 3), 1.0, np.float32), "layer.bias": np.zeros(2, np.float32)}
    w2 = {"layer.weight": np.full((2, 3), 5.0, np.float32), "layer.bias": np.ones(2, np.float32)}
    replies = [_reply(mats[0], 4, 30, weights=w1), _reply(mats[1], 4, 10, weights=w2)]
    arrays, metrics = FedFoA(weight_averaging=True).aggregate_train(1, replies)
    np.testing.assert_allclose(arrays["layer.weight"].numpy(), np.full((2, 3), 2.0))
    np.testing.assert_allclose(arrays["layer.bias"].numpy(), np.full(2, 0.25))
    np.testing.assert_allclose(arrays[RELATION].numpy(), 0.75 * mats[0] + 0.25 * mats[1], atol=1e-5)
    assert metrics["upload-bytes-per-client"] > 4 * (6 + 2)


def test_weight_averaging_refuses_different_models():
    replies = [
        _reply(_spd(4, 1), 4, 1, weights={"a": np.ones(2, np.float32)}),
        _reply(_spd(4, 2), 4, 1, weights={"b": np.ones(2, np.float32)}),
    ]
    with pytest.raises(FedlabError, match="same model"):
        FedFoA(weight_averaging=True).aggregate_train(1, replies)


def test_rebuild_reply_hands_wrappers_the_matrix_and_aggregation_accepts_it():
    m = _spd(5, 3)
    reply = _reply(m, 2, 4)
    rebuilt = rebuild_reply(reply.content)
    assert set(rebuilt["arrays"]) == {RELATION}
    vals, vecs = reply.content["arrays"][EIGVALS].numpy(), reply.content["arrays"][EIGVECS].numpy()
    np.testing.assert_allclose(rebuilt["arrays"][RELATION].numpy(), rebuild(vals, vecs), atol=1e-6)
    arrays, _ = FedFoA().aggregate_train(1, [_Reply(rebuilt)])
    np.testing.assert_allclose(arrays[RELATION].numpy(), rebuild(vals, vecs), atol=1e-6)


def test_aggregate_relations_refuses_bad_weights():
    with pytest.raises(FedlabError, match="weights"):
        aggregate_relations([np.eye(2)], [0.0])
    with pytest.raises(FedlabError, match="no relation"):
        aggregate_relations([], [])


def test_configure_evaluate_asks_every_node_only_in_probe_rounds():
    strategy = FedFoA(probe_rounds={2, 4})
    grid = _Grid([11, 12, 13])
    assert list(strategy.configure_evaluate(1, ArrayRecord(), ConfigRecord(), grid)) == []
    messages = list(strategy.configure_evaluate(2, ArrayRecord(), ConfigRecord(), grid))
    assert sorted(m.metadata.dst_node_id for m in messages) == [11, 12, 13]
    assert messages[0].content["config"]["server-round"] == 2


def test_aggregate_evaluate_keeps_per_client_and_per_encoder_probe_results():
    rows = [
        {"probe-acc": 0.5, "partition-id": 0, "encoder-id": 0, "num-examples": 9},
        {"probe-acc": 0.7, "partition-id": 1, "encoder-id": 1, "num-examples": 9},
        {"probe-acc": 0.6, "partition-id": 2, "encoder-id": 0, "num-examples": 9},
    ]
    strategy = FedFoA()
    replies = [_Reply(RecordDict({"metrics": MetricRecord(r)})) for r in rows]
    metrics = strategy.aggregate_evaluate(3, replies)
    assert metrics["probe-acc-p1"] == pytest.approx(0.7)
    assert metrics["probe-acc-mean"] == pytest.approx(0.6)
    assert metrics["probe-acc-enc0"] == pytest.approx(0.55)
    assert metrics["probe-acc-enc1"] == pytest.approx(0.7)
    assert strategy.probe_results[3] == probe_summary(rows)
    assert "probe-acc-unseen-mean" not in metrics


def test_probe_summary_averages_unseen_class_accuracy_over_the_clients_that_report_it():
    rows = [
        {"probe-acc": 0.5, "partition-id": 0, "encoder-id": 0, "probe-acc-own": 0.9,
         "probe-n-own": 60, "probe-acc-unseen": 0.0, "probe-n-unseen": 0},
        {"probe-acc": 0.7, "partition-id": 1, "encoder-id": 1, "probe-acc-own": 0.8,
         "probe-n-own": 20, "probe-acc-unseen": 0.2, "probe-n-unseen": 40},
        {"probe-acc": 0.6, "partition-id": 2, "encoder-id": 0, "probe-acc-own": 0.7,
         "probe-n-own": 30, "probe-acc-unseen": 0.4, "probe-n-unseen": 30},
    ]  # fmt: skip
    summary = probe_summary(rows)
    assert summary["probe-acc-own-mean"] == pytest.approx(0.8)
    assert summary["probe-acc-unseen-mean"] == pytest.approx(0.3)


def _inconsistent_replies(kind):
    replies = [_reply(_spd(4, 1), 4, 5, node=1), _reply(_spd(4, 2), 4, 5, node=2)]
    content = replies[1].content
    if kind == "metric-keys":
        content["metrics"]["extra"] = 1.0
    elif kind == "no-weight-key":
        for r in replies:
            del r.content["metrics"]["num-examples"]
    elif kind == "two-array-records":
        content["more"] = ArrayRecord({"x": Array(np.ones(1))})
    elif kind == "array-keys":
        content["arrays"]["extra"] = Array(np.ones(1))
    return replies


@pytest.mark.parametrize(
    "kind", ["metric-keys", "no-weight-key", "two-array-records", "array-keys"]
)
def test_inconsistent_replies_are_refused_as_flowers_fedavg_refuses_them(kind):
    with pytest.raises(InconsistentMessageReplies):
        FedAvg().aggregate_train(1, _inconsistent_replies(kind))
    with pytest.raises(InconsistentMessageReplies):
        FedFoA().aggregate_train(1, _inconsistent_replies(kind))


def test_inconsistent_probe_replies_are_refused_as_flowers_fedavg_refuses_them():
    rows = [
        {"probe-acc": 0.5, "partition-id": 0, "encoder-id": 0, "num-examples": 9},
        {"probe-acc": 0.7, "partition-id": 1, "encoder-id": 1},
    ]
    replies = [_Reply(RecordDict({"metrics": MetricRecord(r)})) for r in rows]
    with pytest.raises(InconsistentMessageReplies):
        FedAvg().aggregate_evaluate(1, replies)
    with pytest.raises(InconsistentMessageReplies):
        FedFoA().aggregate_evaluate(1, replies)
