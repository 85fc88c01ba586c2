"""Images as float tensors in [0, 1]: files a user gives, PNG bytes to write, and the photos
the installed wheels bundle (scikit-image's and scikit-learn's data, no download).

One reader for every command that takes an image file (``fedlab sr``, ``fedlab harmonize``), so
that each refuses a bad file the same way, in one line, and one set of checks for the flags
those commands share (``--max-pixels``, ``--overwrite``, ``--check``, numbers).

:func:`read_pixels` is the one validation step every image file goes through:

- the path is read as given (a user's own file, a link included), but only if it leads to a
  regular file: a folder, device, pipe or socket is refused before it is opened for reading;
- only :data:`IMAGE_FORMATS` are decoded (PIL tries no other plugin);
- the pixel count the header declares is checked against a cap
  (:data:`fedlab.limits.MAX_INPUT_PIXELS`, ``--max-pixels``) before anything is decoded;
- PIL's own decompression-bomb refusal, truncated and garbage files become one-line
  :class:`~fedlab.errors.FedlabError` naming the flag and the file.

PIL's global limit (twice ``PIL.Image.MAX_IMAGE_PIXELS``, about 179 M pixels) is left as it
is: ``--max-pixels`` raises fedlab's cap up to it, not past it.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fedlab.errors import FedlabError
from fedlab.limits import MAX_INPUT_PIXELS, short

#: Photos bundled with scikit-learn (the others come from ``skimage.data``).
SKLEARN_PHOTOS = ("china", "flower")

#: Image formats a command decodes, as PIL names them.
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "GIF", "WEBP")
#: What PIL's JPEG opener may report instead (a camera's multi-picture JPEG).
_JPEG_VARIANTS = ("MPO",)

#: Help of ``--max-pixels`` where a command reads and writes images of different sizes.
#: Help of ``--check`` (both image commands).


def read_pixels(
    path: str | Path,
    *,
    mode: str = "RGB",
    flag: str = "--in",
    max_pixels: int = MAX_INPUT_PIXELS,
) -> np.ndarray:
    """An image file as a ``uint8`` array in PIL ``mode`` (``RGB``: ``(H, W, 3)``; ``L``:
    ``(H, W)``), after the checks of the module docstring.

    Parameters
    ----------
    path : str or Path
        The file, read as given.
    mode : str
        PIL mode to convert to (``RGB`` drops alpha and repeats grey).
    flag : str
        The command-line flag that named the file, quoted in every error.
    max_pixels : int
        Largest ``width * height`` decoded.

    Raises
    ------
    FedlabError
        One line naming ``flag`` and the file: it does not exist, is not a regular file, is
        not an image in :data:`IMAGE_FORMATS`, declares more than ``max_pixels`` pixels, or
        cannot be decoded (truncated, corrupt).
    """
    from PIL import Image, UnidentifiedImageError

    text = os.fspath(path)
    if not text:  # Path("") would be the working folder
        raise FedlabError(f"{flag} is empty; give an image file path")
    name = f"{flag} {short(text, 200)}"  # as given: Path() would drop a trailing slash
    fd = _open_regular_file(Path(text), name)
    with os.fdopen(fd, "rb") as f, warnings.catch_warnings():
        # Decoders warn about odd files (corrupt EXIF, truncated reads); the checks below
        # decide, and a warning would add lines to the one-line error or to a clean run.
        warnings.simplefilter("ignore")
        try:
            img = Image.open(f, formats=IMAGE_FORMATS)
        except UnidentifiedImageError:
            raise FedlabError(
                f"{name} is not an image in an allowed format ({', '.join(IMAGE_FORMATS)}) or "
                "its header is corrupt; give a PNG or JPEG file"
            ) from None
        except Image.DecompressionBombError as exc:
            raise FedlabError(
                f"{name} is refused by PIL as a possible decompression bomb ({exc}); "
                "give a smaller image"
            ) from None
        except Exception as exc:  # noqa: BLE001 -- any decoder failure on these bytes
            raise FedlabError(f"{name} cannot be read as an image ({_reason(exc)})") from None
        with img:
            if img.format not in IMAGE_FORMATS + _JPEG_VARIANTS:
                raise FedlabError(
                    f"{name} is a {img.format} image; allowed formats: {', '.join(IMAGE_FORMATS)}"
                )
            width, height = img.size
            if width < 1 or height < 1:
                raise FedlabError(f"{name} declares a {width}x{height} image: it has no pixels")
            if width * height > max_pixels:
                raise FedlabError(
                    f"{name} is {width}x{height} = {width * height:,} pixels, over the cap of "
                    f"{max_pixels:,}; pass --max-pixels {width * height} to read it"
                )
            try:
                return np.asarray(img.convert(mode))
            except Exception as exc:  # noqa: BLE001 -- any decoder failure on these bytes
                raise FedlabError(
                    f"{name} cannot be decoded ({_reason(exc)}); it is truncated or not a valid "
                    f"{img.format} file"
                ) from None


def read_image(
    path: str | Path, *, flag: str = "--in", max_pixels: int = MAX_INPUT_PIXELS
) -> torch.Tensor:
    """An image file as ``(1, 3, H, W)`` in [0, 1] (grey repeated, alpha dropped), read by
    :func:`read_pixels` (the one validation step: see there for what is refused)."""
    array = read_pixels(path, mode="RGB", flag=flag, max_pixels=max_pixels)
    # Channels first while still 8-bit (a writable copy), then one float tensor divided in
    # place: one float allocation at the pixel cap, not three.
    image = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
    return image.float().div_(255.0)[None]


def _open_regular_file(path: Path, name: str) -> int:
    """A read-only descriptor of ``path`` if it leads to a regular file, else a one-line error.

    Checked before opening (so a FIFO or device is never opened) and again on the open
    descriptor (so a path swapped in between is caught); ``O_NONBLOCK`` keeps a FIFO swapped in
    from blocking the open.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FedlabError(f"{name} does not exist; give an image file path") from None
    except (OSError, ValueError) as exc:  # permissions, a loop of links, a NUL in the path
        raise FedlabError(f"{name} cannot be opened ({_os_reason(exc)})") from None
    _require_regular(mode, name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError) as exc:
        raise FedlabError(f"{name} cannot be opened ({_os_reason(exc)})") from None
    try:
        _require_regular(os.fstat(fd).st_mode, name)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _require_regular(mode: int, name: str) -> None:
    if stat.S_ISDIR(mode):
        raise FedlabError(f"{name} is a folder; give an image file")
    if not stat.S_ISREG(mode):
        raise FedlabError(
            f"{name} is not a regular file (a device, pipe or socket); give an image file"
        )


def _os_reason(exc: OSError | ValueError) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else _reason(exc)


def _reason(exc: BaseException) -> str:
    """An exception as a short phrase for an error line (decoder messages can be long)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:120] + "..."


# ------------------------------------------------------------ flags of the image commands
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
    return shrink_to_side(x, max_side)[0].numpy()


def shrink_to_side(x: torch.Tensor, max_side: int) -> torch.Tensor:
    """``(N, C, H, W)`` images in [0, 1] shrunk so that the shorter side is at most
    ``max_side`` (bicubic with antialiasing, clamped); smaller images are returned as they are.
    The one shrink of the bundled photos and clip frames."""
    h, w = x.shape[-2:]
    factor = max_side / min(h, w)
    if factor >= 1:
        return x
    size = (round(h * factor), round(w * factor))
    x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
    return x.clamp(0.0, 1.0)
