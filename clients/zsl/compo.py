"""The compositional ZSL benchmark ``compo``: 64 procedural classes from four attributes.

A class is a combination (shape, colour, size, count): 4 shapes x 4 colours x 2 sizes x
2 counts = 64 classes. Its attribute vector is exact: the concatenated one-hots of its four
values (12 dimensions). Each split hides :data:`NUM_UNSEEN` classes chosen by the split's seed
so that every unseen class is a new combination whose every attribute value occurs in some
seen class (:func:`compo_split` checks it; a test too).

Images are 24x24 RGB: one or two copies of the shape, small or large, at random positions,
with random rotation, colour jitter, background level and pixel noise.

Features come from a small CNN (:class:`CompoFeatureNet`) trained only on a *disjoint
procedural pretraining class set* (:data:`PRETRAIN_SHAPES`: shapes that no benchmark class
has, in every colour, size and count), with one cross-entropy head per attribute. No
benchmark class, seen or unseen, and no client's data shapes the features, so central and
federated runs share them without pooling anything. ``simulations/zsl_compo_pretrain.py``
trains it and writes :data:`WEIGHTS` (committed).
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np
import torch
from fedlab.clients.shipped import shipped_weights
from safetensors.torch import load_file
from torch import nn

from fedlab.errors import FedlabError

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = ("red", "green", "blue", "yellow")
SIZES = ("small", "large")
COUNTS = ("one", "two")
FACTORS = {"shape": SHAPES, "colour": COLOURS, "size": SIZES, "count": COUNTS}
PRETRAIN_SHAPES = ("pentagon", "star", "bar")
COLOUR_RGB = {
    "red": (0.85, 0.15, 0.1),
    "green": (0.15, 0.75, 0.2),
    "blue": (0.15, 0.25, 0.9),
    "yellow": (0.85, 0.8, 0.1),
}
RADIUS = {"small": (2.4, 3.2), "large": (4.0, 5.0)}
IMAGE_SIZE = 24
NUM_UNSEEN = 16
NUM_SPLITS = 8
PER_CLASS = 40
FEATURE_DIM = 128
#: package data (``weights/``), found through importlib.resources
WEIGHTS = shipped_weights("fedlab.clients.zsl", "compo_cnn.safetensors")

CLASSES: tuple[tuple[str, str, str, str], ...] = tuple(itertools.product(*FACTORS.values()))
ATTRIBUTE_NAMES = tuple(f"{f}={v}" for f, values in FACTORS.items() for v in values)


def attribute_vector(combination: tuple[str, ...]) -> np.ndarray:
    """The exact attributes of a combination: concatenated one-hots of its values."""
    return np.asarray(
        [float(value == v) for value, values in zip(combination, FACTORS.values(), strict=True)
         for v in values], dtype=np.float32,
    )  # fmt: skip


def compo_attributes() -> np.ndarray:
    """``(64, 12)`` class attributes, rows in class-id order."""
    return np.stack([attribute_vector(c) for c in CLASSES])


def class_names() -> list[str]:
    return [" ".join(c) for c in CLASSES]


def values_covered(classes: np.ndarray) -> bool:
    """Whether every value of every attribute occurs in one of ``classes``."""
    held = {(f, CLASSES[c][i]) for c in classes for i, f in enumerate(FACTORS)}
    return all((f, v) in held for f, values in FACTORS.items() for v in values)


def compo_split(split: int) -> np.ndarray:
    """The ``NUM_UNSEEN`` unseen class ids of ``split`` (sorted), seeded by the split.

    Drawn at random, redrawn until every attribute value stays seen (in practice at once).
    """
    if not 0 <= split < NUM_SPLITS:
        raise FedlabError(f"zsl-split {split} does not exist for compo; use 0..{NUM_SPLITS - 1}")
    rng = np.random.default_rng([20, split])
    while True:
        unseen = np.sort(rng.choice(len(CLASSES), NUM_UNSEEN, replace=False))
        if values_covered(np.setdiff1d(np.arange(len(CLASSES)), unseen)):
            return unseen


def _outline(shape: str, r: float, angle: float) -> np.ndarray:
    if shape == "square":
        pts = np.asarray([(-1, -1), (1, -1), (1, 1), (-1, 1)], dtype=float) * r * 0.85
    elif shape in ("triangle", "pentagon"):
        n = 3 if shape == "triangle" else 5
        t = np.pi / 2 + 2 * np.pi * np.arange(n) / n
        pts = np.stack([np.cos(t), -np.sin(t)], 1) * r * (1.15 if n == 3 else 1.0)
    elif shape == "star":
        t = np.pi / 2 + np.pi * np.arange(10) / 5
        rad = np.where(np.arange(10) % 2 == 0, 1.1 * r, 0.45 * r)
        pts = np.stack([np.cos(t) * rad, -np.sin(t) * rad], 1)
    elif shape == "bar":
        pts = np.asarray([(-1.1, -0.35), (1.1, -0.35), (1.1, 0.35), (-1.1, 0.35)]) * r
    elif shape == "cross":
        a, b = r * 0.38, r * 1.05
        pts = np.asarray([(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b),
                          (-a, a), (-b, a), (-b, -a), (-a, -a)])  # fmt: skip
    else:
        raise ValueError(shape)
    c, s = np.cos(angle), np.sin(angle)
    return pts @ np.array([[c, s], [-s, c]])


def _centres(rng: np.random.Generator, count: int, r: float) -> list[np.ndarray]:
    lo, hi = r + 0.5, IMAGE_SIZE - r - 0.5
    if count == 1:
        return [rng.uniform(lo, hi, 2)]
    for _ in range(100):  # two copies that do not touch
        a, b = rng.uniform(lo, hi, 2), rng.uniform(lo, hi, 2)
        if np.linalg.norm(a - b) > 2 * r + 1.5:
            return [a, b]
    return [np.array([lo, lo]), np.array([hi, hi])]


def render(combination: tuple[str, str, str, str], index: int, seed: int) -> np.ndarray:
    """One ``(3, 24, 24)`` image in [0, 1] of a combination, fixed by (seed, index)."""
    from skimage.draw import disk, polygon

    shape, colour, size, count = combination
    rng = np.random.default_rng([seed, index])
    image = np.repeat(rng.uniform(0.25, 0.6), 3)[:, None, None] * np.ones(
        (3, IMAGE_SIZE, IMAGE_SIZE)
    )
    n = 1 if count == "one" else 2
    r = rng.uniform(*RADIUS[size])
    rgb = np.clip(np.asarray(COLOUR_RGB[colour]) + rng.uniform(-0.12, 0.12, 3), 0, 1)
    for cx, cy in _centres(rng, n, r):
        if shape == "circle":
            rr, cc = disk((cy, cx), r, shape=(IMAGE_SIZE, IMAGE_SIZE))
        else:
            pts = _outline(shape, r, rng.uniform(-np.pi / 6, np.pi / 6)) + np.array([cx, cy])
            rr, cc = polygon(pts[:, 1], pts[:, 0], shape=(IMAGE_SIZE, IMAGE_SIZE))
        image[:, rr, cc] = rgb[:, None]
    image += rng.normal(0, 0.05, image.shape)
    return np.clip(image, 0, 1).astype(np.float32)


def compo_labels(per_class: int = PER_CLASS) -> np.ndarray:
    """Example ``i`` is class ``i // per_class``."""
    return np.repeat(np.arange(len(CLASSES)), per_class)


def render_compo(indices: np.ndarray, per_class: int = PER_CLASS) -> np.ndarray:
    """Images ``(len(indices), 3, 24, 24)`` of benchmark examples (seed: the class id)."""
    out = np.empty((len(indices), 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    for j, i in enumerate(np.asarray(indices)):
        c = int(i) // per_class
        out[j] = render(CLASSES[c], int(i) % per_class, seed=1000 + c)
    return out


PRETRAIN_CLASSES = tuple(itertools.product(PRETRAIN_SHAPES, COLOURS, SIZES, COUNTS))


def render_pretraining(per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """The pretraining set: images and ``(n, 4)`` factor indices (shape among
    :data:`PRETRAIN_SHAPES`, colour, size, count). No benchmark class is among them."""
    images, factors = [], []
    for k, combination in enumerate(PRETRAIN_CLASSES):
        for i in range(per_class):
            images.append(render(combination, i, seed=50_000 + k))
            factors.append([PRETRAIN_SHAPES.index(combination[0]), COLOURS.index(combination[1]),
                            SIZES.index(combination[2]), COUNTS.index(combination[3])])  # fmt: skip
    return np.stack(images), np.asarray(factors, dtype=np.int64)


class CompoFeatureNet(nn.Module):
    """Three conv layers, global mean and max pooling: ``(B, 3, 24, 24) -> (B, 128)``.

    ``heads`` (one linear classifier per pretraining factor) are used for pretraining only.
    """

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, FEATURE_DIM // 2, 3, padding=1), nn.ReLU(),
        )  # fmt: skip
        sizes = (len(PRETRAIN_SHAPES), len(COLOURS), len(SIZES), len(COUNTS))
        self.heads = nn.ModuleList(nn.Linear(FEATURE_DIM, n) for n in sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        return torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1)


@lru_cache(maxsize=1)
def feature_net() -> CompoFeatureNet:
    """The pretrained feature CNN from :data:`WEIGHTS` (safetensors)."""
    if not WEIGHTS.is_file():
        raise FedlabError(
            f"{WEIGHTS} is missing; run `python simulations/zsl_compo_pretrain.py` to train "
            "the compo feature CNN on the pretraining class set"
        )
    with torch.device("cpu"):  # cached for the process: never on an ambient (meta) device
        net = CompoFeatureNet()
    net.load_state_dict(load_file(str(WEIGHTS)))
    return net.eval()


@torch.no_grad()
def cnn_features(images: np.ndarray | torch.Tensor, net: nn.Module | None = None) -> torch.Tensor:
    """``(N, 128)`` features of images, each vector standardised over its own dimensions."""
    net = net or feature_net()
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    feats = torch.cat([net(x[i : i + 512]) for i in range(0, len(x), 512)])
    return (feats - feats.mean(1, keepdim=True)) / feats.std(1, keepdim=True).clamp_min(1e-8)


@lru_cache(maxsize=1)
def all_images(per_class: int = PER_CLASS) -> torch.Tensor:
    """Every benchmark image, rendered once per process."""
    return torch.from_numpy(render_compo(np.arange(len(CLASSES) * per_class), per_class))


@lru_cache(maxsize=1)
def all_features(per_class: int = PER_CLASS) -> torch.Tensor:
    """Every benchmark example's CNN features, computed once per process."""
    return cnn_features(all_images(per_class))
