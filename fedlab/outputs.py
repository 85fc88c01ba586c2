"""Where commands write: never over a user's file unless ``--overwrite`` says so.

Every command that writes files names them before it starts work, so that a refusal costs
nothing; the writes themselves are atomic (:mod:`fedlab.atomic`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from fedlab.errors import FedlabError
from fedlab.limits import short

OVERWRITE_HELP = "replace output files that already exist (default: refuse)"


def output_folder(path: str | Path, *, flag: str = "--out") -> Path:
    """``path`` as a folder to write into (created); a one-line error if it is a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FedlabError(
            f"{flag} {str(path)!r} is a file, not a folder; give a folder for the outputs"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FedlabError(f"{flag} {str(path)!r} cannot be created: {exc.strerror}") from None
    return path


def refuse_existing(paths: Iterable[str | Path], *, overwrite: bool) -> None:
    """Refuse to start when an output file already exists, unless ``overwrite``."""
    if overwrite:
        return
    for path in map(Path, paths):
        if os.path.lexists(path):  # a dangling link counts: it names a user's file
            raise FedlabError(
                f"{str(path)!r} already exists; pass --overwrite to replace it, or choose "
                "another --out"
            )


#: Room ``fedlab.atomic`` needs around an output file's name for its temporary file.
_TEMP_NAME_ROOM = 16


def output_files(
    out: str | Path, names: list[str], *, overwrite: bool, create: bool = True
) -> list[Path]:
    """The files ``out/<name>`` a command will write, named before any work starts.

    ``--out`` must be a folder (created unless ``create`` is false, as under ``--check``); an
    existing output file is refused unless ``overwrite``; a folder in an output's place always.

    Raises
    ------
    FedlabError
        One line naming ``--out`` or the file in the way.
    """
    text = str(out)
    if "\0" in text:
        raise FedlabError(f"--out {short(text)} holds a NUL character; give a folder path")
    for name in names:
        if len(os.fsencode(name)) + _TEMP_NAME_ROOM > 255:
            raise FedlabError(
                f"output file name {short(name)} is too long for the file system; rename the "
                "input file"
            )
    try:
        folder = output_folder(out) if create or Path(out).exists() else Path(out)
        paths = [folder / name for name in names]
        refuse_existing(paths, overwrite=overwrite)
        for path in paths:
            if path.is_dir():
                raise FedlabError(
                    f"{str(path)!r} is a folder where an output file goes; move it or choose "
                    "another --out"
                )
    except FedlabError:
        raise
    except OSError as exc:  # a name too long, a folder without permission
        raise FedlabError(f"--out {text!r} cannot be used ({exc.strerror or exc})") from None
    return paths


def write_output(path: Path, write: Callable[[Path], None]) -> Path:
    """``fedlab.atomic.atomic_write``, with a failure to write as a one-line error."""
    from fedlab.atomic import atomic_write

    try:
        return atomic_write(path, write)
    except OSError as exc:
        raise FedlabError(f"cannot write {str(path)!r} ({exc.strerror or exc})") from None
