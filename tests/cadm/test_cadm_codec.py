"""CaDM's encoder: frame counts and sizes survive, bytes are the file's, inputs are checked."""

from __future__ import annotations

import numpy as np
import pytest
from fedlab.clients.cadm.codec import CodecSpec, encode, expand, quantize, receive, to_tensor
from fedlab.clients.video import decode_bytes

from fedlab.errors import FedlabError


def clip(frames: int, h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, w)[None, None, :, None] * np.ones((frames, h, 1, 3))
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("frames", [1, 7])
@pytest.mark.parametrize(("codec", "r", "b"), [("x264", 2, 6), ("x264", 4, 5), ("ffv1", 2, 8),
                                               ("x264", 1, 8)])  # fmt: skip
def test_clip_round_trips_to_its_frame_count_and_size(frames, codec, r, b) -> None:
    x = clip(frames)
    encoded = encode(x, CodecSpec(r=r, b=b, codec=codec, crf=30))
    sent = decode_bytes(encoded.data)
    assert sent.shape == (frames, 48 // r, 64 // r, 3)
    up = receive(encoded)
    assert tuple(up.shape) == (frames, 3, 48, 64)


def test_x265_round_trips_at_its_minimum_size() -> None:
    x = clip(3, 128, 128)
    up = receive(encode(x, CodecSpec(r=2, b=8, codec="x265", crf=30)))
    assert tuple(up.shape) == (3, 3, 128, 128)
    with pytest.raises(FedlabError, match="x265 needs reduced frames of at least 64"):
        encode(clip(2), CodecSpec(r=2, codec="x265"))


def test_measured_bytes_equal_the_written_file(tmp_path, capsys) -> None:
    from fedlab.clients.video import read_clip, write_clip

    from fedlab.cli import fedlab_main

    src = tmp_path / "in.mp4"
    write_clip(src, clip(5))
    assert fedlab_main(["stream", "encode", "--in", str(src), "--out", str(tmp_path / "o"),
                        "--r", "2", "--b", "6", "--crf", "30"]) == 0  # fmt: skip
    size = (tmp_path / "o" / "in.mkv").stat().st_size
    assert f": {size} bytes for 5 frames" in capsys.readouterr().out
    again = encode(read_clip(src), CodecSpec(r=2, b=6, crf=30))
    assert again.total_bytes == size == len(again.data)


def test_bytes_are_the_stream_length_and_grow_with_quality() -> None:
    x = clip(6)
    low = encode(x, CodecSpec(r=1, crf=40))
    high = encode(x, CodecSpec(r=1, crf=18))
    assert low.total_bytes == len(low.data) > 0
    assert high.total_bytes > low.total_bytes
    lossless = [encode(x, CodecSpec(r=1, b=b, codec="ffv1")).total_bytes for b in (8, 5, 2)]
    assert lossless[0] > lossless[1] > lossless[2]  # FFV1 shrinks with the bit-depth


@pytest.mark.parametrize("b", [1, 3, 5, 8])
def test_bit_depth_round_trip_error_is_half_a_step(b) -> None:
    x = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    back = expand(quantize(x, b), b).astype(int)
    assert np.abs(back - x).max() <= 255 / (2**b - 1) / 2 + 1
    assert quantize(x, b).max() == 2**b - 1


def test_bad_inputs_are_one_line_errors() -> None:
    with pytest.raises(FedlabError, match="unsupported codec 'vp9'; allowed: x264, x265, ffv1"):
        CodecSpec(codec="vp9")
    for b in (0, 9):
        with pytest.raises(FedlabError, match=f"bit-depth b={b} is outside 1-8"):
            CodecSpec(b=b)
    with pytest.raises(FedlabError, match="not divisible by 2\\*r = 8"):
        encode(clip(1, 36, 64), CodecSpec(r=4))
    with pytest.raises(FedlabError, match="no frames"):
        encode(clip(1)[:0], CodecSpec())


def test_to_tensor_is_in_unit_range() -> None:
    t = to_tensor(clip(2))
    assert t.shape == (2, 3, 48, 64) and 0 <= float(t.min()) and float(t.max()) <= 1
