"""ParsNets' gate and regularisers, ESZSL's federated closed form, the MLP baseline."""

from __future__ import annotations

import math

import pytest
import torch
from fedlab.clients.zsl.baselines import average_statistics, eszsl_solve, eszsl_statistics
from fedlab.clients.zsl.models import MLP, ParsNets, ole_loss

from fedlab.errors import FedlabError


def _parsnets(k: int = 2, bases: int = 5) -> ParsNets:
    torch.manual_seed(0)
    return ParsNets(12, torch.rand(6, 4), bases=bases, topk=k)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_gate_selects_exactly_k_distinct_bases(k):
    model = _parsnets(k)
    idx, mix = model.select(torch.randn(16, 12))
    assert idx.shape == (16, k) and mix.shape == (16, k)
    assert all(len(set(row.tolist())) == k for row in idx)
    torch.testing.assert_close(mix.sum(1), torch.ones(16))
    assert (mix > 0).all()


def test_only_the_selected_bases_shape_the_output():
    model = _parsnets(2)
    x = torch.randn(1, 12)
    idx, mix = model.select(torch.nn.functional.normalize(x, dim=1))
    before = model.embed(x)
    unselected = [b for b in range(5) if b not in idx[0].tolist()]
    with torch.no_grad():
        model.bases[unselected] += 100.0  # changing unselected bases must change nothing
    torch.testing.assert_close(model.embed(x), before)
    xn = torch.nn.functional.normalize(x, dim=1)[0]
    expected = sum(mix[0, j] * model.bases[idx[0, j]] @ xn for j in range(2))
    torch.testing.assert_close(before[0], expected)
    with torch.no_grad():
        model.bases[idx[0, 0]] += 1.0  # a selected one does change it
    assert not torch.allclose(model.embed(x), before)


def test_topk_larger_than_bases_is_refused():
    with pytest.raises(FedlabError, match="parsnets-topk 6 must lie in 1..parsnets-bases"):
        ParsNets(12, torch.rand(6, 4), bases=5, topk=6)


def test_ole_loss_by_hand():
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    labels = torch.tensor([0, 0, 1, 1])
    separate = torch.stack([e1, e1, e2, e2])
    # each class: nuclear norm sqrt(2); all: singular values sqrt(2), sqrt(2) -> 0
    assert ole_loss(separate, labels, delta=0.5).item() == pytest.approx(0.0, abs=1e-6)
    collapsed = torch.stack([e1, e1, e1, e1])
    # within: 2 sqrt(2); all: one singular value 2 -> (2 sqrt(2) - 2) / 4
    expected = (2 * math.sqrt(2) - 2) / 4
    assert ole_loss(collapsed, labels, delta=0.5).item() == pytest.approx(expected, rel=1e-5)


def test_regularizers_penalise_aligned_bases():
    model = _parsnets()
    emb, labels = torch.randn(8, 4), torch.randint(0, 3, (8,))
    model.weights.update(lowrank=0.0, ole=0.0)
    with torch.no_grad():
        model.bases.copy_(torch.linalg.qr(torch.randn(48, 5)).Q.T.reshape(5, 4, 12))
    orthogonal = model.regularization(emb, labels).item()
    with torch.no_grad():
        model.bases.copy_(model.bases[:1].expand(5, -1, -1))
    assert orthogonal == pytest.approx(0.0, abs=1e-6)
    assert model.regularization(emb, labels).item() == pytest.approx(1e-2, rel=1e-4)


def test_federated_eszsl_equals_centralised():
    torch.manual_seed(0)
    x, pos, s = torch.randn(40, 7), torch.randint(0, 3, (40,)), torch.rand(3, 5)
    central = eszsl_solve(*eszsl_statistics(x, pos, s)[:2], s, 0.01, 1.0)
    parts = [eszsl_statistics(x[i], pos[i], s) for i in (slice(0, 9), slice(9, 30), slice(30, 40))]
    gram, cross, n = average_statistics(parts)
    assert n == 40
    torch.testing.assert_close(eszsl_solve(gram, cross, s, 0.01, 1.0), central)


def test_eszsl_closed_form_is_the_stationary_point():
    torch.manual_seed(1)
    x, pos, s = torch.randn(30, 6), torch.randint(0, 4, (30,)), torch.rand(4, 3)
    gram, cross, n = eszsl_statistics(x, pos, s)
    v = eszsl_solve(gram, cross, s, 0.1, 0.5).requires_grad_(True)
    xn = torch.nn.functional.normalize(x.double(), dim=1)
    y = -torch.ones(30, 4, dtype=torch.float64)
    y[torch.arange(30), pos] = 1
    sd = s.double()
    # ESZSL objective, data terms / n:
    # ||X V S^T - Y||^2/n + g ||V S^T||^2 + l ||X V||^2/n + g l ||V||^2
    loss = ((xn @ v @ sd.T - y).pow(2).sum() / n + 0.1 * (v @ sd.T).pow(2).sum()
            + 0.5 * (xn @ v).pow(2).sum() / n + 0.05 * v.pow(2).sum())  # fmt: skip
    (grad,) = torch.autograd.grad(loss, v)
    assert grad.abs().max().item() < 1e-8


def test_mlp_width_sets_its_size():
    model = MLP(10, torch.rand(3, 4), width=8)
    assert sum(p.numel() for p in model.parameters()) == 10 * 8 + 8 + 8 * 4 + 4
    assert model(torch.randn(2, 10)).shape == (2, 3)
