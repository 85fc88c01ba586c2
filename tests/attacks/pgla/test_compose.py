"""Composition with the attack API: denoise_attack_input and the CLI hook."""

from __future__ import annotations

import math

import pytest
import torch
from fedlab.attacks.base import AttackInput, ModelSpec
from fedlab.attacks.pgla.compose import denoise_attack_input, denoising, gradient_noise_std
from fedlab.attacks.pgla.denoisers import load_denoiser
from fedlab.attacks.pgla.surrogate import clean_gradient, victim_images, victim_model
from fedlab.attacks.pgla.transform import unflatten_gradients

from fedlab.errors import FedlabError


def fedsgd_input(lr: float = 0.1, std: float = 0.001) -> tuple[AttackInput, torch.Tensor]:
    model = victim_model(5)
    images, labels = victim_images(1)
    params = [p.detach().clone() for p in model.parameters()]
    g = clean_gradient(model, images[0], labels[0])
    g = g / g.norm()
    noisy = g + (std / lr) * torch.randn(g.shape, generator=torch.Generator().manual_seed(0))
    update = [-lr * t for t in unflatten_gradients(noisy, params)]
    inp = AttackInput(
        model=ModelSpec("lenet", {"num_classes": 10, "image_size": 32}),
        params=params,
        batch_size=1,
        image_shape=(3, 32, 32),
        num_classes=10,
        update=update,
        lr=lr,
        dp={"mechanism": "gaussian", "clip": 1.0 * lr, "std": std},
    )
    return inp, g


def test_noise_std_of_an_update_is_converted_to_gradient_units() -> None:
    inp, _ = fedsgd_input(lr=0.1, std=0.002)
    assert gradient_noise_std(inp) == pytest.approx(0.02)
    inp.dp = {"mechanism": "laplace", "scale": 0.001}
    assert gradient_noise_std(inp) == pytest.approx(0.01 * math.sqrt(2))


def test_denoise_attack_input_returns_gradients_in_model_shapes() -> None:
    inp, clean = fedsgd_input()
    out = denoise_attack_input(inp, load_denoiser("wiener"))
    assert out.update is None and out.gradients is not None
    assert [g.shape for g in out.gradients] == [p.shape for p in inp.params]
    assert out.dp["denoised_by"] == "wiener" and inp.dp.get("denoised_by") is None
    model = out.build_model()  # shapes agree with the model
    assert sum(p.numel() for p in model.parameters()) == clean.numel()


def test_identity_denoiser_gives_minus_update_over_lr() -> None:
    inp, _ = fedsgd_input()
    out = denoise_attack_input(inp, load_denoiser("none"))
    for a, b in zip(out.gradients, inp.target_gradients(), strict=True):
        assert torch.equal(a, b)


def test_cli_hook_loads_once_and_refuses_bad_names() -> None:
    inp, _ = fedsgd_input()
    make = denoising(lambda: inp, "gaussian")
    assert make().dp["denoised_by"] == "gaussian"
    with pytest.raises(FedlabError, match="unknown denoiser 'nope'"):
        denoising(lambda: inp, "nope")
    with pytest.raises(FedlabError, match="needs a folder"):
        denoising(lambda: inp, "pgla")
