"""FedSC's objective in the fedfoa app: the loss against FedSC's own formula, the alpha
schedule, the shared second moment, and config checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fedlab.clients.ssl.client import fedsc_alpha, handle_train
from fedlab.clients.ssl.config import SSLConfig
from fedlab.clients.ssl.objectives import clamp_norm, spectral_contrastive
from fedlab.strategies.fedfoa import EIGVALS, EIGVECS, RELATION
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict

from fedlab.apps import fedfoa
from fedlab.errors import FedlabError
from fedlab.inprocess import run_in_process

FEDSC = dict(
    num_supernodes=2,
    num_server_rounds=3,
    local_steps=2,
    batch_size=16,
    encoders="cnn:4",
    proj_dim=8,
    proj_hidden=16,
    relation_rank=8,
    probe_size=200,
    partitioner="iid",
    ssl_method="spectral",
    relation_objective="fedsc",
)


def fedsc_reference(z0, z1, cov_ext, alpha, mu):
    """FedSC's Client_SPECshare.loss, written as its authors did (traces, masks)."""
    mask1 = (torch.norm(z1, p=2, dim=1) < np.sqrt(mu)).float().unsqueeze(1)
    mask0 = (torch.norm(z0, p=2, dim=1) < np.sqrt(mu)).float().unsqueeze(1)
    z1 = mask1 * z1 + (1 - mask1) * F.normalize(z1, dim=1) * np.sqrt(mu)
    z0 = mask0 * z0 + (1 - mask0) * F.normalize(z0, dim=1) * np.sqrt(mu)
    posloss = -2 * torch.trace(z1 @ torch.transpose(z0, 0, 1)) / len(z1)
    z = torch.cat((z1, z0), dim=0)
    local_r = torch.transpose(z, 0, 1) @ z / len(z)
    if cov_ext is None:
        return posloss + torch.norm(local_r) ** 2
    return (
        posloss
        + alpha * torch.trace(local_r @ local_r)
        + 2 * (1 - alpha) * torch.trace(local_r @ cov_ext)
    )


@pytest.mark.parametrize("alpha", [1.0, 0.6, 0.2])
def test_spectral_loss_equals_fedscs_own_formula(alpha):
    gen = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(32, 6, generator=gen) * 1.5, torch.randn(32, 6, generator=gen) * 1.5
    a = torch.randn(6, 6, generator=gen)
    ext = a @ a.T / 6
    ours = spectral_contrastive(z1, z0, mu=5.0, external=ext, alpha=alpha)
    assert ours.item() == pytest.approx(fedsc_reference(z0, z1, ext, alpha, 5.0).item(), rel=1e-5)
    plain = spectral_contrastive(z1, z0, mu=5.0)
    assert plain.item() == pytest.approx(fedsc_reference(z0, z1, None, 1, 5.0).item(), rel=1e-5)


def test_clamped_features_never_exceed_sqrt_mu_and_small_ones_are_untouched():
    z = torch.tensor([[3.0, 4.0], [0.1, 0.2]])
    out = clamp_norm(z, mu=4.0)
    assert out[0].norm().item() == pytest.approx(2.0)
    assert torch.equal(out[1], z[1])


def test_alpha_falls_linearly_from_one_towards_alpha_min():
    config = SSLConfig(**{**FEDSC, "num_server_rounds": 10, "fedsc_alpha_min": 0.2})
    assert fedsc_alpha(config, 1) == 1.0
    assert fedsc_alpha(config, 6) == pytest.approx(1 - 0.8 * 5 / 10)
    assert fedsc_alpha(config, 10) == pytest.approx(1 - 0.8 * 9 / 10)


def test_a_fedsc_client_uploads_its_second_moment_and_uses_the_external_one():
    config = SSLConfig(**FEDSC)
    context = Context(
        run_id=1,
        node_id=1,
        state=RecordDict(),
        run_config={},
        node_config={"partition-id": 0, "num-partitions": 2},
    )

    def message(arrays, rnd):
        content = RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": rnd})})
        return Message(content=content, dst_node_id=1, message_type="train")

    first = handle_train(message(ArrayRecord(), 1), context, config)
    vals = first.content["arrays"][EIGVALS].numpy()
    vecs = first.content["arrays"][EIGVECS].numpy()
    rebuilt = (vecs * vals) @ vecs.T
    # an uncentred second moment of clamped features: PSD, trace at most mu, not a correlation
    assert np.linalg.eigvalsh(rebuilt).min() > -1e-5
    assert 0 < np.trace(rebuilt) <= config.spectral_mu + 1e-4
    assert not np.allclose(np.diag(rebuilt), 1.0, atol=0.05)
    assert first.content["metrics"]["align-weight"] == 1.0  # no external matrix yet
    ext = ArrayRecord({RELATION: Array(np.eye(8, dtype=np.float32) * 0.1)})
    second = handle_train(message(ext, 2), context, config)
    assert second.content["metrics"]["align-weight"] == pytest.approx(fedsc_alpha(config, 2))
    assert second.content["metrics"]["train-fedsc-alpha"] < 1.0


def test_fedsc_needs_the_spectral_loss_and_alpha_min_in_range():
    with pytest.raises(FedlabError, match="ssl-method=spectral"):
        SSLConfig.from_mapping({**FEDSC, "ssl_method": "simclr"})
    with pytest.raises(FedlabError, match="fedsc-alpha-min"):
        SSLConfig.from_mapping({**FEDSC, "fedsc_alpha_min": 1.5})
    with pytest.raises(FedlabError, match="relation-objective"):
        SSLConfig.from_mapping({**FEDSC, "relation_objective": "fedsc2"})


def test_fedsc_proper_runs_through_the_app_with_weight_averaging(tmp_path):
    mapping = {k.replace("_", "-"): v for k, v in FEDSC.items()}
    mapping["weight-averaging"] = True
    config = fedfoa.resolve_config(mapping, {"out-dir": str(tmp_path)})
    run_in_process(fedfoa, config)
    history = json.loads((tmp_path / "history.json").read_text())
    assert [h["round"] for h in history] == [1, 2, 3]
    assert history[0]["train"]["align-weight"] == 1.0
    assert history[2]["train"]["align-weight"] == pytest.approx(fedsc_alpha(config, 3))
    assert 0.0 <= history[-1]["evaluate"]["probe-acc-global"] <= 1.0
