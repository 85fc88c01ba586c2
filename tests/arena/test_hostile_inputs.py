"""Issue 30 for ``fedlab arena`` and the shared video reader (clients/video.py).

Every refusal is exit code 2 and one stderr line naming the flag or file, with no traceback;
nothing is written outside ``--out`` and no existing file is replaced without ``--overwrite``.
Generated cases run in process with ``--check`` (validate, load the detector, decode the clip,
run nothing); the video reader's cases also go through ``fedlab stream encode --check``.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from fedlab.clients import video
from fedlab.clients.arena.model import ArenaViT
from fedlab.clients.video import encode_frames, read_clip
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedlab.cli import fedlab_main
from fedlab.errors import FedlabError

HUGE = "9" * 5000  # past Python's 4300-digit int() limit
#: Fast tier: a few examples per property (derandomized, so CI sees the same ones); slow tier:
#: many, random.
FAST = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])  # fmt: skip
SLOW = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])  # fmt: skip


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> Path:
    """A tiny detector folder (loads in milliseconds)."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("detector") / "det"
    ArenaViT(image_size=32, patch_size=8, dim=16, depth=2, heads=2, head_hidden=16).save_pretrained(
        folder
    )
    return folder


def _frames(count: int = 6, side: int = 32) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (count, side, side, 3), dtype=np.uint8)


@functools.cache
def _clip() -> bytes:
    """A valid 6-frame H.264 MP4, as bytes (not a fixture: a failing example prints it)."""
    return encode_frames(_frames(), codec="libx264", container="mp4").data


@pytest.fixture
def clip() -> bytes:
    return _clip()


@pytest.fixture
def segment() -> bytes:
    """A valid MPEG-TS segment, what an HLS playlist would name."""
    return encode_frames(_frames(), codec="libx264", container="mpegts").data


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``fedlab`` in process: exit code, stdout, stderr."""
    try:
        code = fedlab_main(list(argv))
    except SystemExit as exc:  # argparse's own exit (--help): never a refusal
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def refused(code: int, err: str, *names: str) -> None:
    """Exit 2, exactly one stderr line, no traceback, naming each of ``names``."""
    assert code == 2, err
    assert err.count("\n") == 1 and err.endswith("\n") and "Traceback" not in err, err
    for name in names:
        assert name in err, (name, err)


def _snapshot(folder: Path, out: Path) -> dict[str, bytes]:
    """Every file under ``folder`` outside ``out``, with its bytes (links as their target)."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if out in path.parents or path == out:
            continue
        if path.is_symlink():
            files[str(path)] = os.readlink(path).encode()
        elif path.is_file():
            files[str(path)] = path.read_bytes()
    return files


class Sandbox:
    """A fresh folder per generated case: ``out/keep.txt`` (a sentinel in --out) and
    ``outside.txt`` beside it, both checked unchanged after the command."""

    def __init__(self, root: Path) -> None:
        self.root = Path(tempfile.mkdtemp(dir=root))
        self.out = self.root / "out"
        self.out.mkdir()
        (self.out / "keep.txt").write_bytes(b"sentinel")
        (self.root / "outside.txt").write_bytes(b"outside")
        self.before: dict[str, bytes] = {}

    def freeze(self) -> None:
        self.before = _snapshot(self.root, self.out)

    def check(self) -> None:
        assert (self.out / "keep.txt").read_bytes() == b"sentinel"
        assert _snapshot(self.root, self.out) == self.before, "something written outside --out"


def _arena(det: Path, out: Path, *extra: str) -> list[str]:
    return ["arena", "--weights", str(det), "--out", str(out), "--frames", "2", *extra]


# -- one regression test per finding ------------------------------------------------------------
def test_an_hls_playlist_is_refused_before_ffmpeg_opens_the_file_it_names(
    tmp_path, capsys, detector, segment, monkeypatch
):
    secret = tmp_path / "elsewhere" / "secret.ts"
    secret.parent.mkdir()
    secret.write_bytes(segment)
    playlist = tmp_path / "in" / "play.m3u8"
    playlist.parent.mkdir()
    playlist.write_text(
        f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:{secret}\n#EXT-X-ENDLIST\n"
    )
    code, _, err = cli(capsys, *_arena(detector, tmp_path / "out", f"--clip={playlist}"))
    refused(code, err, "--clip", "play.m3u8")
    # without the first-bytes sniffing, the demuxer allowlist alone refuses it, and FFmpeg's
    # io_open never gets to the segment
    monkeypatch.setattr(video, "_LIST_MAGIC", {})
    with pytest.raises(FedlabError, match="play.m3u8") as info:
        read_clip(playlist)
    assert "secret.ts" not in str(info.value)


@pytest.mark.parametrize(
    ("argument", "allowed"),
    [("--crf=99", "--crf: 99 is outside [0, 51]"), ("--clip=sprites:-1", "-1 is outside [0,")],
)
def test_an_out_of_range_crf_or_sprite_index_is_refused(
    argument, allowed, tmp_path, capsys, detector
):
    code, _, err = cli(capsys, *_arena(detector, tmp_path / "out", "--clip=sprites:0", argument))
    refused(code, err, argument.split("=")[0], allowed)
    assert not (tmp_path / "out").exists()


def test_out_naming_a_file_is_one_line(tmp_path, capsys, detector):
    mine = tmp_path / "mine.txt"
    mine.write_text("my notes")
    code, _, err = cli(capsys, *_arena(detector, mine, "--clip=sprites:0"))
    refused(code, err, "--out", "mine.txt")
    assert mine.read_text() == "my notes"


def test_existing_outputs_are_kept_unless_overwrite(tmp_path, capsys, detector):
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("mine")
    code, _, err = cli(capsys, *_arena(detector, out, "--clip=sprites:0"))
    refused(code, err, "summary.json", "--overwrite")
    assert (out / "summary.json").read_text() == "mine"
    assert not (out / "detections.json").exists()  # named before any work: nothing written
    code, _, err = cli(capsys, *_arena(detector, out, "--clip=sprites:0", "--overwrite"))
    assert code == 0, err
    assert (out / "summary.json").read_text().startswith("{")


def test_check_validates_without_running(tmp_path, capsys, detector, clip):
    path = tmp_path / "clip.mp4"
    path.write_bytes(clip)
    for clip_arg in ("sprites:3", str(path), "bundled:carphone"):
        code, out, err = cli(capsys, *_arena(detector, tmp_path / "out", f"--clip={clip_arg}",
                                             "--check"))  # fmt: skip
        assert code == 0 and err == "" and out.startswith("ok: ") and out.count("\n") == 1, err
    assert not (tmp_path / "out").exists()  # --check creates nothing


def test_overwrite_replaces_a_link_in_out_not_its_target(tmp_path, capsys, detector):
    target = tmp_path / "elsewhere.json"
    target.write_text("not yours")
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").symlink_to(target)
    code, _, err = cli(capsys, *_arena(detector, out, "--clip=sprites:0"))
    refused(code, err, "summary.json")
    code, _, err = cli(capsys, *_arena(detector, out, "--clip=sprites:0", "--overwrite"))
    assert code == 0, err
    assert target.read_text() == "not yours" and not (out / "summary.json").is_symlink()


def test_frames_over_the_cap_need_max_frames(tmp_path, capsys, detector, clip):
    path = tmp_path / "clip.mp4"
    path.write_bytes(clip)
    code, _, err = cli(capsys, *_arena(detector, tmp_path / "o", f"--clip={path}", "--check",
                                       "--frames=0", "--max-frames=3"))  # fmt: skip
    refused(code, err, "clip.mp4", "more than 3 frames", "--max-frames")
    code, _, err = cli(capsys, *_arena(detector, tmp_path / "o", f"--clip={path}", "--check",
                                       "--frames=20000"))  # fmt: skip
    refused(code, err, "--frames", "--max-frames")
    code, _, err = cli(capsys, *_arena(detector, tmp_path / "o", f"--clip={path}", "--check",
                                       "--frames=0", "--max-frames=6"))  # fmt: skip
    assert code == 0, err


# -- generated arguments ------------------------------------------------------------------------
NUMBERS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.integers(min_value=-(2**70), max_value=2**70).map(lambda v: str(v * 10**300)),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=12),
    st.sampled_from(
        ["nan", "inf", "-inf", "1e999", "", "0x10", "1_0", " 3", "\u0663", "\u00b2", "-0", "+5",
         "0.5", "1", "0", "51", "52", "9223372036854775807", "9223372036854775808", HUGE]
    ),
)  # fmt: skip
ARENA_FLAGS = st.sampled_from(
    ["--budget", "--interval", "--frames", "--max-frames", "--crf", "--seed"]
)


def _arena_flag_case(root: Path, capsys, detector: Path, flag: str, value: str) -> None:
    box = Sandbox(root)
    box.freeze()
    code, out, err = cli(capsys, *_arena(detector, box.out, "--clip=sprites:0", "--check",
                                         f"{flag}={value}"))  # fmt: skip
    assert code in (0, 2), err
    if code == 2:
        refused(code, err, flag)
    else:
        assert out.startswith("ok: ") and err == "", err
    box.check()


@FAST
@given(flag=ARENA_FLAGS, value=NUMBERS)
def test_generated_arena_flags_are_accepted_or_refused_in_one_line(
    flag, value, tmp_path, capsys, detector
):
    _arena_flag_case(tmp_path, capsys, detector, flag, value)


@pytest.mark.slow
@SLOW
@given(flag=ARENA_FLAGS, value=NUMBERS)
def test_generated_arena_flags_many(flag, value, tmp_path, capsys, detector):
    _arena_flag_case(tmp_path, capsys, detector, flag, value)


CLIPS = st.one_of(
    st.builds(lambda v: f"sprites:{v}", NUMBERS),
    st.builds(lambda v: f"bundled:{v}", st.one_of(st.text(max_size=20),
                                                  st.sampled_from(list(video.BUNDLED_CLIPS)))),
    st.text(max_size=30),
    st.sampled_from([".", "..", "/", "/dev/zero", "/dev/null", "nowhere.mp4", "a" * 5000]),
)  # fmt: skip


def _arena_clip_case(root: Path, capsys, detector: Path, clip_arg: str) -> None:
    box = Sandbox(root)
    box.freeze()
    cwd = os.getcwd()
    os.chdir(box.root)  # relative names resolve inside the sandbox
    try:
        code, out, err = cli(capsys, *_arena(detector, box.out, f"--clip={clip_arg}", "--check"))
    finally:
        os.chdir(cwd)
    assert code in (0, 2), err
    if code == 2:
        refused(code, err, "--clip")
    box.check()


@FAST
@given(clip_arg=CLIPS)
def test_generated_clip_arguments_are_accepted_or_refused_in_one_line(
    clip_arg, tmp_path, capsys, detector
):
    _arena_clip_case(tmp_path, capsys, detector, clip_arg)


@pytest.mark.slow
@SLOW
@given(clip_arg=CLIPS)
def test_generated_clip_arguments_many(clip_arg, tmp_path, capsys, detector):
    _arena_clip_case(tmp_path, capsys, detector, clip_arg)


# -- generated video files ----------------------------------------------------------------------
def _y4m(width: int, height: int, tail: bytes) -> bytes:
    return f"YUV4MPEG2 W{width} H{height} F25:1 Ip A1:1 C420jpeg\nFRAME\n".encode() + tail


def _video_files(clip: bytes):  # noqa: ANN202 - a hypothesis strategy
    """(content or a link marker, file name): garbage, truncated and corrupted videos, headers
    with huge frames, playlists and concat lists naming a file outside, links out of the folder.
    """
    n = len(clip)
    contents = st.one_of(
        st.binary(max_size=512),
        st.integers(0, n).map(lambda k: clip[:k]),
        st.tuples(st.lists(st.integers(0, n - 1), min_size=1, max_size=8), st.binary(
            min_size=1, max_size=1)).map(lambda c: _corrupt(clip, *c)),
        st.builds(_y4m, st.integers(1, 10**6), st.integers(1, 10**6), st.binary(max_size=64)),
        st.sampled_from([b"#EXTM3U\n#EXTINF:1,\nfile:OUTSIDE\n#EXT-X-ENDLIST\n",
                         b"\xef\xbb\xbf#EXTM3U\n#EXTINF:1,\n../outside.ts\n",
                         b"ffconcat version 1.0\nfile 'OUTSIDE'\n", b"LINK", clip]),
    )  # fmt: skip
    names = st.sampled_from(["clip.mp4", "play.m3u8", "clip.mkv", "clip.y4m", "list.txt", "c"])
    return st.tuples(contents, names)


def _corrupt(clip: bytes, positions: list[int], byte: bytes) -> bytes:
    data = bytearray(clip)
    for p in positions:
        data[p] = byte[0]
    return bytes(data)


def _video_case(root: Path, capsys, detector: Path, clip: bytes, content: bytes, name: str):
    box = Sandbox(root)
    outside = box.root.parent / f"{box.root.name}-outside.ts"  # a file out of the sandbox
    outside.write_bytes(clip)
    path = box.root / name
    if content == b"LINK":
        path.symlink_to(outside)  # a link out of the folder: the user's own file, read
    else:
        path.write_bytes(content.replace(b"OUTSIDE", str(outside).encode()))
    box.freeze()
    for argv in (
        _arena(detector, box.out, f"--clip={path}", "--check"),
        ["stream", "encode", f"--in={path}", "--out", str(box.out), "--frames=2", "--check"],
    ):
        code, out, err = cli(capsys, *argv)
        assert code in (0, 2), err
        if code == 2:
            refused(code, err, name)
        else:
            assert out.startswith("ok: "), out
        box.check()
    assert outside.read_bytes() == clip


@FAST
@given(case=st.data())
def test_generated_video_files_are_read_or_refused_in_one_line(case, tmp_path, capsys, detector):
    content, name = case.draw(_video_files(_clip()))
    _video_case(tmp_path, capsys, detector, _clip(), content, name)


@pytest.mark.slow
@SLOW
@given(case=st.data())
def test_generated_video_files_many(case, tmp_path, capsys, detector):
    content, name = case.draw(_video_files(_clip()))
    _video_case(tmp_path, capsys, detector, _clip(), content, name)


@pytest.mark.parametrize(
    ("container", "codec"), [("mp4", "libx264"), ("matroska", "ffv1"), ("avi", "mpeg4")]
)
def test_allowed_containers_are_read(tmp_path, container, codec):
    path = tmp_path / f"clip.{container}"
    path.write_bytes(encode_frames(_frames(3), codec=codec, container=container).data)
    assert read_clip(path).shape == (3, 32, 32, 3)
