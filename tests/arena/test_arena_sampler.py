"""Our PoI sampler: the probability mass follows a moving box; draws honour the budget."""

from __future__ import annotations

import numpy as np
import pytest
from fedlab.clients.arena.sampler import (
    SamplerConfig,
    Track,
    box_tokens,
    match_tracks,
    poi_distribution,
    predicted_centre,
    sample_pois,
)
from hypothesis import given, settings
from hypothesis import strategies as st

GRID, PATCH = 12, 8
CONFIG = SamplerConfig(budget=0.25)


def _near(token: int, point: np.ndarray) -> bool:
    """Whether ``point`` lies in ``token``'s patch (its border included)."""
    row, col = divmod(token, GRID)
    centre = (np.array([col, row]) + 0.5) * PATCH
    return bool((np.abs(centre - point) <= PATCH / 2 + 1e-9).all())


@settings(max_examples=40, deadline=None)
@given(
    x=st.floats(20, 60), y=st.floats(20, 60), w=st.floats(6, 20), h=st.floats(6, 20),
    vx=st.floats(-3, 3), vy=st.floats(-3, 3), dt=st.integers(1, 3),
)  # fmt: skip
def test_mass_follows_the_moving_box(x, y, w, h, vx, vy, dt) -> None:
    track = Track(np.array([x, y, x + w, y + h]), np.array([vx, vy]), score=0.9)
    prob = poi_distribution([track], GRID, PATCH, CONFIG, dt=dt).reshape(GRID, GRID)
    assert prob.sum() == pytest.approx(1.0)
    # The most likely token is the one holding the extrapolated centre, ...
    target = predicted_centre(track, dt)
    assert _near(int(prob.argmax()), target)
    # ... and the mass moves with the box: shifting the box (and its motion) by whole patches
    # shifts the distribution by as many tokens wherever it stays clear of the border.
    shifted = Track(track.box + [PATCH, PATCH, PATCH, PATCH], track.velocity, 0.9)
    moved = poi_distribution([shifted], GRID, PATCH, CONFIG, dt=dt).reshape(GRID, GRID)
    assert int(moved.argmax()) == int(prob.argmax()) + GRID + 1
    # The expected position under the distribution lies on the motion's side of the box.
    centres = (np.arange(GRID) + 0.5) * PATCH
    mean = np.array([(prob.sum(0) * centres).sum(), (prob.sum(1) * centres).sum()])
    start = predicted_centre(track, 0.0)
    step = np.array([vx, vy]) * dt
    if np.linalg.norm(step) > 4:
        assert np.dot(mean - start, step) > 0


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), budget=st.floats(0.05, 1.0))
def test_draw_spends_exactly_the_budget(seed, budget) -> None:
    track = Track(np.array([40.0, 40.0, 56.0, 52.0]), np.array([2.0, 0.0]), 0.9)
    config = SamplerConfig(budget=budget)
    prob = poi_distribution([track], GRID, PATCH, config)
    keep, coverage = sample_pois(prob, config, np.random.default_rng(seed))
    assert len(keep) == max(1, round(budget * GRID * GRID))
    assert len(np.unique(keep)) == len(keep) and keep.min() >= 0 and keep.max() < GRID * GRID
    assert 0 <= coverage <= 1 + 1e-9
    assert coverage == pytest.approx(prob[keep].sum())


def test_poi_draw_covers_more_mass_than_random() -> None:
    track = Track(np.array([40.0, 40.0, 56.0, 52.0]), np.array([2.0, 1.0]), 0.9)
    prob = poi_distribution([track], GRID, PATCH, CONFIG)
    rng = np.random.default_rng(0)
    ours = np.mean([sample_pois(prob, CONFIG, rng)[1] for _ in range(50)])
    count = round(CONFIG.budget * GRID * GRID)
    random = np.mean([prob[rng.choice(GRID * GRID, count, replace=False)].sum() for _ in range(50)])
    assert ours > 0.8 and ours > 2 * random


def test_no_track_gives_a_uniform_distribution() -> None:
    prob = poi_distribution([], GRID, PATCH, CONFIG)
    np.testing.assert_allclose(prob, 1 / GRID**2)
    weak = Track(np.array([0.0, 0, 8, 8]), score=0.1)
    np.testing.assert_allclose(poi_distribution([weak], GRID, PATCH, CONFIG), 1 / GRID**2)


def test_matching_gives_velocities() -> None:
    previous = [Track(np.array([10.0, 10, 20, 20]), score=0.9)]
    tracks = match_tracks(previous, np.array([[13.0, 12, 23, 22]]), np.array([0.8]), 0.3, 0.0)
    np.testing.assert_allclose(tracks[0].velocity, [3.0, 2.0])
    assert match_tracks(previous, np.array([[60.0, 60, 70, 70]]), np.array([0.8]), 0.3)[
        0
    ].velocity.tolist() == [0.0, 0.0]


def test_box_tokens_cover_the_box() -> None:
    np.testing.assert_array_equal(box_tokens(np.array([[0, 0, 9, 8]]), GRID, PATCH), [0, 1])
