"""Offline ZSL benchmarks: procedural coloured shapes with exact attributes, and the bundled
scikit-learn digits with attributes written from knowledge of how the digits are drawn.

Neither needs a download. Each has three fixed, distinct seen/unseen splits
(:data:`SHAPES_SPLITS`, :data:`DIGITS_SPLITS`) and a held-out seen test split for GZSL.
Class attributes are never derived from images: for shapes they are the generator's own
parameters, for digits they are the table :data:`DIGIT_ATTRIBUTES` below.
"""

from __future__ import annotations

import numpy as np
import torch

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = ("red", "green", "blue")
COLOUR_RGB = {"red": (0.85, 0.15, 0.1), "green": (0.15, 0.8, 0.2), "blue": (0.15, 0.25, 0.9)}
SHAPE_ATTRIBUTE_NAMES = (
    "circle", "square", "triangle", "cross", "red", "green", "blue",
    "corners/12", "curved-edge", "convex", "fill-of-bounding-box",
)  # fmt: skip
# Exact geometry of the drawn shapes: corners, curved outline, convexity, area / bounding box
# (the cross has arms one third of its width: 5/9 of its box).
SHAPE_GEOMETRY = {
    "circle": (0, 1.0, 1.0, np.pi / 4),
    "square": (4, 0.0, 1.0, 1.0),
    "triangle": (3, 0.0, 1.0, 0.5),
    "cross": (12, 0.0, 0.0, 5 / 9),
}
# Class id = 3 * shape + colour. Each split hides one colour of every shape, so every shape
# and every colour stays seen in some other combination (the zero-shot task is compositional).
SHAPES_SPLITS = ((0, 4, 8, 10), (1, 5, 6, 11), (2, 3, 7, 9))
SHAPES_SIZE = 16

DIGIT_ATTRIBUTE_NAMES = (
    "closed-loops/2", "upper-loop", "lower-loop", "vertical-stroke", "top-bar", "middle-bar",
    "bottom-bar", "diagonal-stroke", "bowl-open-left", "bowl-open-right", "left-right-symmetric",
    "stroke-ends/4",
)  # fmt: skip
# Written from how the ten digits are drawn (as in scikit-learn's 8x8 digits: an open 4, a
# single-stroke 7), not measured on any image. Rows 0..9.
DIGIT_ATTRIBUTES = np.array([
    # loops up   low  vert top  mid  bot  diag lft  rgt  sym  ends
    [0.5, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0],   # 0: one oval loop
    [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.5],   # 1: a vertical line
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.5],   # 2: top bowl, diagonal, base
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.75],  # 3: two bowls open left
    [0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.5, 0.0, 0.0, 0.0, 1.0],   # 4: open, crossbar
    [0.0, 0.0, 0.0, 0.5, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.5],   # 5: top bar, lower bowl
    [0.5, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.25],  # 6: lower loop, open top
    [0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.5],   # 7: top bar and diagonal
    [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0],   # 8: two loops
    [0.5, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.25],  # 9: upper loop, tail
], dtype=np.float32)  # fmt: skip
DIGITS_SPLITS = ((0, 4, 7), (2, 5, 9), (1, 3, 6))


def shape_attributes() -> np.ndarray:
    """(12, 11) exact class attributes of the shapes benchmark, rows in class-id order."""
    rows = []
    for shape in SHAPES:
        corners, curved, convex, fill = SHAPE_GEOMETRY[shape]
        for colour in COLOURS:
            one_hot = [float(s == shape) for s in SHAPES] + [float(c == colour) for c in COLOURS]
            rows.append(one_hot + [corners / 12, curved, convex, fill])
    return np.asarray(rows, dtype=np.float32)


def shape_class_names() -> list[str]:
    return [f"{colour} {shape}" for shape in SHAPES for colour in COLOURS]


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    if shape == "square":
        corners = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
        pts = np.asarray(corners, dtype=float) * r / np.sqrt(2) * 1.2
    elif shape == "triangle":
        t = np.deg2rad([90, 210, 330])
        pts = np.stack([np.cos(t), -np.sin(t)], 1) * r * 1.15
    else:  # cross: a plus sign whose arms are a third of its width
        a, b = r / 3 * 1.1, r * 1.1
        pts = np.asarray([(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b),
                          (-a, a), (-b, a), (-b, -a), (-a, -a)])  # fmt: skip
    c, s = np.cos(angle), np.sin(angle)
    rot = pts @ np.array([[c, s], [-s, c]])
    return rot + np.array([cx, cy])


def render_shape(class_id: int, index: int, seed: int = 0) -> np.ndarray:
    """One (3, 16, 16) image in [0, 1] of ``class_id``, fixed by (seed, class, index).

    Position, size, rotation, colour jitter, background and pixel noise vary per image;
    shape and colour are exactly those of the class.
    """
    from skimage.draw import disk, polygon

    rng = np.random.default_rng([seed, class_id, index])
    shape, colour = SHAPES[class_id // 3], COLOURS[class_id % 3]
    size = SHAPES_SIZE
    r = rng.uniform(3.6, 5.6)
    cx, cy = rng.uniform(r + 0.5, size - r - 0.5, 2)
    image = np.repeat(rng.uniform(0.2, 0.6), 3)[:, None, None] * np.ones((3, size, size))
    if shape == "circle":
        rr, cc = disk((cy, cx), r, shape=(size, size))
    else:
        pts = _polygon(shape, cx, cy, r, rng.uniform(-np.pi / 6, np.pi / 6))
        rr, cc = polygon(pts[:, 1], pts[:, 0], shape=(size, size))
    rgb = np.clip(np.asarray(COLOUR_RGB[colour]) + rng.uniform(-0.1, 0.1, 3), 0, 1)
    image[:, rr, cc] = rgb[:, None]
    image += rng.normal(0, 0.04, image.shape)
    return np.clip(image, 0, 1).astype(np.float32)


def shapes_labels(per_class: int) -> np.ndarray:
    """Labels of the shapes benchmark: example ``i`` is class ``i // per_class``."""
    return np.repeat(np.arange(len(SHAPES) * len(COLOURS)), per_class)


def render_shapes(indices: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Images ``(len(indices), 3, 16, 16)`` of the given examples, rendered on demand."""
    out = np.empty((len(indices), 3, SHAPES_SIZE, SHAPES_SIZE), dtype=np.float32)
    for j, i in enumerate(np.asarray(indices)):
        out[j] = render_shape(int(i) // per_class, int(i) % per_class, seed)
    return out


FEATURE_FILTERS = 128
FEATURE_KERNEL = 5
FEATURE_SEED = 0


def random_filter_features(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Fixed visual features: 128 random zero-mean 5x5 filters (seed 0), rectified, pooled.

    For each filter: global max of its positive part, global max of its negative part, and
    the global mean of its positive part: ``(N, 384)``. Random convolutional features (Jarrett
    et al. 2009; Saxe et al. 2011) need no training, so no class, seen or unseen, shapes them;
    they stand in for xlsa17's ImageNet ResNet-101 features (no pretrained weights offline).
    Global pooling makes them translation-invariant. Each feature vector is standardised over
    its own dimensions (no dataset statistics, so federated clients need not share any).
    """
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    generator = torch.Generator().manual_seed(FEATURE_SEED)
    k = FEATURE_KERNEL
    w = torch.randn(FEATURE_FILTERS, x.shape[1], k, k, generator=generator)
    w -= w.mean((1, 2, 3), keepdim=True)
    with torch.no_grad():
        h = torch.nn.functional.conv2d(x - x.mean((1, 2, 3), keepdim=True), w, padding=k // 2)
        pos, neg = h.clamp_min(0), (-h).clamp_min(0)
        feats = torch.cat([pos.amax((2, 3)), neg.amax((2, 3)), pos.mean((2, 3))], 1)
    return (feats - feats.mean(1, keepdim=True)) / feats.std(1, keepdim=True).clamp_min(1e-8)
