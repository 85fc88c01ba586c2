"""Feature-based ZSL models: visual features -> attribute space, cosine compatibility.

Every model maps a (per-sample L2-normalised) feature ``x`` to an embedding ``e(x)`` in the
attribute space and scores class ``c`` by ``scale * cos(e(x), a_c)``; ``forward`` returns the
scores of all classes. Class attributes are a non-persistent buffer: they are public class
descriptions, so they never travel with the weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fedlab.errors import FedlabError


class CompatibilityModel(nn.Module):
    """Base: ``forward(x) = scale * cos(embed(x), attributes)``.

    Parameters
    ----------
    attributes : torch.Tensor
        ``(num_classes, A)`` class attributes.
    scale : float
        Inverse temperature of the cosine scores.
    """

    def __init__(self, attributes: torch.Tensor, scale: float = 10.0) -> None:
        super().__init__()
        self.register_buffer("attributes", torch.as_tensor(attributes).float(), persistent=False)
        self.scale = scale

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores(self.embed(x))

    def scores(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.scale * F.normalize(embedding, dim=1) @ F.normalize(self.attributes, dim=1).T

    def regularization(self, embedding: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Extra training loss of the model (none by default)."""
        return embedding.new_zeros(())


class Linear(CompatibilityModel):
    """One linear map; ESZSL's closed form fills its weight (see ``baselines``)."""

    def __init__(self, in_dim: int, attributes: torch.Tensor, scale: float = 10.0) -> None:
        super().__init__(attributes, scale)
        self.map = nn.Linear(in_dim, self.attributes.shape[1], bias=False)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.map(F.normalize(x, dim=1))


class MLP(CompatibilityModel):
    """Two layers: ``in_dim -> width -> A`` with a ReLU."""

    def __init__(
        self, in_dim: int, attributes: torch.Tensor, width: int = 128, scale: float = 10.0
    ) -> None:
        super().__init__(attributes, scale)
        self.net = nn.Sequential(
            nn.Linear(in_dim, width), nn.ReLU(), nn.Linear(width, self.attributes.shape[1])
        )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(F.normalize(x, dim=1))


class ParsNets(CompatibilityModel):
    """ParsNets (Guo et al., IJCAI 2024), reconstructed from the paper's description.

    ``K`` base linear networks ``W_k: R^d -> R^A``; a gate scores the bases per sample, keeps
    the top ``k`` and mixes them with softmax weights over the kept ones:
    ``e(x) = sum_{k in top-k(g(x))} softmax(g(x)_topk)_k W_k x``. Only the ``k`` selected maps
    are applied (gathered per sample), so FLOPs scale with ``k``, not ``K``.

    Regularisers (:meth:`regularization`): orthogonality between bases (squared cosine of
    every pair of flattened ``W_k``), low rank of each base (nuclear norm), and the OLE-style
    loss on the batch's normalised embeddings: low rank within a class, high rank across
    classes, ``sum_c max(delta, ||E_c||_*) - ||E||_*``, divided by the batch size.
    """

    def __init__(
        self,
        in_dim: int,
        attributes: torch.Tensor,
        *,
        bases: int = 4,
        topk: int = 2,
        scale: float = 10.0,
        ortho: float = 1e-2,
        lowrank: float = 1e-4,
        ole: float = 0.1,
        ole_delta: float = 0.5,
    ) -> None:
        super().__init__(attributes, scale)
        if not 1 <= topk <= bases:
            raise FedlabError(
                f"parsnets-topk {topk} must lie in 1..parsnets-bases ({bases}); lower it"
            )
        attr_dim = self.attributes.shape[1]
        self.topk = topk
        self.bases = nn.Parameter(torch.randn(bases, attr_dim, in_dim) / in_dim**0.5)
        self.gate = nn.Linear(in_dim, bases)
        self.weights = {"ortho": ortho, "lowrank": lowrank, "ole": ole}
        self.ole_delta = ole_delta

    def select(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices ``(B, k)`` of the selected bases, their mixing weights ``(B, k)``)."""
        logits = self.gate(x)
        top, idx = logits.topk(self.topk, dim=1)
        return idx, torch.softmax(top, dim=1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(x, dim=1)
        idx, mix = self.select(x)
        chosen = self.bases[idx]  # (B, k, A, d): only the selected maps
        return torch.einsum("bkad,bd,bk->ba", chosen, x, mix)

    def regularization(self, embedding: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        w = self.weights
        flat = F.normalize(self.bases.flatten(1), dim=1)
        gram = flat @ flat.T
        off = gram - torch.diag_embed(torch.diagonal(gram))
        loss = w["ortho"] * off.pow(2).sum() / max(len(flat) * (len(flat) - 1), 1)
        loss = loss + w["lowrank"] * torch.linalg.matrix_norm(self.bases, ord="nuc").sum()
        if w["ole"] > 0:
            loss = loss + w["ole"] * ole_loss(embedding, labels, self.ole_delta)
        return loss


def ole_loss(embedding: torch.Tensor, labels: torch.Tensor, delta: float = 0.5) -> torch.Tensor:
    """Orthogonal Low-rank Embedding loss (Lezama et al. 2018) on unit-norm embeddings.

    ``(sum_c max(delta, ||E_c||_*) - ||E||_*) / B``: small when each class's embeddings span a
    low-dimensional subspace and different classes span different ones.
    """
    e = F.normalize(embedding, dim=1)
    within = sum(
        torch.clamp(torch.linalg.matrix_norm(e[labels == c], ord="nuc"), min=delta)
        for c in labels.unique()
    )
    return (within - torch.linalg.matrix_norm(e, ord="nuc")) / len(e)
