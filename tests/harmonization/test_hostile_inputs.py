"""``fedlab harmonize`` under hostile input (issue 30): every refusal is exit code 2 and one
stderr line naming the flag or file, without a traceback, before anything is loaded or written.

- regression tests: ``--guidance nan`` and ``inf`` (once written as a corrupted image, exit 0),
  existing outputs (once replaced silently), ``--out`` naming a file;
- property-based tests (hypothesis) of every numeric flag and of the image reader on each of
  ``--fg``, ``--bg`` and ``--mask``, in process through ``fedlab.cli.fedlab_main`` with
  ``--check``: exit 0 or 2, one line naming the flag or file on 2, nothing written, no file
  changed; a larger run of each, and a subprocess under a 3 GiB address-space limit given a
  9000 x 9000 background, are in the slow tier (``tests/sr/test_hostile_inputs.py`` proves
  the same reader's cap under a memory limit in the fast tier).
"""

from __future__ import annotations

import io
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
from fedlab.clients.harmonization.workload import save_prior
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from fedlab.cli import fedlab_main
from fedlab.diffusion import build_unet

FAST = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
MANY = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
SIDE = 24  # a multiple of the shipped prior's downsampling factor (4)
MEMORY_LIMIT = 3 << 30  # address space of a subprocess: torch imports within it
IMAGE_FLAGS = ("--fg", "--bg", "--mask")


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
    """A decodable black ``side`` x ``side`` RGB PNG, built in milliseconds (one fully flushed
    deflate block of zeros, repeated; Adler-32 of n zeros in closed form)."""
    n = side * (1 + 3 * side)
    block = 1 << 20
    count, rest = divmod(n, block)
    packer = zlib.compressobj(1, zlib.DEFLATED, -15)
    piece = packer.compress(bytes(block)) + packer.flush(zlib.Z_FULL_FLUSH)
    tail = packer.compress(bytes(rest)) + packer.flush()
    adler = ((n % 65521) << 16) | 1
    return png_header(side, side, b"\x78\x01" + piece * count + tail + adler.to_bytes(4, "big"))


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


RNG = np.random.default_rng(0)
FG = _png(RNG.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8))
BG = _png(RNG.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8))
_MASK = np.zeros((SIDE, SIDE), np.uint8)
_MASK[6:16, 5:18] = 255
MASK = _png(_MASK)


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
    """A folder for every case (each in its own subfolder), a tiny prior and files outside."""
    root = tmp_path_factory.mktemp("pih_hostile")
    torch.manual_seed(0)
    save_prior(build_unet("tiny", num_class_embeds=5).eval(), root / "prior")
    (root / "outside").mkdir()
    (root / "outside" / "real.png").write_bytes(BG)
    (root / "outside" / "folder").mkdir()
    return root


def new_case(work: Path) -> tuple[Path, Path]:
    """A fresh case folder holding fg.png, bg.png, mask.png and out/keep.bin (a sentinel)."""
    case = Path(tempfile.mkdtemp(dir=work, prefix="case"))
    for name, data in (("fg.png", FG), ("bg.png", BG), ("mask.png", MASK)):
        (case / name).write_bytes(data)
    (case / "out").mkdir()
    (case / "out" / "keep.bin").write_bytes(os.urandom(64))
    return case, case / "out"


def files(case: Path, out: Path, **replace: str) -> list[str]:
    paths = {"--fg": str(case / "fg.png"), "--bg": str(case / "bg.png"),
             "--mask": str(case / "mask.png"), "--out": str(out)} | replace  # fmt: skip
    return ["harmonize", *(a for flag, path in paths.items() for a in (flag, path))]


# ----------------------------------------------------------------- regression tests
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999"])
def test_non_finite_guidance_is_refused_before_anything_is_written(work, capsys, value):
    case, out = new_case(work)
    before = snapshot(case)
    argv = [*files(case, out), "--model", str(work / "prior"), "--steps", "1", "--t", "10"]
    code, _, err = run(capsys, [*argv, f"--guidance={value}"])
    assert "finite number in [0, 100]" in assert_refused(code, err, "--guidance")
    assert snapshot(case) == before


def test_existing_outputs_are_kept_unless_overwrite(work, capsys):
    case, out = new_case(work)
    (out / "bg_grid.png").write_bytes(b"an earlier grid")
    argv = [*files(case, out), "--model", str(work / "prior"), "--steps", "1", "--t", "10",
            "--guidance", "0", "--style", "ink"]  # fmt: skip
    code, _, err = run(capsys, argv)
    assert "pass --overwrite" in assert_refused(code, err, "bg_grid.png")
    assert (out / "bg_grid.png").read_bytes() == b"an earlier grid"
    assert not (out / "bg_freepih.png").exists()  # refused before anything was written
    code, _, err = run(capsys, [*argv, "--overwrite"])
    assert code == 0, err
    assert Image.open(out / "bg_freepih.png").size == (SIDE, SIDE)
    assert (out / "bg_grid.png").read_bytes() != b"an earlier grid"


def test_out_naming_a_file_is_one_line_and_leaves_it_alone(work, capsys):
    case, _ = new_case(work)
    target = case / "a_file"
    target.write_bytes(b"mine")
    code, _, err = run(capsys, [*files(case, target), "--check"])
    assert "is a file, not a folder" in assert_refused(code, err, "--out")
    assert target.read_bytes() == b"mine"


def test_valid_arguments_pass_the_check_and_write_nothing(work, capsys):
    case, out = new_case(work)
    before = snapshot(case)
    argv = [*files(case, out / "new"), "--t", "999", "--steps", "1000", "--guidance", "100",
            "--seed", str(2**63 - 1), "--style", "ink", "--model", str(work / "prior")]  # fmt: skip
    code, stdout, err = run(capsys, [*argv, "--check"])
    assert code == 0 and stdout.startswith("ok: ") and not err, err
    assert snapshot(case) == before  # --check did not even create --out


def test_mask_of_another_size_and_empty_mask_name_the_mask(work, capsys):
    case, out = new_case(work)
    (case / "short.png").write_bytes(_png(_MASK[:12]))
    (case / "empty.png").write_bytes(_png(np.zeros((SIDE, SIDE), np.uint8)))
    for name, message in (("short.png", "is 12x24 but the background is 24x24"),
                          ("empty.png", "the mask is empty")):  # fmt: skip
        argv = [*files(case, out, **{"--mask": str(case / name)}), "--check"]
        code, _, err = run(capsys, argv)
        assert message in assert_refused(code, err, f"--mask {str(case / name)!r}")


# ------------------------------------------------------------ property-based: arguments
FLAGS = ("--t", "--steps", "--guidance", "--seed", "--max-pixels")
NAMED = ("nan", "NaN", "inf", "-inf", "+inf", "1e999", "-1e999", "-0", "0", "1", "2.5", "0x10",
         "1_000", "", " ", "1e-320", "9223372036854775807", "9223372036854775808", "-1", "true",
         "None", "[1]", "2 2", "--check", "-h", "1e5", "100.0", "100.00001")  # fmt: skip
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
    """``fedlab harmonize --check`` with one flag set to ``value``: exit 0 (``ok: ...``) or a
    one-line refusal naming the flag; nothing written, nothing changed."""
    case, out = new_case(work)
    before = snapshot(work / "outside", case)
    extra = [f"{flag}={value}"] if equals else [flag, str(value)]
    code, stdout, err = run(capsys, [*files(case, out), *extra, "--check"])
    assert code in (0, 2), (code, err)
    event(f"exit {code}")
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


# ---------------------------------------------------------- property-based: image files
ALLOWED = ("PNG", "JPEG", "BMP", "TIFF", "GIF", "WEBP")  # fedlab.image_io.IMAGE_FORMATS
REFUSED = ("PPM", "TGA", "ICO", "PCX", "DDS", "QOI")


def _saved(fmt: str, mode: str, seed: int) -> tuple[str, bytes]:
    """(``"<fmt> image"``, a random ``SIDE`` x ``SIDE`` image in ``mode`` saved as ``fmt``)."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1, "1": 1}[mode]
    pixels = rng.integers(0, 256, (SIDE, SIDE, channels), dtype=np.uint8)
    image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels)
    if mode == "1":
        image = image.convert("1")
    buf = io.BytesIO()
    try:
        image.save(buf, format=fmt)
    except (OSError, ValueError, KeyError):  # a mode this format cannot store
        buf = io.BytesIO()
        image.convert("RGB").save(buf, format=fmt)
    return f"{fmt} image", buf.getvalue()


def _flip(positions: list[int], byte: int) -> bytes:
    """:data:`MASK` with the bytes at ``positions`` (modulo its length) set to ``byte``."""
    out = bytearray(MASK)
    for p in positions:
        out[p % len(out)] = byte
    return bytes(out)


# Each strategy yields (what, bytes or None): what to put at the path given to the flag.
FILES = st.one_of(
    st.binary(max_size=3000).map(lambda b: ("random bytes", b)),
    st.integers(0, len(MASK)).map(lambda k: ("truncated png", MASK[:k])),
    st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)).map(
        lambda wh: ("declared size", png_header(*wh))
    ),
    st.builds(
        _flip, st.lists(st.integers(0, 10**6), min_size=1, max_size=8), st.integers(0, 255)
    ).map(lambda b: ("corrupted png", b)),
    st.builds(
        _saved,
        st.sampled_from([*ALLOWED, *REFUSED]),
        st.sampled_from(["RGB", "L", "1"]),
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
    """Put ``what`` at ``case/given.png`` and return the path to pass."""
    path = case / "given.png"
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


def check_one_file(work: Path, capsys, flag: str, what: str, data: bytes | None) -> None:
    case, out = new_case(work)
    given_path = place(work, case, what, data)
    before = snapshot(work / "outside", case)
    code, stdout, err = run(capsys, [*files(case, out, **{flag: given_path}), "--check"])
    assert code in (0, 2), (what, code, err)
    event(f"{flag} {what}: exit {code}")
    if code == 0:
        assert stdout.startswith("ok: ") and not err, (what, err)
    else:
        assert_refused(code, err, f"{flag} {given_path!r}" if given_path else flag)
    if flag != "--mask" and (what == "link to a file outside" or what.split()[0] in ALLOWED):
        assert code == 0, err  # a path is read as given, a link to a user's file included
    if what in ("folder", "link to a folder outside", "fifo", "device", "dangling link"):
        assert code == 2
    assert snapshot(work / "outside", case) == before


@FAST
@given(flag=st.sampled_from(IMAGE_FLAGS), file=FILES)
def test_any_image_file_is_read_or_refused_in_one_line(work, capsys, flag, file):
    check_one_file(work, capsys, flag, *file)


@pytest.mark.slow
@MANY
@given(flag=st.sampled_from(IMAGE_FLAGS), file=FILES)
def test_any_image_file_many(work, capsys, flag, file):
    check_one_file(work, capsys, flag, *file)


# --------------------------------------------------- the cap under a memory limit
def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


@pytest.mark.slow
def test_input_cap_holds_under_a_memory_limit(work):
    """The real command in a subprocess limited to 3 GiB of address space, given a decodable
    9000 x 9000 background (under PIL's bomb limit): refused from its header."""
    case, out = new_case(work)
    (case / "big.png").write_bytes(black_png(9000))
    code = "import sys; from fedlab.cli import fedlab_main; sys.exit(fedlab_main(sys.argv[1:]))"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code, *files(case, out, **{"--bg": str(case / "big.png")})],
        capture_output=True, text=True, timeout=300, env=env, preexec_fn=_limit_memory,
    )  # fmt: skip
    line = assert_refused(proc.returncode, proc.stderr, f"--bg {str(case / 'big.png')!r}")
    assert "over the cap" in line and "--max-pixels" in line
    assert sorted(p.name for p in out.iterdir()) == ["keep.bin"]
