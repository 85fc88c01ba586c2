"""Shared anchor images: procedural, not of any task class, the same on every client.

The basis-free relation (``relation-kind=anchor-gram``) compares how each client's encoder
arranges one and the same set of images. Every client generates that set itself from the run
seed, so no real image (and no label) ever leaves a client or reaches one. The anchors are
coloured sinusoidal gratings overlaid with soft Gaussian blobs: texture and colour statistics
like natural crops, but no outlines, so they belong to none of ``textured-shapes``' classes.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from fedlab.errors import FedlabError
from fedlab.limits import MAX_IMAGE_SIZE

__all__ = ["anchor_images"]

#: anchors at most; the client computes an n x n Gram matrix of them every step
MAX_ANCHORS = 1024


def anchor_images(count: int, channels: int, size: int, seed: int) -> torch.Tensor:
    """``count`` procedural images (count, channels, size, size) in [0, 1], fixed by ``seed``.

    Parameters
    ----------
    count : int
        Number of anchors, in [2, 1024].
    channels, size : int
        The task images' channels and side, so that every encoder takes the anchors as input.
    seed : int
        Fixes every draw; clients of one run pass the same seed and get the same images.
    """
    if not 2 <= count <= MAX_ANCHORS:
        raise FedlabError(f"anchor-count must lie in [2, {MAX_ANCHORS}], got {count}")
    if channels < 1 or not 1 <= size <= MAX_IMAGE_SIZE:
        raise FedlabError(f"anchors need >= 1 channel and a side in [1, {MAX_IMAGE_SIZE}]")
    return torch.from_numpy(_anchors(count, channels, size, seed).copy())


@lru_cache(maxsize=4)
def _anchors(count: int, channels: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size), indexing="ij")
    out = np.empty((count, channels, size, size), np.float32)
    for i in range(count):
        image = np.zeros((channels, size, size))
        for _ in range(2):  # two gratings of random orientation, frequency, phase and colour
            theta, freq, phase = rng.uniform(0, np.pi), rng.uniform(1, 6), rng.uniform(0, 6.3)
            wave = np.sin(2 * np.pi * freq * (np.cos(theta) * xx + np.sin(theta) * yy) + phase)
            image += rng.uniform(-0.25, 0.25, (channels, 1, 1)) * wave
        for _ in range(rng.integers(1, 4)):  # soft blobs
            cy, cx, width = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * width**2))
            image += rng.uniform(-0.5, 0.5, (channels, 1, 1)) * blob
        out[i] = np.clip(image + rng.uniform(0.2, 0.8, (channels, 1, 1)), 0, 1)
    out.flags.writeable = False
    return out
