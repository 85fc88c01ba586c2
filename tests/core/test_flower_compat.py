"""Flower's unexported helpers we rely on are still where fedlab.flower_compat imports them.

An upgrade that moves, renames or re-signs one of them fails here, with its name, rather than
deep inside a strategy.
"""

from __future__ import annotations

import importlib
import inspect

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict

from fedlab import flower_compat

# (module Flower keeps it in, name, the parameters we pass, in order)
HELPERS = [
    ("flwr.serverapp.strategy.strategy_utils", "aggregate_arrayrecords",
     ["records", "weighting_metric_name"]),
    ("flwr.serverapp.strategy.strategy_utils", "aggregate_metricrecords",
     ["records", "weighting_metric_name"]),
    ("flwr.serverapp.strategy.strategy_utils", "validate_message_reply_consistency",
     ["replies", "weighted_by_key", "check_arrayrecord"]),
]  # fmt: skip


@pytest.mark.parametrize(("module", "name", "params"), HELPERS, ids=[h[1] for h in HELPERS])
def test_flower_helper_is_where_we_import_it_with_the_signature_we_call(module, name, params):
    helper = getattr(importlib.import_module(module), name)
    assert callable(helper)
    assert list(inspect.signature(helper).parameters) == params
    assert getattr(flower_compat, name) is helper


def test_client_app_exception_code_is_flowers_and_not_unknown():
    from flwr.common.constant import ErrorCode

    assert flower_compat.CLIENT_APP_RAISED_EXCEPTION == ErrorCode.CLIENT_APP_RAISED_EXCEPTION
    assert flower_compat.CLIENT_APP_RAISED_EXCEPTION != ErrorCode.UNKNOWN


def test_aggregate_arrayrecords_is_the_weighted_mean_we_expect():
    records = [
        RecordDict({"a": ArrayRecord({"w": Array(np.array([1.0, 3.0]))}),
                    "m": MetricRecord({"n": 1})}),
        RecordDict({"a": ArrayRecord({"w": Array(np.array([5.0, 7.0]))}),
                    "m": MetricRecord({"n": 3})}),
    ]  # fmt: skip
    out = flower_compat.aggregate_arrayrecords(records, "n")
    np.testing.assert_allclose(out["w"].numpy(), [4.0, 6.0])


def test_validate_refuses_replies_with_different_metric_keys():
    replies = [
        RecordDict({"a": ArrayRecord(), "m": MetricRecord({"n": 1})}),
        RecordDict({"a": ArrayRecord(), "m": MetricRecord({"n": 1, "extra": 2.0})}),
    ]
    with pytest.raises(flower_compat.InconsistentMessageReplies):
        flower_compat.validate_message_reply_consistency(replies, "n", check_arrayrecord=True)


def test_ensure_task_identity_sets_one_only_when_there_is_none():
    from flwr.supercore.task_identity import TaskIdentity

    with flower_compat.saved_task_identity():
        TaskIdentity.run_id = 77
        flower_compat.ensure_task_identity()
        assert TaskIdentity.run_id == 77  # an existing run's identity is kept
    with flower_compat.saved_task_identity():
        assert flower_compat.has_task_identity()
