"""Adaptive clipping (Andrew et al. 2021) converges to the gamma-quantile of the update norms."""

from __future__ import annotations

import numpy as np
import pytest
from dp_helpers import Grid, arrays, reply
from fedlab.strategies.dp_adaptive import AdaptiveClipping
from fedlab.strategies.dp_central import CentralDPServerSideClipping
from fedlab.strategies.dp_sampling import ClientSampler
from fedlab.strategies.dp_wrapper import inner_kwargs
from flwr.app import ConfigRecord
from flwr.serverapp.strategy import FedAvg
from scipy.stats import norm as normal

from fedlab.errors import FedlabError

MU, SIGMA = 0.0, 0.5  # update norms ~ LogNormal(MU, SIGMA)
N, Q = 1000, 0.1  # 100 clients expected per round


def quantile(gamma: float) -> float:
    return float(np.exp(MU + SIGMA * normal.ppf(gamma)))


def simulate(c0: float, gamma: float, seed: int, rounds: int = 40) -> float:
    """Poisson-sampled clients with log-normal norms; sigma_b = qN / 20 as in the paper."""
    adaptive = AdaptiveClipping(c0, gamma, learning_rate=0.2, count_stddev=N * Q / 20)
    rng = np.random.default_rng(seed)
    for _ in range(rounds):
        sampled = rng.binomial(N, Q)
        norms = rng.lognormal(MU, SIGMA, sampled)
        adaptive.step(int((norms <= adaptive.clip_norm).sum()), sampled, N * Q, rng)
    return adaptive.clip_norm


@pytest.mark.parametrize("c0", [0.1, 10.0])
def test_clip_norm_reaches_the_median_in_40_rounds_from_both_sides(c0):
    """The paper's gamma = 0.5 and eta = 0.2: within 10 % after 40 rounds, 10 seeds."""
    target = quantile(0.5)
    finals = [simulate(c0, 0.5, seed) for seed in range(10)]
    assert all(abs(f / target - 1) < 0.10 for f in finals), (target, finals)


@pytest.mark.parametrize("c0", [0.1, 10.0])
@pytest.mark.parametrize("gamma", [0.2, 0.8])
def test_other_quantiles_are_reached_too(c0, gamma):
    """Far quantiles move C by at most eta * min(gamma, 1 - gamma) per round: 100 rounds."""
    target = quantile(gamma)
    finals = [simulate(c0, gamma, seed, rounds=100) for seed in range(10)]
    assert all(abs(f / target - 1) < 0.10 for f in finals), (target, finals)


def test_direction_too_many_unclipped_shrinks_too_few_grows():
    rng = np.random.default_rng(0)
    shrink = AdaptiveClipping(1.0, 0.5, 0.2)
    shrink.step(unclipped=10, replies=10, expected_clients=10, rng=rng)
    grow = AdaptiveClipping(1.0, 0.5, 0.2)
    grow.step(unclipped=0, replies=10, expected_clients=10, rng=rng)
    assert shrink.clip_norm == pytest.approx(np.exp(-0.1))
    assert grow.clip_norm == pytest.approx(np.exp(0.1))


def test_count_query_takes_its_share_of_the_noise():
    adaptive = AdaptiveClipping(1.0, count_stddev=5.0)
    z_update = adaptive.update_noise_multiplier(1.0)
    assert (z_update**-2 + (2 * 5.0) ** -2) ** -0.5 == pytest.approx(1.0)
    assert z_update > 1.0
    with pytest.raises(FedlabError, match="clipped-count-stddev"):
        AdaptiveClipping(1.0, count_stddev=0.4).update_noise_multiplier(1.0)


def test_wrapper_adapts_c_from_mock_replies():
    """Through CentralDPServerSideClipping: 40 rounds, all 50 clients, norms ~ LogNormal."""
    adaptive = AdaptiveClipping(10.0, 0.5, 0.2, count_stddev=50 / 20)
    strategy = CentralDPServerSideClipping(
        FedAvg(**inner_kwargs()), ClientSampler("poisson", 1.0, 50, seed=1),
        clip_norm=10.0, noise_multiplier=1.0, adaptive=adaptive,
    )  # fmt: skip
    rng = np.random.default_rng(1)
    g = {"w": np.zeros(8)}
    for rnd in range(1, 41):
        list(strategy.configure_train(rnd, arrays(g), ConfigRecord(), Grid(range(50))))
        directions = rng.normal(size=(50, 8))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        sizes = rng.lognormal(MU, SIGMA, 50)
        replies = [reply({"w": d * s}) for d, s in zip(directions, sizes, strict=True)]
        _, metrics = strategy.aggregate_train(rnd, replies)
    assert strategy.clip_norm == pytest.approx(quantile(0.5), rel=0.10)
    assert 0.2 < metrics["dp-unclipped-fraction-noisy"] < 0.8
