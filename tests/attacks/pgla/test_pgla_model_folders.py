"""PGLA and DnCNN denoiser folders go through the one model-folder step
(:mod:`fedlab.model_folder`): every part's config typed and bounded (the UNet's, the
scheduler's, the transform's, a run folder's ``latest.json``), the model counted on the meta
device, and ``init_from`` checked when the training config is read, before any training."""

from __future__ import annotations

import json

import pytest
from fedlab.attacks.pgla.cli import main as pgla_main
from fedlab.attacks.pgla.dncnn import DnCNN, load_dncnn, save_dncnn
from fedlab.attacks.pgla.pipeline import PGLAPipeline, check_pipeline_folder
from fedlab.attacks.pgla.training import DenoiserTrainConfig, resolve_checkpoint
from fedlab.attacks.pgla.transform import GradientImageTransform
from pgla_helpers import NUM_PARAMS, tiny_pipeline

from fedlab.errors import FedlabError
from fedlab.model_folder import count_parameters


def _one_line(exc: pytest.ExceptionInfo, *needles: str) -> None:
    message = str(exc.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, message


def _edit(path, **change) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))


@pytest.fixture
def den(tmp_path):
    tiny_pipeline().save_pretrained(tmp_path / "den")
    return tmp_path / "den"


@pytest.mark.parametrize(
    ("part", "change", "needle"),
    [
        # Each of these built a scheduler or an image of that size before: 8 TB of betas.
        ("scheduler", {"num_train_timesteps": 10**12}, "field num_train_timesteps"),
        ("scheduler", {"beta_schedule": "cosine"}, "field beta_schedule must be one of"),
        ("scheduler", {"beta_end": float("inf")}, "field beta_end must be a finite number"),
        ("transform", {"side": 1000}, "field side 1000 gives 1,000,000 pixels"),
        ("transform", {"scale": "big"}, "field scale must be a finite number"),
        ("unet", {"block_out_channels": "ab"}, "field block_out_channels"),
        ("unet", {"in_channels": 3}, "field in_channels is 3, but this use needs 1 or 2"),
        ("unet", {"block_out_channels": [8192, 8192], "norm_num_groups": 32}, "over the cap"),
    ],
)
def test_every_part_of_a_denoiser_folder_is_checked(den, part, change, needle):
    name = {"scheduler": "scheduler_config.json", "transform": "transform_config.json"}
    _edit(den / part / name.get(part, "config.json"), **change)
    with pytest.raises(FedlabError) as exc:
        PGLAPipeline.from_pretrained(den)
    _one_line(exc, str(den), needle)
    with pytest.raises(FedlabError):
        check_pipeline_folder(den)


def test_the_pre_run_check_counts_without_loading(den):
    count = check_pipeline_folder(den)
    assert count == count_parameters(tiny_pipeline().unet)
    with pytest.raises(FedlabError, match=f"cap of {count - 1:,}"):
        PGLAPipeline.from_pretrained(den, max_parameters=count - 1)


@pytest.mark.parametrize(
    ("latest", "needle"),
    [
        ('{"path": "../../etc"}', "field path must name a checkpoint folder inside it"),
        ('{"path": "/etc"}', "field path must name a checkpoint folder inside it"),
        ('{"path": 7}', "got 7"),
        ('{"step": ' + "3" * 5000 + "}", "more than 4300 digits"),
        ("[1]", "must hold a JSON object"),
    ],
)
def test_a_run_folders_latest_json_is_read_as_untrusted(tmp_path, latest, needle):
    (tmp_path / "latest.json").write_text(latest)
    with pytest.raises(FedlabError) as exc:
        resolve_checkpoint(tmp_path)
    _one_line(exc, str(tmp_path), "latest.json", needle)


def test_init_from_is_checked_when_the_training_config_is_read(den, tmp_path):
    """A pickle-only or broken ``init_from`` stops at the config, not inside the training."""
    (den / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    (den / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04 never unpickled")
    with pytest.raises(FedlabError) as exc:
        DenoiserTrainConfig.from_dict({"init_from": str(den)})
    _one_line(exc, "only pickled weights (diffusion_pytorch_model.bin)")
    save_dncnn(DnCNN(depth=3, channels=4), GradientImageTransform.for_size(NUM_PARAMS),
               tmp_path / "d")  # fmt: skip
    (tmp_path / "d" / "dncnn" / "config.json").write_text('{"depth": 1}')
    with pytest.raises(FedlabError) as exc:
        DenoiserTrainConfig.from_dict({"denoiser": "dncnn", "init_from": str(tmp_path / "d")})
    _one_line(exc, "DnCNN folder", "field depth must be an integer in [2, 256], got 1")


def test_pgla_train_max_parameters_raises_the_cap(den, tmp_path, capsys):
    count = check_pipeline_folder(den)
    argv = ["train", "--config", "tiny", "--init-from", str(den), "--out", str(tmp_path / "o")]
    assert pgla_main([*argv, "--max-parameters", str(count - 1)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and f"cap of {count - 1:,}" in err
    assert not (tmp_path / "o").exists()
    config = DenoiserTrainConfig.from_dict({"init_from": str(den)}, max_parameters=count)
    assert config.init_from == str(den)


def test_dncnn_folders_go_through_the_step(tmp_path):
    save_dncnn(DnCNN(depth=3, channels=4), GradientImageTransform.for_size(NUM_PARAMS), tmp_path)
    model, _ = load_dncnn(tmp_path)
    assert count_parameters(model) == count_parameters(DnCNN(depth=3, channels=4))
    _edit(tmp_path / "dncnn" / "config.json", channels=10**9)
    with pytest.raises(FedlabError) as exc:
        load_dncnn(tmp_path)
    _one_line(exc, "DnCNN folder", "field channels must be an integer in [1, 65536]")
