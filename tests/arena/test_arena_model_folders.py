"""Arena's model folders: ``init-from`` checked before Ray, detector folders loaded through the
one model-folder step (:mod:`fedlab.model_folder`)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from fedlab.clients.arena.config import ArenaConfig
from fedlab.clients.arena.model import ArenaViT, load_detector
from safetensors.torch import save_file

from fedlab.errors import FedlabError
from fedlab.model_folder import count_parameters

#: A detector the run config below builds (frame 32, 8-px patches, dim 16, 2 blocks).
RUN = {"frame-size": 32, "patch-size": 8, "vit-dim": 16, "vit-depth": 2, "vit-heads": 2}


def _detector() -> ArenaViT:
    return ArenaViT(image_size=32, patch_size=8, dim=16, depth=2, heads=2, head_hidden=16)


def _one_line(exc: pytest.ExceptionInfo, *needles: str) -> None:
    message = str(exc.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, message


def test_an_init_from_folder_holding_only_pickles_is_refused_at_parse_time(tmp_path):
    """Finding: a pickle-only ``init-from`` passed the pre-Ray check (only "is a folder")."""
    torch.save(_detector().state_dict(), tmp_path / "model.pt")
    with pytest.raises(FedlabError) as exc:
        ArenaConfig.from_mapping({**RUN, "init-from": str(tmp_path)})
    _one_line(exc, "init-from folder", str(tmp_path), "only pickled weights (model.pt)",
              "never a pickle")  # fmt: skip


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ("{truncated", "not valid JSON"),
        ('{"dim": "sixteen"}', "field dim must be an integer"),
        ('{"depth": ' + "9" * 5000 + "}", "more than 4300 digits"),
        ('{"mlp_ratio": NaN}', "field mlp_ratio must be a finite number"),
    ],
    ids=["truncated", "wrong-type", "5000-digits", "nan"],
)
def test_a_detector_folder_with_a_broken_config_is_refused_at_parse_time(tmp_path, config, needle):
    """Finding: an ``init-from`` folder with a broken config.json passed the pre-Ray check."""
    _detector().save_pretrained(tmp_path, safe_serialization=True)
    (tmp_path / "config.json").write_text(config)
    with pytest.raises(FedlabError) as exc:
        ArenaConfig.from_mapping({**RUN, "init-from": str(tmp_path)})
    _one_line(exc, "init-from folder", str(tmp_path), needle)


def test_init_from_weights_of_another_detector_name_the_first_bad_tensor(tmp_path):
    save_file(_detector().state_dict(), tmp_path / "model.safetensors")
    config = ArenaConfig.from_mapping({**RUN, "init-from": str(tmp_path)})  # fits: accepted
    assert config.init_from == str(tmp_path)
    with pytest.raises(FedlabError) as exc:
        ArenaConfig.from_mapping({**RUN, "vit-dim": 32, "init-from": str(tmp_path)})
    _one_line(exc, "model.safetensors tensor", "has shape", "ArenaViT needs")


def test_a_run_config_whose_detector_is_over_the_cap_is_refused_without_allocating(tmp_path):
    save_file(_detector().state_dict(), tmp_path / "model.safetensors")
    with pytest.raises(FedlabError) as exc:  # 16384 tokens x 65536 wide: 1e9 in pos_embed alone
        ArenaConfig.from_mapping({**RUN, "frame-size": 1024, "vit-dim": 65536, "vit-heads": 1,
                                  "init-from": str(tmp_path)})  # fmt: skip
    _one_line(exc, "parameters, over the cap of")


def test_the_shipped_detector_loads_through_the_step():
    from fedlab.clients.arena.cli import SHIPPED_WEIGHTS

    model = load_detector(SHIPPED_WEIGHTS)
    assert not model.training and model.config.image_size == 96
    assert ArenaConfig.from_mapping({"init-from": str(SHIPPED_WEIGHTS)}).init_from


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"dim": "abc"}, "field dim must be an integer in [1, 65536], got 'abc'"),
        ({"dim": 65536, "heads": 1}, "over the cap of"),
        ({"image_size": 30}, "image_size 30 is not a multiple of patch_size 8"),
        ({"depth": 10**30}, "field depth must be an integer in [1, 256]"),
    ],
)
def test_detector_folders_are_refused_in_one_line(tmp_path, change, needle):
    from fedlab.clients.arena.cli import SHIPPED_WEIGHTS

    shutil.copytree(SHIPPED_WEIGHTS, tmp_path / "d")
    path = tmp_path / "d" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.raises(FedlabError) as exc:
        load_detector(tmp_path / "d")
    _one_line(exc, "detector folder", str(tmp_path / "d"), needle)


def test_max_parameters_raises_the_detectors_cap(tmp_path):
    _detector().save_pretrained(tmp_path, safe_serialization=True)
    count = count_parameters(_detector())
    with pytest.raises(FedlabError, match=f"cap of {count - 1:,}"):
        load_detector(tmp_path, max_parameters=count - 1)
    assert count_parameters(load_detector(tmp_path, max_parameters=count)) == count
