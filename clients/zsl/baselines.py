"""ESZSL (Romera-Paredes and Torr, ICML 2015) in closed form, centralised and federated.

With features ``X`` (n x d), seen-class attributes ``S`` (z x A) and ``Y`` (n x z) holding +1
for the true class and -1 elsewhere, ESZSL's map is

    V = (X^T X / n + gamma I)^-1 (X^T Y S / n) (S^T S + lambda I)^-1

(the paper's form with the data terms divided by n, so gamma does not depend on the data size).
Both data terms are example means, so the federated version is exact: each client sends its
means and example count, the server takes the example-weighted average and solves once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from fedlab.clients.zsl.models import Linear


def eszsl_statistics(
    features: torch.Tensor, positions: torch.Tensor, seen_attributes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One party's sufficient statistics: (X^T X / n, X^T Y S / n, n).

    ``features`` are normalised per sample as the models do; ``positions`` index rows of
    ``seen_attributes``.
    """
    x = F.normalize(features.double(), dim=1)
    y = -torch.ones(len(x), len(seen_attributes), dtype=torch.float64)
    y[torch.arange(len(x)), positions] = 1.0
    n = len(x)
    return x.T @ x / n, x.T @ y @ seen_attributes.double() / n, n


def average_statistics(
    parts: list[tuple[torch.Tensor, torch.Tensor, int]],
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Example-weighted mean of several parties' statistics (FedAvg of the statistics)."""
    total = sum(n for _, _, n in parts)
    gram = sum(g * (n / total) for g, _, n in parts)
    cross = sum(c * (n / total) for _, c, n in parts)
    return gram, cross, total


def eszsl_solve(
    gram: torch.Tensor,
    cross: torch.Tensor,
    seen_attributes: torch.Tensor,
    gamma: float = 1e-2,
    lam: float = 1.0,
) -> torch.Tensor:
    """The map ``V`` (d x A) from the statistics."""
    s = seen_attributes.double()
    left = torch.linalg.solve(gram + gamma * torch.eye(len(gram), dtype=gram.dtype), cross)
    right = torch.linalg.inv(s.T @ s + lam * torch.eye(s.shape[1], dtype=s.dtype))
    return left @ right


def eszsl_model(v: torch.Tensor, attributes: torch.Tensor, scale: float = 10.0) -> Linear:
    """A :class:`~fedlab.clients.zsl.models.Linear` model whose weight is ``V^T``."""
    model = Linear(v.shape[0], attributes, scale)
    with torch.no_grad():
        model.map.weight.copy_(v.T.float())
    return model
