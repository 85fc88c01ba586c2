"""FedFoA's client side of the relation matrices: the alignment loss.

The matrix math itself (standardize, relation matrix, factorize, rebuild) is shared with the
server and lives in :mod:`fedlab.strategies.relation_matrices`; it is re-exported here so existing
imports keep working.
"""

from __future__ import annotations

import torch
from fedlab.strategies.relation_matrices import (
    anchor_gram,
    factorize,
    rebuild,
    relation_matrix,
    standardize,
)

from fedlab.errors import FedlabError

__all__ = [
    "alignment_loss",
    "anchor_gram",
    "factorize",
    "gram_alignment_loss",
    "rebuild",
    "relation_matrix",
    "standardize",
]


def alignment_loss(z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the off-diagonal entries of ``relation_matrix(z)`` and ``target``.

    The diagonal is left out: a correlation matrix has ones there, while a rank-r
    reconstruction of the global one does not, and no gradient could close that gap.
    """
    r = relation_matrix(z)
    d = r.shape[0]
    if target.shape != r.shape:
        raise FedlabError(
            f"global relation matrix is {tuple(target.shape)} but this client's projector gives "
            f"{d} x {d}; every client must use the same proj-dim"
        )
    off = ~torch.eye(d, dtype=torch.bool, device=r.device)
    return (r - target.to(r))[off].pow(2).mean()


def gram_alignment_loss(z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``||anchor_gram(z) - target||_F^2`` over all entries (2 - 2 CKA for two unit-norm Grams).

    Unlike the correlation, the Gram has no fixed diagonal, so every entry is compared.
    """
    k = anchor_gram(z)
    if target.shape != k.shape:
        raise FedlabError(
            f"global anchor relation is {tuple(target.shape)} but this client has {len(k)} "
            "anchors; every client must use the same anchor-count"
        )
    return (k - target.to(k)).pow(2).sum()
