"""Epsilon of the declared levels, and the benchmark report."""

from __future__ import annotations

import math

import pytest
from fedlab.attacks.pgla.privacy import (
    analytic_gaussian_delta,
    analytic_gaussian_epsilon,
    gaussian_epsilon,
    laplace_epsilon,
)
from fedlab.attacks.pgla.report import markdown, write_report

from fedlab.errors import FedlabError


def test_analytic_gaussian_beats_the_classical_bound() -> None:
    eps, delta = 0.5, 1e-5
    sigma = 2.0 * math.sqrt(2 * math.log(1.25 / delta)) / eps  # classical, sensitivity 2
    got = analytic_gaussian_epsilon(sigma, 2.0, delta)
    assert 0 < got < eps
    assert analytic_gaussian_delta(got, sigma, 2.0) == pytest.approx(delta, rel=1e-6)


def test_epsilon_decreases_with_noise_and_laplace_formula() -> None:
    levels = [0.001, 0.003, 0.01, 0.03, 0.1, 1.0]
    eps = [gaussian_epsilon(s) for s in levels]
    assert eps == sorted(eps, reverse=True)
    assert eps[-1] == pytest.approx(10.0, rel=0.01)  # std = C: eps ~ 10 at delta 1e-5
    assert laplace_epsilon(0.01, 100) == pytest.approx(2 * 10 / (0.01 / math.sqrt(2)))
    with pytest.raises(FedlabError):
        analytic_gaussian_epsilon(0.0, 1.0)


def test_report_writes_table_and_plot(tmp_path) -> None:
    cell = {"mean": 0.5, "std": 0.1}
    row = {"cosine": cell, "psnr": cell, "per_victim": {"cosine": [0.4, 0.6], "psnr": [1, 2]}}
    low = row | {"cosine": {"mean": 0.3, "std": 0.1}}
    levels = [
        {"mechanism": "gaussian", "std_over_c": 0.01, "epsilon": 2e4},
        {"mechanism": "laplace", "std_over_c": 0.01, "epsilon": 3e4},
    ]
    results = {
        "levels": levels,
        "delta": 1e-5,
        "config": {},
        "gradient": {
            "gaussian:0.01": {"none": low, "pgla": row},
            "laplace:0.01": {"none": row, "pgla": row},
        },
        "timing": [{"sampler": "ddim", "steps": 5, "seconds": 0.25}],
    }
    text = markdown(results)
    assert "| pgla | 0.5000 ± 0.1000 | 0.5000 ± 0.1000 |" in text
    assert "| pgla | - | ddim | 5 | 0.250 | - | - | - |" in text
    # none never reaches 0.5 at gaussian:0.01, only at laplace (eps 3e4); pgla reaches it at
    # both and beats none only at gaussian:0.01 (eps 2e4)
    assert "| none | 3e+04 | - | 0.000 |" in text
    assert "| pgla | 2e+04 | 2e+04 | 0.000 |" in text
    assert "| gaussian:0.01 | none | +0.00000 ± 0.00000 | 0/2 |" in text
    write_report(results, tmp_path)
    assert (tmp_path / "gradient_denoising.png").read_bytes()[:4] == b"\x89PNG"


def test_reconstruction_gain_is_paired_with_a_t_interval() -> None:
    cell = {"mean": 0.5, "std": 0.1}
    grad = {"cosine": cell, "psnr": cell, "per_victim": {"cosine": [0.5] * 4, "psnr": [1] * 4}}

    def recon(psnrs: list[float]) -> dict:
        return {"psnr": cell, "ssim": cell, "label_accuracy": cell, "per_victim": {"psnr": psnrs}}

    results = {
        "levels": [{"mechanism": "gaussian", "std_over_c": 0.01, "epsilon": 2e4}],
        "delta": 1e-5,
        "config": {"attack": "ig", "attack_iterations": 50, "attack_victims": 4},
        "gradient": {"gaussian:0.01": {"none": grad, "pgla": grad}},
        "reconstruction": {
            "gaussian:0.01": {"none": recon([7, 8, 9, 10]), "pgla": recon([10, 12, 12, 14])}
        },
    }
    text = markdown(results)
    # gains 3, 4, 3, 4: mean 3.5, sample std 0.577, t(0.975, 3) = 3.182 -> half width 0.92
    assert "| gaussian:0.01 | pgla | +3.50 ± 0.58 | +2.58 .. +4.42 | 4/4 |" in text
