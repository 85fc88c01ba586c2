"""The caps every reader of untrusted input enforces, in one place.

Each cap bounds what a file, flag or key can make fedlab allocate before anything is
allocated; a value past a cap is a one-line error naming the value, the cap and the flag or
key that raises it (where a user may legitimately need more). The README's commands section
lists them.
"""

from __future__ import annotations

from fedlab.errors import FedlabError

#: Pixels of an input image (``fedlab sr``, ``fedlab harmonize``): 4096 x 4096. ``--max-pixels``.
MAX_INPUT_PIXELS = 4096 * 4096
#: Pixels of an output image (so that ``--scale`` cannot exhaust memory): 8192 x 8192.
#: ``--max-pixels`` raises it too.
MAX_OUTPUT_PIXELS = 8192 * 8192
#: Frames decoded from one video or stream. ``--max-frames``.
MAX_FRAMES = 10_000
#: Bytes of one decoded clip (RGB, 8 bits): frames and sides alone would let a small file of
#: 10,000 static 8192 x 8192 frames decode to terabytes. 2 GiB.
MAX_CLIP_BYTES = 2 * 2**30
#: Width or height of a frame in a video or a stream side file.
MAX_FRAME_SIDE = 8192
#: Parameters of a model built from a folder's config.json (counted on the meta device, before
#: any memory is allocated): 500 M. ``--max-parameters``.
MAX_MODEL_PARAMETERS = 500_000_000
#: Bytes of a dataset held in memory as float32 after resizing (``image-size``): 4 GiB.
MAX_DATASET_BYTES = 4 * 2**30
#: Side of the images a dataset is resized to (``image-size``).
MAX_IMAGE_SIZE = 1024
#: Integers in configs, manifests and side files: what a 64-bit signed integer holds.
MAX_INT = 2**63 - 1
#: Seeds: 0 <= seed < 2**63 (numpy and torch take them; derived seeds stay in range).
SEED_LIMIT = 2**63


def check_cap(value: int, cap: int, what: str, raise_with: str = "") -> int:
    """``value`` if it is at most ``cap``, else a one-line error naming both and the flag."""
    if value > cap:
        how = f"; pass {raise_with} to allow more" if raise_with else ""
        raise FedlabError(f"{what} is {value:,}, over the cap of {cap:,}{how}")
    return value


def check_int(value: object, name: str, *, low: int = -MAX_INT, high: int = MAX_INT) -> int:
    """``value`` as an int in ``[low, high]``: a one-line error for anything else (bools, floats,
    strings, integers of any size outside the range)."""
    if isinstance(value, bool) or not isinstance(value, int):
        kind = type(value).__name__
        raise FedlabError(f"{name} must be an integer, got {short(value)} ({kind})")
    if not low <= value <= high:
        raise FedlabError(f"{name} must lie in [{low}, {high}], got {short(value)}")
    return value


def short(value: object, limit: int = 40) -> str:
    """A value for an error line, cut so that a 5000-digit number stays one short line."""
    text = repr(value) if not isinstance(value, int) else _int_text(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _int_text(value: int) -> str:
    if value.bit_length() > 128:
        return f"an integer of {value.bit_length()} bits"
    return str(value)
