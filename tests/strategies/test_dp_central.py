"""Central DP wrappers around Flower's FedAvg on mock replies: estimator, noise, sampling."""

from __future__ import annotations

import numpy as np
import pytest
from dp_helpers import Grid, arrays, as_numpy, reply
from fedlab.strategies.dp_central import CentralDPClientSideClipping, CentralDPServerSideClipping
from fedlab.strategies.dp_sampling import ClientSampler
from fedlab.strategies.dp_wrapper import ClientSampling, dp_record, inner_kwargs
from flwr.app import ConfigRecord
from flwr.serverapp.strategy import FedAvg, FedMedian

from fedlab.errors import FedlabError, RunStopped

NODES = list(range(100, 200))  # 100 node ids in partition order


def _central(cls=CentralDPServerSideClipping, kind="fixed", rate=0.1, n=100, **kw):
    kw.setdefault("clip_norm", 1.0)
    kw.setdefault("noise_multiplier", 1.0)
    return cls(FedAvg(**inner_kwargs()), ClientSampler(kind, rate, n, seed=3), **kw)


def _round(strategy, server_round, global_values, updates, nodes=NODES):
    messages = list(strategy.configure_train(server_round, arrays(global_values),
                                             ConfigRecord(), Grid(nodes)))  # fmt: skip
    replies = [reply({k: global_values[k] + u[k] for k in global_values}) for u in updates]
    return messages, strategy.aggregate_train(server_round, replies)


def test_empirical_noise_std_is_z_c_over_m():
    z, c = 1.5, 2.0
    strategy = _central(noise_multiplier=z, clip_norm=c)
    zero = {"w": np.zeros((400, 500))}
    messages, (agg, metrics) = _round(strategy, 1, zero, [{"w": np.zeros((400, 500))}] * 10)
    assert len(messages) == 10
    noise = as_numpy(agg)["w"]
    assert noise.std() == pytest.approx(z * c / 10, rel=0.05)
    assert abs(noise.mean()) < 0.01 * z * c / 10 * 10
    assert metrics["dp-noise-std"] == pytest.approx(z * c / 10)


def test_poisson_noise_is_calibrated_to_the_expected_round_size():
    strategy = _central(kind="poisson", rate=0.2, n=100, noise_multiplier=1.0, clip_norm=1.0)
    zero = {"w": np.zeros(200_000)}
    messages = list(strategy.configure_train(1, arrays(zero), ConfigRecord(), Grid(NODES)))
    assert 5 < len(messages) < 40  # Poisson: the size varies, the denominator (qN = 20) does not
    replies = [reply(zero) for _ in messages]
    agg, _ = strategy.aggregate_train(1, replies)
    assert as_numpy(agg)["w"].std() == pytest.approx(1.0 / 20, rel=0.05)


def test_aggregate_is_the_fixed_denominator_mean_of_clipped_updates():
    strategy = _central(noise_multiplier=1e-9, clip_norm=1.0)
    g = {"a": np.ones(3), "b": np.zeros((2, 2))}
    rng = np.random.default_rng(0)
    updates = [{"a": rng.normal(0, s, 3), "b": rng.normal(0, s, (2, 2))}
               for s in (0.05, 0.1, 3.0, 10.0, 0.2, 1.0, 0.01, 5.0)]  # fmt: skip
    # 10 sampled, 8 replied: the two missing count as zero updates
    _, (agg, metrics) = _round(strategy, 1, g, updates)
    expected = {k: g[k].copy() for k in g}
    for u in updates:
        size = np.sqrt(sum(np.square(v).sum() for v in u.values()))
        for k in g:
            expected[k] += u[k] * min(1.0, 1.0 / size) / 10
    got = as_numpy(agg)
    for k in g:
        np.testing.assert_allclose(got[k], expected[k], atol=1e-5)
    assert metrics["dp-sampled"] == 10
    assert not any(k.endswith("-true") for k in metrics)  # no exact private count is released


def test_sampling_is_seeded_and_the_inner_strategy_gets_exactly_the_sample():
    a = _central(kind="poisson", rate=0.1)
    b = _central(kind="poisson", rate=0.1)
    g = {"w": np.zeros(3)}
    sizes = []
    for rnd in range(1, 30):
        ma = list(a.configure_train(rnd, arrays(g), ConfigRecord(), Grid(NODES)))
        mb = list(b.configure_train(rnd, arrays(g), ConfigRecord(), Grid(NODES)))
        # the same clients (FedAvg shuffles their order with Python's global RNG)
        assert sorted(m.metadata.dst_node_id for m in ma) == sorted(
            m.metadata.dst_node_id for m in mb
        )
        sizes.append(len(ma))
    assert len(set(sizes)) > 1  # Poisson: the round size varies
    assert 6 < np.mean(sizes) < 14
    config = ma[0].content["config"]
    assert config["dp-mode"] == "central-server" and config["dp-clip-norm"] == 1.0


def test_epsilon_after_each_round_is_in_the_metrics():
    strategy = _central(kind="poisson", rate=1.0, n=10, noise_multiplier=1.0, report_pld=True)
    g = {"w": np.zeros(4)}
    eps = []
    for rnd in (1, 2, 3):
        _, (_, metrics) = _round(strategy, rnd, g, [{"w": np.ones(4)}] * 10, nodes=range(10))
        eps.append(metrics["dp-client-epsilon"])
        assert metrics["dp-client-epsilon-pld"] < metrics["dp-client-epsilon"]  # PLD is tighter
    assert eps[0] < eps[1] < eps[2]


def test_target_epsilon_stops_before_the_round_that_would_exceed_it():
    strategy = _central(kind="poisson", rate=1.0, n=10, noise_multiplier=2.0, target_epsilon=3.5)
    g = {"w": np.zeros(4)}
    finished = 0
    with pytest.raises(RunStopped, match="target-epsilon 3.5"):
        for rnd in range(1, 50):
            _, (_, metrics) = _round(strategy, rnd, g, [{"w": np.ones(4)}] * 10, nodes=range(10))
            assert metrics["dp-client-epsilon"] <= 3.5
            finished = rnd
    assert 1 <= finished < 49
    assert strategy.accountant.rounds == finished


def test_client_side_clipping_checks_that_clients_clipped():
    strategy = _central(CentralDPClientSideClipping, noise_multiplier=1e-9, clip_norm=1.0)
    g = {"w": np.zeros(4)}
    list(strategy.configure_train(1, arrays(g), ConfigRecord(), Grid(NODES)))
    unclipped = reply({"w": np.full(4, 0.1)})
    with pytest.raises(FedlabError, match="central_client_clipping_mod"):
        strategy.aggregate_train(1, [unclipped])
    too_big = reply(
        {"w": np.full(4, 2.0)},
        dp=dp_record({"mechanism": "central-client-clipping", "unclipped": 0}),
    )
    with pytest.raises(FedlabError, match="norm"):
        strategy.aggregate_train(1, [too_big])
    ok = reply(
        {"w": np.full(4, 0.5)},
        dp=dp_record({"mechanism": "central-client-clipping", "unclipped": 1}),
    )
    agg, metrics = strategy.aggregate_train(1, [ok])
    np.testing.assert_allclose(as_numpy(agg)["w"], np.full(4, 0.05), atol=1e-6)


def test_bad_inputs_are_refused_with_one_line_errors():
    with pytest.raises(FedlabError, match="clip-norm must be > 0"):
        _central(clip_norm=0.0)
    with pytest.raises(FedlabError, match="noise-multiplier must be > 0"):
        _central(noise_multiplier=-1.0)
    with pytest.raises(FedlabError, match="FedMedian is not known to aggregate by a mean"):
        CentralDPServerSideClipping(FedMedian(**inner_kwargs()), ClientSampler("fixed", 0.1, 100),
                                    clip_norm=1.0, noise_multiplier=1.0)  # fmt: skip
    with pytest.raises(FedlabError, match="fraction_train=1.0"):
        ClientSampling(FedAvg(fraction_train=0.5), ClientSampler("fixed", 0.1, 100))
    with pytest.raises(FedlabError, match="not a whole number"):
        ClientSampler("poisson", 0.015, 100)
    with pytest.raises(FedlabError, match="num-supernodes"):
        ClientSampler("fixed", 0.1, 100).sample(list(range(50)), 1)


def test_no_dp_sampling_wrapper_passes_updates_through():
    strategy = ClientSampling(FedAvg(**inner_kwargs()), ClientSampler("fixed", 0.5, 4))
    g = {"w": np.zeros(2)}
    messages = list(strategy.configure_train(1, arrays(g), ConfigRecord(), Grid([1, 2, 3, 4])))
    assert len(messages) == 2
    agg, metrics = strategy.aggregate_train(
        1, [reply({"w": np.ones(2)}, examples=1), reply({"w": np.full(2, 4.0)}, examples=3)]
    )
    np.testing.assert_allclose(as_numpy(agg)["w"], np.full(2, 3.25))  # FedAvg by examples
    assert metrics["dp-sampled"] == 2
