"""Noise level -> start step follows abar* = 1 / (1 + M^2); M = 0 does nothing."""

from __future__ import annotations

import math

import pytest
import torch
from fedlab.attacks.pgla.schedule import (
    dp_value,
    estimate_noise_std,
    make_scheduler,
    noise_std_from_dp,
    start_timestep,
    target_alpha_bar,
)

from fedlab.errors import FedlabError


def test_scheduler_is_the_ddpm_one() -> None:
    s = make_scheduler()
    betas = torch.linspace(1e-4, 0.02, 1000)
    assert torch.allclose(s.betas, betas)
    assert torch.allclose(s.alphas_cumprod, torch.cumprod(1 - betas, 0))


@pytest.mark.parametrize("m", [0.01, 0.1, 0.5, 1.0, 2.0, 10.0])
def test_start_step_matches_formula(m: float) -> None:
    abar = make_scheduler().alphas_cumprod
    t = start_timestep(abar, m)
    target = 1 / (1 + m * m)
    assert abar[t] < target
    assert t == 0 or abar[t - 1] >= target
    # closed form for the linear schedule as a cross-check
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    brute = int(torch.nonzero(torch.cumprod(1 - betas, 0) < target)[0])
    assert abs(t - brute) <= 1


def test_start_step_monotone_and_known_values() -> None:
    abar = make_scheduler().alphas_cumprod
    steps = [start_timestep(abar, m) for m in (0.05, 0.1, 0.3, 1.0, 3.0, 30.0, 1e6)]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    assert start_timestep(abar, 1e6) == 999
    assert start_timestep(abar, 0.0) is None
    # M = 1: abar* = 1/2; log abar_t ~ -(1e-4 t + 9.96e-6 t^2) = log 1/2 at t ~ 259
    assert 255 <= start_timestep(abar, 1.0) <= 262


def test_target_alpha_bar_refuses_bad_m() -> None:
    assert target_alpha_bar(0.0) == 1.0 and target_alpha_bar(1.0) == 0.5
    with pytest.raises(FedlabError, match=">= 0"):
        target_alpha_bar(-1.0)
    with pytest.raises(FedlabError):
        target_alpha_bar(float("nan"))


def test_noise_std_from_dp() -> None:
    assert noise_std_from_dp(None) is None
    assert noise_std_from_dp({"mechanism": "gaussian", "std": 0.3}) == 0.3
    assert noise_std_from_dp({"mechanism": "laplace", "scale": 1.0}) == pytest.approx(math.sqrt(2))
    assert noise_std_from_dp({"noise_multiplier": 2.0, "clip": 0.5}) == 1.0
    assert noise_std_from_dp({"mechanism": "none"}) == 0.0
    with pytest.raises(FedlabError, match="allowed: gaussian, laplace"):
        noise_std_from_dp({"mechanism": "exponential", "std": 1.0})


def test_blind_estimates() -> None:
    g = torch.Generator().manual_seed(0)
    clean = torch.randn(20_000, generator=g)
    clean = clean / clean.norm()
    noisy = clean + 0.02 * torch.randn(20_000, generator=g)
    assert estimate_noise_std(noisy, clip_norm=1.0) == pytest.approx(0.02, rel=0.05)
    smooth = torch.sin(torch.linspace(0, 20, 20_000))
    assert estimate_noise_std(smooth + 0.1 * torch.randn(20_000, generator=g)) == pytest.approx(
        0.1, rel=0.1
    )


@pytest.mark.parametrize("noise", ["gaussian", "laplace"])
def test_noise_std_from_what_the_dpfedavg_app_records(noise) -> None:
    from fedlab.strategies.dp_mods import LocalDpClipNoiseMod

    mod = LocalDpClipNoiseMod(clip_norm=0.5, epsilon=4.0, delta=1e-5, noise=noise)
    record = mod.record(releases=1)
    assert record["mechanism"] == "local"
    assert noise_std_from_dp(record) == pytest.approx(mod.noise_std)
    assert dp_value(record, "clip") == 0.5
    without_std = {k: v for k, v in record.items() if k != "noise-std"}
    assert noise_std_from_dp(without_std) == pytest.approx(mod.noise_std)  # from the scale
