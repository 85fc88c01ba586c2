"""The trained denoisers shipped as package data (attacks/pgla/weights/): they load through the
real loaders, match the victims' model, resume from their training runs (kept under
simulations/results/pgla/denoisers/ without the weights), and denoise a victim gradient they
never saw.
"""

from __future__ import annotations

import importlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from fedlab.attacks.audit.config import AuditConfig
from fedlab.attacks.pgla.denoisers import load_denoiser
from fedlab.attacks.pgla.shipped import SHIPPED_DENOISERS, shipped_denoiser
from fedlab.attacks.pgla.surrogate import clean_gradient, clip_l2, victim_images, victim_model
from fedlab.attacks.pgla.train import train_denoiser
from fedlab.attacks.pgla.training import DenoiserTrainConfig, read_latest, resolve_checkpoint

SIMULATIONS = Path(__file__).resolve().parents[3] / "simulations"
RUNS = SIMULATIONS / "results" / "pgla" / "denoisers"  # the training runs, minus the weights
NAMES = {"pgla": "pgla", "dncnn": "dncnn"}  # folder -> denoiser registry name
MODEL = {"pgla": "unet", "dncnn": "dncnn"}  # folder -> model subfolder


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1).item()


@pytest.fixture(scope="module")
def victim() -> torch.Tensor:
    """The clipped gradient of the last benchmark victim ('text'): a photo no denoiser saw."""
    images, labels = victim_images(12)
    return clip_l2(clean_gradient(victim_model(10_011), images[11], labels[11]), 1.0)


def _restored_run(folder: str, tmp_path: Path) -> Path:
    """A copy of the training run with the shipped weights put back into its checkpoint, as
    ``simulations/ship_pgla_denoisers.py restore`` does."""
    run = shutil.copytree(RUNS / folder, tmp_path / folder)
    shutil.copytree(shipped_denoiser(folder), resolve_checkpoint(run), dirs_exist_ok=True)
    return run


def test_the_audit_defaults_to_the_shipped_denoisers() -> None:
    config = AuditConfig()
    for name in NAMES.values():
        assert config.denoiser_dir(name) == str(SHIPPED_DENOISERS[name])
        assert SHIPPED_DENOISERS[name] == shipped_denoiser(name)


@pytest.mark.parametrize("folder", sorted(NAMES))
def test_shipped_denoiser_matches_the_victim_model_and_its_run(folder, victim) -> None:
    shipped = shipped_denoiser(folder)
    assert resolve_checkpoint(shipped) == shipped  # a plain denoiser folder, no latest.json
    files = {str(p.relative_to(shipped)) for p in shipped.rglob("*") if p.is_file()}
    assert all(f.endswith((".safetensors", ".json")) for f in files), files  # no pickle
    transform = json.loads((shipped / "transform" / "transform_config.json").read_text())
    assert transform["_class_name"] == "GradientImageTransform"
    assert transform["num_params"] == victim.numel() and transform["side"] == 128
    assert (shipped / MODEL[folder] / "diffusion_pytorch_model.safetensors").is_file()
    assert not (shipped / "transform.json").exists()  # converted, not duplicated
    run = RUNS / folder
    latest = read_latest(run)
    assert latest is not None and resolve_checkpoint(run) == run / latest["path"]
    assert (run / latest["path"] / "optimizer.pt").is_file()  # resumable once restored
    assert not (run / latest["path"] / MODEL[folder]).exists()  # the weights live only once
    cfg = DenoiserTrainConfig(**json.loads((run / "train_config.json").read_text()))
    assert cfg.denoiser == NAMES[folder]


@pytest.mark.parametrize("folder", sorted(NAMES))
def test_shipped_run_resumes_one_step_in_a_copy(folder, tmp_path) -> None:
    run = _restored_run(folder, tmp_path)
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
    den = load_denoiser(NAMES[folder], shipped_denoiser(folder), **options)
    out = den.denoise(noisy, noise_std=std_over_c, clip_norm=1.0)
    assert out.shape == victim.shape and torch.isfinite(out).all()
    assert _cosine(out, victim) > _cosine(noisy, victim) + min_gain


def test_residual_script_compares_the_shipped_denoisers(capsys, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(SIMULATIONS))
    script = importlib.import_module("pgla_residuals")
    # --pgla and --dncnn default to the shipped denoisers
    assert script.main(["--levels", "2", "--victims", "2", "--ddim-steps", "2"]) == 0
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| gaussian:0.01 ")]
    pgla, dncnn, average, left_pgla, left_dncnn, agreement = map(float, rows[0].split("|")[2:-1])
    assert pgla > 0.85 and dncnn > 0.85 and 0.85 < average <= 1
    assert 0 < left_pgla < 0.5 and 0 < left_dncnn < 0.5  # each removes over half the noise
    assert -1 <= agreement <= 1


@pytest.mark.parametrize("folder", sorted(NAMES))
def test_ship_script_copies_a_run_into_the_package_layout(folder, tmp_path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(SIMULATIONS))
    script = importlib.import_module("ship_pgla_denoisers")
    run = _restored_run(folder, tmp_path)
    dest = script.ship(run, tmp_path / "weights" / folder)
    shipped = shipped_denoiser(folder)
    ours = {p.relative_to(dest): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    theirs = {p.relative_to(shipped): p.read_bytes() for p in shipped.rglob("*") if p.is_file()}
    assert ours == theirs  # the same files, bit for bit, and no optimizer state
