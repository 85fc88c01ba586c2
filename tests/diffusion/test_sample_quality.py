"""The two-sample yardstick: it tells blur and the shipped prior's samples from real crops."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fedlab.diffusion.sample_quality import image_statistics, two_sample_accuracy
from fedlab.errors import FedlabError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def script(simulation_script):
    return simulation_script("prior_two_sample")


def test_the_test_sees_light_blur_and_not_a_second_real_sample(script):
    reference, other = script.real_crops(32)
    assert two_sample_accuracy(script.blurred(other, script.LIGHT_BLUR), reference) >= 0.8
    assert two_sample_accuracy(other, reference) <= 0.7


def test_the_committed_baseline_meets_the_declared_controls(script):
    path = ROOT / "simulations" / "results" / "diffsr" / "two_sample.json"
    records = json.loads(path.read_text())
    first = records[0]  # the first prior, scored before the second one trained
    assert first["model"].endswith("prior-issue33-start") and first["samples"] == script.SAMPLES
    assert first["prior-vs-real"] >= 0.95  # today's prior cannot generate
    assert first[f"blur-{script.LIGHT_BLUR}-vs-real"] >= 0.8


def test_statistics_are_finite_and_bad_sets_are_refused():
    images = torch.rand(6, 3, 16, 16)
    stats = image_statistics(images)
    assert stats.shape[0] == 6 and np.isfinite(stats).all()
    with pytest.raises(FedlabError, match="one image shape"):
        two_sample_accuracy(images, torch.rand(6, 3, 8, 8))
    with pytest.raises(FedlabError, match="at least 5 images"):
        two_sample_accuracy(images[:3], images[:3])
    with pytest.raises(FedlabError, match=r"\(N, 3, H, W\)"):
        image_statistics(torch.rand(2, 1, 16, 16))
