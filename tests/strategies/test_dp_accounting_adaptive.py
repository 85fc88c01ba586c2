"""Adaptive clipping is accounted as the mechanism it runs: one sample, two Gaussian queries.

Reference figures are computed here independently with dp-accounting's own events, not with
the project's accountant.
"""

from __future__ import annotations

import numpy as np
import pytest
from dp_accounting import dp_event
from dp_accounting.rdp import rdp_privacy_accountant as rdp
from dp_helpers import Grid, arrays, reply
from fedlab.strategies.dp_accounting import RDP_ORDERS, epsilon_after
from fedlab.strategies.dp_adaptive import AdaptiveClipping
from fedlab.strategies.dp_central import CentralDPServerSideClipping
from fedlab.strategies.dp_sampling import ClientSampler
from fedlab.strategies.dp_wrapper import inner_kwargs
from flwr.app import ConfigRecord
from flwr.serverapp.strategy import FedAvg


def independent_epsilon(kind, q, n, z_update, count_multiplier, rounds, delta=1e-5):
    """dp-accounting, by hand: one sampling event wrapping both Gaussians.

    ``count_multiplier`` is sigma_b over the count's add/remove sensitivity; under replace-one
    both sensitivities double.
    """
    if kind == "poisson":
        inner = dp_event.ComposedDpEvent(
            [dp_event.GaussianDpEvent(z_update), dp_event.GaussianDpEvent(count_multiplier)]
        )
        event = dp_event.PoissonSampledDpEvent(q, inner)
        relation = rdp.NeighborRel.ADD_OR_REMOVE_ONE
    else:
        inner = dp_event.ComposedDpEvent(
            [dp_event.GaussianDpEvent(z_update / 2), dp_event.GaussianDpEvent(count_multiplier / 2)]
        )
        event = dp_event.SampledWithoutReplacementDpEvent(n, round(q * n), inner)
        relation = rdp.NeighborRel.REPLACE_ONE
    accountant = rdp.RdpAccountant(RDP_ORDERS, relation)
    accountant.compose(event, rounds)
    return accountant.get_epsilon(delta)


def run_adaptive(kind, q, n, z, count_stddev, rounds):
    """Rounds of the real wrapper on mock replies; the epsilon it reports at the end."""
    adaptive = AdaptiveClipping(1.0, 0.5, 0.2, count_stddev=count_stddev)
    strategy = CentralDPServerSideClipping(
        FedAvg(**inner_kwargs()), ClientSampler(kind, q, n, seed=0),
        clip_norm=1.0, noise_multiplier=z, adaptive=adaptive,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    g = {"w": np.zeros(4)}
    for rnd in range(1, rounds + 1):
        messages = list(strategy.configure_train(rnd, arrays(g), ConfigRecord(), Grid(range(n))))
        replies = [reply({"w": rng.normal(size=4)}) for _ in messages]
        _, metrics = strategy.aggregate_train(rnd, replies)
    return metrics["dp-client-epsilon"], strategy


def test_the_defaults_match_the_composed_mechanism_not_the_uncentred_count():
    """N 100, q 0.1, z 1, T 50, sigma_b = max(m/20, z) = 1: 5.885, where an uncentred count
    (sensitivity 1) with the same budget split would really cost about 10.44."""
    reported, strategy = run_adaptive("poisson", 0.1, 100, 1.0, 1.0, 50)
    z_update = strategy.update_noise_multiplier
    centred = independent_epsilon("poisson", 0.1, 100, z_update, 1.0 / 0.5, 50)
    uncentred = independent_epsilon("poisson", 0.1, 100, z_update, 1.0 / 1.0, 50)
    assert reported == pytest.approx(centred, rel=0.01)
    assert centred == pytest.approx(5.885, abs=0.01)
    assert uncentred == pytest.approx(10.44, abs=0.05)
    # two separately sampled events would give about 7.10: the wrong composition
    assert abs(reported - 7.10) > 1.0


@pytest.mark.parametrize("q, z, count_stddev, rounds", [(0.2, 0.8, 2.0, 30), (0.05, 1.5, 3.0, 40)])
def test_other_poisson_settings_match_within_one_percent(q, z, count_stddev, rounds):
    reported, strategy = run_adaptive("poisson", q, 100, z, count_stddev, rounds)
    expected = independent_epsilon(
        "poisson", q, 100, strategy.update_noise_multiplier, count_stddev / 0.5, rounds
    )
    assert reported == pytest.approx(expected, rel=0.01)


def test_fixed_size_sampling_is_unchanged_by_the_centring():
    """Replace-one: both queries move by twice their add/remove sensitivity, so the round is a
    Gaussian of multiplier z/2, the figure reported before the fix."""
    reported, strategy = run_adaptive("fixed", 0.1, 100, 2.0, 1.5, 40)
    expected = independent_epsilon(
        "fixed", 0.1, 100, strategy.update_noise_multiplier, 1.5 / 0.5, 40
    )
    assert reported == pytest.approx(expected, rel=0.01)
    assert reported == pytest.approx(epsilon_after(ClientSampler("fixed", 0.1, 100), 2.0, 40,
                                                   1e-5), rel=0.01)  # fmt: skip


def test_one_client_moves_the_released_count_by_one_half():
    adaptive = AdaptiveClipping(1.0, count_stddev=0.0)
    rng = np.random.default_rng(0)
    base = adaptive.released_count(unclipped=3, replies=7, rng=rng)
    with_unclipped = adaptive.released_count(unclipped=4, replies=8, rng=rng)
    with_clipped = adaptive.released_count(unclipped=3, replies=8, rng=rng)
    assert with_unclipped - base == pytest.approx(0.5)
    assert with_clipped - base == pytest.approx(-0.5)
    assert adaptive.count_sensitivity == 0.5
