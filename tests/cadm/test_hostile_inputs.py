"""Issue 30 for ``fedlab stream`` and its side files (clients/cadm/side_file.py).

Every refusal is exit code 2 and one stderr line naming the flag, key or file, with no
traceback; nothing is written outside ``--out`` and no existing file is replaced without
``--overwrite``. Generated cases run in process with ``--check`` and ``--decoder none``
(validate everything, decode the stream, restore nothing).
"""

from __future__ import annotations

import functools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from fedlab.clients.cadm.codec import CodecSpec, encode
from fedlab.clients.video import encode_frames
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedlab.cli import fedlab_main
from fedlab.errors import FedlabError

HUGE = "9" * 5000  # past Python's 4300-digit int() limit (and the side file's size cap)
LONG = "9" * 3900  # under the size cap: the integer itself is refused
FAST = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])  # fmt: skip
SLOW = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])  # fmt: skip


@functools.cache
def _clip() -> bytes:
    """A 4-frame 48x64 H.264 MP4 (bytes; not a fixture, so that a failing example is short)."""
    frames = np.random.default_rng(0).integers(0, 255, (4, 48, 64, 3), dtype=np.uint8)
    return encode_frames(frames, codec="libx264", container="mp4").data


#: The side file's keys, in the order `fedlab stream encode` writes them.
SIDE_KEYS = ("r", "b", "codec", "crf", "pixel-format", "frames", "height", "width")


@functools.cache
def _stream() -> tuple[bytes, dict]:
    """A stream encode wrote for the clip at r=2, b=6, and its side record (written out here,
    so that these tests also run against a reader that predates side_file.py)."""
    frames = np.random.default_rng(0).integers(0, 255, (4, 48, 64, 3), dtype=np.uint8)
    encoded = encode(frames, CodecSpec(r=2, b=6, crf=30))
    record = {"r": 2, "b": 6, "codec": "x264", "crf": 30, "pixel-format": "yuv420p", "frames": 4,
              "height": 48, "width": 64}  # fmt: skip
    return encoded.data, record


def _write_stream(folder: Path, side: str | bytes | None = None) -> Path:
    """``folder/clip.mkv`` and its side file (``side``: the text to write instead)."""
    data, record = _stream()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "clip.mkv").write_bytes(data)
    text = json.dumps(record) if side is None else side
    side_path = folder / "clip.cadm.json"
    side_path.write_bytes(text.encode() if isinstance(text, str) else text)
    return folder / "clip.mkv"


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


def _decode(stream: Path, out: Path, *extra: str) -> list[str]:
    return ["stream", "decode", "--in", str(stream), "--out", str(out), "--decoder", "none",
            *extra]  # fmt: skip


# -- one regression test per finding ------------------------------------------------------------
def _record(**changes) -> str:
    record = {**_stream()[1], **changes}
    return json.dumps({k: v for k, v in record.items() if v is not ...})


@pytest.mark.parametrize(
    ("side", "names"),
    [
        ("{not json", ["clip.cadm.json", "not JSON"]),
        ("[2, 6, 30]", ["clip.cadm.json", "a list"]),
        (_record(crf=...), ["clip.cadm.json", "lacks key 'crf'"]),
        (_record(crf="30"), ["clip.cadm.json", "'crf' must be an integer"]),
        (_record(height=-48), ["clip.cadm.json", "'height' must lie in [2, 8192]"]),
        (_record(frames=None).replace("null", LONG), ["clip.cadm.json", "'frames'", "3900 digits"]),
        (_record(frames=None).replace("null", HUGE), ["clip.cadm.json", "over 4096 bytes"]),
    ],
    ids=["not-json", "list", "lacks-key", "string-crf", "negative-height", "3900-digits",
         "5000-digits"],
)  # fmt: skip
def test_bad_side_files_are_one_line(side, names, tmp_path, capsys):
    stream = _write_stream(tmp_path / "in", side)
    code, _, err = cli(capsys, *_decode(stream, tmp_path / "out"))
    refused(code, err, *names)
    assert not (tmp_path / "out" / "clip_restored.mp4").exists()


def test_a_side_file_with_height_60000_is_refused_before_allocating(tmp_path, capsys):
    stream = _write_stream(tmp_path, _record(height=60000, width=60000))  # 172 GB as floats
    start = time.perf_counter()
    code, _, err = cli(capsys, *_decode(stream, tmp_path / "out"))
    refused(code, err, "clip.cadm.json", "'height'", "8192")
    assert time.perf_counter() - start < 10


def test_a_side_file_whose_codec_is_not_the_streams_is_refused(tmp_path, capsys):
    stream = _write_stream(tmp_path, _record(codec="ffv1"))
    code, _, err = cli(capsys, *_decode(stream, tmp_path / "out", "--check"))
    refused(code, err, "clip.mkv", "clip.cadm.json", "'h264'", "'ffv1'")


def test_the_writer_and_the_schema_agree(tmp_path, capsys):
    """A side file written by `fedlab stream encode` validates, holds exactly the schema's
    keys, and each key is checked (missing or mistyped: refused, naming it). A new field in
    the writer fails here until the schema (side_file.KEYS, parse_side) knows it."""
    from fedlab.clients.cadm.side_file import KEYS, parse_side, read_side_file, side_text

    assert tuple(KEYS) == SIDE_KEYS
    src = tmp_path / "clip.mp4"
    src.write_bytes(_clip())
    code, _, err = cli(capsys, "stream", "encode", "--in", str(src), "--out", str(tmp_path / "o"),
                       "--r", "2", "--b", "6")  # fmt: skip
    assert code == 0, err
    written = tmp_path / "o" / "clip.cadm.json"
    record = json.loads(written.read_text())
    assert tuple(record) == SIDE_KEYS and record == {**_stream()[1], "crf": 28}
    info = read_side_file(written)
    assert (info.spec.r, info.spec.b, info.frames, info.height, info.width) == (2, 6, 4, 48, 64)
    assert written.read_text() == side_text(info.encoded(b""))
    for key in KEYS:
        with pytest.raises(FedlabError, match=f"lacks key '{key}'"):
            parse_side({k: v for k, v in record.items() if k != key}, "side")
        with pytest.raises(FedlabError, match=f"'{key}'"):
            parse_side({**record, key: [record[key]]}, "side")
    code, out, err = cli(capsys, *_decode(tmp_path / "o" / "clip.mkv", tmp_path / "o", "--check"))
    assert code == 0 and out.startswith("ok: "), err


def test_out_naming_a_file_and_existing_outputs_are_refused_unless_overwrite(tmp_path, capsys):
    src = tmp_path / "clip.mp4"
    src.write_bytes(_clip())
    mine = tmp_path / "mine.txt"
    mine.write_text("my notes")
    encode_args = ["stream", "encode", "--in", str(src), "--frames", "2"]
    code, _, err = cli(capsys, *encode_args, "--out", str(mine))
    refused(code, err, "--out", "mine.txt")
    assert mine.read_text() == "my notes"
    out = tmp_path / "out"
    out.mkdir()
    (out / "clip.cadm.json").write_text("mine")
    code, _, err = cli(capsys, *encode_args, "--out", str(out))
    refused(code, err, "clip.cadm.json", "--overwrite")
    assert (out / "clip.cadm.json").read_text() == "mine" and not (out / "clip.mkv").exists()
    code, _, err = cli(capsys, *encode_args, "--out", str(out), "--overwrite")
    assert code == 0, err
    assert json.loads((out / "clip.cadm.json").read_text())["frames"] == 2


def test_a_playlist_given_to_stream_is_refused(tmp_path, capsys):
    frames = np.random.default_rng(0).integers(0, 255, (4, 48, 64, 3), dtype=np.uint8)
    (tmp_path / "secret.ts").write_bytes(encode_frames(frames, container="mpegts").data)
    playlist = tmp_path / "list.m3u8"
    secret = tmp_path / "secret.ts"
    playlist.write_text(
        f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:{secret}\n#EXT-X-ENDLIST\n"
    )
    code, _, err = cli(capsys, "stream", "encode", "--in", str(playlist), "--out",
                       str(tmp_path / "o"))  # fmt: skip
    refused(code, err, "--in", "list.m3u8")


# -- generated side files -----------------------------------------------------------------------
_MARK = "__LONG_INTEGER__"
VALUES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=0, max_value=100),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.just(_MARK),
    st.sampled_from(["x264", "x265", "ffv1", 60000, -48, 2, 6, 30, 4, 48, 64, 4.0, "23"]),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=12,
)  # fmt: skip


def _side_files():  # noqa: ANN202 - a hypothesis strategy
    """Side-file bytes (or ``b"LINK"``: a link out of the folder to a valid one): records with
    keys missing, extra or of any value (integers of any size, NaN/Inf, wrong types, huge
    dims), any JSON, random bytes."""
    record = _stream()[1]
    records = st.builds(
        lambda changes, drop, extra: json.dumps(
            {**{k: v for k, v in record.items() if k not in drop}, **changes, **extra}
        ).replace(f'"{_MARK}"', LONG),
        st.dictionaries(st.sampled_from(SIDE_KEYS), VALUES, max_size=3),
        st.sets(st.sampled_from(SIDE_KEYS), max_size=2),
        st.dictionaries(st.text(max_size=6), VALUES, max_size=1),
    )
    return st.one_of(
        records.map(str.encode),
        JSON.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=256),
        st.sampled_from([b"LINK", b"[" * 5000, ("[" * 2000).encode(), b"\xff\xfe{}", b""]),
    )


def _streams():  # noqa: ANN202 - a hypothesis strategy
    """Stream bytes: the real one (most often), truncated, corrupted, or random."""
    data = _stream()[0]
    return st.one_of(
        st.just(data),
        st.just(data),
        st.integers(0, len(data)).map(lambda k: data[:k]),
        st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)).map(
            lambda c: data[: c[0]] + bytes([c[1]]) + data[c[0] + 1 :]
        ),
        st.binary(max_size=256),
    )


def _side_case(root: Path, capsys, side: bytes, data: bytes | None = None) -> None:
    box = Path(tempfile.mkdtemp(dir=root))
    outside = box.parent / f"{box.name}-side.json"  # a file out of the folder
    outside.write_text(json.dumps(_stream()[1]))
    if side == b"LINK":
        stream = _write_stream(box / "in")
        (box / "in" / "clip.cadm.json").unlink()
        (box / "in" / "clip.cadm.json").symlink_to(outside)
    else:
        stream = _write_stream(box / "in", side)
    if data is not None:
        stream.write_bytes(data)
    out = box / "out"
    out.mkdir()
    (out / "keep.txt").write_text("sentinel")
    before = {p: p.read_bytes() for p in sorted((box / "in").iterdir())}
    code, text, err = cli(capsys, *_decode(stream, out, "--check"))
    assert code in (0, 2), err
    if code == 2:
        refused(code, err)
        assert "clip.cadm.json" in err or "clip.mkv" in err, err
    else:
        assert text.startswith("ok: ") and err == "", err
    assert {p: p.read_bytes() for p in sorted((box / "in").iterdir())} == before
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "sentinel"
    assert json.loads(outside.read_text()) == _stream()[1]
    shutil.rmtree(box)


@FAST
@given(side=_side_files())
def test_generated_side_files_are_read_or_refused_in_one_line(side, tmp_path, capsys):
    _side_case(tmp_path, capsys, side)


@FAST
@given(data=_streams(), side=st.sampled_from([None, _record(frames=3), _record(codec="ffv1")]))
def test_generated_streams_are_decoded_or_refused_in_one_line(data, side, tmp_path, capsys):
    _side_case(tmp_path, capsys, (side or _record()).encode(), data)


@pytest.mark.slow
@SLOW
@given(side=_side_files(), data=st.none() | _streams())
def test_generated_side_files_and_streams_many(side, data, tmp_path, capsys):
    _side_case(tmp_path, capsys, side, data)


# -- generated arguments ------------------------------------------------------------------------
NUMBERS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.integers(min_value=-(2**70), max_value=2**70).map(lambda v: str(v * 10**300)),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=12),
    st.sampled_from(["nan", "inf", "-1", "0", "1", "2", "4", "8", "9", "30", "51", "52", "1000",
                     "1001", "9223372036854775808", "\u00b2", " 3", "1_0", HUGE]),
)  # fmt: skip
SWEEPS = st.one_of(
    st.text(max_size=30),
    st.lists(st.tuples(NUMBERS, NUMBERS), min_size=0, max_size=70).map(
        lambda ps: ",".join(f"{r}x{b}" for r, b in ps)
    ),
    st.lists(NUMBERS, max_size=70).map(",".join),
    st.sampled_from(["2x8", "2x8,2x8", "1x1", "4096x8", "4097x8", "2x\u00b2", HUGE + "x8"]),
)
#: (subcommand, flag, values) of every numeric or list flag of `fedlab stream`
FLAGS = st.one_of(
    st.tuples(st.just("encode"),
              st.sampled_from(["--r", "--b", "--crf", "--frames", "--max-frames", "--codec"]),
              NUMBERS),
    st.tuples(st.just("decode"), st.sampled_from(["--steps", "--max-frames"]), NUMBERS),
    st.tuples(st.just("eval"), st.sampled_from(["--frames", "--max-frames", "--steps"]),
              NUMBERS),
    st.tuples(st.just("eval"), st.sampled_from(["--pairs", "--crfs", "--x264-crfs"]), SWEEPS),
)  # fmt: skip


def _flag_case(root: Path, capsys, command: str, flag: str, value: str) -> None:
    box = Path(tempfile.mkdtemp(dir=root))
    src = box / "clip.mp4"
    src.write_bytes(_clip())
    stream = _write_stream(box / "in")
    out = box / "out"
    out.mkdir()
    (out / "keep.txt").write_text("sentinel")
    source = str(stream) if command == "decode" else str(src)
    extra = ["--decoder", "none"] if command != "encode" else []
    argv = ["stream", command, f"--in={source}", "--out", str(out), "--check", *extra]
    code, text, err = cli(capsys, *argv, f"{flag}={value}")
    assert code in (0, 2), err
    if code == 2:
        refused(code, err, flag)
    else:
        assert text.startswith("ok: ") and err == "", err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert src.read_bytes() == _clip() and stream.read_bytes() == _stream()[0]
    shutil.rmtree(box)


@FAST
@given(case=FLAGS)
def test_generated_stream_flags_are_accepted_or_refused_in_one_line(case, tmp_path, capsys):
    _flag_case(tmp_path, capsys, *case)


@pytest.mark.slow
@SLOW
@given(case=FLAGS)
def test_generated_stream_flags_many(case, tmp_path, capsys):
    _flag_case(tmp_path, capsys, *case)


# -- a cap under a memory limit -----------------------------------------------------------------
#: ``fedlab stream`` in a fresh interpreter: its own register() and fedlab's guard, without the
#: other commands' imports (diffusers, ...), so that the case costs only torch's and PyAV's.
_STREAM_MAIN = """
import argparse, sys
from fedlab.cli import _guard
from fedlab.clients.cadm.cli import register

@_guard
def main(argv):
    parser = argparse.ArgumentParser(prog="fedlab")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)

sys.exit(main(sys.argv[1:]))
"""


def test_a_60000_high_side_file_exits_2_quickly_under_a_memory_limit(tmp_path):
    """Before the schema, this side file made the receiver allocate 518 GB; under a 3 GiB
    address-space limit (enough for torch and PyAV) it is one line and exit code 2."""
    stream = _write_stream(tmp_path, _record(height=60000, width=60000))

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))

    result = subprocess.run(
        [sys.executable, "-c", _STREAM_MAIN, *_decode(stream, tmp_path / "out")],
        capture_output=True, text=True, timeout=300, preexec_fn=limit,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "clip.cadm.json" in result.stderr, result.stderr
    assert "'height'" in result.stderr and "8192" in result.stderr


@pytest.mark.slow
def test_a_video_header_with_huge_frames_stops_at_the_side_cap_under_a_memory_limit(tmp_path):
    """A y4m header announcing 16000 x 16000 frames (768 MB each as RGB; FFmpeg itself accepts
    the size) exits 2 within 3 GiB, before a frame is allocated (clients/video.py)."""
    big = tmp_path / "big.y4m"
    big.write_bytes(b"YUV4MPEG2 W16000 H16000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + b"\x80" * 4096)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))

    result = subprocess.run(
        [sys.executable, "-c", _STREAM_MAIN, "stream", "encode", "--in", str(big), "--out",
         str(tmp_path / "o"), "--frames", "0"],
        capture_output=True, text=True, timeout=300, preexec_fn=limit,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "big.y4m" in result.stderr, result.stderr
    assert "16000x16000" in result.stderr and "MAX_FRAME_SIDE" in result.stderr
