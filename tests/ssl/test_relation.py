"""Relation matrices: symmetric PSD, factorized to rank r, rebuilt, aligned."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fedlab.clients.ssl.relation import alignment_loss, factorize, rebuild, relation_matrix
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlab.errors import FedlabError


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 40),
    d=st.integers(1, 12),
    seed=st.integers(0, 10_000),
    scale=st.floats(1e-3, 1e3),
)
def test_relation_matrix_is_symmetric_psd_with_unit_diagonal(n, d, seed, scale):
    z = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    r = relation_matrix(z * scale).numpy()
    assert r.shape == (d, d)
    np.testing.assert_allclose(r, r.T, atol=1e-12)
    assert np.linalg.eigvalsh(r).min() >= -1e-9
    np.testing.assert_allclose(np.diag(r), 1.0, atol=1e-4)


def test_relation_matrix_needs_two_rows():
    with pytest.raises(FedlabError, match="n >= 2"):
        relation_matrix(torch.randn(1, 4))


def _random_relation(d=16, n=50, seed=0):
    z = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    z[:, 1] = z[:, 0] + 0.1 * z[:, 1]  # some correlation
    return relation_matrix(z).numpy()


@pytest.mark.parametrize("rank", [1, 4, 16, 40])
def test_factorization_is_the_best_rank_r_approximation(rank):
    r = _random_relation()
    vals, vecs = factorize(r, rank)
    k = min(rank, 16)
    assert vals.shape == (k,) and vecs.shape == (16, k)
    assert np.all(np.diff(vals) <= 1e-6) and vals.min() >= 0
    err = np.linalg.norm(rebuild(vals, vecs) - r)
    spectrum = np.sort(np.linalg.eigvalsh(r))[::-1]
    # Eckart-Young: the residual is exactly the dropped eigenvalues (float32 factors: 1e-4)
    assert err == pytest.approx(np.sqrt(np.sum(spectrum[k:] ** 2)), abs=1e-4)


def test_factorization_reconstructs_a_rank_r_matrix_exactly():
    rng = np.random.default_rng(1)
    u = np.linalg.qr(rng.normal(size=(10, 3)))[0]
    r = (u * [3.0, 2.0, 0.5]) @ u.T
    vals, vecs = factorize(r, 3)
    np.testing.assert_allclose(rebuild(vals, vecs), r, atol=1e-5)
    np.testing.assert_allclose(vals, [3.0, 2.0, 0.5], atol=1e-5)


def test_factors_are_ambiguous_in_sign_so_only_rebuilt_matrices_may_be_averaged():
    r = _random_relation()
    vals, vecs = factorize(r, 4)
    flipped = vecs * np.array([1, -1, 1, -1], dtype=np.float32)
    np.testing.assert_allclose(rebuild(vals, flipped), rebuild(vals, vecs), atol=1e-6)
    averaged_factors = rebuild(vals, (vecs + flipped) / 2)
    assert np.linalg.norm(averaged_factors - rebuild(vals, vecs)) > 0.5


def test_rebuild_refuses_mismatched_factors():
    with pytest.raises(FedlabError, match=r"expected \(r,\) and \(D, r\)"):
        rebuild(np.ones(3), np.ones((8, 4)))


def test_alignment_loss_is_zero_at_the_target_and_positive_elsewhere():
    z = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    target = relation_matrix(z).float()
    assert alignment_loss(z, target).item() == pytest.approx(0.0, abs=1e-10)
    assert alignment_loss(z, torch.eye(8)).item() > 0
    # the diagonal is ignored: a rank-r target with a smaller diagonal costs nothing extra
    shrunk = target - 0.5 * torch.diag(torch.diag(target))
    assert alignment_loss(z, shrunk).item() == pytest.approx(0.0, abs=1e-10)


def test_alignment_gradient_pulls_towards_the_target():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(128, 4, generator=g)
    target = torch.tensor([[1, 0.8, 0, 0], [0.8, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    z = base.clone().requires_grad_(True)
    opt = torch.optim.SGD([z], lr=50.0)
    before = alignment_loss(z, target).item()
    for _ in range(50):
        opt.zero_grad()
        alignment_loss(z, target).backward()
        opt.step()
    assert alignment_loss(z, target).item() < 1e-3 * before


def test_alignment_refuses_a_target_of_another_size():
    with pytest.raises(FedlabError, match="same proj-dim"):
        alignment_loss(torch.randn(16, 8), torch.eye(4))
