"""Metrics on [0, 1] images with data_range 1, batch matching and label accuracy."""

from __future__ import annotations

import math

import torch
from fedlab.attacks import metrics

from fedlab import image_quality


def test_psnr_matches_its_definition():
    a = torch.zeros(3, 8, 8)
    b = torch.full((3, 8, 8), 0.1)
    assert math.isclose(metrics.mse(a, b), 0.01, rel_tol=1e-6)
    assert math.isclose(image_quality.psnr(a, b), 20.0, rel_tol=1e-6)
    assert image_quality.psnr(a, a) == 100.0
    assert image_quality.ssim(b, b) == 1.0
    noise = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert image_quality.ssim(a, noise) < 0.5


def test_batch_is_scored_after_matching_reconstructions_to_truths():
    g = torch.Generator().manual_seed(0)
    truth = torch.rand(3, 3, 8, 8, generator=g)
    recon = truth[[2, 0, 1]]
    assert metrics.match_order(truth, recon).tolist() == [1, 2, 0]
    scores = metrics.score(truth, torch.tensor([1, 1, 5]), recon, torch.tensor([5, 1, 2]))
    assert scores["psnr"] == 100.0
    assert math.isclose(scores["label_accuracy"], 2 / 3)
