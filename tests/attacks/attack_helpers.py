"""Shared helpers for the attack tests: a seeded LeNet and one FedSGD batch."""

from __future__ import annotations

import numpy as np
import torch
from fedlab.attacks.base import AttackInput, ModelSpec
from skimage import data, transform

# Crops of bundled scikit-image photos, fixed before any tuning.
CROPS = {
    "astronaut": (data.astronaut, (30, 230, 130, 330)),
    "chelsea": (data.chelsea, (50, 250, 100, 300)),
    "coffee": (data.coffee, (100, 300, 200, 400)),
}


def crop_image(name: str, size: int) -> torch.Tensor:
    """``(3, size, size)`` float image in [0, 1] cut from a bundled photo."""
    loader, (r0, r1, c0, c1) = CROPS[name]
    img = loader()[r0:r1, c0:c1].astype(np.float64) / 255.0
    img = transform.resize(img, (size, size), anti_aliasing=True)
    return torch.tensor(img, dtype=torch.float32).permute(2, 0, 1).contiguous()


def fedsgd_input(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    seed: int = 0,
    init: str = "dlg-uniform",
    lr: float | None = None,
    num_classes: int = 10,
) -> AttackInput:
    """The AttackInput of one FedSGD step of a seeded LeNet on ``images``.

    With ``lr`` the input carries the update ``-lr * g`` instead of the gradient ``g``.
    """
    size = images.shape[-1]
    spec = ModelSpec("lenet", {"num_classes": num_classes, "image_size": size, "init": init})
    torch.manual_seed(seed)
    model = spec.build()
    loss = torch.nn.functional.cross_entropy(model(images), labels)
    grads = [g.detach() for g in torch.autograd.grad(loss, list(model.parameters()))]
    common = dict(
        model=spec,
        params=[p.detach().clone() for p in model.parameters()],
        batch_size=images.shape[0],
        image_shape=tuple(images.shape[1:]),
        num_classes=num_classes,
    )
    if lr is None:
        return AttackInput(gradients=grads, **common)
    return AttackInput(update=[-lr * g for g in grads], lr=lr, local_steps=1, **common)
