"""The trained denoisers committed under simulations/results/pgla/denoisers/: they load through
the real loaders, match the victims' model, resume, and denoise a victim gradient they never saw.
"""

from __future__ import annotations

import importlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from fedlab.attacks.pgla.denoisers import load_denoiser
from fedlab.attacks.pgla.surrogate import clean_gradient, clip_l2, victim_images, victim_model
from fedlab.attacks.pgla.train import train_denoiser
from fedlab.attacks.pgla.training import DenoiserTrainConfig, read_latest, resolve_checkpoint

SIMULATIONS = Path(__file__).resolve().parents[3] / "simulations"
SHIPPED = SIMULATIONS / "results" / "pgla" / "denoisers"
NAMES = {"pgla": "pgla", "dncnn": "dncnn"}  # folder -> denoiser registry name


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1).item()


@pytest.fixture(scope="module")
def victim() -> torch.Tensor:
    """The clipped gradient of the last benchmark victim ('text'): a photo no denoiser saw."""
    images, labels = victim_images(12)
    return clip_l2(clean_gradient(victim_model(10_011), images[11], labels[11]), 1.0)


@pytest.mark.parametrize("folder", sorted(NAMES))
def test_shipped_run_resumes_and_matches_the_victim_model(folder, victim) -> None:
    run = SHIPPED / folder
    latest = read_latest(run)
    assert latest is not None and (run / latest["path"]).is_dir()
    assert resolve_checkpoint(run) == run / latest["path"]
    assert (run / latest["path"] / "optimizer.pt").is_file()  # resumable, not only loadable
    cfg = DenoiserTrainConfig(**json.loads((run / "train_config.json").read_text()))
    assert cfg.denoiser == NAMES[folder]
    saved = run / latest["path"] / "transform" / "transform_config.json"
    transform = json.loads(saved.read_text())
    assert transform["_class_name"] == "GradientImageTransform"
    assert transform["num_params"] == victim.numel() and transform["side"] == 128
    model = run / latest["path"] / ("unet" if folder == "pgla" else "dncnn")
    assert (model / "diffusion_pytorch_model.safetensors").is_file()
    assert not (run / latest["path"] / "transform.json").exists()  # converted, not duplicated


@pytest.mark.parametrize("folder", sorted(NAMES))
def test_shipped_run_resumes_one_step_in_a_copy(folder, tmp_path) -> None:
    run = shutil.copytree(SHIPPED / folder, tmp_path / folder)
    step = read_latest(run)["step"]
    cfg = DenoiserTrainConfig(**json.loads((run / "train_config.json").read_text()))
    state = train_denoiser(replace(cfg, max_steps=step + 1), run)
    assert state["step"] == step + 1 and len(state["history"]) == step // 100 + 2
    latest = read_latest(run)
    assert latest["path"] == f"checkpoints/step-{step + 1:07d}"
    den = load_denoiser(NAMES[folder], run, **({"steps": 2} if folder == "pgla" else {}))
    assert den.name == NAMES[folder]


@pytest.mark.parametrize(
    "folder,std_over_c,min_gain",
    [("pgla", 0.01, 0.2), ("dncnn", 0.01, 0.2), ("pgla", 0.001, 0.0), ("dncnn", 0.001, 0.0)],
)
def test_shipped_denoiser_cleans_an_unseen_victim(folder, std_over_c, min_gain, victim) -> None:
    noise = torch.randn(victim.shape, generator=torch.Generator().manual_seed(5))
    noisy = victim + std_over_c * noise
    options = {"sampler": "ddim", "steps": 2} if folder == "pgla" else {}
    den = load_denoiser(NAMES[folder], SHIPPED / folder, **options)
    out = den.denoise(noisy, noise_std=std_over_c, clip_norm=1.0)
    assert out.shape == victim.shape and torch.isfinite(out).all()
    assert _cosine(out, victim) > _cosine(noisy, victim) + min_gain


def test_residual_script_compares_the_shipped_denoisers(capsys, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(SIMULATIONS))
    script = importlib.import_module("pgla_residuals")
    folders = ["--pgla", str(SHIPPED / "pgla"), "--dncnn", str(SHIPPED / "dncnn")]
    assert script.main([*folders, "--levels", "2", "--victims", "2", "--ddim-steps", "2"]) == 0
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| gaussian:0.01 ")]
    pgla, dncnn, average, left_pgla, left_dncnn, agreement = map(float, rows[0].split("|")[2:-1])
    assert pgla > 0.85 and dncnn > 0.85 and 0.85 < average <= 1
    assert 0 < left_pgla < 0.5 and 0 < left_dncnn < 0.5  # each removes over half the noise
    assert -1 <= agreement <= 1
