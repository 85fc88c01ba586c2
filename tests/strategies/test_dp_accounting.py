"""Client-level accounting against the reference values of Opacus and dp-accounting."""

from __future__ import annotations

import pytest
from fedlab.strategies.dp_accounting import ClientLevelAccountant, epsilon_after, noise_for_target
from fedlab.strategies.dp_sampling import ClientSampler

from fedlab.errors import FedlabError

POISSON = ClientSampler("poisson", 0.1, 100)


def test_poisson_q01_z1_t50_matches_opacus_and_dp_accounting():
    # Opacus 5.881, dp-accounting 5.885: 5.88 within 0.5 %
    assert epsilon_after(POISSON, 1.0, 50, 1e-5) == pytest.approx(5.88, rel=0.005)


def test_full_participation_q1():
    assert epsilon_after(ClientSampler("poisson", 1.0, 100), 1.0, 50, 1e-5) == pytest.approx(
        57.30, abs=0.01
    )


def test_fixed_m_of_n_is_accounted_without_replacement_with_replace_one_sensitivity():
    # dp-accounting gives 9.43 for m=10 of N=100 at noise std / sensitivity = 1; replacing one
    # client moves the clipped sum by 2C, so that is noise-multiplier z = 2 here.
    fixed = ClientSampler("fixed", 0.1, 100)
    assert epsilon_after(fixed, 2.0, 50, 1e-5) == pytest.approx(9.43, abs=0.01)
    assert epsilon_after(fixed, 1.0, 50, 1e-5) > 40  # the same z as Poisson is much weaker


def test_round_by_round_accountant_agrees_and_pld_is_tighter():
    accountant = ClientLevelAccountant(POISSON, 1e-5)
    for _ in range(50):
        accountant.record(1.0)
    assert accountant.rounds == 50
    assert accountant.epsilon() == pytest.approx(epsilon_after(POISSON, 1.0, 50, 1e-5))
    assert accountant.pld_epsilon() == pytest.approx(5.15, abs=0.02)
    state = accountant.state_dict()
    assert state["compositions"][0]["count"] == 50


def test_would_exceed_looks_one_round_ahead():
    accountant = ClientLevelAccountant(POISSON, 1e-5)
    for _ in range(49):
        accountant.record(1.0)
    before = accountant.epsilon()
    assert before < 5.88 < accountant.epsilon(extra_rounds=1)
    assert accountant.would_exceed(5.8, (1.0, 0.0)) and not accountant.would_exceed(6.0, (1.0, 0.0))
    assert accountant.rounds == 49  # looking ahead does not spend


def test_noise_for_target_inverts_the_accountant():
    z = noise_for_target(POISSON, 5.885, 50, 1e-5)
    assert z == pytest.approx(1.0, rel=0.01)
    assert epsilon_after(POISSON, z, 50, 1e-5) <= 5.885


def test_unreachable_target_is_refused():
    with pytest.raises(FedlabError, match="unreachable"):
        noise_for_target(ClientSampler("poisson", 1.0, 10), 1e-4, 10_000, 1e-5)
