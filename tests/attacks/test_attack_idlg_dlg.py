"""iDLG's label recovery and DLG/iDLG/IG reconstructions on tiny single-image settings."""

from __future__ import annotations

import pytest
import torch
from attack_helpers import CROPS, crop_image, fedsgd_input
from fedlab.attacks import metrics
from fedlab.attacks.base import head_gradients
from fedlab.attacks.dlg import DLG
from fedlab.attacks.idlg import IDLG, recover_labels
from fedlab.attacks.inverting import InvertingGradients

from fedlab import image_quality


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("name", sorted(CROPS))
def test_idlg_recovers_the_label_of_a_single_image_fedsgd_update(name, seed):
    label = (3 * seed + len(name)) % 10
    inp = fedsgd_input(crop_image(name, 32)[None], torch.tensor([label]), seed=seed, lr=0.1)
    model = inp.build_model()
    target = inp.target_gradients()
    assert recover_labels(inp, model, target).tolist() == [label]
    w, _ = head_gradients(model, target)
    assert w.shape == (10, 768)


def test_dlg_reaches_high_psnr_on_a_16px_image():
    x, y = crop_image("chelsea", 16)[None], torch.tensor([2])
    inp = fedsgd_input(x, y, seed=0)
    result = DLG(max_iterations=400, restarts=1).reconstruct(inp)
    scores = metrics.score(x, y, result.images, result.labels)
    assert scores["psnr"] > 30, scores
    assert scores["label_accuracy"] == 1.0
    assert result.loss < 1e-4 * sum(float((g**2).sum()) for g in inp.gradients)
    assert result.iterations <= 2 * (400 + 60)


def test_idlg_uses_the_recovered_label_and_reconstructs():
    x, y = crop_image("astronaut", 16)[None], torch.tensor([6])
    result = IDLG(max_iterations=400, restarts=0).reconstruct(fedsgd_input(x, y, seed=1))
    assert result.labels.tolist() == [6]
    assert image_quality.psnr(x[0], result.images[0]) > 25


def test_inverting_gradients_beats_its_random_start():
    x, y = crop_image("coffee", 16)[None], torch.tensor([1])
    inp = fedsgd_input(x, y, seed=2)
    result = InvertingGradients(max_iterations=300, restarts=0).reconstruct(inp)
    start = inp.to_unit_range(inp.initial_images("gray", torch.Generator().manual_seed(0)))
    assert result.images.min() >= 0 and result.images.max() <= 1
    assert image_quality.psnr(x[0], result.images[0]) > image_quality.psnr(x[0], start[0]) + 6
    assert result.loss < 0.5


@pytest.mark.slow
def test_strong_local_noise_on_the_update_costs_dlg_at_least_10_db():
    """Local DP stand-in until the DP client mod lands: Gaussian noise on the sent update."""
    x, y = crop_image("chelsea", 16)[None], torch.tensor([2])
    clean = fedsgd_input(x, y, seed=0, lr=0.1)
    g = torch.Generator().manual_seed(0)
    rms = torch.cat([u.flatten() for u in clean.update]).pow(2).mean().sqrt()
    noisy = fedsgd_input(x, y, seed=0, lr=0.1)
    noisy.update = [u + rms * torch.randn(u.shape, generator=g) for u in noisy.update]
    attack = DLG(max_iterations=1500, restarts=0)
    psnr_clean = image_quality.psnr(x[0], attack.reconstruct(clean).images[0])
    psnr_noisy = image_quality.psnr(x[0], attack.reconstruct(noisy).images[0])
    print(f"PSNR clean {psnr_clean:.1f} dB, noisy {psnr_noisy:.1f} dB")
    assert psnr_clean >= psnr_noisy + 10, (psnr_clean, psnr_noisy)
