"""Registry entries: classical denoisers help on a smooth signal; learned ones need a folder."""

from __future__ import annotations

import math

import pytest
import torch
from fedlab.attacks.pgla.denoisers import load_denoiser
from fedlab.attacks.pgla.dncnn import DnCNN, load_dncnn, save_dncnn
from fedlab.attacks.pgla.transform import GradientImageTransform
from pgla_helpers import NUM_PARAMS, tiny_pipeline

from fedlab.errors import FedlabError
from fedlab.registry import DENOISERS


def smooth_signal(n: int = 4096) -> torch.Tensor:
    """Smooth in 2-D once laid out as a 64x64 image (a sum of low-frequency waves)."""
    side = int(math.isqrt(n))
    yy, xx = torch.meshgrid(torch.linspace(0, 1, side), torch.linspace(0, 1, side), indexing="ij")
    img = torch.sin(2 * math.pi * xx) * torch.cos(3 * math.pi * yy) + 0.5 * yy
    return img.reshape(-1).double()


def test_registry_lists_every_denoiser() -> None:
    names = set(DENOISERS.names())
    assert {"none", "gaussian", "wiener", "wavelet", "dncnn", "pgla", "pgla-fixed"} <= names
    with pytest.raises(FedlabError, match="known: .*pgla"):
        DENOISERS.get("diffusion")


@pytest.mark.parametrize("name", ["gaussian", "wiener", "wavelet"])
@pytest.mark.parametrize("sigma", [0.05, 0.3])
def test_classical_denoisers_reduce_error_on_smooth_signal(name: str, sigma: float) -> None:
    clean = smooth_signal()
    g = torch.Generator().manual_seed(1)
    noisy = clean + sigma * torch.randn(clean.shape, generator=g, dtype=torch.float64)
    den = load_denoiser(name).denoise(noisy[None], noise_std=sigma)[0]
    before = (noisy - clean).pow(2).mean()
    after = (den - clean).pow(2).mean()
    assert after < 0.7 * before, (name, float(before), float(after))


def test_classical_with_blind_estimate_and_zero_noise() -> None:
    clean = smooth_signal()
    noisy = clean + 0.2 * torch.randn(
        clean.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64
    )
    den = load_denoiser("wiener").denoise(noisy, noise_std=None)
    assert (den - clean).pow(2).mean() < 0.5 * (noisy - clean).pow(2).mean()
    assert torch.equal(load_denoiser("gaussian").denoise(noisy, noise_std=0.0), noisy)
    assert load_denoiser("none").denoise(noisy, noise_std=1.0) is noisy
    with pytest.raises(FedlabError, match=">= 0"):
        load_denoiser("wiener").denoise(noisy, noise_std=-1.0)


def test_gaussian_sure_keeps_a_rough_signal() -> None:
    """White 'signal' with tiny noise: blurring would hurt, SURE keeps the input."""
    g = torch.Generator().manual_seed(3)
    clean = torch.randn(4096, generator=g, dtype=torch.float64)
    noisy = clean + 0.01 * torch.randn(4096, generator=g, dtype=torch.float64)
    assert torch.equal(load_denoiser("gaussian").denoise(noisy, noise_std=0.01), noisy)


def test_learned_denoisers_need_a_folder(tmp_path) -> None:
    for name in ("dncnn", "pgla", "pgla-fixed"):
        with pytest.raises(FedlabError, match="needs a folder"):
            load_denoiser(name)
    with pytest.raises(FedlabError, match="does not exist"):
        load_denoiser("pgla", tmp_path / "missing")
    with pytest.raises(FedlabError, match="cannot load a DnCNN"):
        load_denoiser("dncnn", tmp_path)


def test_pgla_entries_from_a_saved_folder(tmp_path) -> None:
    tiny_pipeline().save_pretrained(tmp_path)
    flat = torch.randn(2, NUM_PARAMS) * 0.1
    for name in ("pgla", "pgla-fixed"):
        den = load_denoiser(name, tmp_path, steps=3)
        out = den.denoise(flat, noise_std=0.05)
        assert out.shape == flat.shape and torch.isfinite(out).all()
        assert torch.equal(den.denoise(flat, noise_std=0.0), flat)
    fixed = load_denoiser("pgla-fixed", tmp_path, fixed_t=7)
    assert fixed.options["fixed_t"] == 7


def test_dncnn_round_trip_and_identity_at_zero(tmp_path) -> None:
    torch.manual_seed(0)
    model = DnCNN(depth=3, channels=4).eval()
    tf = GradientImageTransform(num_params=NUM_PARAMS, side=8, scale=0.125)
    save_dncnn(model, tf, tmp_path)
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert files == [
        "dncnn/config.json",
        "dncnn/diffusion_pytorch_model.safetensors",
        "transform/transform_config.json",
    ]
    loaded, tf2 = load_dncnn(tmp_path)
    assert tf2 == tf
    assert (loaded.config["depth"], loaded.config["channels"]) == (3, 4)
    den = load_denoiser("dncnn", tmp_path)
    flat = torch.randn(3, NUM_PARAMS) * 0.1
    out = den.denoise(flat, noise_std=0.05)
    with torch.no_grad():
        ref = tf.from_image(model(tf.to_image(flat), torch.full((3,), 0.05 / 0.125)))
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.equal(den.denoise(flat, noise_std=0.0), flat)
    with pytest.raises(FedlabError, match="trained for 60"):
        den.denoise(torch.randn(70), noise_std=0.1)


def test_dncnn_folder_errors_name_the_fix(tmp_path) -> None:
    with pytest.raises(FedlabError, match="no dncnn/ folder"):
        load_dncnn(tmp_path)
    (tmp_path / "transform.json").write_text("{}")
    with pytest.raises(FedlabError, match="convert_pgla_denoisers.py"):
        load_dncnn(tmp_path)
    save_dncnn(DnCNN(depth=3, channels=4), GradientImageTransform.for_size(60), tmp_path / "d")
    weights = tmp_path / "d" / "dncnn" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(FedlabError, match="DnCNN folder .* is not a readable safetensors file"):
        load_dncnn(tmp_path / "d")
    with pytest.raises(FedlabError, match="depth >= 2"):
        DnCNN(depth=1)
