"""InProcessGrid: the app's own ClientApp, its mods in Flower's order, Flower's error code."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict
from flwr.common.constant import ErrorCode

from fedlab.appspec import AppSpec
from fedlab.errors import FedlabError
from fedlab.inprocess import InProcessGrid
from fedlab.key_groups import TrainingRunConfig as RunConfig


def _echo_train(msg, context, config):
    content = RecordDict({"arrays": ArrayRecord({"w": Array(np.ones(2))}),
                          "metrics": MetricRecord({"num-examples": 1})})  # fmt: skip
    return Message(content, reply_to=msg)


def _raising_train(msg, context, config):
    raise ValueError("client blew up")


def _spec(train, client_mods=None) -> AppSpec:
    return AppSpec(
        name="toy",
        config_cls=RunConfig,
        server_fn=lambda grid, config, run: {},
        client_handlers={"train": train},
        client_mods=client_mods,
    )


def _train_message(node: int) -> Message:
    return Message(content=RecordDict(), dst_node_id=node, message_type="train")


def test_the_grid_applies_the_apps_mods_first_mod_outermost():
    calls: list[str] = []

    def recording(tag):
        def mod(msg, context, call_next):
            calls.append(f"{tag}-in")
            reply = call_next(msg, context)
            calls.append(f"{tag}-out")
            reply.content["metrics"][f"seen-by-{tag}"] = 1.0
            return reply

        return mod

    def train(msg, context, config):
        calls.append("train")
        return _echo_train(msg, context, config)

    spec = _spec(train, client_mods=lambda config: [recording("outer"), recording("inner")])
    grid = InProcessGrid(spec, RunConfig(), num_nodes=2)
    (reply,) = grid.send_and_receive([_train_message(1001)])
    assert calls == ["outer-in", "inner-in", "train", "inner-out", "outer-out"]
    assert reply.content["metrics"]["seen-by-outer"] == 1.0


def test_the_mods_see_the_config_the_grid_was_built_with():
    seen = []
    spec = _spec(_echo_train, client_mods=lambda config: seen.append(config.seed) or [])
    InProcessGrid(spec, RunConfig(seed=13), num_nodes=1)
    assert seen == [13]


def test_a_raising_handler_replies_with_flowers_client_app_exception_code():
    grid = InProcessGrid(_spec(_raising_train), RunConfig(), num_nodes=1)
    (reply,) = grid.send_and_receive([_train_message(1000)])
    assert reply.has_error()
    assert reply.error.code == ErrorCode.CLIENT_APP_RAISED_EXCEPTION == 2
    assert "ValueError: client blew up" in reply.error.reason


def test_a_raising_mod_is_a_client_failure_too():
    def broken(msg, context, call_next):
        raise RuntimeError("mod failed")

    grid = InProcessGrid(_spec(_echo_train, lambda config: [broken]), RunConfig(), num_nodes=1)
    (reply,) = grid.send_and_receive([_train_message(1000)])
    assert reply.error.code == ErrorCode.CLIENT_APP_RAISED_EXCEPTION


def test_a_message_type_the_app_does_not_handle_is_refused_by_name():
    grid = InProcessGrid(_spec(_echo_train), RunConfig(), num_nodes=1)
    msg = Message(content=RecordDict(), dst_node_id=1000, message_type="evaluate")
    with pytest.raises(FedlabError, match="no 'evaluate' client handler"):
        grid.send_and_receive([msg])
