"""The empirical epsilon of two Gaussians, and its bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fedlab.attacks.audit.estimate import (
    MAX_EPSILON,
    epsilon_from_samples,
    estimate_epsilon,
    gaussian_pair_epsilon,
)


def test_equal_variances_match_the_gaussian_mechanism() -> None:
    # GDP mu = 1 at delta 1e-5: epsilon 4.377 (Dong, Roth, Su); the numerical path (variances
    # that differ by 1e-4) agrees with the closed form
    closed = gaussian_pair_epsilon(1.0, 1.0, 0.0, 1.0, 1e-5)
    numeric = gaussian_pair_epsilon(1.0, 1.0, 0.0, 1.0001, 1e-5)
    assert closed == pytest.approx(4.377, abs=0.01)
    assert numeric == pytest.approx(closed, abs=0.01)


def test_monotone_in_separation_and_capped() -> None:
    eps = [gaussian_pair_epsilon(mu, 1.0, 0.0, 1.0, 1e-5) for mu in (0.0, 0.5, 1.0, 2.0, 50.0)]
    assert eps[0] == 0.0
    assert eps == sorted(eps) and eps[1] < eps[2] < eps[3]
    assert eps[-1] == MAX_EPSILON


def test_bootstrap_brackets_the_point_estimate() -> None:
    rng = np.random.default_rng(0)
    est = estimate_epsilon(rng.normal(1, 1, 300), rng.normal(0, 1, 1000), 1e-5, resamples=100)
    assert est.low <= est.epsilon <= est.high
    assert est.low < 4.377 < est.high
    same = estimate_epsilon(rng.normal(0, 1, 300), rng.normal(0, 1, 1000), 1e-5, resamples=50)
    assert same.epsilon < 1.5


def test_too_few_statistics_give_nan_and_json_none() -> None:
    est = estimate_epsilon(np.array([0.1]), np.zeros(10), 1e-5)
    assert math.isnan(epsilon_from_samples(np.array([0.1]), np.zeros(10), 1e-5))
    assert est.to_json()["epsilon"] is None


@pytest.mark.parametrize(
    ("mu_p", "s_p", "mu_q", "s_q", "eps"),
    [
        (1.0, 1.0, 0.0, 2.0, 0.5),  # P narrower: A is an interval
        (1.0, 2.0, 0.0, 1.0, 1.0),  # P wider: A is the complement of one
        (0.3, 0.7, 0.0, 0.65, 3.0),
        (2.0, 1.3, -1.0, 0.4, 8.0),
        (0.0, 1.0, 0.0, 1.5, 0.0),
    ],
)
def test_closed_form_hockey_stick_matches_numerical_integration(
    mu_p: float, s_p: float, mu_q: float, s_q: float, eps: float
) -> None:
    from fedlab.attacks.audit.estimate import _hockey_stick
    from scipy.integrate import quad
    from scipy.stats import norm

    def integrand(x: float) -> float:
        return max(0.0, norm.pdf(x, mu_p, s_p) - math.exp(eps) * norm.pdf(x, mu_q, s_q))

    lo = min(mu_p - 30 * s_p, mu_q - 30 * s_q)
    hi = max(mu_p + 30 * s_p, mu_q + 30 * s_q)
    ref = quad(integrand, lo, hi, points=[mu_p, mu_q], limit=500, epsabs=1e-12)[0]
    assert _hockey_stick(mu_p, s_p, mu_q, s_q, eps) == pytest.approx(ref, abs=1e-8)


def test_separate_fit_is_reported_beside_the_pooled_one() -> None:
    from fedlab.attacks.audit.config import AuditConfig
    from fedlab.attacks.audit.runner import estimates_of

    rng = np.random.default_rng(3)
    stats = {"final": {"observed": rng.normal(1, 1, 10).tolist(), "null": rng.normal(0, 1, 200)}}
    est = estimates_of(stats, {"epsilon": 0.01}, "central", 1e-5, AuditConfig(bootstrap=20))
    final = est["final"]
    pooled = estimate_epsilon(
        np.array(stats["final"]["observed"]), stats["final"]["null"], 1e-5, resamples=20
    )
    separate = estimate_epsilon(
        np.array(stats["final"]["observed"]),
        stats["final"]["null"],
        1e-5,
        resamples=20,
        pooled=False,
    )
    assert final["epsilon"] == pooled.epsilon and final["low"] == pooled.low
    assert final["separate"]["epsilon"] == separate.epsilon
    assert final["separate"]["low"] == separate.low and final["separate"]["high"] == separate.high
    assert final["exceeds"] == (pooled.low > 0.01)
    assert final["separate"]["exceeds"] == (separate.low > 0.01)
