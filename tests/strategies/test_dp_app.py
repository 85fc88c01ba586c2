"""The dpfedavg ClientApp on real data, without Ray: its mods and DP-SGD compose."""

from __future__ import annotations

import numpy as np
import pytest
from dp_helpers import as_numpy, context
from fedlab.clients.dpfedavg.app import dp_client_mods, dp_workload
from fedlab.clients.supervised.app import initial_arrays
from fedlab.strategies.dp_mods import LocalDpClipNoiseMod, central_client_clipping_mod
from fedlab.strategies.dp_wrapper import read_dp
from flwr.app import ConfigRecord, Message, RecordDict

from fedlab.apps import dpfedavg

LINEAR = "fedlab.clients.dpfedavg.linear:LinearWorkload"


def _call(ctx=None, round_config=None, **values):
    config = dpfedavg.resolve_config({"workload": LINEAR, "local-epochs": 1, **values})
    global_arrays = initial_arrays(dp_workload(config), 0)
    content = RecordDict(
        {
            "arrays": global_arrays,
            "config": ConfigRecord({"server-round": 1, **(round_config or {})}),
        }
    )
    msg = Message(content=content, dst_node_id=0, message_type="train")
    # through the ClientApp Ray would run, so the mode's mods come from AppSpec.client_mods
    reply = dpfedavg.client_app(config)(msg, ctx or context(pid=2, num_partitions=100))
    before, after = as_numpy(global_arrays), as_numpy(reply.content["arrays"])
    update = np.sqrt(sum(np.square(after[k] - before[k]).sum() for k in before))
    return reply, update


def test_central_client_mode_clips_to_the_server_c():
    reply, update = _call(round_config={"dp-clip-norm": 0.01}, **{"dp-mode": "central-client"})
    assert update <= 0.01 * (1 + 1e-4)
    assert read_dp(reply)["mechanism"] == "central-client-clipping"


def test_local_mode_adds_the_recorded_noise():
    reply, update = _call(**{"dp-mode": "local", "local-epsilon": 1.0, "clip-norm": 0.1})
    dp = read_dp(reply)
    assert dp["mechanism"] == "local" and dp["epsilon"] == 1.0
    # 650 coordinates of noise with std sigma: the update's norm is about sigma * sqrt(650)
    assert update == pytest.approx(dp["noise-std"] * np.sqrt(650), rel=0.15)
    assert reply.content["metrics"]["dp-noise-std"] == pytest.approx(dp["noise-std"])


def test_dp_sgd_reports_sample_level_epsilon_and_keeps_its_accountant():
    ctx = context(pid=2, num_partitions=100)
    values = {"dp-mode": "none", "dp-sgd": True, "dp-sgd-noise-multiplier": 1.0}
    first, _ = _call(ctx, **values)
    second, _ = _call(ctx, **values)
    e1 = first.content["metrics"]["dp-sample-epsilon"]
    e2 = second.content["metrics"]["dp-sample-epsilon"]
    assert 0 < e1 < e2
    assert "dp-sgd-accountant" in ctx.state


def test_linear_workload_traces_name_the_model_it_trains():
    from fedlab.attacks.base import ModelSpec

    workload = dp_workload(dpfedavg.resolve_config({"workload": LINEAR, "model": "lenet"}))
    spec = workload.model_spec()
    assert spec["name"] == "fedlab.clients.dpfedavg.linear:softmax_regression"
    rebuilt = ModelSpec(spec["name"], spec["kwargs"]).build().state_dict()
    trained = workload.build_model().state_dict()
    assert {k: v.shape for k, v in rebuilt.items()} == {k: v.shape for k, v in trained.items()}


def _config(**values):
    return dpfedavg.resolve_config({"workload": LINEAR, **values})


def test_each_dp_mode_declares_its_client_mods():
    assert dp_client_mods(_config(**{"dp-mode": "none"})) == []
    assert dp_client_mods(_config(**{"dp-mode": "central-server"})) == []
    assert dp_client_mods(_config(**{"dp-mode": "central-client"})) == [central_client_clipping_mod]
    (local,) = dp_client_mods(_config(**{"dp-mode": "local", "local-epsilon": 2.0}))
    assert isinstance(local, LocalDpClipNoiseMod) and local.epsilon == 2.0


def test_dp_mods_leave_evaluate_messages_alone():
    config = _config(**{"dp-mode": "central-client"})
    content = RecordDict(
        {"arrays": initial_arrays(dp_workload(config), 0), "config": ConfigRecord({})}
    )
    msg = Message(content=content, dst_node_id=0, message_type="evaluate")
    # no dp-clip-norm in the config: the clipping mod would refuse a train message
    reply = dpfedavg.client_app(config)(msg, context(pid=2, num_partitions=100))
    assert not reply.has_error()
    assert "dp" not in reply.content
