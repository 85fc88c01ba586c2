"""Procedural videos, x264 bytes, AP and video I/O."""

from __future__ import annotations

import numpy as np
import pytest
from fedlab.clients.arena.bandwidth import canvas_frames, full_stream, stream_bytes
from fedlab.clients.arena.metrics import average_precision
from fedlab.clients.arena.model import Detections
from fedlab.clients.procedural_video import VideoSpec, generate_video, split_videos
from fedlab.clients.video import bundled_clip_path, decode_bytes, encode_h264, read_clip

from fedlab.errors import FedlabError

SMALL = VideoSpec(size=32, frames=6, min_sprite=6, max_sprite=12)


def test_videos_are_seeded_and_boxes_exact() -> None:
    a, b = generate_video(7, SMALL), generate_video(7, SMALL)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.frames.shape == (6, 32, 32, 3) and a.frames.dtype == np.uint8
    boxes = np.concatenate(a.boxes)
    assert len(boxes) > 0
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 32).all()
    assert (boxes[:, 2:] > boxes[:, :2]).all()
    assert not np.array_equal(generate_video(8, SMALL).frames, a.frames)


def test_train_and_test_videos_differ() -> None:
    (train,) = split_videos("train", 1, spec=SMALL)
    (test,) = split_videos("test", 1, spec=SMALL)
    assert not np.array_equal(train.frames, test.frames)
    with pytest.raises(FedlabError, match="train, test"):
        split_videos("val", 1)


def test_perfect_detections_score_ap_one_and_none_zero() -> None:
    truth = [np.array([[0, 0, 10, 10], [20, 20, 30, 28]], np.float32), np.zeros((0, 4))]
    perfect = [Detections(t.astype(np.float32), np.ones(len(t))) for t in truth]
    assert average_precision(perfect, truth) == pytest.approx(1.0)
    shifted = [Detections(t.astype(np.float32) + 6, np.ones(len(t))) for t in truth]
    assert average_precision(shifted, truth) == pytest.approx(0.0)
    empty = [Detections(np.zeros((0, 4), np.float32), np.zeros(0)) for _ in truth]
    assert average_precision(empty, truth) == 0.0


def test_full_frames_cost_the_full_stream_and_sparse_frames_less() -> None:
    video = generate_video(1, VideoSpec(size=32, frames=8, min_sprite=6, max_sprite=12))
    full = full_stream(video.frames).total_bytes
    assert stream_bytes(video.frames, [None] * 8, 8) == full
    keyframes_only = [None if t % 4 == 0 else np.zeros(0, np.int64) for t in range(8)]
    assert len(canvas_frames(video.frames, keyframes_only, 8)) == 2
    assert stream_bytes(video.frames, keyframes_only, 8) < full
    assert stream_bytes(video.frames, [np.zeros(0, np.int64)] * 8, 8) == 0


def test_canvas_updates_only_the_sent_tiles() -> None:
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    frames[1] = 200
    canvas = canvas_frames(frames, [None, np.array([3])], 8)
    assert (canvas[1, 8:, 8:] == 200).all() and (canvas[1, :8] == 0).all()


def test_h264_roundtrip_and_local_file(tmp_path) -> None:
    frames = np.random.default_rng(0).integers(0, 255, (5, 32, 48, 3), dtype=np.uint8)
    stream = encode_h264(frames, crf=18)
    assert len(stream.frame_bytes) == 5 and sum(stream.frame_bytes) <= stream.total_bytes
    assert decode_bytes(stream.data).shape == (5, 32, 48, 3)
    path = tmp_path / "clip.mp4"
    path.write_bytes(stream.data)
    assert read_clip(path, max_frames=3, size=(16, 16)).shape == (3, 16, 16, 3)
    with pytest.raises(FedlabError, match="even H and W"):
        encode_h264(frames[:, :31])
    with pytest.raises(FedlabError, match="does not exist"):
        read_clip(tmp_path / "missing.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(FedlabError, match="cannot decode"):
        read_clip(tmp_path / "junk.mp4")


def test_bundled_clips() -> None:
    assert bundled_clip_path("carphone").is_file()
    frames = read_clip(bundled_clip_path("carphone"), max_frames=2)
    assert frames.shape == (2, 144, 176, 3)
    with pytest.raises(FedlabError, match="known: bigbuckbunny"):
        bundled_clip_path("eagle")
