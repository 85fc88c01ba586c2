"""The shared diffusion module: factories, the start-step rule, sampling, training + resume."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import TensorDataset

from fedlab.diffusion import (
    TINY_TEST_CONFIG,
    build_unet,
    denoising_step,
    heldout_denoising_loss,
    load_unet,
    make_scheduler,
    noise_to,
    reverse,
    start_step,
    start_steps,
    train_with_checkpoints,
)
from fedlab.diffusion.sampling import plan, unet_eps
from fedlab.errors import FedlabError
from fedlab.training import TrainConfig, train


def tiny_unet(seed: int = 0, **kw) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_unet("tiny", **kw).eval()


def test_factories_unconditional_and_class_conditional():
    x = torch.randn(2, 3, 8, 8)
    t = torch.tensor([3, 500])
    assert tiny_unet()(x, t).sample.shape == x.shape
    cond = tiny_unet(num_class_embeds=4)
    a = cond(x, t, class_labels=torch.tensor([0, 0])).sample
    b = cond(x, t, class_labels=torch.tensor([1, 1])).sample
    assert a.shape == x.shape and not torch.equal(a, b)
    with pytest.raises(FedlabError, match="unknown UNet config 'huge'"):
        build_unet("huge")
    with pytest.raises(FedlabError, match="invalid UNet config"):
        build_unet({**TINY_TEST_CONFIG, "block_out_channels": (4,)})


def test_start_step_rule_is_the_first_step_below_the_target_and_pglas():
    from fedlab.attacks.pgla.schedule import start_timestep

    ac = make_scheduler().alphas_cumprod
    levels = [1e-4, 0.01, 0.1, 0.5, 1.0, 3.0, 1000.0]
    for m in levels[:-1]:
        t = start_step(ac, m)
        target = torch.tensor(1 / (1 + m * m), dtype=ac.dtype)  # compared in the schedule's dtype
        assert ac[t] < target and (t == 0 or ac[t - 1] >= target)
    assert start_timestep is start_step  # PGLA uses the shared rule itself
    steps = start_steps(ac, torch.tensor(levels))
    assert steps.tolist() == sorted(steps.tolist()) and steps[-1] == 999
    assert start_step(ac, 0.0) is None
    with pytest.raises(FedlabError, match="finite number >= 0"):
        start_step(ac, -1.0)


def test_ddim_plan_takes_about_the_asked_steps():
    cfg = make_scheduler().config
    _, ts = plan(cfg, 299, sampler="ddim", steps=20)
    assert ts[0] == 299 and len(ts) == 20 and ts[-1] >= 0
    _, ts = plan(cfg, 10, sampler="ddpm", steps=20)
    assert ts == list(range(10, -1, -1))
    with pytest.raises(FedlabError, match="start step 1000"):
        plan(cfg, 1000, sampler="ddim", steps=20)
    with pytest.raises(FedlabError, match="unknown sampler"):
        plan(cfg, 10, sampler="euler", steps=20)


def test_reverse_is_deterministic_and_calls_guidance_down_to_the_end():
    sched = make_scheduler()
    unet = tiny_unet()
    x0 = torch.rand(2, 3, 8, 8) * 2 - 1
    x = noise_to(x0, 200, torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)),
                 sched.alphas_cumprod)  # fmt: skip
    calls = []

    def hook(x_prev, x0_est, t, t_prev, weight):
        calls.append((t, t_prev, weight))
        return x_prev

    a = reverse(unet_eps(unet), sched.config, x, 200, steps=5, guidance=hook)
    b = reverse(unet_eps(unet), sched.config, x, 200, steps=5)
    assert torch.equal(a, b) and a.shape == x.shape
    assert calls[-1][1] == -1 and calls[-1][2] == pytest.approx(1.0)
    assert [c[0] for c in calls] == sorted((c[0] for c in calls), reverse=True)
    # a hook that moves x0 moves the output by weight * shift at the last step
    shifted = reverse(unet_eps(unet), sched.config, x, 200, steps=5,
                      guidance=lambda xp, e, t, tp, w: xp + w * 0.5 if tp < 0 else xp)  # fmt: skip
    assert torch.allclose(shifted, a + 0.5)


def test_denoising_step_trains_through_the_loop():
    sched = make_scheduler()
    unet = tiny_unet().train()
    data = TensorDataset(torch.rand(16, 3, 8, 8) * 2 - 1)
    result = train(unet, data, denoising_step(sched), TrainConfig(steps=3, batch_size=8,
                   optimizer="adam", lr=1e-3))  # fmt: skip
    assert result.steps == 3 and result.metrics["loss"] > 0
    loss = heldout_denoising_loss(unet, sched, data.tensors[0], timesteps=(10, 500))
    assert set(loss) == {"denoise-loss", "denoise-loss-t10", "denoise-loss-t500"}
    assert loss == heldout_denoising_loss(unet, sched, data.tensors[0], timesteps=(10, 500))
    with pytest.raises(FedlabError, match="t_max 0"):
        denoising_step(sched, t_max=0)


def test_checkpoints_resume_equals_an_uninterrupted_run(tmp_path):
    sched = make_scheduler()
    data = TensorDataset(torch.rand(16, 3, 8, 8) * 2 - 1)
    cfg = TrainConfig(steps=1, batch_size=4, optimizer="adam", lr=1e-3)

    def run(out, total):
        model = tiny_unet().train()
        train_with_checkpoints(model, data, denoising_step(sched), cfg, out=out,
                               total_steps=total, checkpoint_every=2, seed=3)  # fmt: skip
        return model

    whole = run(tmp_path / "a", 4)
    run(tmp_path / "b", 2)
    resumed = run(tmp_path / "b", 4)  # starts from a fresh model, loads step 2
    for (k, v), w in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(v, w), k
    latest = json.loads((tmp_path / "b" / "latest.json").read_text())
    assert latest["step"] == 4 and [h["step"] for h in latest["history"]] == [2, 4]
    assert len(list((tmp_path / "b" / "checkpoints").glob("step-*"))) == 2


def test_load_unet_folders_and_errors(tmp_path):
    unet = tiny_unet()
    unet.save_pretrained(tmp_path / "pipe" / "unet", safe_serialization=True)
    loaded = load_unet(tmp_path / "pipe")  # a pipeline folder holding unet/
    assert torch.equal(loaded.conv_in.weight, unet.conv_in.weight)
    with pytest.raises(FedlabError, match="does not exist") as err:
        load_unet(tmp_path / "missing")
    assert "\n" not in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FedlabError, match="empty' has no diffusion_pytorch_model.safetensors"):
        load_unet(tmp_path / "empty")
