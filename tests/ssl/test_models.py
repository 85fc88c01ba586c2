"""Encoders, projector, SSL objectives and augmentations on tiny seeded inputs."""

from __future__ import annotations

import pytest
import torch
from fedlab.clients.ssl.augment import AugmentConfig, augment
from fedlab.clients.ssl.config import SSLConfig
from fedlab.clients.ssl.models import SSLModel, feature_dim, parse_encoders
from fedlab.clients.ssl.objectives import nt_xent
from fedlab.clients.ssl.workload import SSLWorkload

from fedlab.errors import FedlabError


@pytest.mark.parametrize("encoder", ["cnn:4", "resnet:2", "mlp:16"])
def test_every_encoder_projects_to_the_shared_size(encoder):
    torch.manual_seed(0)
    model = SSLModel(encoder, "simclr", 3, 16, proj_dim=8, hidden=16)
    x = torch.rand(5, 3, 16, 16)
    assert model(x).shape == (5, model.feature_dim)
    assert model.project(x).shape == (5, 8)
    ((arch, width),) = parse_encoders(encoder)
    assert feature_dim(arch, width) == model.feature_dim


def test_parse_encoders_fills_default_widths_and_refuses_unknown_ones():
    assert parse_encoders("cnn, resnet:24") == [("cnn", 32), ("resnet", 24)]
    with pytest.raises(FedlabError, match="not one of: cnn, resnet, mlp"):
        parse_encoders("vit")
    with pytest.raises(FedlabError, match="must be an integer"):
        parse_encoders("cnn:wide")


def test_nt_xent_is_low_for_matching_views_and_high_for_shuffled_ones():
    z = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    matched = nt_xent(z, z + 0.01 * torch.randn(16, 8), temperature=0.1)
    shuffled = nt_xent(z, z[torch.randperm(16)], temperature=0.1)
    assert matched < 0.1 < shuffled


@pytest.mark.parametrize("method", ["simclr", "byol", "simsiam"])
def test_each_ssl_method_trains_one_step(method):
    config = SSLConfig(ssl_method=method, encoders="cnn:4", proj_dim=8, proj_hidden=16)
    workload = SSLWorkload(config)
    torch.manual_seed(0)
    model = SSLModel("cnn:4", method, 3, 16, proj_dim=8, hidden=16)
    x = torch.rand(8, 3, 16, 16)
    loss, metrics = workload.step(model, (x,))
    assert torch.isfinite(loss) and "ssl-loss" in metrics
    loss.backward()
    grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    if method == "byol":
        assert all(p.grad is None for p in model.target_encoder.parameters())


def test_byol_target_is_a_moving_average_of_the_online_branch():
    torch.manual_seed(0)
    model = SSLModel("cnn:4", "byol", 3, 16, proj_dim=8, hidden=16)
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(1.0)
    before = [t.clone() for t in model.target_encoder.parameters()]
    model.update_target(0.9)
    for b, t, o in zip(
        before, model.target_encoder.parameters(), model.encoder.parameters(), strict=True
    ):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * o)


def test_augment_keeps_shape_and_range_and_is_seeded():
    x = torch.rand(6, 3, 16, 16)
    a = augment(x, torch.Generator().manual_seed(1))
    b = augment(x, torch.Generator().manual_seed(1))
    c = augment(x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_identity_augmentation_returns_the_image():
    x = torch.rand(4, 3, 16, 16)
    cfg = AugmentConfig(
        crop_scale=(1.0, 1.0),
        flip=0.0,
        brightness=0.0,
        contrast=0.0,
        saturation=0.0,
        channel_shuffle=0.0,
        grayscale=0.0,
    )
    out = augment(x, torch.Generator().manual_seed(0), cfg)
    # a full-area crop with aspect ratio in [3/4, 4/3] may still squeeze: compare the centre
    assert out.shape == x.shape and (out - x).abs().mean() < 0.2
