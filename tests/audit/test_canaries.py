"""Canary directions, the canary mod's update and the three statistics."""

from __future__ import annotations

import numpy as np
import pytest
from fedlab.attacks.audit.canaries import Observations, canary_statistics, direction, flat


def test_direction_is_a_fixed_unit_vector() -> None:
    a, b = direction(650, 0, 3), direction(650, 0, 3)
    assert np.array_equal(a, b)
    assert np.linalg.norm(a) == pytest.approx(1.0)
    assert abs(float(a @ direction(650, 0, 4))) < 0.2
    assert flat({"b": np.ones(2), "a": np.zeros(3)}).tolist() == [0, 0, 0, 1, 1]


def test_statistics_see_an_inserted_canary_and_not_the_null() -> None:
    dim, seed, canaries = 400, 7, [8, 9]
    g1 = np.zeros(dim)
    u8 = direction(dim, seed, 8)
    g2 = g1 + 0.3 * u8 / 2  # round 1 averages canary 8 with one zero update
    final = g2 + 0.001 * np.random.default_rng(0).standard_normal(dim)
    seen = Observations(sent={1: g1, 2: g2}, releases=[(1, 8, 0.3 * u8)])
    stats = canary_statistics(seen, final, canaries, seed, num_null=50)
    assert stats["per-release"]["observed"] == [pytest.approx(1.0)]
    assert max(abs(v) for v in stats["per-release"]["null"]) < 0.3
    observed_final = stats["final"]["observed"]
    assert observed_final[0] > 0.9 and abs(observed_final[1]) < 0.3
    assert stats["all-iterates"]["observed"][0] > 0.9
    assert len(stats["final"]["null"]) == 50 and max(stats["final"]["null"]) < 0.3
