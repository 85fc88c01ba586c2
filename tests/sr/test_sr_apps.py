"""The diffusion and diffsr apps in process (no Ray) on diffusers' tiny UNet."""

from __future__ import annotations

import json

import pytest
import torch
from fedlab.clients.sr.app import diffsr, diffusion
from safetensors.torch import load_file

from fedlab.diffusion import load_unet
from fedlab.inprocess import run_in_process

TINY = {"unet": "tiny", "crop-size": 8, "heldout-crops": 1, "crops-per-client": 16,
        "num-supernodes": 2, "num-server-rounds": 1, "local-steps": 1, "batch-size": 4}  # fmt: skip


def test_diffusion_app_trains_and_saves_a_loadable_prior(tmp_path):
    config = diffusion.resolve_config({**TINY, "out-dir": str(tmp_path)})
    summary = run_in_process(diffusion, config)
    assert summary["rounds-finished"] == 1
    evaluation = summary["final"]["evaluate"]
    assert evaluation["denoise-loss"] > 0 and "denoise-loss-t750" in evaluation
    prior = load_unet(tmp_path / "prior")
    saved = load_file(tmp_path / "model.safetensors")
    assert torch.equal(prior.conv_in.weight, saved["conv_in.weight"])


def test_diffsr_app_reports_every_method_and_scale_per_round(tmp_path):
    initial = tmp_path / "init"
    run_in_process(diffusion, diffusion.resolve_config({**TINY, "out-dir": str(initial)}))
    config = diffsr.resolve_config({
        **TINY, "init-from": str(initial / "prior"), "train-prior": False, "eval-crops": 1,
        "eval-crop-size": 16, "scales": "2,3", "methods": "bicubic,sdedit,prf,ddnm",
        "fixed-t": "0,50", "sample-steps": 2, "out-dir": str(tmp_path / "sr"),
    })  # fmt: skip
    run_in_process(diffsr, config)
    history = json.loads((tmp_path / "sr" / "history.json").read_text())
    metrics = history[-1]["client-evaluate"]
    for name in ("bicubic", "t0", "t50", "prf", "ddnm"):
        for scale in ("x2", "x3"):
            assert f"{name}-haarpsi-{scale}-s0" in metrics
    # t = 0 is the bicubic input; train-prior=false leaves the prior as it was
    assert metrics["t0-psnr-x2-s0"] == pytest.approx(metrics["bicubic-psnr-x2-s0"])
    assert metrics["prf-t-x3"] >= metrics["prf-t-x2"]
    before, after = (
        load_file(initial / "model.safetensors"),
        load_file(tmp_path / "sr" / "model.safetensors"),
    )
    assert all(torch.equal(before[k], after[k]) for k in before)
