"""Checks of the untrusted fields of a gradient-trace manifest, and the limits they enforce.

A trace manifest (``docs/trace-format.md``) is untrusted input. :func:`read_manifest` checks
the manifest's size, format and version, and :func:`parse_record_fields` every field of each
record for its type and range against the ``MAX_*`` limits below (documented in
``docs/trace-format.md``, "Limits"), refusing paths that are absolute or contain ``..``. Each
check raises a one-line :class:`~fedlab.errors.FedlabError` naming the record, the field, its
value, what is allowed and how to fix it. :mod:`fedlab.traces` reads and writes traces and
builds its :class:`~fedlab.traces.TraceRecord` from what these checks return.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from fedlab.errors import FedlabError
from fedlab.registry import MODELS

FORMAT = "fedlab-trace"
FORMAT_VERSION = "1.0"
KINDS = ("arrays", "update", "gradients")
REQUIRED_KEYS = (
    "round",
    "client",
    "kind",
    "received",
    "global",
    "model",
    "batch_size",
    "image_shape",
    "num_classes",
)
OPTIONAL_KEYS = ("lr", "local_steps", "ground_truth", "dp", "mean", "std", "param_names")

# Limits on what a manifest may declare (docs/trace-format.md, "Limits"): generous for research,
# small enough that a hostile trace cannot make the reader allocate more than a few GiB.
MAX_MANIFEST_BYTES = 256 * 2**20
MAX_RECORDS = 1_000_000
MAX_ID = 2**31 - 1
"""Largest ``round`` and ``client``."""
MAX_LOCAL_STEPS = 1_000_000
MAX_BATCH_SIZE = 4096
MAX_CHANNELS = 16
MAX_IMAGE_SIZE = 1024
"""Largest height and width (``image_shape``, and the ``image_size`` model kwarg)."""
MAX_NUM_CLASSES = 100_000
MAX_BATCH_ELEMENTS = 2**28
"""Largest ``batch_size * C * H * W`` (1 GiB of float32)."""
MAX_MODEL_ELEMENTS = 2**28
"""Largest number of parameters of the built model, and of elements of any one stored tensor."""
MAX_PATH_CHARS = 4096
MAX_STRING_CHARS = 1024
"""Longest model name, parameter name, kwarg or ``dp`` key and string value."""
MAX_PARAM_NAMES = 100_000
MAX_KWARGS = 64
"""Most entries of ``model.kwargs`` and of ``dp``."""
MAX_LIST_ITEMS = 1024
"""Longest list value in ``model.kwargs`` or ``dp``."""
MAX_INT_VALUE = 2**31 - 1
"""Largest magnitude of an integer in ``model.kwargs`` or ``dp``."""
SIZE_KWARGS = {
    "image_size": MAX_IMAGE_SIZE,
    "in_channels": MAX_CHANNELS,
    "num_classes": MAX_NUM_CLASSES,
}
"""Model kwargs that size the model: positive integers up to these bounds."""
DP_NUMBERS = (
    "std",
    "noise-std",
    "noise_std",
    "scale",
    "noise-scale",
    "noise_scale",
    "clip",
    "clip-norm",
    "clip_norm",
    "noise_multiplier",
    "noise-multiplier",
)
"""``dp`` keys the denoisers read as numbers (``fedlab.attacks.pgla.schedule.DP_KEY_ALIASES``)."""
JSON_SCALAR_TYPES = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class InvalidRecord:
    """A manifest record the reader refused: kept so that it is reported, never attacked.

    Attributes
    ----------
    index : int
        Position in the manifest's ``records``.
    round, client : int or None
        The record's round and client when they could be read.
    error : str
        The one-line reason (as :class:`~fedlab.errors.FedlabError` would say it).
    target_id : str
        ``"round-<r>/client-<c>"`` when known and not taken by a valid record, else
        ``"record-<index>"``.
    """

    index: int
    round: int | None
    client: int | None
    error: str
    target_id: str


def record_target_id(server_round: int | None, client: int | None) -> str:
    """``"round-<r>/client-<c>"``: the key of a record in results."""
    return f"round-{server_round}/client-{client}"


def show_value(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (reprs escape newlines: one line)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def field_error(where: str, key: str, value: Any, allowed: str, fix: str = "") -> FedlabError:
    """The one-line error: where, the field, its value, what is allowed, how to fix it."""
    how = fix or "fix the manifest as docs/trace-format.md says"
    return FedlabError(
        f"{where}: {key} {show_value(value)} is not allowed; allowed: {allowed}; {how}"
    )


def is_int(value: Any) -> bool:
    """True for an ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """True for an ``int`` or ``float`` that is not a ``bool`` (NaN and Inf included)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_int(where: str, key: str, value: Any, low: int, high: int) -> int:
    """``value`` if it is an integer from ``low`` to ``high``, else raise :func:`field_error`."""
    if not is_int(value) or not low <= value <= high:
        raise field_error(where, key, value, f"an integer from {low} to {high}")
    return value


def check_string(where: str, key: str, value: Any, limit: int = MAX_STRING_CHARS) -> str:
    """``value`` if it is a non-empty string of at most ``limit`` characters without NUL."""
    if not isinstance(value, str) or not value or len(value) > limit or "\x00" in value:
        raise field_error(where, key, value, f"a non-empty string of at most {limit} characters")
    return value


def check_relative_path(where: str, key: str, value: Any) -> str:
    """Check that ``value`` is a relative path that stays inside the trace folder (lexically)."""
    allowed = "a relative path inside the trace folder, e.g. 'round-0001/client-0000.safetensors'"
    if not isinstance(value, str) or not value or len(value) > MAX_PATH_CHARS or "\x00" in value:
        raise field_error(
            where, key, value, allowed + f" (a string of at most {MAX_PATH_CHARS} chars)"
        )
    posix = PurePosixPath(value.replace("\\", "/"))
    if posix.is_absolute() or PureWindowsPath(value).drive:
        raise field_error(
            where,
            key,
            value,
            allowed + "; absolute paths are refused",
            "copy the file into the trace folder and give its relative path",
        )
    if ".." in posix.parts:
        raise field_error(
            where,
            key,
            value,
            allowed + "; '..' is refused",
            "copy the file into the trace folder and give its relative path",
        )
    return value


def resolve_in_folder(folder: Path, label: str, rel: Any, *, must_exist: bool = True) -> Path:
    """The file ``rel`` of the trace ``folder``, checked to lie inside it (symlinks resolved).

    Raises
    ------
    FedlabError
        Naming ``label``, if ``rel`` is not a relative path free of ``..``, resolves outside
        ``folder``, or (with ``must_exist``) is not an existing regular file.
    """
    check_relative_path(label, "path", rel)
    root = folder.resolve()
    file = (root / rel).resolve()
    if not file.is_relative_to(root):
        raise FedlabError(
            f"{label}: {rel} resolves to {str(file)!r}, outside the trace folder "
            f"{str(root)!r} (a symlink?); a trace may only use files inside its folder: "
            "copy the file in"
        )
    if must_exist and not file.is_file():
        raise FedlabError(f"{label}: {rel} does not exist; the trace is incomplete, re-record it")
    return file


def check_model_allowed(target_id: str, name: str, *, trust_code: bool) -> None:
    """Refuse a ``model.name`` not registered in :data:`fedlab.registry.MODELS`.

    Building an unregistered name (``module:attr``) imports and runs code the trace names, so it
    is allowed only with ``trust_code`` (``--trust-trace-code``).
    """
    if not trust_code and name not in MODELS:
        what = "names code to import" if ":" in name else "is not registered"
        raise FedlabError(
            f"{target_id}: unknown model {name!r} (model.name {what}); allowed: "
            f"{', '.join(MODELS.names())}; a trace may only name registered builders since "
            "reading it must not run code it names: register yours (fedlab.registry.MODELS "
            "or a 'fedlab.models' entry point) or, if you trust this trace like a script, "
            "pass --trust-trace-code (TraceReader(..., trust_code=True))"
        )


def check_finite(where: str, key: str, value: Any) -> float:
    """``value`` as a float if it is a finite number, else raise :func:`field_error`."""
    if not is_number(value) or not math.isfinite(value):
        raise field_error(where, key, value, "a finite number")
    return float(value)


def check_scalar(where: str, key: str, value: Any) -> None:
    """A JSON scalar: bounded string, bounded int, finite float, bool or null."""
    if isinstance(value, str):
        if len(value) > MAX_STRING_CHARS:
            raise field_error(
                where, key, value, f"strings of at most {MAX_STRING_CHARS} characters"
            )
    elif is_int(value):
        if abs(value) > MAX_INT_VALUE:
            raise field_error(where, key, value, f"integers of magnitude at most {MAX_INT_VALUE}")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise field_error(where, key, value, "finite numbers")
    elif not isinstance(value, JSON_SCALAR_TYPES):
        raise field_error(where, key, value, "a JSON scalar or a list of scalars")


def check_flat_dict(where: str, key: str, value: Any) -> dict[str, Any]:
    """A JSON object of at most :data:`MAX_KWARGS` scalar or list-of-scalar values."""
    allowed = (
        f"an object of at most {MAX_KWARGS} entries whose values are strings, numbers, booleans, "
        f"null or lists of those (at most {MAX_LIST_ITEMS} items)"
    )
    if not isinstance(value, dict) or len(value) > MAX_KWARGS:
        raise field_error(where, key, value, allowed)
    for k, v in value.items():
        check_string(where, f"{key} key", k)
        if isinstance(v, list):
            if len(v) > MAX_LIST_ITEMS:
                raise field_error(where, f"{key}.{k}", v, allowed)
            for item in v:
                check_scalar(where, f"{key}.{k}", item)
        else:
            check_scalar(where, f"{key}.{k}", v)
    return dict(value)


def check_model(where: str, model: Any) -> dict[str, Any]:
    """Check ``{"name": str, "kwargs": {...}}``; size kwargs are bounded (:data:`SIZE_KWARGS`)."""
    allowed = '{"name": str, "kwargs": {...}}'
    if not isinstance(model, dict) or set(model) - {"name", "kwargs"}:
        raise field_error(where, "model", model, allowed)
    name = check_string(where, "model.name", model.get("name"))
    kwargs = model.get("kwargs")
    kwargs = {} if kwargs is None else check_flat_dict(where, "model.kwargs", kwargs)
    for key, high in SIZE_KWARGS.items():
        if key in kwargs:
            check_int(where, f"model.kwargs.{key}", kwargs[key], 1, high)
    return {"name": name, "kwargs": kwargs}


def parse_record_fields(obj: Any, where: str) -> dict[str, Any]:
    """Parse and check one manifest record ``obj``; ``where`` names it in errors.

    Every field's type and range is checked against this module's limits (see
    ``docs/trace-format.md``, "Limits"); paths must be relative and free of ``..``.

    Returns
    -------
    dict
        The keyword arguments of :class:`fedlab.traces.TraceRecord` (unknown keys in ``extra``).

    Raises
    ------
    FedlabError
        One line naming ``where``, the field, its value, what is allowed and how to fix it.
    """
    if not isinstance(obj, dict):
        raise FedlabError(f"{where}: a record must be a JSON object, got {type(obj).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        raise FedlabError(
            f"{where}: record misses keys {missing}; required: {list(REQUIRED_KEYS)} "
            "(see docs/trace-format.md)"
        )
    server_round = check_int(where, "round", obj["round"], 0, MAX_ID)
    client = check_int(where, "client", obj["client"], 0, MAX_ID)
    if obj["kind"] not in KINDS:
        raise field_error(where, "kind", obj["kind"], " or ".join(repr(k) for k in KINDS))
    received = check_relative_path(where, "received", obj["received"])
    global_ = check_relative_path(where, "global", obj["global"])
    ground_truth = obj.get("ground_truth")
    if ground_truth is not None:
        ground_truth = check_relative_path(where, "ground_truth", ground_truth)
    model = check_model(where, obj["model"])
    batch_size = check_int(where, "batch_size", obj["batch_size"], 1, MAX_BATCH_SIZE)
    shape = obj["image_shape"]
    if not (
        isinstance(shape, list)
        and len(shape) == 3
        and all(is_int(s) for s in shape)
        and 1 <= shape[0] <= MAX_CHANNELS
        and all(1 <= s <= MAX_IMAGE_SIZE for s in shape[1:])
    ):
        raise field_error(
            where,
            "image_shape",
            shape,
            f"[channels, height, width] with channels 1..{MAX_CHANNELS} and height, "
            f"width 1..{MAX_IMAGE_SIZE}",
        )
    if batch_size * math.prod(shape) > MAX_BATCH_ELEMENTS:
        raise field_error(
            where,
            "batch_size x image_shape",
            [batch_size, *shape],
            f"at most {MAX_BATCH_ELEMENTS} elements in the batch",
            "split the batch or use smaller images",
        )
    num_classes = check_int(where, "num_classes", obj["num_classes"], 1, MAX_NUM_CLASSES)
    lr = obj.get("lr")
    if lr is not None:
        lr = check_finite(where, "lr", lr)
    local_steps = check_int(where, "local_steps", obj.get("local_steps", 1), 0, MAX_LOCAL_STEPS)
    dp = obj.get("dp")
    if dp is not None:
        dp = check_flat_dict(where, "dp", dp)
        for key in DP_NUMBERS:
            value = dp.get(key)
            if value is not None and not (is_number(value) and value >= 0):
                raise field_error(where, f"dp.{key}", value, "a finite number >= 0 or null")
    norm: dict[str, list[float] | None] = {}
    for key in ("mean", "std"):
        value = obj.get(key)
        if value is not None:
            if not (
                isinstance(value, list)
                and len(value) in (1, shape[0])
                and all(is_number(v) and math.isfinite(v) for v in value)
                and (key == "mean" or all(v > 0 for v in value))
            ):
                positive = " > 0" if key == "std" else ""
                raise field_error(
                    where,
                    key,
                    value,
                    f"null or a list of 1 or {shape[0]} (channels) finite numbers{positive}",
                )
            value = [float(v) for v in value]
        norm[key] = value
    names = obj.get("param_names")
    if names is not None:
        if not (
            isinstance(names, list)
            and 0 < len(names) <= MAX_PARAM_NAMES
            and all(isinstance(n, str) and 0 < len(n) <= MAX_STRING_CHARS for n in names)
            and len(set(names)) == len(names)
        ):
            raise field_error(
                where,
                "param_names",
                names,
                f"null or a list of 1 to {MAX_PARAM_NAMES} distinct non-empty "
                f"strings of at most {MAX_STRING_CHARS} characters",
            )
        names = list(names)
    known = set(REQUIRED_KEYS) | set(OPTIONAL_KEYS)
    return dict(
        round=server_round,
        client=client,
        kind=obj["kind"],
        received=received,
        global_=global_,
        model=model,
        batch_size=batch_size,
        image_shape=tuple(shape),
        num_classes=num_classes,
        lr=lr,
        local_steps=local_steps,
        ground_truth=ground_truth,
        dp=dp,
        mean=norm["mean"],
        std=norm["std"],
        param_names=names,
        extra={k: v for k, v in obj.items() if k not in known},
    )


def read_manifest(
    manifest: Path, *, strict: bool = True
) -> tuple[str, list[dict[str, Any] | InvalidRecord]]:
    """Read the (existing) ``manifest`` file and check it and each of its records.

    With ``strict`` False, a malformed or duplicate record becomes an :class:`InvalidRecord`
    (whose ``target_id`` never collides with a valid record's) and the others are still read.

    Returns
    -------
    version : str
        The manifest's ``format_version``.
    entries : list
        Per record in manifest order, the keyword arguments of :class:`fedlab.traces.TraceRecord`
        (from :func:`parse_record_fields`) or an :class:`InvalidRecord`.

    Raises
    ------
    FedlabError
        If the manifest is too large, not JSON, of another format or of an unknown major version,
        ``records`` is not a list of at most :data:`MAX_RECORDS`, or (when ``strict``) a record
        is malformed or duplicates another's round and client.
    """
    if manifest.stat().st_size > MAX_MANIFEST_BYTES:
        raise FedlabError(
            f"{manifest}: {manifest.stat().st_size} bytes is over the {MAX_MANIFEST_BYTES} "
            "byte limit of a manifest; split the trace into several folders"
        )
    try:
        obj = json.loads(manifest.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, ValueError) as exc:
        # ValueError: an integer past Python's 4300-digit limit (no JSON decoder error).
        reason = show_value(" ".join(str(exc).split()), 120)
        raise FedlabError(f"{manifest}: not valid JSON ({reason}); rewrite the manifest") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise FedlabError(f"{manifest}: 'format' must be {FORMAT!r}; is this a fedlab trace?")
    version = obj.get("format_version", "")
    if not isinstance(version, str) or version.split(".")[0] != FORMAT_VERSION.split(".")[0]:
        raise FedlabError(
            f"{manifest}: format_version {show_value(version)} is not supported; this fedlab "
            f"reads {FORMAT_VERSION.split('.')[0]}.x; upgrade fedlab or rewrite the trace"
        )
    records = obj.get("records")
    if not isinstance(records, list) or len(records) > MAX_RECORDS:
        raise FedlabError(
            f"{manifest}: 'records' must be a list of at most {MAX_RECORDS} record objects"
        )
    entries: list[dict[str, Any] | InvalidRecord] = []
    seen: dict[str, int] = {}
    refused: list[tuple[int, int, list[int | None], str]] = []  # entry slot, index, ids, error
    for i, raw in enumerate(records):
        where = f"{manifest} record {i}"
        ids = [raw.get(k) if isinstance(raw, dict) else None for k in ("round", "client")]
        ids = [v if is_int(v) and 0 <= v <= MAX_ID else None for v in ids]
        if None not in ids:
            where += f" (round-{ids[0]}/client-{ids[1]})"
        try:
            fields = parse_record_fields(raw, where)
            target_id = record_target_id(fields["round"], fields["client"])
            if target_id in seen:
                raise FedlabError(
                    f"{where}: duplicates record {seen[target_id]} "
                    f"({target_id}); keep one record per round and client"
                )
        except FedlabError as exc:
            if strict:
                raise
            refused.append((len(entries), i, ids, str(exc)))
            entries.append({})  # a placeholder, filled in below
            continue
        seen[target_id] = i
        entries.append(fields)
    for slot, i, (rnd, client), error in refused:  # ids of valid records are taken first
        tid = record_target_id(rnd, client)
        if rnd is None or client is None or tid in seen:
            tid = f"record-{i}"
        seen[tid] = i
        entries[slot] = InvalidRecord(i, rnd, client, error, tid)
    return version, entries
