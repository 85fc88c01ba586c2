"""The pih_prior and harmonization apps in process (no Ray) on a tiny UNet, and their
config checks."""

from __future__ import annotations

import json

import pytest
import torch
from fedlab.clients.harmonization.app import harmonization, pih_prior
from fedlab.clients.harmonization.workload import prior_styles
from safetensors.torch import load_file

from fedlab.diffusion import load_unet
from fedlab.errors import FedlabError
from fedlab.inprocess import run_in_process

TINY = {"unet": "tiny", "crop-size": 8, "heldout-crops": 1, "crops-per-client": 16,
        "num-supernodes": 2, "num-server-rounds": 1, "local-steps": 1, "batch-size": 4}  # fmt: skip


@pytest.fixture(scope="module")
def tiny_prior(tmp_path_factory):
    out = tmp_path_factory.mktemp("prior")
    summary = run_in_process(pih_prior, pih_prior.resolve_config({**TINY, "out-dir": str(out)}))
    return out, summary


def test_pih_prior_app_trains_a_style_conditioned_prior(tiny_prior):
    out, summary = tiny_prior
    assert summary["rounds-finished"] == 1
    assert summary["final"]["evaluate"]["denoise-loss"] > 0
    prior = load_unet(out / "prior")
    assert prior.config.num_class_embeds == 5
    assert prior_styles(prior, out / "prior") == ["posterize", "watercolor", "canvas", "ink",
                                                  "photo"]  # fmt: skip
    saved = load_file(out / "model.safetensors")
    assert torch.equal(prior.conv_in.weight, saved["conv_in.weight"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"methods": "cut,magic"}, "'magic' is not one of"),
        ({"sdedit-t": "100,1200"}, "sdedit-t must lie in \\[0, 999\\]"),
        ({"guidance": "-1"}, "guidance must be >= 0"),
        ({"composites": "train"}, "composites"),
        ({"methods": "freepih", "guidance": ""}, "freepih needs"),
    ],
)
def test_harmonization_config_errors(override, message):
    with pytest.raises(FedlabError, match=message):
        harmonization.resolve_config(override)


def test_harmonization_defaults_use_the_shipped_prior_and_every_method():
    config = harmonization.resolve_config({})
    assert config.init_from == "shipped" and not config.train_prior
    assert config.methods == ("cut", "histogram", "reinhard", "sdedit", "freepih")
    assert config.prior_folder().endswith("harmonization/weights/prior-federated")


def test_harmonization_app_reports_every_method_with_an_untouched_background(tiny_prior, tmp_path):
    prior, _ = tiny_prior
    config = harmonization.resolve_config({
        **TINY, "init-from": str(prior / "prior"), "max-composites": 2, "sample-steps": 2,
        "sdedit-t": "100", "freepih-t": "100", "guidance": "0,1", "out-dir": str(tmp_path),
    })  # fmt: skip
    run_in_process(harmonization, config)
    metrics = json.loads((tmp_path / "history.json").read_text())[-1]["client-evaluate"]
    assert metrics["cut-ssim"] == pytest.approx(1.0)
    for name in ("cut", "histogram", "reinhard", "freepih-t100-g0", "freepih-t100-g1"):
        assert metrics[f"{name}-bg-error"] == 0.0
        assert 0 <= metrics[f"{name}-edge-f1"] <= 1
    assert metrics["sdedit-t100-bg-error"] > 0
    assert metrics["freepih-t100-g1-seconds"] > 0
    assert metrics["freepih-t100-g0-ssim"] < 1.0


def test_shipped_prior_is_style_conditioned_and_names_its_styles():
    from fedlab.clients.harmonization.config import SHIPPED_PRIOR

    prior = load_unet(SHIPPED_PRIOR)
    assert prior.config.num_class_embeds == 5
    assert prior_styles(prior, SHIPPED_PRIOR)[-1] == "photo"
