"""simulations/convert_pgla_denoisers.py turns a folder of the old layout into the mixin one."""

from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path

import pytest
import torch
from fedlab.attacks.pgla.denoisers import load_denoiser
from fedlab.attacks.pgla.dncnn import DnCNN
from pgla_helpers import NUM_PARAMS, tiny_pipeline
from safetensors.torch import save_file

SIMULATIONS = Path(__file__).resolve().parents[3] / "simulations"


@pytest.fixture
def convert(monkeypatch):
    monkeypatch.syspath_prepend(str(SIMULATIONS))
    return importlib.import_module("convert_pgla_denoisers")


def write_old_dncnn(folder: Path, model: DnCNN, transform: dict) -> None:
    """A DnCNN folder exactly as the hand-written saver wrote it before the mixins."""
    folder.mkdir(parents=True)
    depth, channels = model.config["depth"], model.config["channels"]
    (folder / "dncnn_config.json").write_text(json.dumps({"depth": depth, "channels": channels}))
    save_file(model.state_dict(), str(folder / "dncnn.safetensors"))
    (folder / "transform.json").write_text(json.dumps(transform))


def test_old_dncnn_run_converts_to_the_same_outputs(tmp_path, convert, caplog) -> None:
    torch.manual_seed(0)
    model = DnCNN(depth=3, channels=4).eval()
    transform = {"num_params": NUM_PARAMS, "side": 8, "scale": 0.125, "clip_norm": 1.0}
    run = tmp_path / "run"
    write_old_dncnn(run / "checkpoints" / "step-0000003", model, transform)
    (run / "latest.json").write_text(json.dumps({"step": 3, "path": "checkpoints/step-0000003"}))
    assert convert.main([str(run)]) == 0
    checkpoint = run / "checkpoints" / "step-0000003"
    assert sorted(p.name for p in checkpoint.iterdir()) == ["dncnn", "transform"]
    flat = torch.randn(2, NUM_PARAMS) * 0.1
    with torch.no_grad():
        scale = transform["scale"]
        image = flat.view(2, -1) / scale
        padded = torch.zeros(2, 64)
        padded[:, :NUM_PARAMS] = image
        expected = model(padded.view(2, 1, 8, 8), torch.full((2,), 0.05 / scale))
        expected = expected.view(2, -1)[:, :NUM_PARAMS] * scale
    out = load_denoiser("dncnn", run).denoise(flat, noise_std=0.05)
    assert torch.equal(out, expected)
    caplog.set_level(logging.INFO, logger="fedlab.convert_pgla_denoisers")
    assert convert.main([str(run)]) == 0  # a second run leaves a converted folder alone
    assert f"{run / 'checkpoints' / 'step-0000003'}: already converted" in caplog.text


def test_old_pgla_folder_converts_and_bad_folders_are_refused(tmp_path, convert) -> None:
    pipe = tiny_pipeline()
    pipe.save_pretrained(tmp_path / "pgla")
    new = tmp_path / "pgla" / "transform"
    (tmp_path / "pgla" / "transform.json").write_text(json.dumps(pipe.transform.to_dict()))
    for path in new.iterdir():
        path.unlink()
    new.rmdir()
    assert convert.main([str(tmp_path / "pgla")]) == 0
    assert not (tmp_path / "pgla" / "transform.json").exists()
    assert load_denoiser("pgla", tmp_path / "pgla", steps=2).pipe.transform == pipe.transform
    (tmp_path / "empty").mkdir()
    assert convert.main([str(tmp_path / "empty")]) == 2
    assert convert.main([str(tmp_path / "missing")]) == 2
