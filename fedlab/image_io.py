"""Images as float tensors in [0, 1]: files a user gives, PNG bytes to write, and the photos
the installed wheels bundle (scikit-image's and scikit-learn's data, no download).

One reader for every command that takes an image file (``fedlab sr``, ``fedlab harmonize``), so
that each refuses a bad file the same way, in one line.
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fedlab.errors import FedlabError

#: Photos bundled with scikit-learn (the others come from ``skimage.data``).
SKLEARN_PHOTOS = ("china", "flower")


def read_image(path: str | Path) -> torch.Tensor:
    """An image file as ``(1, 3, H, W)`` in [0, 1] (grey repeated, alpha dropped)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FedlabError(f"input image {str(path)!r} does not exist; give an image file path")
    try:
        with Image.open(path) as img:
            array = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as exc:
        raise FedlabError(f"cannot read {str(path)!r} as an image ({exc})") from None
    return torch.from_numpy(array.transpose(2, 0, 1).copy())[None]


def png_bytes(image: torch.Tensor) -> bytes:
    """``(1, 3, H, W)`` in [0, 1] as 8-bit PNG bytes (clamped, rounded)."""
    from PIL import Image

    array = (image[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def bundled_photo(name: str, max_side: int = 256) -> torch.Tensor:
    """A bundled photo as ``(3, H, W)`` in [0, 1], grey repeated, shrunk so that its shorter
    side is at most ``max_side`` (bicubic with antialiasing, clamped)."""
    return torch.from_numpy(_bundled(name, max_side).copy())


@lru_cache(maxsize=32)
def _bundled(name: str, max_side: int) -> np.ndarray:
    if name in SKLEARN_PHOTOS:
        from sklearn.datasets import load_sample_image

        img = load_sample_image(f"{name}.jpg")
    else:
        import skimage.data

        if not hasattr(skimage.data, name):
            raise FedlabError(
                f"image {name!r} is neither in scikit-image's bundled data nor one of "
                f"scikit-learn's {', '.join(SKLEARN_PHOTOS)}"
            )
        img = getattr(skimage.data, name)()
    img = np.asarray(img)
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    img = img.astype(np.float32)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    x = torch.from_numpy(np.ascontiguousarray(img[..., :3].transpose(2, 0, 1)))[None]
    h, w = x.shape[-2:]
    factor = max_side / min(h, w)
    if factor < 1:
        size = (round(h * factor), round(w * factor))
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
        x = x.clamp(0.0, 1.0)
    return x[0].numpy()
