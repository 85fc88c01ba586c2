"""FedFoA's relation matrices: correlation of standardized projector outputs, and its factors.

The math both sides of FedFoA share: clients compute and factorize their relation matrix
(``clients/ssl/relation.py`` adds the alignment loss), the server rebuilds and aggregates them
(:mod:`fedlab.strategies.fedfoa`). It lives with the strategy so that a server algorithm imports no
client package.
"""

from __future__ import annotations

import numpy as np
import torch

from fedlab.errors import FedlabError

__all__ = ["anchor_gram", "factorize", "rebuild", "relation_matrix", "standardize"]


def standardize(z: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Columns to zero mean and unit variance over the rows (a constant column stays 0)."""
    z = z - z.mean(dim=0, keepdim=True)
    return z / z.pow(2).mean(dim=0, keepdim=True).sqrt().clamp_min(eps)


def relation_matrix(z: torch.Tensor) -> torch.Tensor:
    """The D x D correlation matrix ``Zs^T Zs / n`` of standardized rows ``z`` (n, D).

    Symmetric positive semi-definite by construction (a Gram matrix), with diagonal about 1.
    """
    if z.ndim != 2 or len(z) < 2:
        raise FedlabError(f"a relation matrix needs (n >= 2, D) features, got {tuple(z.shape)}")
    zs = standardize(z)
    return zs.T @ zs / len(zs)


def anchor_gram(z: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """The basis-free relation: the n x n similarity of ``z`` (n anchors, any D) between samples.

    Rows are L2-normalised (the cosine geometry SimCLR trains), their Gram matrix is centred
    (``H G H`` with ``H = I - 1/n``, as in CKA) and scaled to unit Frobenius norm. Rotating the
    features (``z Q`` with Q orthogonal) or scaling them leaves it unchanged, and its size does
    not depend on D, so clients with different encoders or bases can be compared and averaged.
    ``||K_a - K_b||_F^2 = 2 - 2 CKA_cos(a, b)``.
    """
    if z.ndim != 2 or len(z) < 2:
        raise FedlabError(f"an anchor Gram matrix needs (n >= 2, D) features, got {tuple(z.shape)}")
    u = z / z.norm(dim=1, keepdim=True).clamp_min(eps)
    g = u @ u.T
    k = g - g.mean(dim=0, keepdim=True) - g.mean(dim=1, keepdim=True) + g.mean()
    return k / k.norm().clamp_min(eps)


def factorize(r: torch.Tensor | np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``rank`` eigenpairs of a symmetric PSD matrix: (eigenvalues (r,), eigenvectors (D, r)).

    Eigenvalues come in decreasing order, clipped at 0 (round-off can make them slightly
    negative); ``rank`` above D is cut to D.
    """
    m = torch.as_tensor(r, dtype=torch.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise FedlabError(f"a relation matrix must be square, got shape {tuple(m.shape)}")
    if rank < 1:
        raise FedlabError(f"relation rank must be >= 1, got {rank}")
    vals, vecs = torch.linalg.eigh((m + m.T) / 2)
    k = min(rank, m.shape[0])
    vals, vecs = vals.flip(0)[:k].clamp(min=0), vecs.flip(1)[:, :k]
    return vals.float().numpy(), vecs.float().numpy()


def rebuild(eigvals: np.ndarray, eigvecs: np.ndarray) -> np.ndarray:
    """``U diag(lambda) U^T`` from factors; the factors themselves are never averaged."""
    u = np.asarray(eigvecs, dtype=np.float64)
    lam = np.asarray(eigvals, dtype=np.float64)
    if u.ndim != 2 or lam.shape != (u.shape[1],):
        raise FedlabError(
            f"relation factors do not match: eigenvalues {lam.shape} and eigenvectors {u.shape}; "
            "expected (r,) and (D, r)"
        )
    return (u * lam) @ u.T
