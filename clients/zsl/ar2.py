"""(AR)^2 (Rao et al.; code zjrao/AARR), reconstructed at small scale for the image benchmarks.

What is kept from the paper, and what differs:

- A CNN backbone pretrained on seen classes only (cross-entropy over the seen classes), then
  fine-tuned for ZSL with a teacher that is the EMA of the student (backbone and head).
- Unseen-Aware Distillation (UAD): the student's feature map is pulled towards the teacher's,
  weighted per location by a Grad-CAM map of the teacher for the *nearest unseen classes* of
  each example's class (nearest by class-attribute cosine; only class descriptions of unseen
  classes are used, never their images), so fine-tuning keeps what unseen classes need.
- Attribute-Guided Learning (AGL): one learnable prototype per attribute in feature space;
  attribute scores are the max over locations of the prototype response, regressed onto the
  class attributes; class prototypes ``a_c P`` mapped back to their class by a cosine
  classifier. At test time the prototype classifier covers unseen classes too and its scores
  are averaged with the attribute head's.
- The paper embeds classes with word vectors; here the fixed class attribute vectors replace
  them (no word vectors offline).
- Small scale: a three-layer GroupNorm CNN on 16x16 images instead of a ViT/ResNet.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from fedlab.clients.zsl.models import CompatibilityModel
from torch import nn


def backbone(in_channels: int, width: int = 16) -> nn.Sequential:
    """Conv feature extractor: ``(B, C, 16, 16) -> (B, 2 * width, 8, 8)``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1), nn.GroupNorm(4, width), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1, stride=2), nn.GroupNorm(4, 2 * width), nn.ReLU(),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.GroupNorm(4, 2 * width), nn.ReLU(),
    )  # fmt: skip


class Ar2Net(CompatibilityModel):
    """Student (backbone, attribute head, seen classifier, attribute prototypes) + EMA teacher.

    Parameters
    ----------
    in_channels : int
    attributes : torch.Tensor
        ``(num_classes, A)``.
    num_seen : int
        Size of the pretraining classifier.
    width : int
        Backbone width; features have ``2 * width`` channels.
    use_agl : bool
        Average the attribute-prototype classifier's scores into the test scores.
    """

    def __init__(
        self,
        in_channels: int,
        attributes: torch.Tensor,
        num_seen: int,
        *,
        width: int = 16,
        scale: float = 10.0,
        use_agl: bool = True,
    ) -> None:
        super().__init__(attributes, scale)
        channels, attr_dim = 2 * width, self.attributes.shape[1]
        self.backbone = backbone(in_channels, width)
        self.head = nn.Linear(channels, attr_dim)
        self.classifier = nn.Linear(channels, num_seen)
        self.prototypes = nn.Parameter(torch.randn(attr_dim, channels) / channels**0.5)
        self.teacher = nn.ModuleDict(
            {"backbone": copy.deepcopy(self.backbone), "head": copy.deepcopy(self.head)}
        )
        self.teacher.requires_grad_(False)
        self.use_agl = use_agl

    # -- student ------------------------------------------------------------------------------
    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.feature_map(x).mean((2, 3)))

    def prototype_scores(self, pooled: torch.Tensor) -> torch.Tensor:
        """Cosine of pooled features with class prototypes ``a_c P`` (all classes)."""
        protos = self.attributes @ self.prototypes
        return self.scale * F.normalize(pooled, dim=1) @ F.normalize(protos, dim=1).T

    def attribute_predictions(self, fmap: torch.Tensor) -> torch.Tensor:
        """Max over locations of each attribute prototype's response: ``(B, A)``."""
        return torch.einsum("bchw,ac->bahw", fmap, self.prototypes).amax((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fmap = self.feature_map(x)
        pooled = fmap.mean((2, 3))
        scores = self.scores(self.head(pooled))
        if self.use_agl:
            scores = 0.5 * (scores + self.prototype_scores(pooled))
        return scores

    # -- teacher ------------------------------------------------------------------------------
    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """``teacher <- momentum * teacher + (1 - momentum) * student`` (0 copies)."""
        for name in ("backbone", "head"):
            student = getattr(self, name).state_dict()
            for key, t in self.teacher[name].state_dict().items():
                t.mul_(momentum).add_(student[key].detach(), alpha=1 - momentum)

    def unseen_aware_maps(self, x: torch.Tensor, nearest: torch.Tensor) -> tuple:
        """Teacher feature map and its Grad-CAM for the given unseen classes.

        Parameters
        ----------
        nearest : torch.Tensor
            ``(B, n)`` class ids of each example's nearest unseen classes.

        Returns
        -------
        (teacher feature map ``(B, C, H, W)`` detached, weights ``(B, H, W)`` summing to 1)
        """
        with torch.enable_grad():
            fmap = self.teacher["backbone"](x).detach().requires_grad_(True)
            emb = self.teacher["head"](fmap.mean((2, 3)))
            target = self.scores(emb).gather(1, nearest).sum()
            (grads,) = torch.autograd.grad(target, fmap)
        alpha = grads.mean((2, 3), keepdim=True)
        cam = F.relu((alpha * fmap).sum(1)).detach()
        flat = cam.flatten(1)
        total = flat.sum(1, keepdim=True)
        uniform = torch.full_like(flat, 1.0 / flat.shape[1])
        weights = torch.where(total > 0, flat / total.clamp_min(1e-12), uniform)
        return fmap.detach(), weights.view_as(cam)


def nearest_unseen(attributes: torch.Tensor, unseen: torch.Tensor, n: int) -> torch.Tensor:
    """For every class, its ``n`` nearest unseen classes by attribute cosine: ``(C, n)``."""
    a = F.normalize(attributes.float(), dim=1)
    sim = a @ a[unseen].T
    n = min(n, len(unseen))
    return unseen[sim.topk(n, dim=1).indices]


def ar2_losses(
    model: Ar2Net,
    images: torch.Tensor,
    positions: torch.Tensor,
    labels: torch.Tensor,
    seen: torch.Tensor,
    nearest: torch.Tensor,
    *,
    uad: float,
    agl: float,
    adjust: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Fine-tuning loss: seen-class ZSL cross-entropy + ``uad`` * UAD + ``agl`` * AGL.

    ``labels`` are class ids, ``positions`` their index in ``seen``; ``adjust`` (a label-skew
    remedy) maps the seen-class logits of both cross-entropies before the loss.
    """
    adjust = adjust or (lambda logits: logits)
    fmap = model.feature_map(images)
    pooled = fmap.mean((2, 3))
    loss_cls = F.cross_entropy(adjust(model.scores(model.head(pooled))[:, seen]), positions)
    loss = loss_cls
    metrics = {"cls": loss_cls.item()}
    if uad > 0:
        t_map, weights = model.unseen_aware_maps(images, nearest[labels])
        per_location = (fmap - t_map).pow(2).mean(1)
        loss_uad = (weights * per_location).sum((1, 2)).mean()
        loss = loss + uad * loss_uad
        metrics["uad"] = loss_uad.item()
    if agl > 0:
        attr_pred = model.attribute_predictions(fmap)
        loss_attr = F.mse_loss(attr_pred, model.attributes[labels])
        loss_proto = F.cross_entropy(adjust(model.prototype_scores(pooled)[:, seen]), positions)
        loss = loss + agl * (loss_attr + loss_proto)
        metrics["agl"] = (loss_attr + loss_proto).item()
    return loss, metrics
