"""Flower's own FedAvg aggregation cases (serverapp/strategy tests), run against what we use.

We aggregate with Flower's ``FedAvg`` unchanged, wrapped by our ``RoundRecorder``; these cases
check that the wrapper passes aggregation through untouched and that failures are excluded.
"""

from __future__ import annotations

from unittest.mock import Mock

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.exception import InconsistentMessageReplies
from flwr.serverapp.strategy import FedAvg

from fedlab.run_folder import RunFolder
from fedlab.server import RoundRecorder


def reply(arrays: ArrayRecord | None, metrics: dict, error: bool = False) -> Message:
    msg = Mock(spec=Message)
    content = {"metrics": MetricRecord(metrics)}
    if arrays is not None:
        content["arrays"] = arrays
    msg.content = RecordDict(content)
    msg.has_error.side_effect = lambda: error
    msg.has_content.side_effect = lambda: not error
    msg.metadata = Mock(src_node_id=1)
    msg.error = Mock(reason="boom")
    return msg


def recorder(tmp_path, inner=None) -> RoundRecorder:
    rec = RoundRecorder(inner or FedAvg(), RunFolder(tmp_path), min_replies=1, num_rounds=1)
    rec._round = {"round": 1, "sampled": 3}
    return rec


def test_weighted_average_of_arrays_matches_numpy(tmp_path):
    rng = np.random.default_rng(0)
    weights = [25, 40, 35]
    arrays = [[rng.standard_normal((7, 3)) for _ in range(4)] for _ in weights]
    pairs = zip(arrays, weights, strict=True)
    replies = [reply(ArrayRecord(a), {"num-examples": w}) for a, w in pairs]
    agg, _ = recorder(tmp_path).aggregate_train(1, replies)
    expected = [np.average([a[i] for a in arrays], axis=0, weights=weights) for i in range(4)]
    for got, want in zip(agg.to_numpy_ndarrays(), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_zero_dimensional_arrays_average(tmp_path):
    values = [np.array(1.5), np.array(-2.0), np.array(4.0)]
    weights = [1, 2, 1]
    pairs = zip(values, weights, strict=True)
    replies = [reply(ArrayRecord([v]), {"num-examples": w}) for v, w in pairs]
    agg, _ = recorder(tmp_path).aggregate_train(1, replies)
    assert agg.to_numpy_ndarrays()[0] == pytest.approx(np.average(values, weights=weights))


def test_metrics_are_weighted_and_weight_key_dropped(tmp_path):
    weights = [1, 3]
    replies = [
        reply(
            ArrayRecord([np.zeros(2)]), {"num-examples": weights[0], "loss": 1.0, "v": [1.0, 2.0]}
        ),
        reply(
            ArrayRecord([np.ones(2)]), {"num-examples": weights[1], "loss": 3.0, "v": [3.0, 6.0]}
        ),
    ]
    rec = recorder(tmp_path)
    _, metrics = rec.aggregate_train(1, replies)
    assert metrics["loss"] == pytest.approx(2.5)
    assert metrics["v"] == pytest.approx([2.5, 5.0])
    assert "num-examples" not in metrics
    assert rec._round["train"]["loss"] == pytest.approx(2.5)


def test_failed_replies_are_counted_and_left_out(tmp_path):
    good = [reply(ArrayRecord([np.full(3, v)]), {"num-examples": 1}) for v in (1.0, 3.0)]
    bad = reply(None, {}, error=True)
    rec = recorder(tmp_path)
    agg, _ = rec.aggregate_train(1, [good[0], bad, good[1]])
    np.testing.assert_allclose(agg.to_numpy_ndarrays()[0], np.full(3, 2.0))
    assert rec._round["replies"] == 2 and rec._round["failures"] == 1


@pytest.mark.parametrize(
    "content",
    [
        {"m": MetricRecord({"num-examples": [1.0]})},  # weight is a list
        {"m": MetricRecord({"loss": 0.1})},  # no weight key
        {},  # no MetricRecord
        {"m": MetricRecord({"num-examples": 1}), "m2": MetricRecord({"loss": 0.1})},
    ],
)
def test_inconsistent_replies_are_refused(tmp_path, content):
    replies = []
    for _ in range(3):
        msg = reply(ArrayRecord([np.zeros(2)]), {"num-examples": 1})
        msg.content = RecordDict({"arrays": ArrayRecord([np.zeros(2)]), **content})
        replies.append(msg)
    with pytest.raises(InconsistentMessageReplies):
        recorder(tmp_path).aggregate_train(1, replies)


def test_mismatched_array_keys_are_refused(tmp_path):
    a = reply(ArrayRecord({"a": Array(np.zeros(2))}), {"num-examples": 1})
    b = reply(ArrayRecord({"b": Array(np.zeros(2))}), {"num-examples": 1})
    with pytest.raises(InconsistentMessageReplies):
        recorder(tmp_path).aggregate_train(1, [a, b])
