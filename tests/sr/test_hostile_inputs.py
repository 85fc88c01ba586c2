"""``fedlab sr`` under hostile input (issue 30): every refusal is exit code 2 and one stderr line
naming the flag or file, without a traceback, before anything is allocated or written.

- regression tests, one per finding: a 30000 x 30000 PNG header, an input under PIL's bomb
  limit, a huge ``--scale``, ``--t 5000``, ``--out`` naming a file, existing outputs;
- property-based tests (hypothesis) of every numeric flag and of the image reader, in process
  through ``fedlab.cli.fedlab_main`` with ``--check``: exit 0 or 2, one line naming the flag or
  file on 2, nothing written, no file changed; a larger run of each is in the slow tier;
- one subprocess under a 3 GiB address-space limit proves both pixel caps.
"""

from __future__ import annotations

import io
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from fedlab.cli import fedlab_main
from fedlab.diffusion import build_unet
from fedlab.image_io import png_bytes

# In process, per example: the parser and the shipped prior (about 30 ms) are all it loads.
FAST = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
MANY = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
SIDE = 24  # input side: x2 reaches the shipped prior's 32 px training crop
MEMORY_LIMIT = 3 << 30  # address space of a subprocess: torch imports within it


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int, idat: bytes = b"") -> bytes:
    """A PNG whose header declares ``width`` x ``height`` RGB (valid CRCs), with ``idat`` as its
    compressed pixels (none by default)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", idat or zlib.compress(b""))
        + _chunk(b"IEND", b"")
    )


def black_png(side: int) -> bytes:
    """A decodable black ``side`` x ``side`` RGB PNG, built in milliseconds: its pixel bytes
    are all zero, so one fully flushed deflate block of 1 MiB of zeros repeats, and their
    Adler-32 is known in closed form (a = 1, b = n mod 65521)."""
    n = side * (1 + 3 * side)  # a filter byte per row, then the pixels: all zero
    block = 1 << 20
    count, rest = divmod(n, block)
    packer = zlib.compressobj(1, zlib.DEFLATED, -15)  # raw deflate: header and check by hand
    piece = packer.compress(bytes(block)) + packer.flush(zlib.Z_FULL_FLUSH)
    tail = packer.compress(bytes(rest)) + packer.flush()
    adler = ((n % 65521) << 16) | 1
    return png_header(side, side, b"\x78\x01" + piece * count + tail + adler.to_bytes(4, "big"))


VALID_PNG = png_bytes(torch.rand(1, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(0)))


def run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    """``fedlab argv`` in process: exit code (argparse's SystemExit included), stdout, stderr."""
    try:
        code = fedlab_main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_refused(code: int, err: str, *names: str) -> str:
    """Exit 2, exactly one stderr line, no traceback, naming one of ``names``."""
    lines = err.splitlines()
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert any(name in lines[0] for name in names), (names, err)
    return lines[0]


def snapshot(*folders: Path) -> dict[str, bytes | str]:
    """Every entry under ``folders``: a file's bytes, a link's target, a folder's marker."""
    found: dict[str, bytes | str] = {}
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            for name in dirs + files:
                path = Path(root, name)
                if path.is_symlink():
                    found[str(path)] = "link:" + os.readlink(path)
                elif path.is_file():
                    found[str(path)] = path.read_bytes()
                else:
                    found[str(path)] = "dir" if path.is_dir() else "other"
    return found


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for every case (each in its own subfolder), a tiny model and an image outside."""
    root = tmp_path_factory.mktemp("sr_hostile")
    torch.manual_seed(0)
    build_unet("tiny").save_pretrained(root / "model", safe_serialization=True)
    (root / "outside").mkdir()
    (root / "outside" / "real.png").write_bytes(VALID_PNG)
    (root / "outside" / "folder").mkdir()
    return root


def new_case(work: Path) -> tuple[Path, Path]:
    """A fresh case folder holding ``in.png`` and ``out/keep.bin`` (a sentinel), and ``out``."""
    case = Path(tempfile.mkdtemp(dir=work, prefix="case"))
    (case / "in.png").write_bytes(VALID_PNG)
    (case / "out").mkdir()
    (case / "out" / "keep.bin").write_bytes(os.urandom(64))
    return case, case / "out"


# ----------------------------------------------------------------- one test per finding
def test_30000_square_png_header_is_one_line_not_a_bomb_traceback(work, capsys):
    case, out = new_case(work)
    (case / "bomb.png").write_bytes(png_header(30000, 30000))
    before = snapshot(case)
    code, _, err = run(capsys, ["sr", "--in", str(case / "bomb.png"), "--scale", "2",
                                "--out", str(out)])  # fmt: skip
    assert "decompression bomb" in assert_refused(code, err, "bomb.png")
    assert snapshot(case) == before


def test_input_under_pils_bomb_limit_is_capped_before_decoding(work, capsys):
    """9000 x 9000 passes PIL's bomb check; the reader's own cap refuses it from the header."""
    case, out = new_case(work)
    (case / "big.png").write_bytes(png_header(9000, 9000))
    code, _, err = run(capsys, ["sr", "--in", str(case / "big.png"), "--scale", "2",
                                "--out", str(out)])  # fmt: skip
    line = assert_refused(code, err, "big.png")
    assert "81,000,000 pixels, over the cap of 16,777,216" in line and "--max-pixels" in line


def test_large_scale_is_capped_before_allocating(work, capsys):
    case, out = new_case(work)
    code, _, err = run(capsys, ["sr", "--in", str(case / "in.png"), "--scale", "1000",
                                "--out", str(out)])  # fmt: skip
    line = assert_refused(code, err, "--scale")
    assert "over the cap of 67,108,864" in line and "--max-pixels" in line
    # --max-pixels raises the cap: the same call then passes the check.
    argv = ["sr", "--in", str(case / "in.png"), "--scale", "1000", "--out", str(out)]
    code, stdout, err = run(capsys, [*argv, "--max-pixels", "600000000", "--check"])
    assert code == 0 and stdout.startswith("ok: ") and "24000x24000" in stdout, err


def test_sdedit_t_5000_is_one_line_not_an_index_error(work, capsys):
    case, out = new_case(work)
    argv = ["sr", "--in", str(case / "in.png"), "--scale", "2", "--out", str(out)]
    code, _, err = run(capsys, [*argv, "--method", "sdedit", "--t", "5000"])
    assert "0..999" in assert_refused(code, err, "--t")


def test_out_naming_a_file_is_one_line_and_leaves_it_alone(work, capsys):
    case, _ = new_case(work)
    target = case / "a_file"
    target.write_bytes(b"mine")
    code, _, err = run(capsys, ["sr", "--in", str(case / "in.png"), "--scale", "2",
                                "--out", str(target)])  # fmt: skip
    assert "is a file, not a folder" in assert_refused(code, err, "--out")
    assert target.read_bytes() == b"mine"


def test_existing_outputs_are_kept_unless_overwrite(work, capsys):
    case, out = new_case(work)
    model = str(work / "model")
    (out / "in_x2.png").write_bytes(b"an earlier result")
    argv = ["sr", "--in", str(case / "in.png"), "--scale", "2", "--out", str(out),
            "--model", model, "--method", "bicubic"]  # fmt: skip
    code, _, err = run(capsys, argv)
    assert "pass --overwrite" in assert_refused(code, err, "in_x2.png")
    assert (out / "in_x2.png").read_bytes() == b"an earlier result"
    assert not (out / "in_x2_grid.png").exists()  # refused before anything was written
    code, stdout, err = run(capsys, [*argv, "--overwrite"])
    assert code == 0, err
    assert Image.open(out / "in_x2.png").size == (2 * SIDE, 2 * SIDE)
    assert (out / "in_x2_grid.png").is_file()


# ------------------------------------------------------------ property-based: arguments
FLAGS = ("--scale", "--t", "--steps", "--kappa", "--seed", "--max-pixels")
NAMED = ("nan", "NaN", "inf", "-inf", "+inf", "1e999", "-1e999", "-0", "0", "1", "2.5", "0x10",
         "1_000", "", " ", "1e-320", "9223372036854775807", "9223372036854775808", "-1", "true",
         "None", "[1]", "2 2", "--check", "-h", "1e5", "1.0")  # fmt: skip
VALUES = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**80), max_value=10**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-10.0, max_value=2000.0),
    st.integers(1, 6000).map(lambda n: "9" * n),  # integers of any size, as text
    st.sampled_from(NAMED),
    st.text(max_size=12),
)


def check_one_flag(work: Path, capsys, flag: str, value: object, equals: bool) -> None:
    """``fedlab sr --check`` with one flag set to ``value``: exit 0 (``ok: ...``) or a
    one-line refusal naming the flag; nothing written, nothing changed."""
    case, out = new_case(work)
    before = snapshot(work / "outside", case)
    flat: list[str] = []
    for key, text in ({"--scale": "2"} | {flag: str(value)}).items():
        flat += [f"{key}={text}"] if equals else [key, text]
    code, stdout, err = run(capsys, ["sr", "--in", str(case / "in.png"), "--out", str(out),
                                     *flat, "--check"])  # fmt: skip
    assert code in (0, 2), (code, err)
    event(f"exit {code}")  # --hypothesis-show-statistics: how many were accepted
    if code == 0:
        assert stdout.startswith("ok: ") and len(stdout.splitlines()) == 1 and not err
    else:
        assert_refused(code, err, flag)
    assert snapshot(work / "outside", case) == before


@FAST
@given(flag=st.sampled_from(FLAGS), value=VALUES, equals=st.booleans())
def test_any_flag_value_is_accepted_or_refused_in_one_line(work, capsys, flag, value, equals):
    check_one_flag(work, capsys, flag, value, equals)


@pytest.mark.slow
@MANY
@given(flag=st.sampled_from(FLAGS), value=VALUES, equals=st.booleans())
def test_any_flag_value_many(work, capsys, flag, value, equals):
    check_one_flag(work, capsys, flag, value, equals)


def test_valid_flags_pass_the_check_and_write_nothing(work, capsys):
    case, out = new_case(work)
    before = snapshot(case)
    code, stdout, err = run(capsys, ["sr", "--in", str(case / "in.png"), "--out", str(out / "new"),
                                     "--scale", "2.5", "--method", "sdedit", "--t", "999",
                                     "--steps", "1000", "--kappa", "1e-9",
                                     "--seed", str(2**63 - 1), "--check"])  # fmt: skip
    assert code == 0 and stdout.startswith("ok: ") and not err, err
    assert snapshot(case) == before  # --check did not even create --out


# ---------------------------------------------------------- property-based: image files
def _saved(fmt: str, mode: str, seed: int) -> tuple[str, bytes]:
    """(``"<fmt> image"``, a random ``SIDE`` x ``SIDE`` image in ``mode`` saved as ``fmt``)."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1, "1": 1, "P": 1}[mode]
    pixels = rng.integers(0, 256, (SIDE, SIDE, channels), dtype=np.uint8)
    image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels)
    if mode in ("1", "P"):
        image = image.convert(mode)
    buf = io.BytesIO()
    try:
        image.save(buf, format=fmt)
    except (OSError, ValueError, KeyError):  # a mode this format cannot store
        buf = io.BytesIO()
        image.convert("RGB").save(buf, format=fmt)
    return f"{fmt} image", buf.getvalue()


def _flip(positions: list[int], byte: int) -> bytes:
    """:data:`VALID_PNG` with the bytes at ``positions`` (modulo its length) set to ``byte``."""
    out = bytearray(VALID_PNG)
    for p in positions:
        out[p % len(out)] = byte
    return bytes(out)


# The allowed formats (fedlab.image_io.IMAGE_FORMATS; MPO is a JPEG variant), then some that
# are refused.
ALLOWED = ("PNG", "JPEG", "MPO", "BMP", "TIFF", "GIF", "WEBP")
REFUSED = ("PPM", "TGA", "ICO", "PCX", "EPS", "DDS", "QOI")
# Each strategy yields (what, bytes or None): what to put at the path given to --in.
FILES = st.one_of(
    st.binary(max_size=3000).map(lambda b: ("random bytes", b)),
    st.integers(0, len(VALID_PNG)).map(lambda k: ("truncated png", VALID_PNG[:k])),
    st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)).map(
        lambda wh: ("declared size", png_header(*wh))
    ),
    st.builds(
        _flip,
        st.lists(st.integers(0, 10**6), min_size=1, max_size=8),
        st.integers(0, 255),
    ).map(lambda b: ("corrupted png", b)),
    st.builds(
        _saved,
        st.sampled_from([*ALLOWED, *REFUSED]),
        st.sampled_from(["RGB", "RGBA", "L", "1", "P"]),
        st.integers(0, 10),
    ),
    st.sampled_from(
        [
            "folder",
            "link to a file outside",
            "link to a folder outside",
            "dangling link",
            "link loop",
            "fifo",
            "device",
            "missing",
            "empty name",
        ]
    ).map(lambda kind: (kind, None)),  # fmt: skip
)


def place(work: Path, case: Path, what: str, data: bytes | None) -> str:
    """Put ``what`` at ``case/input.png`` and return the --in value."""
    path = case / "input.png"
    if data is not None:
        path.write_bytes(data)
    elif what == "folder":
        path.mkdir()
    elif what == "link to a file outside":
        path.symlink_to(work / "outside" / "real.png")
    elif what == "link to a folder outside":
        path.symlink_to(work / "outside" / "folder")
    elif what == "dangling link":
        path.symlink_to(work / "outside" / "nothing.png")
    elif what == "link loop":
        path.symlink_to(path)
    elif what == "fifo":
        os.mkfifo(path)
    elif what == "device":
        return "/dev/zero"
    elif what == "empty name":
        return ""
    return str(path)


def check_one_file(work: Path, capsys, what: str, data: bytes | None) -> None:
    case, out = new_case(work)
    given_path = place(work, case, what, data)
    before = snapshot(work / "outside", case)
    code, stdout, err = run(capsys, ["sr", "--in", given_path, "--scale", "2", "--out",
                                     str(out), "--check"])  # fmt: skip
    assert code in (0, 2), (what, code, err)
    event(f"{what}: exit {code}")
    if code == 0:
        assert stdout.startswith("ok: ") and not err, (what, err)
    else:
        assert_refused(code, err, f"--in {given_path!r}" if given_path else "--in")
    if what == "link to a file outside" or what.split()[0] in ALLOWED:
        assert code == 0, err  # a path is read as given, a link to a user's file included
    if what in ("folder", "link to a folder outside", "fifo", "device", "dangling link"):
        assert code == 2
    assert snapshot(work / "outside", case) == before


@FAST
@given(file=FILES)
def test_any_input_file_is_read_or_refused_in_one_line(work, capsys, file):
    check_one_file(work, capsys, *file)


@pytest.mark.slow
@MANY
@given(file=FILES)
def test_any_input_file_many(work, capsys, file):
    check_one_file(work, capsys, *file)


# --------------------------------------------------- the caps under a memory limit
def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


# Runs each argv (JSON on argv[1]) through fedlab_main; prints each exit code and stderr.
DRIVER = """
import contextlib, io, json, sys
from fedlab.cli import fedlab_main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = fedlab_main(argv)
    results.append([code, err.getvalue()])
print(json.dumps(results))
"""


@pytest.mark.slow  # a subprocess importing torch and diffusers: 7 s of the fast tier
def test_caps_hold_under_a_memory_limit(work):
    """The real command in a subprocess limited to 3 GiB of address space (one process for
    both cases: importing torch is most of its time) refuses, from sizes alone, a decodable
    9000 x 9000 PNG (under PIL's bomb limit: the header decides, nothing is decoded) and
    ``--scale 1000`` on a 24 x 24 image (a 24000 x 24000 output, 6.9 GB as floats, which the
    code before the cap tried to allocate); both exit 2 within the limit, writing nothing."""
    case, out = new_case(work)
    (case / "big.png").write_bytes(black_png(9000))
    cases = {"--in": [str(case / "big.png"), "2"], "--scale": [str(case / "in.png"), "1000"]}
    argvs = [["sr", "--in", image, "--scale", scale, "--out", str(out)]
             for image, scale in cases.values()]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(argvs)], capture_output=True, text=True,
        timeout=300, env=env, preexec_fn=_limit_memory,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    for flag, (code, err) in zip(cases, json.loads(proc.stdout), strict=True):
        assert "over the cap" in assert_refused(code, err, flag) and "--max-pixels" in err
    assert sorted(p.name for p in out.iterdir()) == ["keep.bin"]
