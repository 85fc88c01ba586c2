"""Clipping bounds (hypothesis), client mods: client-side clipping and local DP parameters."""

from __future__ import annotations

import numpy as np
import pytest
from dp_helpers import arrays, as_numpy, context, reply
from fedlab.strategies.dp_mods import LocalDpClipNoiseMod, central_client_clipping_mod
from fedlab.strategies.dp_updates import clip, norm
from fedlab.strategies.dp_wrapper import read_dp
from flwr.app import ConfigRecord, Message, RecordDict
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays as np_arrays

from fedlab.errors import FedlabError

FINITE = st.floats(-1e6, 1e6, allow_nan=False, width=64)
UPDATES = st.dictionaries(
    st.sampled_from(["a", "b", "c"]),
    np_arrays(np.float64, st.integers(1, 30), elements=FINITE),
    min_size=1,
)


@settings(max_examples=200, deadline=None)
@given(update=UPDATES, clip_norm=st.floats(1e-3, 1e3), order=st.sampled_from([1, 2]))
def test_no_clipped_update_exceeds_c(update, clip_norm, order):
    clipped, before = clip(update, clip_norm, order)
    assert norm(clipped, order) <= clip_norm * (1 + 1e-9)
    assert before == pytest.approx(norm(update, order))
    if before <= clip_norm:  # within the bound: untouched
        for k in update:
            np.testing.assert_array_equal(clipped[k], update[k])


def _train_message(global_values, **config):
    content = RecordDict({"arrays": arrays(global_values),
                          "config": ConfigRecord({"server-round": 1, **config})})  # fmt: skip
    return Message(content=content, dst_node_id=0, message_type="train")


@settings(max_examples=50, deadline=None)
@given(scale=st.floats(1e-3, 1e3), clip_norm=st.floats(1e-2, 10.0))
def test_client_side_clipping_mod_bounds_the_sent_update(scale, clip_norm):
    g = {"w": np.linspace(-1, 1, 12)}
    msg = _train_message(g, **{"dp-clip-norm": clip_norm})
    trained = {"w": g["w"] + scale * np.cos(np.arange(12))}
    out = central_client_clipping_mod(msg, context(), lambda m, c: reply(trained))
    sent = as_numpy(out.content["arrays"])["w"] - g["w"].astype(np.float32)
    assert np.linalg.norm(sent) <= clip_norm * (1 + 1e-4)
    assert read_dp(out)["unclipped"] == int(np.linalg.norm(trained["w"] - g["w"]) <= clip_norm)


def test_client_side_clipping_needs_the_server_wrapper():
    msg = _train_message({"w": np.zeros(3)})
    with pytest.raises(FedlabError, match="CentralDPClientSideClipping"):
        central_client_clipping_mod(msg, context(), lambda m, c: reply({"w": np.ones(3)}))


@pytest.mark.parametrize("noise", ["gaussian", "laplace"])
def test_local_dp_noise_and_parameters_travel_with_the_reply(noise):
    mod = LocalDpClipNoiseMod(clip_norm=1.0, epsilon=4.0, delta=1e-5, noise=noise)
    g = {"w": np.zeros(100_000)}
    ctx = context(pid=3)
    out = mod(_train_message(g), ctx, lambda m, c: reply(g))  # zero update: pure noise
    noise_seen = as_numpy(out.content["arrays"])["w"]
    dp = read_dp(out)
    assert dp["mechanism"] == "local" and dp["noise"] == noise
    assert dp["epsilon"] == 4.0 and dp["clip-norm"] == 1.0 and dp["sensitivity"] == 2.0
    assert noise_seen.std() == pytest.approx(dp["noise-std"], rel=0.02)
    metrics = out.content["metrics"]
    assert metrics["dp-noise-std"] == pytest.approx(dp["noise-std"])
    assert metrics["dp-epsilon"] == 4.0
    if noise == "laplace":
        assert dp["noise-scale"] == pytest.approx(2.0 / 4.0)  # 2C / epsilon
        assert dp["delta"] == 0.0
    else:
        # the analytic Gaussian mechanism needs less noise than the classical bound
        classical = 2.0 * np.sqrt(2 * np.log(1.25 / 1e-5)) / 4.0
        assert dp["noise-std"] < classical
    again = mod(_train_message(g), ctx, lambda m, c: reply(g))
    assert read_dp(again)["releases"] == 2
    assert read_dp(again)["epsilon-total"] > 4.0


def test_local_dp_clips_before_noising():
    mod = LocalDpClipNoiseMod(clip_norm=0.5, epsilon=1e6, delta=0.5, noise="gaussian")  # ~no noise
    g = {"w": np.zeros(4)}
    out = mod(_train_message(g), context(), lambda m, c: reply({"w": np.full(4, 10.0)}))
    assert np.linalg.norm(as_numpy(out.content["arrays"])["w"]) == pytest.approx(0.5, rel=1e-2)


def test_local_dp_bad_parameters():
    with pytest.raises(FedlabError, match="local-epsilon must be > 0"):
        LocalDpClipNoiseMod(clip_norm=1.0, epsilon=0.0)
    with pytest.raises(FedlabError, match="clip-norm must be > 0"):
        LocalDpClipNoiseMod(clip_norm=-1.0, epsilon=1.0)
    with pytest.raises(FedlabError, match="local-noise"):
        LocalDpClipNoiseMod(clip_norm=1.0, epsilon=1.0, noise="uniform")


@pytest.mark.parametrize("message_type", ["evaluate", "query"])
def test_both_mods_pass_other_message_types_on_untouched(message_type):
    # ClientApp(mods=...) wraps every handler, so a train-only mod must let the others through
    msg = Message(content=RecordDict(), dst_node_id=0, message_type=message_type)
    answer = reply({"w": np.ones(3)}, examples=7)
    for mod in (LocalDpClipNoiseMod(clip_norm=1.0, epsilon=4.0), central_client_clipping_mod):
        out = mod(msg, context(), lambda m, c: answer)
        assert out is answer
        assert out.content["metrics"]["num-examples"] == 7 and "dp" not in out.content
