"""Procedural sprite videos with exact boxes: the Arena detector's data and CaDM's clips.

Everything here is procedural (built from images the installed wheels ship, no download):

* **sprites** (the objects to detect, one class): the horse silhouette (scikit-image, filled
  with a random colour), single coins segmented from ``coins``, crops of the ``rocket`` photo,
  faces from ``lfw_subset`` and handwritten digits from scikit-learn's ``load_digits``;
* **backgrounds**: crops of the bundled photos (astronaut, coffee, chelsea, camera, brick,
  grass, gravel, hubble_deep_field and scikit-learn's two sample images), panned slowly as a
  moving camera would, with per-frame sensor noise and a small illumination flicker (so that
  an H.264 stream of the full frames is not nearly free between frames, as for real footage);
* **motion**: every sprite moves with its own velocity plus a random acceleration (jitter),
  enters through a frame edge or starts inside, and leaves when it crosses an edge; new ones
  keep arriving.

A sprite's box is the exact bounding box of its alpha mask (> 0.5) inside the frame, kept while
at least ``min_visible`` of its area is in view. Sprites may overlap (later ones on top); a
partly hidden sprite keeps its full in-frame box.

Train and test videos are apart: video ``i`` of split ``s`` is generated from the seed
``derive_seed(seed, s, i)``, so they share the sprite and background sources but no trajectory,
crop, colour or noise draw.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from fedlab.client import derive_seed
from fedlab.errors import FedlabError

SPRITE_KINDS = ("horse", "coin", "rocket", "face", "digit")
BACKGROUNDS = (
    "astronaut", "coffee", "chelsea", "camera", "brick", "grass", "gravel", "hubble_deep_field",
    "china", "flower",
)  # fmt: skip


@dataclass(frozen=True)
class VideoSpec:
    """How procedural videos look; the defaults are the Arena study's (docs/arena.md).

    Parameters
    ----------
    size : int
        Frame side in pixels (square frames).
    frames : int
        Frames per video.
    min_sprite, max_sprite : int
        Range of a sprite's longer side in pixels.
    min_speed, max_speed : float
        Range of a sprite's initial speed in pixels per frame.
    jitter : float
        Standard deviation of the per-frame random acceleration (pixels / frame^2).
    max_objects : int
        Most sprites on screen at once.
    spawn_rate : float
        Chance per frame that a new sprite enters (while fewer than ``max_objects``).
    pan : float
        Largest camera pan speed in pixels per frame.
    noise : float
        Standard deviation of per-frame Gaussian sensor noise (0-255 scale).
    min_visible : float
        Share of a sprite's area that must be inside the frame for it to have a box.
    """

    size: int = 96
    frames: int = 48
    min_sprite: int = 14
    max_sprite: int = 28
    min_speed: float = 0.5
    max_speed: float = 3.0
    jitter: float = 0.25
    max_objects: int = 4
    spawn_rate: float = 0.08
    pan: float = 0.6
    noise: float = 4.0
    min_visible: float = 0.4

    def __post_init__(self) -> None:
        if self.size < 16 or self.frames < 1:
            raise FedlabError(f"videos need size >= 16 and frames >= 1, got {self}")
        if not 2 <= self.min_sprite <= self.max_sprite < self.size:
            raise FedlabError(
                f"sprite sizes must satisfy 2 <= min-sprite <= max-sprite < size, got "
                f"{self.min_sprite}, {self.max_sprite}, {self.size}"
            )


@dataclass
class Video:
    """A clip and its ground truth.

    Attributes
    ----------
    frames : numpy.ndarray
        ``uint8`` ``(T, H, W, 3)``.
    boxes : list of numpy.ndarray
        Per frame, ``float32`` ``(n, 4)`` boxes ``x1, y1, x2, y2`` in pixels (x2, y2 exclusive).
    track_ids : list of numpy.ndarray
        Per frame, the sprite id of each box (ids are unique within the video).
    name : str
    """

    frames: np.ndarray
    boxes: list[np.ndarray]
    track_ids: list[np.ndarray] = field(default_factory=list)
    name: str = ""

    def __len__(self) -> int:
        return len(self.frames)


# -- sprite and background sources -------------------------------------------------------------
@functools.cache
def _sources() -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Sprite sources: kind -> list of (rgb float32 HxWx3 in [0, 1], alpha float32 HxW)."""
    import skimage.data as sd
    from skimage import filters, measure
    from sklearn.datasets import load_digits

    out: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    horse = (~sd.horse()).astype(np.float32)
    ys, xs = np.nonzero(horse)
    horse = horse[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    out["horse"] = [(np.ones((*horse.shape, 3), np.float32), horse)]
    coins = sd.coins()
    labels = measure.label(coins > filters.threshold_otsu(coins))
    out["coin"] = []
    for region in measure.regionprops(labels):
        y0, x0, y1, x1 = region.bbox
        if region.area < 400 or y1 - y0 > 100 or x1 - x0 > 100:
            continue
        grey = coins[y0:y1, x0:x1].astype(np.float32) / 255
        out["coin"].append((np.repeat(grey[..., None], 3, 2), region.image.astype(np.float32)))
    rocket = sd.rocket()[60:380, 250:420].astype(np.float32) / 255
    out["rocket"] = [(rocket, np.ones(rocket.shape[:2], np.float32))]
    faces = sd.lfw_subset()[:100].astype(np.float32)
    out["face"] = [(np.repeat(f[..., None], 3, 2), np.ones(f.shape, np.float32)) for f in faces]
    digits = load_digits().images.astype(np.float32) / 16
    out["digit"] = [
        (np.ones((8, 8, 3), np.float32), (d > 0.3).astype(np.float32)) for d in digits[:300]
    ]
    return out


@functools.cache
def _background(name: str) -> np.ndarray:
    import skimage.data as sd
    from sklearn.datasets import load_sample_images

    if name in ("china", "flower"):
        image = load_sample_images().images[0 if name == "china" else 1]
    else:
        image = getattr(sd, name)()
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, 2)
    return image[..., :3].astype(np.float32) / 255


def _resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from skimage.transform import resize

    return resize(image, shape, order=1, anti_aliasing=True, preserve_range=True).astype(np.float32)


# -- one sprite ---------------------------------------------------------------------------------
@dataclass
class _Sprite:
    track_id: int
    rgb: np.ndarray
    alpha: np.ndarray
    x: float
    y: float
    vx: float
    vy: float
    entered: bool = False


def _make_sprite(rng: np.random.Generator, spec: VideoSpec, track_id: int, inside: bool) -> _Sprite:
    kind = SPRITE_KINDS[rng.integers(len(SPRITE_KINDS))]
    choices = _sources()[kind]
    rgb, alpha = choices[rng.integers(len(choices))]
    side = rng.uniform(spec.min_sprite, spec.max_sprite)
    scale = side / max(alpha.shape)
    shape = (max(2, round(alpha.shape[0] * scale)), max(2, round(alpha.shape[1] * scale)))
    alpha = _resize(alpha, shape)
    rgb = _resize(rgb, shape)
    if kind in ("horse", "digit"):  # flat silhouettes get a random colour and shading
        colour = rng.uniform(0.05, 1.0, 3).astype(np.float32)
        shade = np.linspace(0.75, 1.0, shape[0], dtype=np.float32)[:, None, None]
        rgb = rgb * colour * shade
    else:  # photo sprites get a random tint
        rgb = np.clip(rgb * rng.uniform(0.7, 1.3, 3).astype(np.float32), 0, 1)
    if rng.random() < 0.5:
        rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
    speed = rng.uniform(spec.min_speed, spec.max_speed)
    h, w = shape
    s = spec.size
    if inside:
        x, y = rng.uniform(0, s - w), rng.uniform(0, s - h)
        angle = rng.uniform(0, 2 * np.pi)
    else:  # enter through a random edge, heading inwards
        edge = rng.integers(4)
        along = rng.uniform(0, s - max(h, w))
        x, y, angle = [
            (-w + 1, along, 0.0),
            (s - 1, along, np.pi),
            (along, -h + 1, np.pi / 2),
            (along, s - 1, -np.pi / 2),
        ][edge]
        angle += rng.uniform(-0.6, 0.6)
    return _Sprite(
        track_id, rgb, alpha, x, y, speed * np.cos(angle), speed * np.sin(angle), entered=inside
    )


def _paste(canvas: np.ndarray, sprite: _Sprite) -> tuple[np.ndarray | None, float]:
    """Composite ``sprite`` onto ``canvas`` in place; return its in-frame box and visible share."""
    h, w = sprite.alpha.shape
    s = canvas.shape[0]
    x0, y0 = round(sprite.x), round(sprite.y)
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + w, s), min(y0 + h, s)
    if cx1 <= cx0 or cy1 <= cy0:
        return None, 0.0
    a = sprite.alpha[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    rgb = sprite.rgb[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    region = canvas[cy0:cy1, cx0:cx1]
    region[:] = region * (1 - a[..., None]) + rgb * a[..., None]
    mask = a > 0.5
    total = float((sprite.alpha > 0.5).sum())
    if not mask.any() or total == 0:
        return None, 0.0
    ys, xs = np.nonzero(mask)
    box = np.array(
        [cx0 + xs.min(), cy0 + ys.min(), cx0 + xs.max() + 1, cy0 + ys.max() + 1], np.float32
    )
    return box, float(mask.sum()) / total


# -- one video ----------------------------------------------------------------------------------
def generate_video(seed: int, spec: VideoSpec = VideoSpec(), name: str = "") -> Video:  # noqa: B008
    """One procedural video, fully determined by ``seed`` and ``spec``."""
    rng = np.random.default_rng(seed)
    s, t_len = spec.size, spec.frames
    photo = _background(BACKGROUNDS[rng.integers(len(BACKGROUNDS))])
    travel = spec.pan * t_len
    zoom = rng.uniform(1.0, 2.5)  # how much of the photo one frame shows, relative to s
    view = int(min(photo.shape[:2]) / zoom)
    canvas_side = s + int(np.ceil(travel)) + 2
    crop = max(8, int(view * canvas_side / s))
    crop = min(crop, min(photo.shape[:2]))
    oy = rng.integers(0, photo.shape[0] - crop + 1)
    ox = rng.integers(0, photo.shape[1] - crop + 1)
    backdrop = _resize(photo[oy : oy + crop, ox : ox + crop], (canvas_side, canvas_side))
    pan_angle = rng.uniform(0, 2 * np.pi)
    pan_speed = rng.uniform(0, spec.pan)
    px0 = (canvas_side - s) / 2 - np.cos(pan_angle) * pan_speed * t_len / 2
    py0 = (canvas_side - s) / 2 - np.sin(pan_angle) * pan_speed * t_len / 2
    sprites = [
        _make_sprite(rng, spec, i, inside=True) for i in range(rng.integers(1, spec.max_objects))
    ]
    next_id = len(sprites)
    frames = np.empty((t_len, s, s, 3), np.uint8)
    boxes: list[np.ndarray] = []
    ids: list[np.ndarray] = []
    for t in range(t_len):
        px = int(np.clip(round(px0 + np.cos(pan_angle) * pan_speed * t), 0, canvas_side - s))
        py = int(np.clip(round(py0 + np.sin(pan_angle) * pan_speed * t), 0, canvas_side - s))
        canvas = backdrop[py : py + s, px : px + s].copy() * rng.uniform(0.95, 1.05)
        frame_boxes, frame_ids, alive = [], [], []
        for sprite in sprites:
            box, visible = _paste(canvas, sprite)
            if box is not None:
                sprite.entered = True
            elif sprite.entered:
                continue  # it has left: drop it
            alive.append(sprite)
            if box is not None and visible >= spec.min_visible:
                if box[2] - box[0] >= 2 and box[3] - box[1] >= 2:
                    frame_boxes.append(box)
                    frame_ids.append(sprite.track_id)
        sprites = alive
        noise = rng.normal(0, spec.noise / 255, canvas.shape).astype(np.float32)
        frames[t] = np.clip((canvas + noise) * 255 + 0.5, 0, 255).astype(np.uint8)
        boxes.append(np.array(frame_boxes, np.float32).reshape(-1, 4))
        ids.append(np.array(frame_ids, np.int64))
        for sprite in sprites:  # move for the next frame
            sprite.vx += rng.normal(0, spec.jitter)
            sprite.vy += rng.normal(0, spec.jitter)
            speed = np.hypot(sprite.vx, sprite.vy)
            if speed > spec.max_speed * 1.5:
                sprite.vx, sprite.vy = (np.array([sprite.vx, sprite.vy]) * spec.max_speed * 1.5
                                        / speed)  # fmt: skip
            sprite.x += sprite.vx
            sprite.y += sprite.vy
            if not sprite.entered and (abs(sprite.x) > 2 * s or abs(sprite.y) > 2 * s):
                sprite.entered = True  # missed the frame: let it go
        if len(sprites) < spec.max_objects and rng.random() < spec.spawn_rate:
            sprites.append(_make_sprite(rng, spec, next_id, inside=False))
            next_id += 1
    return Video(frames, boxes, ids, name or f"sprites-{seed}")


def split_videos(
    split: str,
    count: int,
    *,
    seed: int = 0,
    spec: VideoSpec = VideoSpec(),
    start: int = 0,  # noqa: B008
) -> list[Video]:
    """Videos ``start .. start + count - 1`` of ``split`` (``train`` or ``test``)."""
    if split not in ("train", "test"):
        raise FedlabError(f"split {split!r} is not one of: train, test")
    return [
        generate_video(derive_seed(seed, "arena", split, i), spec, name=f"{split}-{i}")
        for i in range(start, start + count)
    ]
