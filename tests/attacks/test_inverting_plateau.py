"""Inverting gradients' plateau stop: on by request only, decided by the attack's objective."""

import pytest
import torch
from attack_helpers import crop_image, fedsgd_input
from fedlab.attacks.inverting import PLATEAU_WINDOW, InvertingGradients


def _input():
    return fedsgd_input(crop_image("chelsea", 16)[None], torch.tensor([3]))


def test_without_patience_every_iteration_runs():
    result = InvertingGradients(max_iterations=120, restarts=0).reconstruct(_input())
    assert result.iterations == 120


def test_patience_stops_a_stalled_objective_at_a_window_boundary():
    # lr 0: the image never moves, so the objective stalls from the first window on
    attack = InvertingGradients(max_iterations=2000, restarts=0, lr=0.0, patience=2)
    result = attack.reconstruct(_input())
    assert result.iterations == 3 * PLATEAU_WINDOW  # first window sets the best, two stall


def test_patience_below_one_is_refused():
    with pytest.raises(ValueError, match="patience"):
        InvertingGradients(patience=0)
