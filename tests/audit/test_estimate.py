"""The empirical epsilon of two Gaussians, and its bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest

from attacks.audit.estimate import (
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
