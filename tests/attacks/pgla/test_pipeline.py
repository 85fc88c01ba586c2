"""The PGLA pipeline on diffusers' tiny seeded UNet: shapes, identity at M = 0, save/load."""

from __future__ import annotations

import json

import pytest
import torch
from fedlab.attacks.pgla.pipeline import PGLAPipeline
from fedlab.attacks.pgla.schedule import make_scheduler
from pgla_helpers import NUM_PARAMS, tiny_pipeline, tiny_unet

from fedlab.errors import FedlabError


@pytest.mark.parametrize("sampler,steps", [("ddim", 5), ("ddpm", 1)])
def test_denoise_shapes_and_finiteness(sampler: str, steps: int) -> None:
    pipe = tiny_pipeline()
    flat = torch.randn(3, NUM_PARAMS) * 0.1
    out = pipe.denoise(
        flat, 0.02, sampler=sampler, steps=steps, generator=torch.Generator().manual_seed(0)
    )
    assert out.shape == flat.shape and torch.isfinite(out).all()
    assert not torch.equal(out, flat)
    one = pipe.denoise(flat[0], 0.02, sampler="ddim", steps=3)
    assert one.shape == (NUM_PARAMS,)


def test_m_zero_returns_input_unchanged() -> None:
    pipe = tiny_pipeline()
    flat = torch.randn(2, NUM_PARAMS)
    assert pipe.denoise(flat, 0.0) is flat
    img = pipe.transform.to_image(flat)
    assert pipe.denoise_images(img, 0.0, fixed_t=50) is img


def test_reverse_chains_outputs_and_step_count() -> None:
    """Each UNet call sees the previous step's output, and DDIM uses about `steps` calls."""
    pipe = tiny_pipeline()
    seen: list[torch.Tensor] = []
    original = pipe.unet.forward

    def spy(x, t, *args, **kwargs):
        seen.append(x.clone())
        return original(x, t, *args, **kwargs)

    pipe.unet.forward = spy
    x = torch.randn(1, 1, 8, 8)
    pipe.reverse(x, 99, sampler="ddim", steps=10)
    assert len(seen) == 10
    assert torch.equal(seen[0], x)
    assert all(not torch.equal(a, b) for a, b in zip(seen, seen[1:], strict=False))
    seen.clear()
    pipe.reverse(x, 4, sampler="ddpm")
    assert len(seen) == 5  # t = 4, 3, 2, 1, 0


def test_adaptive_start_scales_input(monkeypatch) -> None:
    pipe = tiny_pipeline()
    calls = {}

    def fake_reverse(x, t, **kwargs):
        calls["x"], calls["t"] = x, t
        return x

    monkeypatch.setattr(pipe, "reverse", fake_reverse)
    y = torch.ones(1, 1, 8, 8)
    pipe.denoise_images(y, 1.0)
    assert calls["t"] == pipe.start_step(1.0)
    assert torch.allclose(calls["x"], y * 0.5**0.5)
    pipe.denoise_images(y, 1.0, fixed_t=300)
    assert calls["t"] == 300
    assert torch.allclose(calls["x"], y * pipe.scheduler.alphas_cumprod[300].sqrt())


def test_save_load_round_trip(tmp_path) -> None:
    pipe = tiny_pipeline(seed=3)
    pipe.save_pretrained(tmp_path / "den")
    loaded = PGLAPipeline.from_pretrained(tmp_path / "den")
    assert loaded.transform == pipe.transform
    assert loaded.scheduler.config.num_train_timesteps == 1000
    assert loaded.scheduler.config.beta_schedule == "linear"
    flat = torch.randn(2, NUM_PARAMS) * 0.1
    a = pipe.denoise(flat, 0.05, sampler="ddim", steps=4)
    b = loaded.denoise(flat, 0.05, sampler="ddim", steps=4)
    assert torch.allclose(a, b, atol=1e-6)


def test_bad_folders_give_fedlab_error(tmp_path) -> None:
    with pytest.raises(FedlabError, match="does not exist"):
        PGLAPipeline.from_pretrained(tmp_path / "missing")
    tiny_pipeline().save_pretrained(tmp_path / "den")
    weights = tmp_path / "den" / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(FedlabError, match="unet.* is not a readable safetensors file"):
        PGLAPipeline.from_pretrained(tmp_path / "den")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FedlabError, match="transform_config.json not found"):
        PGLAPipeline.from_pretrained(tmp_path / "empty")


def test_saved_layout_is_diffusers_mixins_and_safetensors_only(tmp_path) -> None:
    pipe = tiny_pipeline()
    pipe.save_pretrained(tmp_path)
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert files == [
        "scheduler/scheduler_config.json",
        "transform/transform_config.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
    ]
    saved = json.loads((tmp_path / "transform" / "transform_config.json").read_text())
    assert saved["_class_name"] == "GradientImageTransform"
    loaded = PGLAPipeline.from_pretrained(tmp_path)
    assert loaded.transform == pipe.transform
    x = torch.randn(2, 1, 8, 8)
    t = torch.tensor([3, 500])
    with torch.no_grad():
        assert torch.equal(loaded.predict_noise(x, t), pipe.predict_noise(x, t))


def test_old_layout_is_refused_with_the_conversion_command(tmp_path) -> None:
    tiny_pipeline().save_pretrained(tmp_path)
    config = tmp_path / "transform" / "transform_config.json"
    (tmp_path / "transform.json").write_text(config.read_text())
    config.unlink()
    with pytest.raises(FedlabError, match="convert_pgla_denoisers.py"):
        PGLAPipeline.from_pretrained(tmp_path)


def test_gradient_of_another_model_is_refused() -> None:
    pipe = tiny_pipeline()
    with pytest.raises(FedlabError, match="trained for 60"):
        pipe.denoise(torch.randn(65), 0.1)  # larger than the 8x8 square
    with pytest.raises(FedlabError, match="trained for 60"):
        pipe.denoise(torch.randn(59), 0.1)


def test_tiny_unet_loss_decreases_in_a_few_steps() -> None:
    from fedlab.attacks.pgla.train import pgla_loss

    pipe = tiny_pipeline(seed=1)
    pipe.unet.train()
    g = torch.Generator().manual_seed(0)
    # structured "clean gradients": smooth ramps with random amplitude
    base = torch.linspace(-1, 1, NUM_PARAMS) * pipe.transform.scale
    data = base * (1 + torch.rand(64, 1, generator=g))
    loss_fn = pgla_loss(pipe, torch.device("cpu"))
    opt = torch.optim.Adam(pipe.unet.parameters(), lr=3e-3)

    def eval_loss() -> float:
        gen = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return float(sum(loss_fn(data, gen) for _ in range(8)) / 8)

    before = eval_loss()
    for i in range(40):
        loss = loss_fn(data[(i * 8) % 64 : (i * 8) % 64 + 8], g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert eval_loss() < 0.8 * before


def test_mismatched_unet_is_refused() -> None:
    from fedlab.attacks.pgla.transform import GradientImageTransform

    tf = GradientImageTransform(num_params=200, side=16)
    with pytest.raises(FedlabError, match="sample_size=16"):
        PGLAPipeline(unet=tiny_unet(), scheduler=make_scheduler(), transform=tf)
