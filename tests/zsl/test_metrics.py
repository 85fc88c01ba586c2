"""ZSL metrics against values computed by hand, and the cost counters on known layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fedlab.clients.zsl.metrics import (
    count_flops,
    count_parameters,
    gzsl,
    harmonic_mean,
    latency_per_sample,
    per_class_accuracy,
    zsl_top1,
)
from torch import nn


def test_per_class_accuracy_is_a_mean_over_classes_not_examples():
    labels = np.array([0, 0, 0, 0, 1])
    predicted = np.array([0, 0, 0, 0, 0])
    # class 0: 4/4, class 1: 0/1 -> 0.5 (the example mean would be 0.8)
    assert per_class_accuracy(predicted, labels) == pytest.approx(0.5)


def test_t1_predicts_among_unseen_classes_only():
    # classes 0, 1 seen; 2, 3 unseen. Scores over all 4 classes.
    scores = np.array([
        [9.0, 0.0, 1.0, 0.0],   # true 2: seen class 0 is highest but not a candidate -> 2
        [0.0, 0.0, 0.2, 0.1],   # true 2 -> 2 right
        [0.0, 0.0, 0.5, 0.4],   # true 3 -> 2 wrong
    ])  # fmt: skip
    labels = np.array([2, 2, 3])
    # class 2: 2/2, class 3: 0/1 -> 0.5
    assert zsl_top1(scores, labels, np.array([2, 3])) == pytest.approx(0.5)


def test_gzsl_hand_computed_with_and_without_calibration():
    seen, unseen = np.array([0, 1]), np.array([2])
    s_seen = np.array([[1.0, 0.2, 0.8], [0.1, 1.0, 0.0], [0.3, 0.2, 0.9]])
    y_seen = np.array([0, 1, 1])
    s_unseen = np.array([[0.9, 0.0, 0.7], [0.0, 0.1, 0.5]])
    y_unseen = np.array([2, 2])
    plain = gzsl(s_seen, y_seen, s_unseen, y_unseen, seen, unseen, gamma=0.0)
    # seen: class 0 1/1, class 1: 1/2 (third predicted 2) -> 0.75; unseen: 1/2 -> 0.5
    assert plain["acc-s"] == pytest.approx(0.75)
    assert plain["acc-u"] == pytest.approx(0.5)
    assert plain["H"] == pytest.approx(2 * 0.75 * 0.5 / 1.25)
    calibrated = gzsl(s_seen, y_seen, s_unseen, y_unseen, seen, unseen, gamma=0.25)
    # seen scores -0.25: row 0 -> 0.75 vs 0.8 -> predicts 2 (wrong); row 1 right; row 2 wrong
    # -> acc-s = (0 + 1/2) / 2 = 0.25; unseen row 0: 0.65 vs 0.7 -> right -> acc-u = 1.0
    assert calibrated["acc-s"] == pytest.approx(0.25)
    assert calibrated["acc-u"] == pytest.approx(1.0)
    assert calibrated["H"] == pytest.approx(2 * 0.25 * 1.0 / 1.25)


def test_harmonic_mean():
    assert harmonic_mean(0.5, 0.5) == pytest.approx(0.5)
    assert harmonic_mean(0.6, 0.2) == pytest.approx(0.3)
    assert harmonic_mean(0.0, 0.0) == 0.0


def test_parameter_and_flop_counts_of_a_linear_layer():
    layer = nn.Linear(10, 5)
    assert count_parameters(layer) == 55
    layer.bias.requires_grad_(False)
    assert count_parameters(layer, trainable_only=True) == 50
    assert count_flops(layer, torch.zeros(4, 10)) == 2 * 10 * 5  # per sample


def test_latency_is_positive_and_per_sample():
    assert 0 < latency_per_sample(nn.Linear(4, 2), torch.zeros(8, 4), repeats=3) < 1.0
