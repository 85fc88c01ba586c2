"""Bandwidth as real bytes: what the edge device would put on the wire, encoded with x264.

Reference: the full frames encoded as one H.264 stream (libx264 through PyAV).

Sparse methods: the server keeps a canvas, the last picture it has of the scene. A keyframe
replaces the whole canvas; a non-keyframe replaces only the sent patches (PoI tiles), the rest
stays as it was. The edge encodes the sequence of canvases as one H.264 stream at the same CRF
and preset as the reference (matched quality): unchanged regions cost the codec almost nothing
(skipped macroblocks), the PoI tiles cost what their content costs. Frames that send nothing
(``reuse`` between keyframes) are not in the stream at all. Keyframes are counted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from fedlab.clients.video import EncodedStream, encode_h264


def canvas_frames(frames: np.ndarray, keeps: Sequence[np.ndarray | None], patch: int) -> np.ndarray:
    """The pictures the server holds after each sent frame (frames sending nothing left out).

    Parameters
    ----------
    frames : numpy.ndarray
        ``uint8 (T, H, W, 3)``.
    keeps : sequence
        Per frame: None (whole frame sent) or the sent token indices (row-major, ``patch``-px).
    """
    t, h, w, _ = frames.shape
    cols = w // patch
    canvas = np.zeros_like(frames[0])
    sent = []
    for frame, keep in zip(frames, keeps, strict=True):
        if keep is None:
            canvas = frame.copy()
        elif len(keep) == 0:
            continue
        else:
            canvas = canvas.copy()
            for k in np.asarray(keep):
                r, c = divmod(int(k), cols)
                ys, xs = slice(r * patch, (r + 1) * patch), slice(c * patch, (c + 1) * patch)
                canvas[ys, xs] = frame[ys, xs]
        sent.append(canvas)
    return np.stack(sent) if sent else np.zeros((0, h, w, 3), np.uint8)


def stream_bytes(
    frames: np.ndarray,
    keeps: Sequence[np.ndarray | None],
    patch: int,
    *,
    crf: int = 23,
    preset: str = "veryfast",
) -> int:
    """Bytes of the x264 stream a method sends for ``frames`` (0 when it sends nothing)."""
    canvases = canvas_frames(frames, keeps, patch)
    if len(canvases) == 0:
        return 0
    return encode_h264(canvases, crf=crf, preset=preset).total_bytes


def full_stream(frames: np.ndarray, *, crf: int = 23, preset: str = "veryfast") -> EncodedStream:
    """The reference: every full frame in one x264 stream."""
    return encode_h264(frames, crf=crf, preset=preset)
