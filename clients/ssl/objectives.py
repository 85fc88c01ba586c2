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
