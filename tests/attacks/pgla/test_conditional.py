"""The conditional variant (pgla-cond), the noise-range timestep prior and fine-tuning."""

from __future__ import annotations

import json

import pytest
import torch
from fedlab.attacks.pgla.denoisers import load_denoiser
from fedlab.attacks.pgla.pipeline import PGLAPipeline, build_unet
from fedlab.attacks.pgla.schedule import make_scheduler, start_timestep, start_timesteps
from fedlab.attacks.pgla.train import _init_model, pgla_loss, train_denoiser
from fedlab.attacks.pgla.training import DenoiserTrainConfig
from fedlab.attacks.pgla.transform import GradientImageTransform
from pgla_helpers import FAST_UNET, NUM_PARAMS

from fedlab.errors import FedlabError


def _config(**kw) -> DenoiserTrainConfig:
    base = {"batch_size": 2, "max_steps": 2, "checkpoint_every": 2, "num_fit": 2}
    return DenoiserTrainConfig(warmup_steps=1, model=FAST_UNET, **(base | kw))


def _tiny_cond_pipeline(seed: int = 0) -> PGLAPipeline:
    torch.manual_seed(seed)
    tf = GradientImageTransform(num_params=NUM_PARAMS, side=8, scale=0.125, clip_norm=1.0)
    unet = build_unet(sample_size=8, conditional=True, **FAST_UNET)
    return PGLAPipeline(unet=unet.eval(), scheduler=make_scheduler(), transform=tf)


def test_vectorised_start_steps_match_the_scalar_formula() -> None:
    abar = make_scheduler().alphas_cumprod
    ms = [0.01, 0.05, 0.3, 1.0, 4.0, 20.0, 1e4]
    got = start_timesteps(abar, torch.tensor(ms)).tolist()
    assert got == [start_timestep(abar, m) for m in ms]
    assert got == sorted(got) and got[-1] == 999


def test_noise_range_prior_draws_steps_up_to_the_start_step() -> None:
    pipe = _tiny_cond_pipeline()
    seen: list[torch.Tensor] = []
    unet = build_unet(sample_size=8, **FAST_UNET)
    uncond = PGLAPipeline(unet=unet, scheduler=pipe.scheduler, transform=pipe.transform)
    uncond.predict_noise = lambda x, t, c=None, lv=None: seen.append(t) or torch.zeros_like(x)
    loss = pgla_loss(uncond, torch.device("cpu"), timesteps="noise-range", noise_range=(0.05, 0.1))
    for i in range(20):
        loss(torch.randn(64, NUM_PARAMS) * 0.1, torch.Generator().manual_seed(i))
    t = torch.cat(seen)
    t_max = start_timestep(pipe.scheduler.alphas_cumprod, 0.1)
    assert int(t.max()) <= t_max and int(t.min()) == 0
    assert int(t.max()) >= t_max // 2  # the prior reaches the top of its range


def test_conditional_start_copies_the_source_exactly(tmp_path) -> None:
    train_denoiser(_config(), tmp_path / "src")
    source = PGLAPipeline.from_pretrained(tmp_path / "src")
    unet, transform = _init_model(_config(denoiser="pgla-cond", init_from=str(tmp_path / "src")))
    assert transform == source.transform
    side = source.transform.side
    x = torch.randn(3, 1, side, side)
    t = torch.tensor([3, 300, 900])
    cond = torch.randn_like(x)
    with torch.no_grad():
        expected = source.unet(x, t).sample
        got = unet(torch.cat([x, cond], 1), t, class_labels=torch.tensor([5.0, 50.0, 500.0]))
    assert torch.allclose(got.sample, expected, atol=1e-5)


@pytest.mark.extended  # 12 s: the fast tier's budget is 5 minutes (issue 29)
def test_conditional_training_lowers_its_loss(tmp_path) -> None:
    cfg = _config(denoiser="pgla-cond", max_steps=30, checkpoint_every=10, lr=3e-3, seed=3)
    state = train_denoiser(cfg, tmp_path)
    losses = [h["loss"] for h in state["history"]]
    assert losses[-1] < losses[0]
    saved = json.loads((tmp_path / "train_config.json").read_text())
    assert saved["denoiser"] == "pgla-cond"
    den = load_denoiser("pgla-cond", tmp_path, steps=3)
    flat = torch.randn(2, den.pipe.transform.num_params) * 0.01
    out = den.denoise(flat, noise_std=0.01, clip_norm=1.0)
    assert out.shape == flat.shape and torch.isfinite(out).all()
    assert not torch.equal(out, flat)
    assert torch.equal(den.denoise(flat, noise_std=0.0), flat)


def test_conditional_denoising_is_seeded_and_refuses_fixed_t() -> None:
    pipe = _tiny_cond_pipeline()
    y = torch.randn(2, 1, 8, 8)
    out = {}
    for start in ("adaptive", "noise"):
        a = pipe.denoise_images(y, 0.5, steps=4, start=start, generator=torch.manual_seed(1))
        b = pipe.denoise_images(y, 0.5, steps=4, start=start, generator=torch.manual_seed(1))
        assert torch.equal(a, b)
        out[start] = a
    assert not torch.equal(out["adaptive"], out["noise"])
    with pytest.raises(FedlabError, match="fixed_t applies to the unconditional PGLA"):
        pipe.denoise_images(y, 0.5, fixed_t=10)
    with pytest.raises(FedlabError, match="allowed: adaptive, noise"):
        pipe.denoise_images(y, 0.5, start="middle")
    with pytest.raises(FedlabError, match="needs the noisy gradient and its level"):
        pipe.predict_noise(y, torch.tensor([1, 1]))


def test_denoiser_kind_must_match_the_folder(tmp_path) -> None:
    train_denoiser(_config(), tmp_path / "plain")
    train_denoiser(_config(denoiser="pgla-cond"), tmp_path / "cond")
    with pytest.raises(FedlabError, match="load it as --denoise pgla-cond"):
        load_denoiser("pgla", tmp_path / "cond")
    with pytest.raises(FedlabError, match="load it as --denoise pgla$"):
        load_denoiser("pgla-cond", tmp_path / "plain")


def test_new_config_fields_are_validated_and_old_runs_resume(tmp_path) -> None:
    with pytest.raises(FedlabError, match="allowed: uniform, noise-range"):
        DenoiserTrainConfig.from_dict({"timesteps": "cosine"})
    with pytest.raises(FedlabError, match="allowed: pgla, pgla-cond, dncnn"):
        DenoiserTrainConfig.from_dict({"denoiser": "ddpm"})
    with pytest.raises(FedlabError, match="init_from .* is not a folder"):
        DenoiserTrainConfig.from_dict({"init_from": str(tmp_path / "missing")})
    train_denoiser(_config(max_steps=1, checkpoint_every=1), tmp_path)
    saved = json.loads((tmp_path / "train_config.json").read_text())
    for key in ("timesteps", "init_from"):  # a run saved before these fields existed
        saved.pop(key)
    (tmp_path / "train_config.json").write_text(json.dumps(saved))
    state = train_denoiser(_config(max_steps=2, checkpoint_every=1), tmp_path)
    assert state["step"] == 2
