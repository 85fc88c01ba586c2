"""Argument checks shared by the commands (``fedlab sr``, ``harmonize``, ``arena``, ``stream``).

Every numeric flag is parsed by a bounded type here, so that a bad value stops at parse time
with one line naming the flag, what is allowed and how to fix it; argparse's own errors (a
missing flag, an unknown choice) are turned into the same one-line :class:`FedlabError`
instead of a usage block. Paths given by the user are checked before anything opens them.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fedlab.errors import FedlabError
from fedlab.limits import MAX_FRAMES, MAX_INT, MAX_MODEL_PARAMETERS, SEED_LIMIT, check_cap
from fedlab.outputs import OVERWRITE_HELP, output_files

#: Longest text a numeric flag may hold: a 5000-digit number is refused before ``int()`` (which
#: raises past 4300 digits) and the error quotes only its start.
_MAX_NUMBER_TEXT = 40
_INTEGER = re.compile(r"[+-]?[0-9]+")

CHECK_HELP = "validate every argument and input file, print one 'ok:' line and exit"
MAX_PIXELS_HELP = (
    "most pixels of any image read or written (default: 4096x4096 read, 8192x8192 written); "
    "raise it for larger images if the memory is there"
)
MAX_FRAMES_HELP = f"the cap on frames read from a video (default {MAX_FRAMES:,})"


def shown(value: object, limit: int = _MAX_NUMBER_TEXT) -> str:
    """A value for an error line, cut so that a 5000-digit number stays one short line."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make ``parser`` raise :class:`FedlabError` (one line, exit 2 by ``fedlab``'s guard)
    instead of printing its usage block and exiting."""

    def error(message: str) -> None:
        raise FedlabError(f"{parser.prog}: {message}; see {parser.prog} --help")

    parser.error = error  # type: ignore[method-assign]
    return parser


def integer(low: int, high: int, hint: str = "") -> Callable[[str], int]:
    """An argparse ``type``: a decimal integer in ``[low, high]``."""

    def parse(text: str) -> int:
        text = text.strip()
        if len(text) > _MAX_NUMBER_TEXT or not _INTEGER.fullmatch(text):
            raise argparse.ArgumentTypeError(
                f"{shown(text)} is not an integer in [{low}, {high}]{hint}"
            )
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside [{low}, {high}]{hint}")
        return value

    return parse


def share(text: str) -> float:
    """An argparse ``type``: a finite share in ``(0, 1]``."""
    try:
        value = float(text) if len(text) <= _MAX_NUMBER_TEXT else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 < value <= 1:
        raise argparse.ArgumentTypeError(
            f"{shown(text)} is not a share in (0, 1]; give e.g. 0.3 (30 %), or 1 for all"
        )
    return value


#: The flags several clip commands take, with their bounds.
CRF = integer(0, 51, " (the x264/x265 CRF; lower is better, e.g. 23)")
SEED = integer(0, SEED_LIMIT - 1)
FRAMES = integer(0, MAX_INT, " (0: every frame up to --max-frames)")
MAX_FRAMES_TYPE = integer(1, MAX_INT)


def check_frames(frames: int, max_frames: int) -> int:
    """``--frames`` against the frame cap ``--max-frames`` raises."""
    return check_cap(frames, max_frames, "--frames", raise_with="--max-frames")


@contextmanager
def naming(flag: str) -> Iterator[None]:
    """Prefix a refusal raised inside with the flag whose value caused it."""
    try:
        yield
    except FedlabError as exc:
        raise FedlabError(f"{flag}: {exc}") from None


def user_path(text: str, flag: str) -> Path:
    """``text`` as a path that the file system can be asked about (no NUL byte, not empty,
    not too long); a one-line error naming ``flag`` otherwise."""
    if not text or "\x00" in text:
        raise FedlabError(f"{flag} {shown(text)} is not a usable path; give a local file or folder")
    path = Path(text)
    try:
        path.exists()
    except (OSError, ValueError) as exc:
        raise FedlabError(f"{flag} {shown(text)} cannot be looked up ({exc})") from None
    return path


def existing_folder(text: str, flag: str) -> Path:
    """``text`` as an existing folder; a one-line error naming ``flag`` otherwise."""
    path = user_path(text, flag)
    if not path.is_dir():
        raise FedlabError(f"{flag} {shown(text, 200)} is not a folder; give an existing folder")
    return path


def plan_outputs(
    out: str, names: Iterable[str], *, overwrite: bool, check: bool
) -> tuple[Path, list[Path]]:
    """The output folder and every file a command will write, refused before any work starts
    (:func:`fedlab.outputs.output_files`); ``check`` (``--check``) creates nothing."""
    folder = user_path(out, "--out")
    return folder, output_files(folder, list(names), overwrite=overwrite, create=not check)


_SPACED_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*", re.ASCII)
#: Longest integer text converted; anything longer is out of every range checked here (and
#: Python refuses to convert over 4300 digits).
_MAX_DIGITS = 40


def add_safety_flags(p: argparse.ArgumentParser, pixels_help: str = MAX_PIXELS_HELP) -> None:
    """``--max-pixels`` (with ``pixels_help``), ``--overwrite`` and ``--check`` on an image
    command, whose argparse errors (a missing flag, a bad choice) become one-line errors too."""
    p.add_argument("--max-pixels", default=None, help=pixels_help)
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument("--check", action="store_true", help=CHECK_HELP)
    add_max_parameters(p)
    one_line_errors(p)


def add_max_parameters(p: argparse.ArgumentParser) -> None:
    """``--max-parameters``: the cap on a loaded model folder's parameter count."""
    p.add_argument(
        "--max-parameters", type=integer(1, MAX_INT), default=MAX_MODEL_PARAMETERS,
        help=f"refuse a model folder with more parameters (default {MAX_MODEL_PARAMETERS:,})",
    )  # fmt: skip


def int_flag(value: object, flag: str, low: int, high: int, what: str = "") -> int:
    """``value`` (an int, or a flag's text) as an int in ``[low, high]``.

    Raises
    ------
    FedlabError
        One line naming ``flag``, the range and the value, for text that is not an integer,
        bools, floats, and integers of any size outside the range.
    """
    allowed = f"an integer in {low}..{high}" + (f" ({what})" if what else "")
    number: int | None = None
    if isinstance(value, str) and _SPACED_INTEGER.fullmatch(value):
        digits = value.strip().lstrip("+-")
        number = int(value) if len(digits) <= _MAX_DIGITS else low - 1
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    if number is None or not low <= number <= high:
        raise FedlabError(f"{flag} must be {allowed}, got {shown(value)}")
    return number


def float_flag(
    value: object,
    flag: str,
    low: float,
    high: float = math.inf,
    *,
    low_open: bool = False,
    what: str = "",
) -> float:
    """``value`` (a number, or a flag's text) as a finite float in ``[low, high]`` (``(low,
    high]`` with ``low_open``).

    Raises
    ------
    FedlabError
        One line naming ``flag``, the range and the value, for text that is not a number,
        NaN, infinities and numbers outside the range.
    """
    bracket = "(" if low_open else "["
    allowed = (
        f"a finite number {'>' if low_open else '>='} {low:g}"
        if high == math.inf
        else f"a finite number in {bracket}{low:g}, {high:g}]"
    ) + (f" ({what})" if what else "")
    number = math.nan
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value) if abs(value) < 2**1000 else math.inf
    too_low = number < low or (low_open and number == low)
    if not math.isfinite(number) or too_low or number > high:
        raise FedlabError(f"{flag} must be {allowed}, got {shown(value)}")
    return number


def max_pixels_flag(value: object, default: int) -> int:
    """``--max-pixels`` as an int >= 1, or ``default`` where it was not given (None)."""
    if value is None:
        return default
    return int_flag(value, "--max-pixels", 1, MAX_INT, "pixels, width x height")
