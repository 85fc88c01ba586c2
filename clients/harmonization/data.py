"""Procedural "paintings", foreground objects with exact masks, and the declared composites.

Everything is built from images bundled with scikit-image / scikit-learn (no download), loaded
through :func:`fedlab.image_io.bundled_photo` (RGB in [0, 1], shorter side <= 256 px).

Styles (:data:`STYLES`, label ``i`` = ``STYLES[i]``; label ``len(STYLES)`` = photo, no style)
are procedural, documented stand-ins for paintings:

- ``posterize``: light blur, 4 levels per channel, warm tint;
- ``watercolor``: edge-preserving total-variation smoothing, saturation x1.6, cool tint;
- ``canvas``: sepia tone times a texture overlay (bundled ``brick`` / ``grass`` / ``gravel``);
- ``ink``: smoothed, 3-level luminance on cream paper with dark Sobel edges.

Objects (:func:`load_object`) are ``(rgb, mask)`` pairs with exact boolean masks: faces of
``lfw_subset`` (ellipse mask), single coins of ``coins`` (Otsu region), the ``horse``
silhouette filled with a photo crop, the ``rocket`` (ellipse crop) and procedural shapes.

Composites (:func:`composite`) are 64 x 64: a painted crop of a background photo with an
unpainted object pasted in. :data:`TEST_COMPOSITES` (24) use held-out photos and objects;
:data:`TUNING_COMPOSITES` (8) use prior-training photos and other objects (docs/freepih.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Dataset

from fedlab.errors import FedlabError
from fedlab.image_io import bundled_photo

STYLES: tuple[str, ...] = ("posterize", "watercolor", "canvas", "ink")
PHOTO_LABEL = len(STYLES)
"""The label of unstyled photos (also the unconditional label)."""

TRAIN_PHOTOS: tuple[str, ...] = (
    "astronaut", "camera", "coffee", "immunohistochemistry", "hubble_deep_field", "moon",
    "china", "retina",
)  # fmt: skip
"""Photos the prior trains on (and their paintings); photo ``i`` goes to client ``i % K``."""

HELDOUT_PHOTOS: tuple[str, ...] = ("chelsea", "flower", "clock")
"""Background photos of the test composites; never trained on."""

COMPOSITE_SIZE = 64
_TEXTURES = ("brick", "grass", "gravel")


def style_index(name: str) -> int:
    """The label of a style name (``photo`` included), with a one-line error."""
    names = (*STYLES, "photo")
    if name not in names:
        raise FedlabError(f"unknown style {name!r}; allowed: {', '.join(names)}")
    return names.index(name)


def _texture(name: str, shape: tuple[int, int]) -> np.ndarray:
    import skimage.data

    if name not in _TEXTURES:  # never a name to look up on skimage.data (some of it downloads)
        raise FedlabError(f"unknown texture {name!r}; allowed: {', '.join(_TEXTURES)}")
    tex = getattr(skimage.data, name)().astype(np.float32) / 255.0
    reps = (-(-shape[0] // tex.shape[0]), -(-shape[1] // tex.shape[1]))
    tex = np.tile(tex, reps)[: shape[0], : shape[1]]
    return (tex - tex.mean()) / (tex.std() + 1e-6)


def stylize(img: np.ndarray, style: str, *, texture: str = "brick") -> np.ndarray:
    """Paint an ``(H, W, 3)`` float image in [0, 1] in ``style``; returns the same shape."""
    from skimage.color import hsv2rgb, rgb2gray, rgb2hsv
    from skimage.filters import gaussian, sobel
    from skimage.restoration import denoise_tv_chambolle

    img = np.clip(img.astype(np.float32), 0, 1)
    if style == "photo":
        return img
    if style == "posterize":
        out = np.floor(gaussian(img, sigma=1.0, channel_axis=2) * 4 - 1e-6) / 3
        out = out * np.array([1.0, 0.85, 0.6]) + np.array([0.0, 0.05, 0.05])
    elif style == "watercolor":
        out = denoise_tv_chambolle(img, weight=0.12, channel_axis=2)
        hsv = rgb2hsv(np.clip(out, 0, 1))
        hsv[..., 1] = np.clip(hsv[..., 1] * 1.6 + 0.15, 0, 1)
        out = hsv2rgb(hsv) * np.array([0.8, 0.95, 1.1]) + np.array([0.05, 0.05, 0.0])
    elif style == "canvas":
        grey = rgb2gray(img)[..., None]
        sepia = grey * np.array([1.0, 0.8, 0.55]) + np.array([0.08, 0.05, 0.0])
        out = sepia * (1 + 0.18 * _texture(texture, img.shape[:2])[..., None])
    elif style == "ink":
        grey = gaussian(rgb2gray(img), sigma=1.0)
        levels = np.floor(grey * 3 - 1e-6) / 2
        edges = np.clip(sobel(grey) * 6, 0, 1)
        paper = np.array([0.96, 0.92, 0.8])
        out = paper * (0.35 + 0.65 * levels[..., None]) * (1 - 0.85 * edges[..., None])
    else:
        raise FedlabError(f"unknown style {style!r}; allowed: {', '.join((*STYLES, 'photo'))}")
    return np.clip(out, 0, 1).astype(np.float32)


@lru_cache(maxsize=64)
def painted(name: str, style: str) -> np.ndarray:
    """A bundled photo painted in ``style``: ``(H, W, 3)`` in [0, 1] (cached, read-only)."""
    img = bundled_photo(name).permute(1, 2, 0).numpy()
    texture = _TEXTURES[sum(map(ord, name)) % len(_TEXTURES)]
    out = stylize(img, style, texture=texture)
    out.setflags(write=False)
    return out


def client_pairs(partition_id: int, num_partitions: int) -> list[tuple[str, int]]:
    """``(photo, label)`` pairs client ``partition_id`` trains on: its photos (every
    ``num_partitions``-th), each raw (photo label) and in two styles ``k`` and ``k + 1``."""
    if not 1 <= num_partitions <= len(TRAIN_PHOTOS):
        raise FedlabError(
            f"{num_partitions} clients cannot each hold different photos: there are "
            f"{len(TRAIN_PHOTOS)}; use 1..{len(TRAIN_PHOTOS)} supernodes"
        )
    photos = TRAIN_PHOTOS[partition_id::num_partitions]
    styles = sorted({partition_id % len(STYLES), (partition_id + 1) % len(STYLES)})
    if num_partitions == 1:
        styles = list(range(len(STYLES)))
    return [(p, s) for p in photos for s in (*styles, PHOTO_LABEL)]


def all_pairs() -> list[tuple[str, int]]:
    """Every training photo in every style and raw (the central prior's data)."""
    return [(p, s) for p in TRAIN_PHOTOS for s in range(len(STYLES) + 1)]


class StyledCrops(Dataset):
    """Random ``size``-px crops (random horizontal flip) of painted photos with their labels.

    Item ``i`` is drawn from ``(seed, i)``; returns ``(crop in [-1, 1], label)``.
    """

    def __init__(self, pairs: list[tuple[str, int]], size: int, length: int, seed: int) -> None:
        if not pairs:
            raise FedlabError("no training photos for this client; use fewer supernodes")
        names = (*STYLES, "photo")
        self.images = [painted(p, names[s]) for p, s in pairs]
        self.labels = [s for _, s in pairs]
        self.size, self.length, self.seed = size, length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng((self.seed, i))
        k = int(rng.integers(len(self.images)))
        img = self.images[k]
        h, w = img.shape[:2]
        y, x = int(rng.integers(0, h - self.size + 1)), int(rng.integers(0, w - self.size + 1))
        crop = torch.from_numpy(img[y : y + self.size, x : x + self.size].transpose(2, 0, 1).copy())
        if rng.random() < 0.5:
            crop = crop.flip(-1)
        return crop * 2.0 - 1.0, torch.tensor(self.labels[k], dtype=torch.long)


# ---------------------------------------------------------------------------- objects


def _resize(img: np.ndarray, shape: tuple[int, int], *, order: int = 1) -> np.ndarray:
    from skimage.transform import resize

    return resize(img, shape, order=order, anti_aliasing=order > 0, preserve_range=True)


def _ellipse(h: int, w: int, fill: float = 0.92) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return ((yy - (h - 1) / 2) / (fill * h / 2)) ** 2 + (
        (xx - (w - 1) / 2) / (fill * w / 2)
    ) ** 2 <= 1


def _grey_rgb(g: np.ndarray) -> np.ndarray:
    return np.repeat(np.clip(g, 0, 1)[..., None], 3, axis=2).astype(np.float32)


@lru_cache(maxsize=1)
def _coin_boxes() -> tuple[tuple[int, int, int, int], ...]:
    import skimage.data
    from scipy.ndimage import binary_closing
    from skimage.filters import threshold_otsu
    from skimage.measure import label, regionprops

    coins = skimage.data.coins().astype(np.float32) / 255.0
    mask = binary_closing(coins > threshold_otsu(coins), iterations=2)
    regions = [r for r in regionprops(label(mask)) if r.area > 300]
    regions.sort(key=lambda r: r.bbox)
    return tuple(
        r.bbox for r in regions if 0.7 < (r.bbox[2] - r.bbox[0]) / (r.bbox[3] - r.bbox[1]) < 1.4
    )


def load_object(name: str, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """An object ``name`` as ``(rgb (size, size, 3) float32 in [0, 1], mask (size, size) bool)``.

    Names: ``face-<i>`` (lfw_subset image i), ``coin-<i>`` (i-th coin region), ``horse``,
    ``rocket``, ``shape-star``, ``shape-disk``, ``shape-triangle``.
    """
    import skimage.data

    kind, _, index = name.partition("-")
    if kind == "face":
        face = skimage.data.lfw_subset()[int(index)]
        rgb = _grey_rgb(_resize(face, (size, size)))
        rgb = rgb * np.array([1.0, 0.88, 0.78], dtype=np.float32)  # skin tone
        return rgb.astype(np.float32), _ellipse(size, size, fill=0.9)
    if kind == "coin":
        from skimage.filters import threshold_otsu

        y0, x0, y1, x1 = _coin_boxes()[int(index)]
        coins = skimage.data.coins().astype(np.float32) / 255.0
        pad = 2
        crop = coins[max(0, y0 - pad) : y1 + pad, max(0, x0 - pad) : x1 + pad]
        grey = _resize(crop, (size, size))
        from scipy.ndimage import binary_closing, binary_fill_holes

        mask = binary_fill_holes(binary_closing(grey > threshold_otsu(coins), iterations=2))
        return _grey_rgb(grey) * np.array([1.0, 0.85, 0.55], dtype=np.float32), mask
    if kind == "horse":
        sil = ~skimage.data.horse()
        mask = _resize(sil.astype(np.float32), (size, size)) > 0.5
        fill = bundled_photo("coffee").permute(1, 2, 0).numpy()[40 : 40 + 96, 200 : 200 + 96]
        return _resize(fill, (size, size)).astype(np.float32), mask
    if kind == "rocket":
        rocket = bundled_photo("rocket").permute(1, 2, 0).numpy()
        h, w = rocket.shape[:2]
        crop = rocket[int(0.05 * h) : int(0.95 * h), int(0.3 * w) : int(0.62 * w)]
        return _resize(crop, (size, size)).astype(np.float32), _ellipse(size, size, fill=0.95)
    if kind == "shape":
        yy, xx = np.mgrid[:size, :size] / (size - 1) * 2 - 1
        r, a = np.hypot(yy, xx), np.arctan2(yy, xx)
        masks = {
            "disk": r <= 0.9,
            "star": r <= 0.55 + 0.35 * np.cos(5 * a),
            "triangle": (yy <= 0.8) & (yy >= -0.9 + 1.7 * np.abs(xx)),
        }
        if index not in masks:
            raise FedlabError(f"unknown shape {index!r}; allowed: {', '.join(masks)}")
        shade = 0.35 + 0.5 * (1 - (yy + xx + 2) / 4)
        colour = {"disk": (0.2, 0.6, 0.9), "star": (0.95, 0.8, 0.1), "triangle": (0.3, 0.8, 0.3)}
        rgb = shade[..., None] * np.array(colour[index]) + 0.15 * np.sin(6 * xx)[..., None]
        return np.clip(rgb, 0, 1).astype(np.float32), masks[index]
    raise FedlabError(
        f"unknown object {name!r}; allowed: face-<i>, coin-<i>, horse, rocket, shape-<name>"
    )


# ---------------------------------------------------------------------------- composites


@dataclass(frozen=True)
class CompositeSpec:
    """One declared composite: ``object`` pasted at ``(y, x)`` on a 64-px crop ``(cy, cx)``
    of photo ``photo`` painted in ``style``."""

    name: str
    photo: str
    style: str
    obj: str
    crop: tuple[int, int]
    at: tuple[int, int]


@dataclass
class Composite:
    """A composite and everything the methods and metrics need (all ``(3, H, W)`` in [0, 1])."""

    name: str
    style: str
    background: torch.Tensor
    foreground: torch.Tensor
    mask: torch.Tensor  # (H, W) bool
    composite: torch.Tensor


def paste(fg: torch.Tensor, mask: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
    """``fg`` inside ``mask``, ``bg`` outside (exact selection, no blending)."""
    return torch.where(mask[None], fg, bg)


def composite(spec: CompositeSpec) -> Composite:
    """Build one declared composite."""
    size = COMPOSITE_SIZE
    img = painted(spec.photo, spec.style)
    cy, cx = spec.crop
    bg = torch.from_numpy(img[cy : cy + size, cx : cx + size].transpose(2, 0, 1).copy())
    rgb, m = load_object(spec.obj)
    fg = torch.zeros_like(bg)
    mask = torch.zeros(size, size, dtype=torch.bool)
    y, x = spec.at
    oh, ow = m.shape
    fg[:, y : y + oh, x : x + ow] = torch.from_numpy(rgb.transpose(2, 0, 1).copy()).float()
    mask[y : y + oh, x : x + ow] = torch.from_numpy(np.asarray(m, dtype=bool))
    fg = torch.where(mask[None], fg, bg)  # outside the mask the "source" is the background
    return Composite(spec.name, spec.style, bg, fg, mask, paste(fg, mask, bg))


def _specs(photos: tuple[str, ...], objects: tuple[str, ...], per_style: int, seed: int,
           prefix: str) -> tuple[CompositeSpec, ...]:  # fmt: skip
    rng = np.random.default_rng(seed)
    specs = []
    for s, style in enumerate(STYLES):
        for j in range(per_style):
            photo = photos[(s + j) % len(photos)]
            obj = objects[(s * per_style + j) % len(objects)]
            h, w = bundled_photo(photo).shape[1:]
            crop = (
                int(rng.integers(0, h - COMPOSITE_SIZE)),
                int(rng.integers(0, w - COMPOSITE_SIZE)),
            )
            at = (int(rng.integers(8, 25)), int(rng.integers(8, 25)))
            specs.append(CompositeSpec(f"{prefix}{len(specs):02d}-{style}-{obj}", photo, style,
                                       obj, crop, at))  # fmt: skip
    return tuple(specs)


TEST_OBJECTS: tuple[str, ...] = (
    "face-0", "coin-0", "horse", "rocket", "face-1", "coin-3", "shape-star", "face-2",
    "coin-6", "shape-triangle", "face-3", "coin-9",
)  # fmt: skip
TUNING_OBJECTS: tuple[str, ...] = ("face-40", "coin-12", "shape-disk", "face-41")


@lru_cache(maxsize=1)
def test_specs() -> tuple[CompositeSpec, ...]:
    """The 24 declared test composites: 6 per style, held-out photos, test objects."""
    return _specs(HELDOUT_PHOTOS, TEST_OBJECTS, 6, seed=1515, prefix="test")


@lru_cache(maxsize=1)
def tuning_specs() -> tuple[CompositeSpec, ...]:
    """The 8 declared tuning composites: 2 per style, training photos, tuning objects."""
    return _specs(TRAIN_PHOTOS, TUNING_OBJECTS, 2, seed=815, prefix="tune")


def composite_set(name: str) -> tuple[CompositeSpec, ...]:
    """``test`` or ``tuning``."""
    if name == "test":
        return test_specs()
    if name == "tuning":
        return tuning_specs()
    raise FedlabError(f"unknown composite set {name!r}; allowed: test, tuning")
