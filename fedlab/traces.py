"""Gradient traces: what the server received per client and round, on disk.

A trace is a folder holding ``manifest.json`` (format version ``"1.0"``) and safetensors files;
``docs/trace-format.md`` is the specification. :class:`TraceWriter` appends records atomically
(every file is written to a temporary name, then ``os.replace``-d), :class:`TraceReader` checks
the manifest up front and each record's files when they are loaded, raising
:class:`~fedlab.errors.FedlabError` that names the record and the problem. No pickle is involved.

A trace is untrusted input: the reader checks every field's type and range against the limits
below, refuses paths that leave the trace folder (symlinks included), reads tensor shapes from
the safetensors header before loading any data, and builds only models registered in
:data:`attacks.models.MODELS`, never importing a ``module:attr`` the manifest names unless the
caller passes ``trust_code=True``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from fedlab.atomic import atomic_save_tensors, atomic_write_json
from fedlab.errors import FedlabError

FORMAT = "fedlab-trace"
FORMAT_VERSION = "1.0"
MANIFEST = "manifest.json"
KINDS = ("arrays", "update", "gradients")
_REQUIRED = (
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
_OPTIONAL = ("lr", "local_steps", "ground_truth", "dp", "mean", "std", "param_names")

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
"""``dp`` keys the denoisers read as numbers (``attacks.pgla.schedule.DP_KEY_ALIASES``)."""
_SCALARS = (str, int, float, bool, type(None))


def _show(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (reprs escape newlines: one line)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bad(where: str, key: str, value: Any, allowed: str, fix: str = "") -> FedlabError:
    """The one-line error: where, the field, its value, what is allowed, how to fix it."""
    how = fix or "fix the manifest as docs/trace-format.md says"
    return FedlabError(f"{where}: {key} {_show(value)} is not allowed; allowed: {allowed}; {how}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int(where: str, key: str, value: Any, low: int, high: int) -> int:
    if not _is_int(value) or not low <= value <= high:
        raise _bad(where, key, value, f"an integer from {low} to {high}")
    return value


def _string(where: str, key: str, value: Any, limit: int = MAX_STRING_CHARS) -> str:
    if not isinstance(value, str) or not value or len(value) > limit or "\x00" in value:
        raise _bad(where, key, value, f"a non-empty string of at most {limit} characters")
    return value


def _rel_path(where: str, key: str, value: Any) -> str:
    """Check that ``value`` is a relative path that stays inside the trace folder (lexically)."""
    allowed = "a relative path inside the trace folder, e.g. 'round-0001/client-0000.safetensors'"
    if not isinstance(value, str) or not value or len(value) > MAX_PATH_CHARS or "\x00" in value:
        raise _bad(where, key, value, allowed + f" (a string of at most {MAX_PATH_CHARS} chars)")
    posix = PurePosixPath(value.replace("\\", "/"))
    if posix.is_absolute() or PureWindowsPath(value).drive:
        raise _bad(
            where,
            key,
            value,
            allowed + "; absolute paths are refused",
            "copy the file into the trace folder and give its relative path",
        )
    if ".." in posix.parts:
        raise _bad(
            where,
            key,
            value,
            allowed + "; '..' is refused",
            "copy the file into the trace folder and give its relative path",
        )
    return value


def _finite(where: str, key: str, value: Any) -> float:
    if not _is_number(value) or not math.isfinite(value):
        raise _bad(where, key, value, "a finite number")
    return float(value)


def _scalar(where: str, key: str, value: Any) -> None:
    """A JSON scalar: bounded string, bounded int, finite float, bool or null."""
    if isinstance(value, str):
        if len(value) > MAX_STRING_CHARS:
            raise _bad(where, key, value, f"strings of at most {MAX_STRING_CHARS} characters")
    elif _is_int(value):
        if abs(value) > MAX_INT_VALUE:
            raise _bad(where, key, value, f"integers of magnitude at most {MAX_INT_VALUE}")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _bad(where, key, value, "finite numbers")
    elif not isinstance(value, _SCALARS):
        raise _bad(where, key, value, "a JSON scalar or a list of scalars")


def _flat_dict(where: str, key: str, value: Any) -> dict[str, Any]:
    """A JSON object of at most :data:`MAX_KWARGS` scalar or list-of-scalar values."""
    allowed = (
        f"an object of at most {MAX_KWARGS} entries whose values are strings, numbers, booleans, "
        f"null or lists of those (at most {MAX_LIST_ITEMS} items)"
    )
    if not isinstance(value, dict) or len(value) > MAX_KWARGS:
        raise _bad(where, key, value, allowed)
    for k, v in value.items():
        _string(where, f"{key} key", k)
        if isinstance(v, list):
            if len(v) > MAX_LIST_ITEMS:
                raise _bad(where, f"{key}.{k}", v, allowed)
            for item in v:
                _scalar(where, f"{key}.{k}", item)
        else:
            _scalar(where, f"{key}.{k}", v)
    return dict(value)


@dataclass
class TraceRecord:
    """One client's contribution in one round, as listed in the manifest.

    Attributes mirror the manifest's record keys (see ``docs/trace-format.md``); paths are
    relative to the trace folder.
    """

    round: int
    client: int
    kind: str
    received: str
    global_: str
    model: dict[str, Any]
    batch_size: int
    image_shape: tuple[int, int, int]
    num_classes: int
    lr: float | None = None
    local_steps: int = 1
    ground_truth: str | None = None
    dp: dict[str, Any] | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    param_names: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def target_id(self) -> str:
        """``"round-<r>/client-<c>"``: the key of this record in results."""
        return f"round-{self.round}/client-{self.client}"

    def to_json(self) -> dict[str, Any]:
        """The manifest form of this record."""
        out: dict[str, Any] = {
            "round": self.round,
            "client": self.client,
            "kind": self.kind,
            "received": self.received,
            "global": self.global_,
            "model": self.model,
            "batch_size": self.batch_size,
            "image_shape": list(self.image_shape),
            "num_classes": self.num_classes,
            "lr": self.lr,
            "local_steps": self.local_steps,
            "ground_truth": self.ground_truth,
            "dp": self.dp,
            "mean": self.mean,
            "std": self.std,
        }
        if self.param_names is not None:
            out["param_names"] = self.param_names
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, obj: Any, where: str) -> TraceRecord:
        """Parse and check one manifest record; ``where`` names it in errors.

        Every field's type and range is checked against the module's limits (see
        ``docs/trace-format.md``, "Limits"); paths must be relative and free of ``..``.

        Raises
        ------
        FedlabError
            One line naming ``where``, the field, its value, what is allowed and how to fix it.
        """
        if not isinstance(obj, dict):
            raise FedlabError(f"{where}: a record must be a JSON object, got {type(obj).__name__}")
        missing = [k for k in _REQUIRED if k not in obj]
        if missing:
            raise FedlabError(
                f"{where}: record misses keys {missing}; required: {list(_REQUIRED)} "
                "(see docs/trace-format.md)"
            )
        server_round = _int(where, "round", obj["round"], 0, MAX_ID)
        client = _int(where, "client", obj["client"], 0, MAX_ID)
        if obj["kind"] not in KINDS:
            raise _bad(where, "kind", obj["kind"], " or ".join(repr(k) for k in KINDS))
        received = _rel_path(where, "received", obj["received"])
        global_ = _rel_path(where, "global", obj["global"])
        ground_truth = obj.get("ground_truth")
        if ground_truth is not None:
            ground_truth = _rel_path(where, "ground_truth", ground_truth)
        model = _model(where, obj["model"])
        batch_size = _int(where, "batch_size", obj["batch_size"], 1, MAX_BATCH_SIZE)
        shape = obj["image_shape"]
        if not (
            isinstance(shape, list)
            and len(shape) == 3
            and all(_is_int(s) for s in shape)
            and 1 <= shape[0] <= MAX_CHANNELS
            and all(1 <= s <= MAX_IMAGE_SIZE for s in shape[1:])
        ):
            raise _bad(
                where,
                "image_shape",
                shape,
                f"[channels, height, width] with channels 1..{MAX_CHANNELS} and height, "
                f"width 1..{MAX_IMAGE_SIZE}",
            )
        if batch_size * math.prod(shape) > MAX_BATCH_ELEMENTS:
            raise _bad(
                where,
                "batch_size x image_shape",
                [batch_size, *shape],
                f"at most {MAX_BATCH_ELEMENTS} elements in the batch",
                "split the batch or use smaller images",
            )
        num_classes = _int(where, "num_classes", obj["num_classes"], 1, MAX_NUM_CLASSES)
        lr = obj.get("lr")
        if lr is not None:
            lr = _finite(where, "lr", lr)
        local_steps = _int(where, "local_steps", obj.get("local_steps", 1), 0, MAX_LOCAL_STEPS)
        dp = obj.get("dp")
        if dp is not None:
            dp = _flat_dict(where, "dp", dp)
            for key in DP_NUMBERS:
                value = dp.get(key)
                if value is not None and not (_is_number(value) and value >= 0):
                    raise _bad(where, f"dp.{key}", value, "a finite number >= 0 or null")
        norm: dict[str, list[float] | None] = {}
        for key in ("mean", "std"):
            value = obj.get(key)
            if value is not None:
                if not (
                    isinstance(value, list)
                    and len(value) in (1, shape[0])
                    and all(_is_number(v) and math.isfinite(v) for v in value)
                    and (key == "mean" or all(v > 0 for v in value))
                ):
                    positive = " > 0" if key == "std" else ""
                    raise _bad(
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
                raise _bad(
                    where,
                    "param_names",
                    names,
                    f"null or a list of 1 to {MAX_PARAM_NAMES} distinct non-empty "
                    f"strings of at most {MAX_STRING_CHARS} characters",
                )
            names = list(names)
        known = set(_REQUIRED) | set(_OPTIONAL)
        return cls(
            round=server_round,
            client=client,
            kind=obj["kind"],
            received=received,
            global_=global_,
            model=model,
            batch_size=batch_size,
            image_shape=tuple(shape),  # type: ignore[arg-type]
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


def _model(where: str, model: Any) -> dict[str, Any]:
    """Check ``{"name": str, "kwargs": {...}}``; size kwargs are bounded (:data:`SIZE_KWARGS`)."""
    allowed = '{"name": str, "kwargs": {...}}'
    if not isinstance(model, dict) or set(model) - {"name", "kwargs"}:
        raise _bad(where, "model", model, allowed)
    name = _string(where, "model.name", model.get("name"))
    kwargs = model.get("kwargs")
    kwargs = {} if kwargs is None else _flat_dict(where, "model.kwargs", kwargs)
    for key, high in SIZE_KWARGS.items():
        if key in kwargs:
            _int(where, f"model.kwargs.{key}", kwargs[key], 1, high)
    return {"name": name, "kwargs": kwargs}


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


class TraceWriter:
    """Append records to a trace folder (created if needed; an existing manifest is extended).

    Parameters
    ----------
    path : str or Path
        The trace folder.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        manifest = self.path / MANIFEST
        if manifest.exists():
            self.records = TraceReader(self.path).records
        else:
            self.records = []

    def write_global(self, server_round: int, arrays: dict[str, torch.Tensor]) -> str:
        """Save the global arrays a round started from; returns their relative path."""
        rel = f"round-{server_round:04d}/global.safetensors"
        atomic_save_tensors(self.path / rel, arrays)
        return rel

    def add(
        self,
        *,
        server_round: int,
        client: int,
        received: dict[str, torch.Tensor],
        global_path: str,
        model: dict[str, Any],
        batch_size: int,
        image_shape: tuple[int, int, int],
        num_classes: int,
        kind: str = "arrays",
        lr: float | None = None,
        local_steps: int = 1,
        ground_truth: tuple[torch.Tensor, torch.Tensor] | None = None,
        dp: dict[str, Any] | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
    ) -> TraceRecord:
        """Write one client's received arrays (and ground truth) and update the manifest.

        ``received`` maps parameter names (the model's ``named_parameters`` names) to tensors;
        ``ground_truth`` is ``(images, labels)`` and goes to a separate file.
        """
        if kind not in KINDS:
            raise FedlabError(f"kind {kind!r} is not one of {list(KINDS)}")
        stem = f"round-{server_round:04d}/client-{client:04d}"
        atomic_save_tensors(self.path / f"{stem}.safetensors", received)
        gt_rel = None
        if ground_truth is not None:
            images, labels = ground_truth
            gt_rel = f"ground-truth/round-{server_round:04d}-client-{client:04d}.safetensors"
            atomic_save_tensors(
                self.path / gt_rel, {"images": images.float(), "labels": labels.long()}
            )
        record = TraceRecord(
            round=server_round,
            client=client,
            kind=kind,
            received=f"{stem}.safetensors",
            global_=global_path,
            model=model,
            batch_size=batch_size,
            image_shape=tuple(int(s) for s in image_shape),  # type: ignore[arg-type]
            num_classes=num_classes,
            lr=lr,
            local_steps=local_steps,
            ground_truth=gt_rel,
            dp=dp,
            mean=mean,
            std=std,
        )
        self.records = [r for r in self.records if r.target_id != record.target_id] + [record]
        atomic_write_json(
            self.path / MANIFEST,
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "records": [r.to_json() for r in self.records],
            },
        )
        return record


class TraceReader:
    """Read a trace folder; the manifest is checked on construction.

    Parameters
    ----------
    path : str or Path
        The trace folder (or its ``manifest.json``).
    trust_code : bool
        Allow a record's ``model.name`` to be ``"module:attr"`` (or any name not registered in
        :data:`attacks.models.MODELS`), which is then imported and called with the manifest's
        kwargs: this runs arbitrary code named by the file, so only pass True for traces you
        trust as you would trust a Python script. Default False: only registered builders
        (yours, fedlab's, or those of installed ``fedlab.models`` entry points) are built.
    strict : bool
        Raise on the first malformed record (default). With False, malformed records are kept
        in :attr:`invalid` and the others are read; ``fedlab attack`` reads this way so that
        one bad record is one failed target.

    Attributes
    ----------
    records : list of TraceRecord
        The valid records, in manifest order.
    invalid : list of InvalidRecord
        The refused records (always empty when ``strict``).

    Raises
    ------
    FedlabError
        If the manifest is missing, too large, not JSON, of another format or of an unknown
        major version, or (when ``strict``) a record is malformed.
    """

    def __init__(self, path: str | Path, *, trust_code: bool = False, strict: bool = True) -> None:
        path = Path(path)
        self.path = path.parent if path.name == MANIFEST else path
        self.trust_code = trust_code
        manifest = self.path / MANIFEST
        if not manifest.is_file():
            raise FedlabError(
                f"no {MANIFEST} in trace folder {str(self.path)!r}; give the folder a recorded "
                "run wrote (e.g. <run>/traces) or write one as docs/trace-format.md says"
            )
        if manifest.stat().st_size > MAX_MANIFEST_BYTES:
            raise FedlabError(
                f"{manifest}: {manifest.stat().st_size} bytes is over the {MAX_MANIFEST_BYTES} "
                "byte limit of a manifest; split the trace into several folders"
            )
        try:
            obj = json.loads(manifest.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise FedlabError(f"{manifest}: not valid JSON ({exc}); rewrite the manifest") from None
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise FedlabError(f"{manifest}: 'format' must be {FORMAT!r}; is this a fedlab trace?")
        version = obj.get("format_version", "")
        version = version if isinstance(version, str) else _show(version)
        if version.split(".")[0] != FORMAT_VERSION.split(".")[0]:
            raise FedlabError(
                f"{manifest}: format_version {_show(version)} is not supported; this fedlab reads "
                f"{FORMAT_VERSION.split('.')[0]}.x; upgrade fedlab or rewrite the trace"
            )
        records = obj.get("records")
        if not isinstance(records, list) or len(records) > MAX_RECORDS:
            raise FedlabError(
                f"{manifest}: 'records' must be a list of at most {MAX_RECORDS} record objects"
            )
        self.version = version
        self.records: list[TraceRecord] = []
        self.invalid: list[InvalidRecord] = []
        self._entries: list[TraceRecord | InvalidRecord] = []
        seen: dict[str, int] = {}
        refused: list[tuple[int, int, list[int | None], str]] = []  # entry slot, index, ids, error
        for i, raw in enumerate(records):
            where = f"{manifest} record {i}"
            ids = [raw.get(k) if isinstance(raw, dict) else None for k in ("round", "client")]
            ids = [v if _is_int(v) and 0 <= v <= MAX_ID else None for v in ids]
            if None not in ids:
                where += f" (round-{ids[0]}/client-{ids[1]})"
            try:
                record = TraceRecord.from_json(raw, where)
                if record.target_id in seen:
                    raise FedlabError(
                        f"{where}: duplicates record {seen[record.target_id]} "
                        f"({record.target_id}); keep one record per round and client"
                    )
            except FedlabError as exc:
                if strict:
                    raise
                refused.append((len(self._entries), i, ids, str(exc)))
                self._entries.append(None)  # type: ignore[arg-type]  # filled in below
                continue
            seen[record.target_id] = i
            self.records.append(record)
            self._entries.append(record)
        for slot, i, (rnd, client), error in refused:  # ids of valid records are taken first
            tid = f"round-{rnd}/client-{client}"
            if rnd is None or client is None or tid in seen:
                tid = f"record-{i}"
            seen[tid] = i
            self.invalid.append(InvalidRecord(i, rnd, client, error, tid))
            self._entries[slot] = self.invalid[-1]

    def select(
        self, rounds: list[int] | None = None, clients: list[int] | None = None
    ) -> list[TraceRecord]:
        """Valid records of the given rounds and clients (all when None), in manifest order."""
        return [r for r in self.select_all(rounds, clients) if isinstance(r, TraceRecord)]

    def select_all(
        self, rounds: list[int] | None = None, clients: list[int] | None = None
    ) -> list[TraceRecord | InvalidRecord]:
        """Valid and invalid records of the given rounds and clients, in manifest order.

        An invalid record whose round or client could not be read is always included, so that
        it is reported rather than silently left out.
        """
        return [
            r
            for r in self._entries
            if (rounds is None or r.round is None or r.round in rounds)
            and (clients is None or r.client is None or r.client in clients)
        ]

    def resolve(self, record: TraceRecord | str, rel: str, *, must_exist: bool = True) -> Path:
        """The file ``rel`` of ``record``, checked to lie inside the trace folder.

        Parameters
        ----------
        record : TraceRecord or str
            The record (or a label) named in errors.
        rel : str
            A path relative to the trace folder, as the manifest gives it.
        must_exist : bool
            Also require an existing regular file.

        Raises
        ------
        FedlabError
            If ``rel`` is absolute, contains ``..``, resolves (through symlinks) outside the
            folder, or (with ``must_exist``) is not an existing file.
        """
        label = record.target_id if isinstance(record, TraceRecord) else str(record)
        _rel_path(label, "path", rel)
        root = self.path.resolve()
        file = (root / rel).resolve()
        if not file.is_relative_to(root):
            raise FedlabError(
                f"{label}: {rel} resolves to {str(file)!r}, outside the trace folder "
                f"{str(root)!r} (a symlink?); a trace may only use files inside its folder: "
                "copy the file in"
            )
        if must_exist and not file.is_file():
            raise FedlabError(
                f"{label}: {rel} does not exist; the trace is incomplete, re-record it"
            )
        return file

    def header(self, record: TraceRecord, rel: str) -> dict[str, tuple[int, ...]]:
        """Tensor names and shapes of the safetensors file ``rel``, read without loading data.

        Raises
        ------
        FedlabError
            If the file is outside the trace folder, missing or not a safetensors file.
        """
        file = self.resolve(record, rel)
        try:
            with safe_open(str(file), framework="pt") as f:
                return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
        except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as exc:
            raise FedlabError(
                f"{record.target_id}: {rel} is not a readable safetensors file ({exc})"
            ) from None

    def load(
        self,
        record: TraceRecord,
        rel: str,
        shapes: Mapping[str, tuple[int, ...] | None] | None = None,
        *,
        expected_by: str = "the manifest",
    ) -> dict[str, torch.Tensor]:
        """Load one safetensors file of ``record``, refusing missing, corrupt or non-finite data.

        Parameters
        ----------
        record : TraceRecord
            Named in errors.
        rel : str
            The file, relative to the trace folder (checked by :meth:`resolve`).
        shapes : mapping, optional
            Tensors to load and their expected shapes (None: any shape), checked against the
            file's header before any data is read; default: every tensor in the file.
        expected_by : str
            What expects ``shapes``, for errors (e.g. ``"model 'lenet'"``).

        Raises
        ------
        FedlabError
            If the file is outside the folder, missing, unreadable, lacks a tensor, holds one
            of another shape or of more than :data:`MAX_MODEL_ELEMENTS` elements, or NaN/Inf.
        """
        file = self.resolve(record, rel)
        where = f"{record.target_id}: {rel}"
        try:
            with safe_open(str(file), framework="pt") as f:
                present = set(f.keys())
                wanted = dict(shapes) if shapes is not None else dict.fromkeys(present)
                for name, want in wanted.items():
                    if name not in present:
                        raise FedlabError(
                            f"{where} has no tensor {name!r} (has {sorted(present)[:6]}...); "
                            "names must match the model's parameters (or param_names)"
                        )
                    got = tuple(f.get_slice(name).get_shape())
                    if want is not None and got != tuple(want):
                        raise FedlabError(
                            f"{where}: tensor {name!r} has shape {list(got)} but "
                            f"{expected_by} expects {list(want)}"
                        )
                    if math.prod(got) > MAX_MODEL_ELEMENTS:
                        raise FedlabError(
                            f"{where}: tensor {name!r} of shape {list(got)} has more than "
                            f"{MAX_MODEL_ELEMENTS} elements, the limit of a trace tensor"
                        )
                tensors = {name: f.get_tensor(name) for name in wanted}
        except FedlabError:
            raise
        except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as exc:
            raise FedlabError(f"{where} is not a readable safetensors file ({exc})") from None
        for name, t in tensors.items():
            if t.is_floating_point() and not torch.isfinite(t).all():
                raise FedlabError(f"{where}: tensor {name!r} contains NaN or Inf")
        return tensors

    def _build_model(self, record: TraceRecord):
        """The record's model spec and a freshly built model, after the name and size checks."""
        from attacks.base import ModelSpec
        from attacks.models import MODELS

        name = record.model["name"]
        if not self.trust_code and name not in MODELS:
            what = "names code to import" if ":" in name else "is not registered"
            raise FedlabError(
                f"{record.target_id}: unknown model {name!r} (model.name {what}); allowed: "
                f"{', '.join(MODELS.names())}; a trace may only name registered builders since "
                "reading it must not run code it names: register yours (attacks.models.MODELS "
                "or a 'fedlab.models' entry point) or, if you trust this trace like a script, "
                "pass --trust-trace-code (TraceReader(..., trust_code=True))"
            )
        spec = ModelSpec(name, record.model["kwargs"], allow_import=self.trust_code)
        try:
            MODELS.get(name, allow_import=self.trust_code)  # any import happens off the meta device
            with torch.device("meta"):  # count parameters first: meta tensors have no storage
                meta = spec.build()
        except FedlabError as exc:
            raise FedlabError(f"{record.target_id}: {exc}") from None
        except Exception:  # a builder that cannot run on meta: its kwargs were range-checked
            meta = None
        if isinstance(meta, nn.Module):
            total = sum(p.numel() for p in meta.parameters())
            if total > MAX_MODEL_ELEMENTS:
                raise FedlabError(
                    f"{record.target_id}: model {name!r} with kwargs {_show(spec.kwargs)} has "
                    f"{total} parameters, over the limit of {MAX_MODEL_ELEMENTS}; fix the "
                    "model kwargs in the manifest"
                )
        try:
            model = spec.build()
        except FedlabError as exc:
            raise FedlabError(f"{record.target_id}: {exc}") from None
        if not isinstance(model, nn.Module):
            raise FedlabError(
                f"{record.target_id}: model {name!r} built a {type(model).__name__}, not a "
                "torch.nn.Module; name a model builder"
            )
        return spec, model

    def attack_input(self, record: TraceRecord):
        """The :class:`attacks.base.AttackInput` of ``record`` (model built to check shapes).

        Raises
        ------
        FedlabError
            If a path leaves the trace folder, the model is not registered (and ``trust_code``
            is off) or too large, or a file is missing, corrupt or disagrees with the model.
        """
        from attacks.base import AttackInput

        for rel in (record.received, record.global_, record.ground_truth):
            if rel is not None:  # every path, ground truth included, before anything is built
                self.resolve(record, rel, must_exist=False)
        spec, model = self._build_model(record)
        names = record.param_names or [n for n, _ in model.named_parameters()]
        shapes = [tuple(p.shape) for _, p in model.named_parameters()]
        if len(names) != len(shapes):
            raise FedlabError(
                f"{record.target_id}: param_names lists {len(names)} names but model "
                f"{spec.name!r} has {len(shapes)} parameters"
            )
        tensors = {}
        for what, rel in (("global", record.global_), ("received", record.received)):
            expected = dict(zip(names, shapes, strict=True))
            data = self.load(record, rel, expected, expected_by=f"model {spec.name!r}")
            tensors[what] = [data[name].float() for name in names]
        received, global_ = tensors["received"], tensors["global"]
        kwargs: dict[str, Any] = {}
        if record.kind == "gradients":
            kwargs["gradients"] = received
        elif record.kind == "update":
            kwargs["update"] = received
        else:
            kwargs["update"] = [r - g for r, g in zip(received, global_, strict=True)]
        return AttackInput(
            model=spec,
            params=global_,
            batch_size=record.batch_size,
            image_shape=record.image_shape,
            num_classes=record.num_classes,
            lr=record.lr,
            local_steps=record.local_steps,
            dp=record.dp,
            mean=tuple(record.mean) if record.mean else None,
            std=tuple(record.std) if record.std else None,
            **kwargs,
        )

    def ground_truth(self, record: TraceRecord) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images, labels)`` of ``record`` for scoring, shapes checked against the manifest."""
        if record.ground_truth is None:
            raise FedlabError(
                f"{record.target_id}: no ground truth recorded; scoring needs a trace recorded "
                "with send-ground-truth"
            )
        want = (record.batch_size, *record.image_shape)
        header = self.header(record, record.ground_truth)
        if "images" not in header or "labels" not in header:
            raise FedlabError(
                f"{record.target_id}: {record.ground_truth} must hold 'images' and 'labels', "
                f"has {sorted(header)[:6]}"
            )
        if header["images"] != want or header["labels"] != (record.batch_size,):
            raise FedlabError(
                f"{record.target_id}: ground truth images {list(header['images'])} / labels "
                f"{list(header['labels'])} disagree with the manifest's {list(want)} / "
                f"[{record.batch_size}]; re-record the trace or fix batch_size/image_shape"
            )
        data = self.load(record, record.ground_truth, {"images": want, "labels": None})
        images, labels = data["images"].float(), data["labels"]
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise FedlabError(
                f"{record.target_id}: ground truth labels have dtype {labels.dtype}; allowed: an "
                "integer dtype (int64); re-record the trace"
            )
        return images, labels.long()
