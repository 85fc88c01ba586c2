"""Training: config validation, checkpoints, resume, the CLI and its errors."""

from __future__ import annotations

import json

import pytest
from fedlab.attacks.pgla.cli import main
from fedlab.attacks.pgla.denoisers import load_denoiser
from fedlab.attacks.pgla.train import resolve_config, shipped_configs, train_denoiser
from fedlab.attacks.pgla.training import DenoiserTrainConfig
from pgla_helpers import FAST_UNET

from fedlab.errors import FedlabError


def test_every_shipped_config_validates() -> None:
    assert {"small", "gpu", "dncnn-small", "tiny"} <= set(shipped_configs())
    for name in shipped_configs():
        cfg = resolve_config(name)
        assert cfg.max_steps >= 1
    small = resolve_config("small")
    assert small.time_limit_s <= 1800 and small.device == "cpu"


def test_bad_configs_are_refused(tmp_path) -> None:
    with pytest.raises(FedlabError, match="unknown training config keys \\['lr_max'\\]"):
        DenoiserTrainConfig.from_dict({"lr_max": 1.0})
    with pytest.raises(FedlabError, match="allowed: digits, sample-patches"):
        DenoiserTrainConfig.from_dict({"surrogate": "cifar10"})
    with pytest.raises(FedlabError, match="one of"):
        resolve_config("nonexistent")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(FedlabError, match="not valid JSON"):
        resolve_config(str(bad))


@pytest.mark.parametrize(
    "denoiser,model", [("pgla", FAST_UNET), ("dncnn", {"depth": 2, "channels": 2})]
)
def test_train_checkpoint_resume_and_load(tmp_path, denoiser, model) -> None:
    cfg = DenoiserTrainConfig(
        denoiser=denoiser,
        batch_size=1,
        max_steps=2,
        checkpoint_every=1,
        num_fit=2,
        warmup_steps=1,
        model=model,
    )
    state = train_denoiser(cfg, tmp_path)
    assert state["step"] == 2 and len(state["history"]) == 2
    latest = json.loads((tmp_path / "latest.json").read_text())
    assert latest["path"] == "checkpoints/step-0000002"
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "step-0000001",
        "step-0000002",
    ]
    cfg.max_steps = 3
    state = train_denoiser(cfg, tmp_path)
    assert state["step"] == 3 and len(state["history"]) == 3  # resumed, not restarted
    assert not (tmp_path / "checkpoints" / "step-0000001").exists()  # keeps the last two
    den = load_denoiser(denoiser, tmp_path)  # a run folder resolves to its latest checkpoint
    assert den.name == denoiser
    other = DenoiserTrainConfig(
        denoiser=denoiser, batch_size=1, max_steps=4, seed=1, num_fit=2, model=model
    )
    with pytest.raises(FedlabError, match="another config"):
        train_denoiser(other, tmp_path)


def test_a_copied_fine_tuning_run_resumes_without_its_source(tmp_path) -> None:
    model = {"depth": 2, "channels": 2}
    base = dict(denoiser="dncnn", batch_size=1, checkpoint_every=1, num_fit=2, model=model)
    train_denoiser(DenoiserTrainConfig(max_steps=1, warmup_steps=1, **base), tmp_path / "source")
    fine = DenoiserTrainConfig(max_steps=1, init_from=str(tmp_path / "source"), **base)
    train_denoiser(fine, tmp_path / "fine")
    (tmp_path / "fine").rename(tmp_path / "shipped")
    (tmp_path / "source").rename(tmp_path / "gone")
    state = train_denoiser(DenoiserTrainConfig(max_steps=2, **base), tmp_path / "shipped")
    assert state["step"] == 2 and len(state["history"]) == 2
    saved = json.loads((tmp_path / "shipped" / "train_config.json").read_text())
    assert saved["init_from"] == str(tmp_path / "source")  # the origin stays on record
    with pytest.raises(FedlabError, match="only max_steps, time_limit_s, init_from may change"):
        train_denoiser(
            DenoiserTrainConfig(max_steps=3, **(base | {"batch_size": 2})), tmp_path / "shipped"
        )


def test_cli_reports_errors_with_exit_code_2(tmp_path, capsys) -> None:
    assert main(["train", "--config", "nonexistent", "--out", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["train", "--surrogate", "mnist", "--out", str(tmp_path)]) == 2
    assert "allowed: digits" in capsys.readouterr().err
