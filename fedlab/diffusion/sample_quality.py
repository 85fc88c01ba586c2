"""Can a diffusion prior generate? A classifier two-sample test that needs no downloaded weights.

A prior's samples from pure noise are compared with real crops of the same size by a fixed,
cheap classifier: standardised logistic regression on image statistics (colour moments,
saturation, clipping, luma gradients and the radially averaged power spectrum), scored by
stratified k-fold held-out accuracy. 0.5 means the classifier cannot tell the two sets apart;
1.0 means every image gives itself away. The classifier and its budget are fixed here, before
any new prior is trained, so the figure can be compared across checkpoints (Lopez-Paz and
Oquab, "Revisiting classifier two-sample tests", ICLR 2017).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fedlab import image_quality
from fedlab.diffusion.sampling import reverse, unet_eps
from fedlab.errors import FedlabError

SPECTRUM_BINS = 8
FOLDS = 5


def image_statistics(images: torch.Tensor) -> np.ndarray:
    """``(N, F)`` statistics of RGB images ``(N, 3, H, W)`` in [0, 1]."""
    if images.dim() != 4 or images.size(1) != 3 or min(images.shape[-2:]) < 8:
        raise FedlabError(f"images must be (N, 3, H, W) with H, W >= 8, got {tuple(images.shape)}")
    x = images.detach().cpu().double().clamp(0, 1)
    flat = x.flatten(2)
    grey = image_quality.luma(x)[:, 0]
    gy, gx = grey.diff(dim=-2)[..., :, :-1], grey.diff(dim=-1)[..., :-1, :]
    gradient = (gx.pow(2) + gy.pow(2)).sqrt().flatten(1)
    saturation = (x.amax(1) - x.amin(1)).flatten(1)
    centred = grey.flatten(1) - grey.flatten(1).mean(1, keepdim=True)
    std = centred.std(1).clamp_min(1e-6)
    _, power = image_quality.radial_power_spectrum(x, bins=SPECTRUM_BINS)
    columns = [
        flat.mean(2), flat.std(2),  # colour moments per channel
        saturation.mean(1, keepdim=True), saturation.std(1, keepdim=True),
        (flat <= 1 / 255).double().mean(2), (flat >= 254 / 255).double().mean(2),  # clipping
        gradient.mean(1, keepdim=True), gradient.std(1, keepdim=True),
        gradient.quantile(0.9, dim=1, keepdim=True),
        ((centred / std[:, None]).pow(3).mean(1)).unsqueeze(1),  # skewness of luma
        ((centred / std[:, None]).pow(4).mean(1)).unsqueeze(1),  # kurtosis of luma
        (power + 1e-12).log10(),
    ]  # fmt: skip
    return torch.cat(columns, dim=1).numpy()


def two_sample_accuracy(first: torch.Tensor, second: torch.Tensor, *, seed: int = 0) -> float:
    """Held-out accuracy of telling ``first`` from ``second`` (two image sets of one size).

    Standardised logistic regression (C = 1) on :func:`image_statistics`, stratified
    :data:`FOLDS`-fold cross-validation, accuracy averaged over the folds.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if first.shape[1:] != second.shape[1:]:
        raise FedlabError(
            f"two-sample test: both sets need one image shape, got {tuple(first.shape[1:])} "
            f"and {tuple(second.shape[1:])}"
        )
    if min(len(first), len(second)) < FOLDS:
        raise FedlabError(f"two-sample test: each set needs at least {FOLDS} images")
    features = np.concatenate([image_statistics(first), image_statistics(second)])
    labels = np.r_[np.zeros(len(first)), np.ones(len(second))]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=seed)
    return float(cross_val_score(model, features, labels, cv=folds, scoring="accuracy").mean())


@torch.no_grad()
def generate(unet: Any, scheduler: Any, count: int, *, steps: int = 50, seed: int = 0,
             batch: int = 64, clip_x0: bool = True) -> torch.Tensor:  # fmt: skip
    """``count`` samples from pure noise at the prior's training size, DDIM, in [0, 1]
    (``clip_x0``: see :func:`fedlab.diffusion.sampling.reverse`)."""
    size = unet.config.sample_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    generator = torch.Generator().manual_seed(seed)
    top = scheduler.config.num_train_timesteps - 1
    out = []
    for start in range(0, count, batch):
        n = min(batch, count - start)
        noise = torch.randn((n, unet.config.in_channels, *size), generator=generator)
        x = reverse(unet_eps(unet.eval()), scheduler.config, noise, top, steps=steps,
                    clip_x0=clip_x0)  # fmt: skip
        out.append(((x + 1) / 2).clamp(0, 1))
    return torch.cat(out)
