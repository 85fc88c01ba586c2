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


def test_patience_cuts_the_rate_then_stops_a_stalled_objective_at_a_window_boundary():
    # lr 0: the image never moves, so the objective stalls from the first window on; the
    # stall of `patience` windows cuts the rate, and the window after the cut, which gains
    # nothing, ends the attempt
    attack = InvertingGradients(max_iterations=2000, restarts=0, lr=0.0, patience=2)
    result = attack.reconstruct(_input())
    assert result.iterations == (1 + 2 + 1) * PLATEAU_WINDOW


def test_a_stall_cuts_the_rate_before_the_schedule_does(monkeypatch):
    rates = []
    step = torch.optim.Adam.step

    def record(self, *args, **kwargs):
        rates.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", record)
    # a step too small to move the objective by 0.01 %: it stalls from the first window on
    InvertingGradients(max_iterations=2000, restarts=0, lr=1e-9, patience=2).reconstruct(_input())
    assert rates[0] == 1e-9
    first_cut = next(i for i, r in enumerate(rates) if r != rates[0])
    assert first_cut == 3 * PLATEAU_WINDOW < 2000 * 3 // 8
    assert rates[first_cut] == pytest.approx(1e-10)


def test_patience_below_one_is_refused():
    with pytest.raises(ValueError, match="patience"):
        InvertingGradients(patience=0)
