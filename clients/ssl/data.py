"""``textured-shapes``: procedural data on which raw pixels are weak and shape is the class.

Eight outline classes (disc, ring, square, frame, triangle, plus, half-disc, L) drawn at random
positions, scales (radius 6-12 px), small rotations (+-25 degrees) and colours, each filled with
a tinted crop of a bundled scikit-image texture and pasted on another tinted texture crop.
Nothing is downloaded: the textures ship with scikit-image and the rest is generated from a
fixed seed, so every process builds the same images. The class is carried only by the outline,
so a linear probe on raw pixels does poorly while an encoder that learned shape does well.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from fedlab.data.datasets import ImageDataset, from_numpy, resize
from fedlab.registry import DATASETS

SHAPES = ("disc", "ring", "square", "frame", "triangle", "plus", "half-disc", "L")
TEXTURES = ("brick", "grass", "gravel", "camera", "moon", "coffee")
SIZE = 32
SUPERSAMPLE = 2


def _mask(label: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test of shape ``label`` on unit coordinates (u right, v up)."""
    r2 = u**2 + v**2
    box = np.maximum(np.abs(u), np.abs(v))
    name = SHAPES[label]
    if name == "disc":
        return r2 <= 1.0
    if name == "ring":
        return (r2 <= 1.0) & (r2 >= 0.3)
    if name == "square":
        return box <= 0.8
    if name == "frame":
        return (box <= 0.85) & (box >= 0.45)
    if name == "triangle":
        return (v >= -0.6) & (np.abs(u) <= (0.95 - v) / np.sqrt(3.0))
    if name == "plus":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.95)) | (
            (np.abs(v) <= 0.3) & (np.abs(u) <= 0.95)
        )
    if name == "half-disc":
        return (u**2 + (v + 0.4) ** 2 <= 1.0) & (v >= -0.4)
    # "L": a vertical and a horizontal bar meeting at the bottom left
    vertical = (u >= -0.8) & (u <= -0.25) & (np.abs(v) <= 0.9)
    horizontal = (v >= -0.9) & (v <= -0.35) & (u >= -0.8) & (u <= 0.8)
    return vertical | horizontal


def _texture_bank() -> list[np.ndarray]:
    """Grey textures in [0, 1], contrast-normalised, at half resolution."""
    from skimage import data as skdata

    bank = []
    for name in TEXTURES:
        img = np.asarray(getattr(skdata, name)(), dtype=np.float32)
        img = img.mean(axis=2) if img.ndim == 3 else img
        h, w = (img.shape[0] // 2) * 2, (img.shape[1] // 2) * 2
        img = img[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))  # 2x2 average pooling
        img = (img - img.mean()) / (img.std() + 1e-6)
        bank.append(img)
    return bank


def _crops(bank: list[np.ndarray], n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    out = np.empty((n, size, size), np.float32)
    which = rng.integers(0, len(bank), n)
    for i, k in enumerate(which):
        img = bank[k]
        t = rng.integers(0, img.shape[0] - size)
        left = rng.integers(0, img.shape[1] - size)
        out[i] = img[t : t + size, left : left + size]
    return out


def _colours(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Background and object colours at least 0.45 apart (Euclidean, RGB in [0, 1])."""
    bg = rng.uniform(0.05, 0.95, (n, 3))
    fg = rng.uniform(0.05, 0.95, (n, 3))
    for _ in range(50):
        close = np.linalg.norm(bg - fg, axis=1) < 0.45
        if not close.any():
            break
        fg[close] = rng.uniform(0.05, 0.95, (int(close.sum()), 3))
    return bg.astype(np.float32), fg.astype(np.float32)


def make_shapes(per_class: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) in [0, 1] and labels (N,), fixed by ``seed``.

    Parameters
    ----------
    per_class : int
        Images per shape class.
    seed : int
        Fixes every random choice.
    """
    rng = np.random.default_rng(seed)
    n = per_class * len(SHAPES)
    labels = np.repeat(np.arange(len(SHAPES)), per_class)
    big = SIZE * SUPERSAMPLE
    grid = (np.arange(big, dtype=np.float32) + 0.5) / SUPERSAMPLE  # pixel centres, in px
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    radius = rng.uniform(6.0, 12.0, n)
    cx = rng.uniform(radius, SIZE - radius)
    cy = rng.uniform(radius, SIZE - radius)
    angle = np.deg2rad(rng.uniform(-25.0, 25.0, n))
    bank = _texture_bank()
    bg_tex = _crops(bank, n, SIZE, rng)
    fg_tex = _crops(bank, n, SIZE, rng)
    bg_col, fg_col = _colours(n, rng)
    images = np.empty((n, 3, SIZE, SIZE), np.float32)
    for i in range(n):
        dx, dy = (xx - cx[i]) / radius[i], (cy[i] - yy) / radius[i]
        c, s = np.cos(angle[i]), np.sin(angle[i])
        inside = _mask(labels[i], c * dx + s * dy, -s * dx + c * dy).astype(np.float32)
        alpha = inside.reshape(SIZE, SUPERSAMPLE, SIZE, SUPERSAMPLE).mean(axis=(1, 3))
        bg = bg_col[i][:, None, None] * (1.0 + 0.12 * bg_tex[i])
        fg = fg_col[i][:, None, None] * (1.0 + 0.08 * fg_tex[i])
        images[i] = alpha * fg + (1.0 - alpha) * bg
    order = rng.permutation(n)
    return np.clip(images[order], 0.0, 1.0), labels[order]


@lru_cache(maxsize=2)
def _memo(per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """A pure function's memo (about 1 s per build): a ClientApp is rebuilt for every message."""
    images, labels = make_shapes(per_class)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


@DATASETS.register("textured-shapes")
def textured_shapes(data_path: str = "", image_size: int = 0, per_class: int = 300) -> ImageDataset:
    """Procedural shapes on bundled textures (see the module docstring); 8 classes, 32x32 RGB."""
    images, labels = _memo(per_class)
    return resize(
        from_numpy(images.copy(), labels.copy(), list(SHAPES), "textured-shapes"), image_size
    )


def textured_shapes_x4(data_path: str = "", image_size: int = 0) -> ImageDataset:
    """``textured-shapes`` with 1,200 images per class (9,600): enough that 16 Dirichlet(0.1)
    clients can each hold a batch (see docs/fedfoa.md, the scaling study)."""
    return textured_shapes(data_path, image_size, per_class=1200)
