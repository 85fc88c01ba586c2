"""Self-supervised objectives on two views: SimCLR's NT-Xent, BYOL and SimSiam."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """SimCLR's normalized-temperature cross entropy over the 2N views of a batch."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, targets)


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL/SimSiam: ``2 - 2 cos(p, stopgrad(z))`` averaged over the batch."""
    return 2 - 2 * F.cosine_similarity(p, z.detach(), dim=1).mean()


def clamp_norm(z: torch.Tensor, mu: float) -> torch.Tensor:
    """Rows with norm above ``sqrt(mu)`` scaled down to it (FedSC's bound on the features)."""
    limit = mu**0.5
    norms = z.norm(dim=1, keepdim=True)
    return torch.where(norms < limit, z, F.normalize(z, dim=1) * limit)


def second_moment(z: torch.Tensor) -> torch.Tensor:
    """``Z^T Z / n``: the uncentred D x D correlation FedSC shares (no standardisation)."""
    return z.T @ z / len(z)


def spectral_contrastive(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    mu: float = 5.0,
    external: torch.Tensor | None = None,
    alpha: float = 1.0,
) -> torch.Tensor:
    """Spectral contrastive loss (HaoChen et al. 2021) in FedSC's form (Jing et al. 2024).

    ``-2 tr(z1 z2^T) / n + alpha tr(R^2) + 2 (1 - alpha) tr(R R_ext)`` with ``R`` the second
    moment of both views' (norm-clamped) features in this batch and ``R_ext`` the other clients'
    matrix, held fixed. Without ``external`` it is the plain loss ``-2 tr(z1 z2^T)/n + ||R||^2``.
    """
    z1, z2 = clamp_norm(z1, mu), clamp_norm(z2, mu)
    positive = -2 * (z1 * z2).sum() / len(z1)
    r = second_moment(torch.cat([z1, z2]))
    if external is None:
        return positive + r.pow(2).sum()
    ext = external.to(r).detach()
    return positive + alpha * (r * r).sum() + 2 * (1 - alpha) * (r * ext).sum()
