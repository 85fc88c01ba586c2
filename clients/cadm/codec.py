"""CaDM's encoder side: lower resolution and colour bit-depth, then a real codec (PyAV).

A clip (``uint8 (T, H, W, 3)`` RGB) is sent as:

1. **resolution factor r**: downsampled by ``r`` with an antialiased (area-weighted bilinear,
   torch ``antialias=True``) filter, the one downsampler used everywhere here;
2. **bit-depth b**, in the codec's own pixel format: the frame goes to full-range BT.601
   YCbCr (JPEG's) in floating point, the chroma planes are averaged over 2 x 2 pixels
   (4:2:0, as every stream here, the full-resolution x264 baseline included), and each plane
   is quantised to the *index* (values ``0 .. 2^b - 1``) with the step ``255 / (2^b - 1)``:
   luma ``q = round(Y / step)``, chroma ``q = round((C - 128) / step) + 2^(b-1)``, so that
   grey (C = 128) keeps an exact level at every ``b``.
   The index planes are handed to the codec as its yuv420p planes, so no conversion touches
   them (FFmpeg's RGB -> YUV -> RGB is off by 1-3 levels and subsamples colour; expanded
   from ``b`` bits, that error grew 4-8 times). Sending the index is what makes a lower
   bit-depth cheaper for a lossy codec (sending ``q`` shifted back to 0..255 costs *more* bits
   than 8-bit content at the same CRF: banding);
3. **codec**: libx264 (default), libx265 or lossless FFV1, in a Matroska container, yuv420p, at
   a CRF (ignored by FFV1), by :func:`fedlab.clients.video.encode_frames` (the one PyAV
   encoder; :func:`fedlab.clients.video.decode_bytes` decodes). The stream's bytes are the
   whole container file, measured from the encoded buffer, never estimated.

The receiver decodes the yuv420p planes as they are (through FFV1 they equal the sender's
index planes exactly, for every ``b``), expands each back to 0..255
(``v = q 255 / (2^b - 1)``), upsamples the chroma bilinearly, returns to RGB and upsamples the
frame (bicubic, :func:`upsample_tensor`); a learned decoder (:mod:`.model`) then restores it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from fedlab.clients import video

from fedlab import image_quality
from fedlab.errors import FedlabError
from fedlab.limits import MAX_FRAME_SIDE

#: Codec name (as the CLI and configs say it) -> PyAV encoder name.
CODECS = {"x264": "libx264", "x265": "libx265", "ffv1": "ffv1"}
LOSSLESS = ("ffv1",)
CONTAINER = "matroska"
#: The pixel format of every stream: the index planes go in as they are.
PIXEL_FORMAT = "yuv420p"
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


def index_planes(frames: np.ndarray, b: int) -> np.ndarray:
    """RGB ``uint8 (T, H, W, 3)`` -> yuv420p index planes ``uint8 (T, 3 H / 2, W)`` of ``b``
    bits: full-range BT.601 YCbCr in float64, chroma averaged over 2 x 2, each plane
    quantised as the module says, laid out flat as PyAV's yuv420p arrays (Y, U, V)."""
    t, h, w, _ = frames.shape
    x = torch.from_numpy(np.ascontiguousarray(frames)).double()
    ycc = image_quality.rgb_to_ycbcr(x)  # (T, H, W, 3) in [0, 255]
    luma = ycc[..., 0]
    chroma = F.avg_pool2d(ycc[..., 1:].permute(0, 3, 1, 2), 2)  # (T, 2, H/2, W/2)
    levels, neutral = 2**b - 1, 2 ** (b - 1)
    step = 255.0 / levels

    def index(v: torch.Tensor, zero: float, at: int) -> np.ndarray:
        q = ((v - zero) / step).round() + at
        return q.clamp(0, levels).to(torch.uint8).reshape(t, -1).numpy()

    flat = [index(luma, 0.0, 0), index(chroma[:, 0], 128.0, neutral),
            index(chroma[:, 1], 128.0, neutral)]  # fmt: skip
    return np.concatenate(flat, axis=1).reshape(t, h * 3 // 2, w)


def rgb_from_index_planes(planes: np.ndarray, b: int) -> torch.Tensor:
    """yuv420p index planes ``uint8 (T, 3 H / 2, W)`` of ``b`` bits -> float RGB
    ``(T, 3, H, W)`` in [0, 1]: each plane expanded by the step (indices past the top, which a
    lossy codec may produce, clipped), chroma upsampled bilinearly, BT.601 full range
    inverted."""
    t, rows, w = planes.shape
    h = rows * 2 // 3
    levels, neutral = 2**b - 1, 2 ** (b - 1)
    q = torch.from_numpy(np.ascontiguousarray(planes)).double().clamp(max=levels)
    flat, step = q.reshape(t, -1), 255.0 / levels
    luma = (flat[:, : h * w] * step).reshape(t, h, w)
    chroma_q = flat[:, h * w :].reshape(t, 2, h // 2, w // 2)
    cb, cr = ((chroma_q - neutral) * step + 128.0).unbind(1)
    chroma = F.interpolate(torch.stack([cb, cr], 1), size=(h, w), mode="bilinear",
                           align_corners=False)  # fmt: skip
    ycc = torch.stack([luma, chroma[:, 0], chroma[:, 1]], dim=-1)
    rgb = image_quality.ycbcr_to_rgb(ycc)
    return (rgb / 255.0).clamp(0, 1).permute(0, 3, 1, 2).float()


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
    sent = index_planes(downsample_frames(frames, spec.r), spec.b)
    options: dict[str, str] = {}
    if spec.codec == "x264":
        options = {"crf": str(spec.crf), "preset": spec.preset}
    elif spec.codec == "x265":
        params = "log-level=error:pools=none:frame-threads=1"
        options = {"crf": str(spec.crf), "preset": spec.preset, "x265-params": params}
    stream = video.encode_frames(
        sent,
        codec=CODECS[spec.codec],
        container=CONTAINER,
        fps=spec.fps,
        options=options,
        pixel_format=PIXEL_FORMAT,
    )
    return Encoded(stream.data, spec, t, h, w)


def received_planes(encoded: Encoded, *, name: str = "the stream") -> np.ndarray:
    """The decoded yuv420p index planes ``uint8 (T, 3 h / 2, w)``, as the codec returns them."""
    # never more frames than were encoded: a stream that holds more stops at the next one
    hint = f" ({encoded.frames} were encoded); encode the clip again"
    return video.decode_bytes(encoded.data, name=name, format=CONTAINER,
                              frame_cap=encoded.frames, cap_hint=hint,
                              pixel_format=PIXEL_FORMAT)  # fmt: skip


def receive(encoded: Encoded, *, name: str = "the stream") -> torch.Tensor:
    """Decode, expand the bit-depth and upsample bicubically: float ``(T, 3, H, W)`` in [0, 1].

    This is the bicubic baseline and the conditioning input of every learned decoder.
    """
    planes = received_planes(encoded, name=name)
    low = rgb_from_index_planes(planes, encoded.spec.b)
    if len(low) != encoded.frames:
        raise FedlabError(
            f"{name} decoded to {len(low)} frames, {encoded.frames} were encoded; the stream is "
            "truncated or not the one its side file describes"
        )
    sent = (encoded.height // encoded.spec.r, encoded.width // encoded.spec.r)
    if tuple(low.shape[-2:]) != sent:  # upsampling to a size the stream never had: refuse
        raise FedlabError(
            f"{name} holds {low.shape[-1]}x{low.shape[-2]} frames, but {encoded.width}x"
            f"{encoded.height} at r={encoded.spec.r} sends {sent[1]}x{sent[0]}"
        )
    return upsample_tensor(low, (encoded.height, encoded.width))
