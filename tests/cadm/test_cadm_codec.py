"""CaDM's encoder: frame counts and sizes survive, bytes are the file's, inputs are checked."""

from __future__ import annotations

import numpy as np
import pytest
from fedlab.clients.cadm.codec import (
    CodecSpec,
    encode,
    index_planes,
    receive,
    received_planes,
    rgb_from_index_planes,
    to_tensor,
)
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
    # grey: both chroma planes are 128 exactly, so only the luma index rounds
    x = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    planes = index_planes(x, b)
    back = (rgb_from_index_planes(planes, b) * 255).permute(0, 2, 3, 1).numpy()
    assert np.abs(back - x).max() <= 255 / (2**b - 1) / 2 + 1e-3
    assert planes[:, :16].max() == 2**b - 1 and planes[:, :16].min() == 0


@pytest.mark.parametrize("b", range(1, 9))
def test_lossless_codec_returns_the_senders_index_planes_exactly(b) -> None:
    # Through FFV1 at full resolution nothing may touch the b-bit indices. The old path (RGB
    # indices through FFmpeg's RGB -> YUV 4:2:0 -> RGB) was off by 1-3 levels.
    from fedlab.clients.video import bundled_clip

    real = bundled_clip("carphone", max_frames=3)
    for frames in (real, clip(2, seed=b)):
        encoded = encode(frames, CodecSpec(r=1, b=b, codec="ffv1"))
        sent = index_planes(frames, b)
        assert sent.max() <= 2**b - 1
        np.testing.assert_array_equal(received_planes(encoded), sent)
        np.testing.assert_array_equal(
            receive(encoded).numpy(), rgb_from_index_planes(sent, b).numpy()
        )


def test_colour_survives_a_low_bit_depth_without_a_shift() -> None:
    # A flat colour at b = 5 through the lossless codec comes back within the quantisation
    # step (the review's (20, 5, 28) came back as (18, 2, 27) on the old path, index 20 as 19).
    x = np.broadcast_to(np.array([20, 5, 28], np.uint8), (2, 32, 32, 3)).copy()
    back = receive(encode(x, CodecSpec(r=1, b=5, codec="ffv1"))) * 255
    step = 255 / 31
    assert float((back - to_tensor(x) * 255).abs().max()) <= step * 1.5
    assert abs(float((back - to_tensor(x) * 255).mean())) < step / 2


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
