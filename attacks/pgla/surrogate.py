"""Clean training gradients from a surrogate task, and victim gradients from unseen images.

Split (documented in docs/pgla.md): the denoisers are trained only on ``digits`` (scikit-learn's
8x8 digits, upsampled to 32x32 and copied to 3 channels) or ``sample-patches`` (32x32 patches of
scikit-learn's two sample photos); victims are 32x32 crops of scikit-image's bundled photos
(:data:`VICTIM_IMAGES`), which no denoiser sees. Models are DLG's LeNet with DLG's uniform
initialisation, a fresh seed per gradient; labels are the digit classes, else seeded draws.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from fedlab.attacks.models import LeNet, dlg_uniform_init_
from fedlab.attacks.pgla.transform import flatten_gradients

from fedlab.errors import FedlabError

SURROGATES = ("digits", "sample-patches")
VICTIM_IMAGES = (
    "astronaut",
    "camera",
    "chelsea",
    "coffee",
    "coins",
    "rocket",
    "brick",
    "grass",
    "gravel",
    "moon",
    "retina",
    "text",
)
NUM_CLASSES = 10
IMAGE_SIZE = 32


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    """``(N, H, W[, 3])`` floats in [0, 1] -> ``(N, 3, 32, 32)`` float32."""
    x = torch.as_tensor(images, dtype=torch.float32)
    x = x.unsqueeze(1).repeat(1, 3, 1, 1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return F.interpolate(x, size=IMAGE_SIZE, mode="bilinear", align_corners=False).clamp(0, 1)


def surrogate_images(
    name: str, *, seed: int = 0, count: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(N, 3, 32, 32)`` in [0, 1] and labels ``(N,)`` of a surrogate task.

    Raises
    ------
    FedlabError
        If ``name`` is not one of :data:`SURROGATES`.
    """
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        return _to_tensor(d.images / 16.0), torch.as_tensor(d.target, dtype=torch.long)
    if name == "sample-patches":
        from sklearn.datasets import load_sample_images

        rng = np.random.default_rng(seed)
        photos = [im.astype(np.float32) / 255.0 for im in load_sample_images().images]
        crops = []
        for _ in range(count):
            im = photos[rng.integers(len(photos))]
            size = int(rng.integers(32, 129))
            r, c = rng.integers(im.shape[0] - size), rng.integers(im.shape[1] - size)
            crops.append(_to_tensor(im[None, r : r + size, c : c + size])[0])
        labels = torch.as_tensor(rng.integers(NUM_CLASSES, size=count), dtype=torch.long)
        return torch.stack(crops), labels
    raise FedlabError(f"unknown surrogate {name!r}; allowed: {', '.join(SURROGATES)}")


def victim_images(count: int = 8, *, seed: int = 1234) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` 32x32 RGB victims from scikit-image photos (centre crops), seeded labels."""
    from skimage import data
    from skimage.color import gray2rgb

    if not 1 <= count <= len(VICTIM_IMAGES):
        raise FedlabError(f"victim count {count} must be in 1..{len(VICTIM_IMAGES)}")
    out = []
    for name in VICTIM_IMAGES[:count]:
        im = getattr(data, name)()
        im = gray2rgb(im) if im.ndim == 2 else im[..., :3]
        im = im.astype(np.float32) / (255.0 if im.max() > 1 else 1.0)
        side = min(im.shape[:2])
        r, c = (im.shape[0] - side) // 2, (im.shape[1] - side) // 2
        out.append(_to_tensor(im[None, r : r + side, c : c + side])[0])
    labels = torch.as_tensor(np.random.default_rng(seed).integers(NUM_CLASSES, size=count))
    return torch.stack(out), labels.long()


def victim_model(seed: int) -> LeNet:
    """DLG's LeNet (10 classes, 32x32 RGB) with DLG's uniform init from ``seed``."""
    torch.manual_seed(seed)
    return dlg_uniform_init_(LeNet(num_classes=NUM_CLASSES, in_channels=3, image_size=IMAGE_SIZE))


def clean_gradient(
    model: torch.nn.Module, image: torch.Tensor, label: torch.Tensor
) -> torch.Tensor:
    """Flat cross-entropy gradient of ``model`` on one image ``(3, 32, 32)`` and label."""
    loss = F.cross_entropy(model(image.unsqueeze(0)), label.view(1))
    return flatten_gradients(torch.autograd.grad(loss, list(model.parameters())))


def clip_l2(flat: torch.Tensor, clip_norm: float) -> torch.Tensor:
    """Rows of ``flat`` scaled to L2 norm at most ``clip_norm`` (DP clipping)."""
    norms = flat.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return flat * (clip_norm / norms).clamp(max=1.0)


def gradient_stream(
    images: torch.Tensor, labels: torch.Tensor, *, clip_norm: float, batch_size: int, seed: int
) -> Iterator[torch.Tensor]:
    """Endless batches ``(batch_size, num_params)`` of clipped clean gradients.

    Each gradient draws an image and a fresh model seed from a generator seeded by ``seed``, so
    a resumed run continues a reproducible stream when it skips the batches already used.
    """
    rng = np.random.default_rng(seed)
    while True:
        rows = []
        for _ in range(batch_size):
            i = int(rng.integers(len(images)))
            model = victim_model(int(rng.integers(2**31 - 1)))
            rows.append(clean_gradient(model, images[i], labels[i]))
        yield clip_l2(torch.stack(rows), clip_norm)
