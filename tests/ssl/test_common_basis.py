"""FedFoA on a common basis (issue 31): shared initial models, the basis-free anchor relation,
FedEMA's update, and the upload taken on the same kind of batch as the alignment."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from fedlab.clients.ssl.anchors import anchor_images
from fedlab.clients.ssl.client import fedema_lambda, fedema_mix, init_model
from fedlab.clients.ssl.relation import anchor_gram, gram_alignment_loss, relation_matrix

from fedlab.apps import fedfoa
from fedlab.client import train_config_from
from fedlab.errors import FedlabError
from fedlab.inprocess import run_in_process
from fedlab.training import train
from fedlab.workload import build_workload

SMALL = {"num-supernodes": 2, "proj-dim": 16, "proj-hidden": 32, "image-size": 16,
         "batch-size": 32, "local-steps": 30, "probe-size": 40}  # fmt: skip


def _gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _orthogonal(d: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed)))
    return q


def test_rotating_or_scaling_features_leaves_the_anchor_relation_unchanged():
    z = torch.randn(40, 12, generator=torch.Generator().manual_seed(0)) @ torch.randn(12, 12)
    q = _orthogonal(12, 1)
    k = anchor_gram(z)
    assert torch.allclose(anchor_gram(z @ q), k, atol=1e-5)
    assert torch.allclose(anchor_gram(3.0 * z @ q), k, atol=1e-5)
    assert k.norm().item() == pytest.approx(1.0) and torch.allclose(
        k.sum(0), torch.zeros(40), atol=1e-5
    )
    # the correlation, on the same features, does move
    assert _gap(relation_matrix(z @ q), relation_matrix(z)) > 0.3
    # and two unit-norm Grams differ by 2 - 2 CKA: the loss is 0 exactly when they agree
    assert gram_alignment_loss(z @ q, k).item() == pytest.approx(0.0, abs=1e-8)
    assert 0 < gram_alignment_loss(torch.randn(40, 12), k).item() <= 4


def _trained_and_rotated(kind: str):
    config = fedfoa.resolve_config({**SMALL, "encoders": "cnn:4", "relation-kind": kind})
    workload = build_workload(config)
    data = workload.client_dataset(0, 2)
    first = init_model(workload, 0)
    train(first, data, workload.step, train_config_from(config), seed=0)
    # A second client on the same data whose initial model is the first's with its output
    # basis rotated: the same representation, written in another basis.
    second = copy.deepcopy(first)
    q, last = _orthogonal(16, 1), second.projector[-1]
    with torch.no_grad():
        last.weight.copy_(q.T @ last.weight)
        last.bias.copy_(q.T @ last.bias)
    torch.manual_seed(0)
    r_first = workload.local_relation(first, data)
    torch.manual_seed(0)
    return r_first, workload.local_relation(second, data)


def test_same_data_other_basis_gap_below_01_with_anchors_and_above_1_with_correlation():
    assert _gap(*_trained_and_rotated("anchor-gram")) < 0.1
    assert _gap(*_trained_and_rotated("correlation")) >= 1.0


def test_shared_init_gives_clients_of_one_architecture_one_initial_model():
    def weights(shared: bool, pid: int) -> dict[str, torch.Tensor]:
        config = fedfoa.resolve_config(
            {**SMALL, "num-supernodes": 4, "encoders": "cnn:4,resnet:4", "shared-init": shared}
        )
        return init_model(build_workload(config), pid).state_dict()

    def same(a, b) -> bool:
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    assert same(weights(True, 0), weights(True, 2))  # both cnn:4
    assert not same(weights(False, 0), weights(False, 2))
    assert not same(weights(True, 1), weights(False, 1))  # drawn from the seed, not the pid


def test_anchors_are_procedural_fixed_by_the_seed_and_bounded():
    a = anchor_images(16, 3, 16, seed=5)
    assert a.shape == (16, 3, 16, 16) and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, anchor_images(16, 3, 16, seed=5))
    assert not torch.equal(a, anchor_images(16, 3, 16, seed=6))
    with pytest.raises(FedlabError, match="anchor-count must lie in"):
        anchor_images(1, 3, 16, seed=0)


def test_the_upload_keeps_the_running_statistics_and_mode():
    config = fedfoa.resolve_config({**SMALL, "encoders": "cnn:4"})
    workload = build_workload(config)
    model = init_model(workload, 0).eval()
    before = [b.clone() for b in model.buffers()]
    workload.local_relation(model, workload.client_dataset(0, 2))
    assert not model.training
    assert all(torch.equal(a, b) for a, b in zip(before, model.buffers(), strict=True))


def test_fedema_mixes_by_divergence_and_clips_at_one():
    local = {"w": torch.zeros(4), "bn.running_mean": torch.ones(2)}
    global_ = {"w": torch.full((4,), 0.5), "bn.running_mean": torch.zeros(2)}
    mixed, mu = fedema_mix(local, global_, scaler=0.5)  # ||g - l|| = 1
    assert mu == pytest.approx(0.5) and torch.allclose(mixed["w"], torch.full((4,), 0.25))
    assert torch.equal(mixed["bn.running_mean"], torch.zeros(2))  # buffers: the global ones
    assert fedema_mix(local, global_, scaler=10.0)[1] == 1.0


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"fedema-scaler": 1.0}, "need weight-averaging=true"),
        ({"fedema-tau": 0.7}, "need weight-averaging=true"),
        ({"fedema-tau": 1.5, "weight-averaging": True}, "fedema-tau must lie in"),
        ({"fedema-tau": 0.7, "fedema-scaler": 1.0, "weight-averaging": True}, "both set"),
        ({"relation-kind": "gram"}, "relation-kind"),
        ({"anchor-count": 1}, "anchor-count must lie in"),
        ({"relation-kind": "anchor-gram", "ssl-method": "spectral", "relation-objective": "fedsc"},
         "anchor-gram works with relation-objective=fedfoa only"),
    ],
)  # fmt: skip
def test_common_basis_keys_are_validated(values, match):
    with pytest.raises(FedlabError, match=match):
        fedfoa.resolve_config(values)


def test_anchor_relation_federates_different_architectures(tmp_path):
    config = fedfoa.resolve_config({
        **SMALL, "num-server-rounds": 2, "local-steps": 3, "encoders": "cnn:4,mlp:8",
        "relation-kind": "anchor-gram", "anchor-count": 24, "relation-rank": 4,
        "warmup-rounds": 0, "shared-init": True, "out-dir": str(tmp_path / "run"),
    })  # fmt: skip
    assert run_in_process(fedfoa, config)["rounds-finished"] == 2
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    train_metrics = history[-1]["train"]
    # rank x (n + 1) float32s, whatever the encoders' sizes, plus two .npy headers of 128 bytes
    assert train_metrics["upload-bytes-per-client"] == 4 * 4 * (24 + 1) + 2 * 128
    assert train_metrics["train-align-loss"] > 0 and train_metrics["relation-gap"] > 0


def _fedema_history(tmp_path, rounds: int, **keys) -> list:
    """History of a small FedFoA+FedEMA run with ``keys`` (``fedema-scaler`` or ``-tau``)."""
    config = fedfoa.resolve_config({
        **SMALL, "num-server-rounds": rounds, "local-steps": 3, "encoders": "cnn:4",
        "weight-averaging": True, "out-dir": str(tmp_path / "run"), **keys,
    })  # fmt: skip
    assert run_in_process(fedfoa, config)["rounds-finished"] == rounds
    return json.loads((tmp_path / "run" / "history.json").read_text())


def test_fedema_with_weight_averaging_runs_and_reports_mu(tmp_path):
    history = _fedema_history(tmp_path, 2, **{"fedema-scaler": 0.01})
    assert history[0]["train"]["fedema-mu"] == 0.0  # round 1: no model of its own yet
    assert 0 < history[1]["train"]["fedema-mu"] <= 1


def test_fedema_autoscaler_fixes_lambda_at_the_first_mix():
    from flwr.app import Context, RecordDict

    config = fedfoa.resolve_config({"weight-averaging": True, "fedema-tau": 0.7, "encoders": "cnn"})
    context = Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={})
    local, global_ = {"w": torch.zeros(4)}, {"w": torch.full((4,), 2.0)}  # divergence 4
    assert fedema_lambda(config, local, global_, context) == pytest.approx(0.7 / 4)
    assert fedema_mix(local, global_, 0.7 / 4)[1] == pytest.approx(0.7)  # the first mu is tau
    farther = {"w": torch.full((4,), 4.0)}  # lambda stays; mu grows with the divergence
    assert fedema_lambda(config, local, farther, context) == pytest.approx(0.7 / 4)
    assert fedema_mix(local, farther, 0.7 / 4)[1] == 1.0


def test_fedema_autoscaled_run_mixes_tau_at_each_clients_first_mix(tmp_path):
    history = _fedema_history(tmp_path, 3, **{"fedema-tau": 0.7})
    assert history[0]["train"]["fedema-mu"] == 0.0
    assert history[1]["train"]["fedema-mu"] == pytest.approx(0.7)
    assert 0 < history[2]["train"]["fedema-mu"] <= 1
