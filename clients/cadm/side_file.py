"""The stream side file: what ``fedlab stream encode`` writes beside a stream, and its schema.

``clip.mkv`` travels with ``clip.cadm.json``, the receiver's side information: the codec
settings ``r``, ``b``, ``codec``, ``crf``, the ``pixel-format`` the index planes were sent in
and the clip's ``frames``, ``height`` and ``width`` before reduction. :func:`side_record` is
the one writer and :func:`parse_side` the one schema,
which every reader goes through (:func:`read_side_file`); a record with a key the schema does
not know is refused, so a new field cannot be written without its check (the CaDM tests hold
the writer and the schema together). :func:`check_stream` then compares the record with the
stream's own container, codec and frame size, before a frame is decoded.

Every refusal is one :class:`FedlabError` line naming the file and the key; a side file is
never allowed to size an allocation by itself: dimensions are capped by
:data:`fedlab.limits.MAX_FRAME_SIDE`, frames by :data:`fedlab.limits.MAX_FRAMES`
(``--max-frames``) and the decoded clip by :data:`fedlab.clients.video.MAX_CLIP_BYTES`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fedlab.clients.cadm.codec import CODECS, CONTAINER, PIXEL_FORMAT, CodecSpec, Encoded
from fedlab.clients.video import MAX_CLIP_BYTES, VideoInfo

from fedlab.errors import FedlabError
from fedlab.limits import MAX_FRAME_SIDE, MAX_FRAMES, check_int

SUFFIX = ".cadm.json"
#: A side file is a few dozen bytes; anything much larger is not one (and is never read whole).
MAX_SIDE_FILE_BYTES = 4096
#: Decimal digits an integer of the record may have: past them it is named, never converted
#: (``int()`` refuses more than 4300 digits, with a ValueError).
_MAX_DIGITS = 20
#: FFmpeg's decoder name of each codec a side file may name: the stream must carry it.
STREAM_CODECS = {"x264": "h264", "x265": "hevc", "ffv1": "ffv1"}
#: The keys and what each holds, in the order the writer writes them.
KEYS = {
    "r": f"resolution factor, an integer 1..{MAX_FRAME_SIDE // 2}",
    "b": "bit-depth, an integer 1..8",
    "codec": f"codec, one of {', '.join(CODECS)}",
    "crf": "CRF, an integer 0..51",
    "pixel-format": f"the stream's pixel format, {PIXEL_FORMAT!r} (the b-bit index planes)",
    "frames": "frame count, an integer >= 1 (at most --max-frames)",
    "height": f"frame height before reduction, an integer 2..{MAX_FRAME_SIDE}",
    "width": f"frame width before reduction, an integer 2..{MAX_FRAME_SIDE}",
}
_FIX = "re-encode the clip with `fedlab stream encode` to rewrite it"


@dataclass(frozen=True)
class SideInfo:
    """A validated side file: the codec settings and the clip's size before reduction."""

    spec: CodecSpec
    frames: int
    height: int
    width: int

    def encoded(self, data: bytes) -> Encoded:
        """The stream ``data`` as :func:`fedlab.clients.cadm.codec.receive` takes it."""
        return Encoded(data, self.spec, self.frames, self.height, self.width)


def side_path(stream: str | Path) -> Path:
    """The side file of a stream: ``clip.mkv`` -> ``clip.cadm.json``."""
    return Path(stream).with_suffix(SUFFIX)


def side_record(encoded: Encoded) -> dict:
    """The side file's content for ``encoded`` (the one writer; :func:`parse_side` reads it)."""
    spec = encoded.spec
    return {"r": spec.r, "b": spec.b, "codec": spec.codec, "crf": spec.crf,
            "pixel-format": PIXEL_FORMAT, "frames": encoded.frames, "height": encoded.height,
            "width": encoded.width}  # fmt: skip


def side_text(encoded: Encoded) -> str:
    """The side file's bytes as ``encode`` writes them."""
    return json.dumps(side_record(encoded), indent=2) + "\n"


class _LongInteger:
    """A JSON integer with more than ``_MAX_DIGITS`` digits, kept as its length only."""

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _parse_int(text: str) -> int | _LongInteger:
    digits = len(text.lstrip("-"))
    return _LongInteger(digits) if digits > _MAX_DIGITS else int(text)


def _integer(record: dict, key: str, name: str, low: int, high: int) -> int:
    value = record[key]
    if isinstance(value, _LongInteger):
        raise FedlabError(
            f"{name} key {key!r} is an integer of {value.digits} digits; it must be the "
            f"{KEYS[key]}; {_FIX}"
        )
    try:
        return check_int(value, f"{name} key {key!r}", low=low, high=high)
    except FedlabError as exc:
        raise FedlabError(f"{exc} ({KEYS[key]}); {_FIX}") from None


def parse_side(record: object, name: str, *, max_frames: int = MAX_FRAMES) -> SideInfo:
    """The schema of a side file: ``record`` (parsed JSON) as a :class:`SideInfo`.

    Parameters
    ----------
    record : object
        What the side file's JSON parsed to.
    name : str
        How errors name the file.
    max_frames : int
        The frame cap (``--max-frames``).

    Raises
    ------
    FedlabError
        One line naming the file and the key: not an object, a key missing or unknown, a value
        of the wrong type or out of range, sides not divisible by ``2 r`` (as ``encode``
        crops them), or a clip that would decode to more than ``MAX_CLIP_BYTES``.
    """
    if not isinstance(record, dict):
        kind = {list: "a list", str: "a string"}.get(type(record), type(record).__name__)
        raise FedlabError(f"{name} holds {kind}, not the JSON object encode writes; {_FIX}")
    for key in record:
        if key not in KEYS:
            shown = key if len(key) <= 40 else f"{key[:40]}..."
            raise FedlabError(
                f"{name} has an unknown key {shown!r}; a side file has {', '.join(KEYS)}; {_FIX}"
            )
    for key in KEYS:
        if key not in record:
            raise FedlabError(f"{name} lacks key {key!r} ({KEYS[key]}); {_FIX}")
    codec = record["codec"]
    if not isinstance(codec, str) or codec not in CODECS:
        shown = repr(codec) if len(repr(codec)) <= 40 else f"{repr(codec)[:40]}..."
        raise FedlabError(f"{name} key 'codec' is {shown}, not one of {', '.join(CODECS)}; {_FIX}")
    if record["pixel-format"] != PIXEL_FORMAT:
        shown = repr(record["pixel-format"])[:40]
        raise FedlabError(
            f"{name} key 'pixel-format' is {shown}, not {PIXEL_FORMAT!r} (older streams carried "
            f"RGB-converted indices); {_FIX}"
        )
    r = _integer(record, "r", name, 1, MAX_FRAME_SIDE // 2)
    b = _integer(record, "b", name, 1, 8)
    crf = _integer(record, "crf", name, 0, 51)
    frames = _integer(record, "frames", name, 1, max_frames)
    height = _integer(record, "height", name, 2, MAX_FRAME_SIDE)
    width = _integer(record, "width", name, 2, MAX_FRAME_SIDE)
    if height % (2 * r) or width % (2 * r):
        raise FedlabError(
            f"{name}: height {height} and width {width} must be divisible by 2 r = {2 * r} "
            f"(encode crops them so); {_FIX}"
        )
    decoded = frames * height * width * 3
    if decoded > MAX_CLIP_BYTES:
        raise FedlabError(
            f"{name}: {frames} frames of {width}x{height} would decode to {decoded / 2**30:.1f} "
            f"GiB, over the cap of {MAX_CLIP_BYTES / 2**30:.0f} GiB; encode a shorter clip"
        )
    return SideInfo(CodecSpec(r=r, b=b, codec=codec, crf=crf), frames, height, width)


def read_side_file(path: str | Path, *, max_frames: int = MAX_FRAMES) -> SideInfo:
    """Read and validate a side file (at most :data:`MAX_SIDE_FILE_BYTES`, never more).

    Raises
    ------
    FedlabError
        One line naming the file: missing, not a regular file, too large, not UTF-8 JSON, too
        deeply nested, or refused by :func:`parse_side`.
    """
    path = Path(path)
    name = repr(str(path))
    try:
        if not path.is_file():
            raise FedlabError(
                f"side file {name} is missing (or not a file); decode needs the {SUFFIX} file "
                "encode wrote beside the stream"
            )
        with open(path, "rb") as handle:
            data = handle.read(MAX_SIDE_FILE_BYTES + 1)
    except OSError as exc:
        raise FedlabError(f"side file {name} cannot be read ({exc.strerror})") from None
    if len(data) > MAX_SIDE_FILE_BYTES:
        raise FedlabError(
            f"side file {name} is over {MAX_SIDE_FILE_BYTES} bytes, not a side file; {_FIX}"
        )
    try:
        record = json.loads(data.decode("utf-8"), parse_int=_parse_int)
    except UnicodeDecodeError:
        raise FedlabError(f"side file {name} is not UTF-8 text; {_FIX}") from None
    except json.JSONDecodeError as exc:
        raise FedlabError(
            f"side file {name} is not JSON ({exc.msg} at line {exc.lineno}); {_FIX}"
        ) from None
    except RecursionError:
        raise FedlabError(f"side file {name} is nested too deeply to be a side file") from None
    return parse_side(record, f"side file {name}", max_frames=max_frames)


def check_stream(side: SideInfo, info: VideoInfo, name: str, side_name: str) -> None:
    """The stream's container, codec and frame size must be what its side file says.

    Raises
    ------
    FedlabError
        Naming both files, for a stream that is not Matroska, holds another codec, or frames of
        another size than ``height / r`` by ``width / r``.
    """
    if CONTAINER not in info.container.split(","):
        raise FedlabError(
            f"{name} is a {info.container!r} file, not the {CONTAINER} stream encode writes"
        )
    expected = STREAM_CODECS[side.spec.codec]
    if info.codec != expected:
        raise FedlabError(
            f"{name} holds {info.codec!r} video, but its side file {side_name} says codec "
            f"{side.spec.codec!r} ({expected}); {_FIX}"
        )
    if info.pixel_format != PIXEL_FORMAT:
        raise FedlabError(
            f"{name} holds {info.pixel_format!r} frames, but its side file {side_name} says "
            f"{PIXEL_FORMAT!r}: the index planes would be converted on decoding; {_FIX}"
        )
    sent = (side.width // side.spec.r, side.height // side.spec.r)
    if (info.width, info.height) != sent:
        raise FedlabError(
            f"{name} holds {info.width}x{info.height} frames, but its side file {side_name} says "
            f"{side.width}x{side.height} at r={side.spec.r}, sent as {sent[0]}x{sent[1]}; {_FIX}"
        )
