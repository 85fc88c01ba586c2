"""CaDM's encoder side: lower resolution and colour bit-depth, then a real codec (PyAV).

A clip (``uint8 (T, H, W, 3)`` RGB) is sent as:

1. **resolution factor r**: downsampled by ``r`` with an antialiased (area-weighted bilinear,
   torch ``antialias=True``) filter, the one downsampler used everywhere here;
2. **bit-depth b**: each RGB channel quantised to ``b`` bits and the *index*
   ``q = round(x (2^b - 1) / 255)`` is what the codec sees (values ``0 .. 2^b - 1``); sending
   the index is what makes a lower bit-depth cheaper for a lossy codec (sending ``q`` shifted
   back to 0..255 costs *more* bits than 8-bit content at the same CRF: banding);
3. **codec**: libx264 (default), libx265 or lossless FFV1, in a Matroska container, yuv420p, at
   a CRF (ignored by FFV1), by :func:`fedlab.clients.video.encode_frames` (the one PyAV
   encoder; :func:`fedlab.clients.video.decode_bytes` decodes). The stream's bytes are the
   whole container file, measured from the encoded buffer, never estimated.

The receiver decodes the stream, expands the index back to 0..255 (``x = q 255 / (2^b - 1)``)
and upsamples (bicubic, :func:`upsample_frames`); a learned decoder (:mod:`.cadm_model`) then
restores the frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from fedlab.clients import video

from fedlab.errors import FedlabError
from fedlab.limits import MAX_FRAME_SIDE

#: Codec name (as the CLI and configs say it) -> PyAV encoder name.
CODECS = {"x264": "libx264", "x265": "libx265", "ffv1": "ffv1"}
LOSSLESS = ("ffv1",)
CONTAINER = "matroska"
#: The libx265 in PyAV's wheel aborted the process (heap corruption) on 44x36 and 40x32 real
#: frames; 88x72 was fine. Smaller reduced frames are refused with a one-line error.
X265_MIN_SIDE = 64


@dataclass(frozen=True)
class CodecSpec:
    """What the sender does to a clip.

    Parameters
    ----------
    r : int
        Resolution factor (1: full resolution); frame sides must be divisible by ``2 r``.
    b : int
        Bit-depth per RGB channel, 1-8 (8: unchanged).
    codec : str
        ``x264``, ``x265`` or ``ffv1`` (lossless; ``crf`` unused).
    crf : int
        Constant rate factor of x264/x265 (0-51; lower is better).
    preset : str
        x264/x265 speed preset.
    fps : int
    """

    r: int = 2
    b: int = 8
    codec: str = "x264"
    crf: int = 28
    preset: str = "veryfast"
    fps: int = 25

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise FedlabError(
                f"unsupported codec {repr(self.codec)[:40]}; allowed: {', '.join(CODECS)} "
                "(e.g. --codec x264)"
            )
        # bools are ints to Python; a JSON true is no bit-depth
        if not _is_int(self.b) or not 1 <= self.b <= 8:
            raise FedlabError(f"bit-depth b={self.b!r} is outside 1-8; give an integer 1..8")
        if not _is_int(self.r) or not 1 <= self.r <= MAX_FRAME_SIDE // 2:
            raise FedlabError(
                f"resolution factor r={self.r!r} must be an integer in 1..{MAX_FRAME_SIDE // 2}"
            )
        if not _is_int(self.crf) or not 0 <= self.crf <= 51:
            raise FedlabError(f"crf {self.crf!r} is outside 0-51 (x264/x265 range); e.g. 28")
        if not _is_int(self.fps) or not 1 <= self.fps <= 1000:
            raise FedlabError(f"fps {self.fps!r} must be an integer in 1..1000")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Encoded:
    """An encoded clip: the container file's bytes and what the receiver needs to undo it."""

    data: bytes
    spec: CodecSpec
    frames: int
    height: int
    width: int

    @property
    def total_bytes(self) -> int:
        """Bytes on the wire: the whole container file."""
        return len(self.data)


def check_clip(frames: np.ndarray) -> np.ndarray:
    """``frames`` as ``uint8 (T, H, W, 3)`` with at least one frame, else a one-line error."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise FedlabError(
            f"frames must be uint8 of shape (T, H, W, 3), got {frames.dtype} {frames.shape}"
        )
    if len(frames) == 0:
        raise FedlabError("the clip has no frames; give at least one frame")
    return frames


def check_size(height: int, width: int, r: int) -> None:
    """The reduced frame must have even sides (yuv420p): ``H`` and ``W`` divisible by ``2 r``."""
    if height % (2 * r) or width % (2 * r):
        raise FedlabError(
            f"frame size {height}x{width} is not divisible by 2*r = {2 * r}; crop the clip "
            f"(e.g. to {height - height % (2 * r)}x{width - width % (2 * r)}) or pick another r"
        )


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """``uint8 (T, H, W, 3)`` -> float ``(T, 3, H, W)`` in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """float ``(T, 3, H, W)`` in [0, 1] -> ``uint8 (T, H, W, 3)`` (rounded, clipped)."""
    array = (frames.clamp(0, 1) * 255).round().to(torch.uint8)
    return array.permute(0, 2, 3, 1).contiguous().numpy()


def downsample_frames(frames: np.ndarray, r: int) -> np.ndarray:
    """Antialiased bilinear downsampling by ``r`` (the one downsampler of CaDM)."""
    if r == 1:
        return frames
    t, h, w, _ = frames.shape
    x = F.interpolate(to_tensor(frames), size=(h // r, w // r), mode="bilinear",
                      antialias=True, align_corners=False)  # fmt: skip
    return to_uint8(x)


def upsample_tensor(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic upsampling of float ``(T, 3, h, w)`` to ``size``, clipped to [0, 1]."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False).clamp(0, 1)


def quantize(frames: np.ndarray, b: int) -> np.ndarray:
    """8-bit values -> ``b``-bit indices ``0 .. 2^b - 1`` (rounded)."""
    if b == 8:
        return frames
    levels = 2**b - 1
    return np.round(frames.astype(np.float32) * (levels / 255.0)).astype(np.uint8)


def expand(indices: np.ndarray, b: int) -> np.ndarray:
    """``b``-bit indices (possibly off-range after a lossy codec) -> 8-bit values."""
    if b == 8:
        return indices
    levels = 2**b - 1
    values = np.clip(indices.astype(np.float32), 0, levels) * (255.0 / levels)
    return np.round(values).astype(np.uint8)


def check_encodable(frames: np.ndarray, spec: CodecSpec) -> np.ndarray:
    """``frames`` if :func:`encode` can encode them with ``spec`` (``--check`` calls this
    alone), else a one-line error."""
    frames = check_clip(frames)
    _, h, w, _ = frames.shape
    check_size(h, w, spec.r)
    if spec.codec == "x265" and min(h // spec.r, w // spec.r) < X265_MIN_SIDE:
        raise FedlabError(
            f"x265 needs reduced frames of at least {X265_MIN_SIDE} px a side, got "
            f"{h // spec.r}x{w // spec.r} (r={spec.r}); use x264 or a smaller r"
        )
    return frames


def encode(frames: np.ndarray, spec: CodecSpec) -> Encoded:
    """Reduce ``frames`` by ``spec`` and encode them; bytes measured from the stream.

    Raises
    ------
    FedlabError
        For a malformed clip or a size not divisible by ``2 r``.
    """
    frames = check_encodable(frames, spec)
    t, h, w, _ = frames.shape
    sent = quantize(downsample_frames(frames, spec.r), spec.b)
    options: dict[str, str] = {}
    if spec.codec == "x264":
        options = {"crf": str(spec.crf), "preset": spec.preset}
    elif spec.codec == "x265":
        params = "log-level=error:pools=none:frame-threads=1"
        options = {"crf": str(spec.crf), "preset": spec.preset, "x265-params": params}
    stream = video.encode_frames(sent, codec=CODECS[spec.codec], container=CONTAINER,
                                 fps=spec.fps, options=options)  # fmt: skip
    return Encoded(stream.data, spec, t, h, w)


def receive(encoded: Encoded, *, name: str = "the stream") -> torch.Tensor:
    """Decode, expand the bit-depth and upsample bicubically: float ``(T, 3, H, W)`` in [0, 1].

    This is the bicubic baseline and the conditioning input of every learned decoder.
    """
    # never more frames than were encoded: a stream that holds more stops at the next one
    hint = f" ({encoded.frames} were encoded); encode the clip again"
    data = video.decode_bytes(encoded.data, name=name, format=CONTAINER, frame_cap=encoded.frames,
                              cap_hint=hint)  # fmt: skip
    low = expand(data, encoded.spec.b)
    if len(low) != encoded.frames:
        raise FedlabError(
            f"{name} decoded to {len(low)} frames, {encoded.frames} were encoded; the stream is "
            "truncated or not the one its side file describes"
        )
    sent = (encoded.height // encoded.spec.r, encoded.width // encoded.spec.r)
    if low.shape[1:3] != sent:  # upsampling to a size the stream never had: refuse
        raise FedlabError(
            f"{name} holds {low.shape[2]}x{low.shape[1]} frames, but {encoded.width}x"
            f"{encoded.height} at r={encoded.spec.r} sends {sent[1]}x{sent[0]}"
        )
    return upsample_tensor(to_tensor(low), (encoded.height, encoded.width))
