"""(AR)^2 pieces: nearest unseen classes, Grad-CAM weights, the EMA teacher, one step."""

from __future__ import annotations

import pytest
import torch
from fedlab.clients.zsl.ar2 import Ar2Net, ar2_losses, nearest_unseen


def _net(**kw) -> Ar2Net:
    torch.manual_seed(0)
    return Ar2Net(3, torch.rand(5, 4), num_seen=3, width=4, **kw)


def test_nearest_unseen_by_attribute_cosine():
    att = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.1, 1.0], [1.0, 1.0]])
    near = nearest_unseen(att, torch.tensor([2, 3, 4]), 2)
    assert near[0].tolist() == [2, 4]  # class 0 ~ (1, 0): closest (1, .1), then (1, 1)
    assert near[1].tolist() == [3, 4]
    assert nearest_unseen(att, torch.tensor([2, 3]), 5).shape == (5, 2)


def test_unseen_aware_maps_are_distributions():
    net = _net()
    fmap, weights = net.unseen_aware_maps(torch.rand(2, 3, 16, 16), torch.tensor([[3], [4]]))
    assert fmap.shape == (2, 8, 8, 8) and weights.shape == (2, 8, 8)
    torch.testing.assert_close(weights.sum((1, 2)), torch.ones(2))
    assert (weights >= 0).all()


def test_ema_teacher():
    net = _net()
    with torch.no_grad():
        for p in net.backbone.parameters():
            p.add_(1.0)
    before = [p.clone() for p in net.teacher["backbone"].parameters()]
    net.update_teacher(0.75)
    for b, t, s in zip(before, net.teacher["backbone"].parameters(), net.backbone.parameters(),
                       strict=True):  # fmt: skip
        torch.testing.assert_close(t, 0.75 * b + 0.25 * s)
    net.update_teacher(0.0)
    for t, s in zip(net.teacher["backbone"].parameters(), net.backbone.parameters(), strict=True):
        torch.testing.assert_close(t, s)


@pytest.mark.parametrize(("uad", "agl"), [(1.0, 1.0), (0.0, 1.0), (1.0, 0.0)])
def test_fine_tuning_loss_trains_the_student_not_the_teacher(uad, agl):
    net = _net(use_agl=agl > 0)
    seen, labels = torch.tensor([0, 1, 2]), torch.tensor([0, 2, 1, 1])
    near = nearest_unseen(net.attributes, torch.tensor([3, 4]), 1)
    loss, metrics = ar2_losses(net, torch.rand(4, 3, 16, 16), labels, labels, seen, near,
                               uad=uad, agl=agl)  # fmt: skip
    loss.backward()
    assert ("uad" in metrics) == (uad > 0) and ("agl" in metrics) == (agl > 0)
    assert all(p.grad is None for p in net.teacher.parameters())
    assert net.backbone[0].weight.grad is not None
    assert (net.prototypes.grad is not None) == (agl > 0)
    assert net(torch.rand(2, 3, 16, 16)).shape == (2, 5)
