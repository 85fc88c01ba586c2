"""Gradient traces: what the server received per client and round, on disk.

A trace is a folder holding ``manifest.json`` (format version ``"1.0"``) and safetensors files;
``docs/trace-format.md`` is the specification. :class:`TraceWriter` appends records atomically
(every file is written to a temporary name, then ``os.replace``-d), :class:`TraceReader` checks
the manifest up front and each record's files when they are loaded, raising
:class:`~fedlab.errors.FedlabError` that names the record and the problem. No pickle is involved.

A trace is untrusted input: the reader checks every field's type and range against the limits
in :mod:`fedlab.trace_validation`, refuses paths that leave the trace folder (symlinks included),
reads tensor shapes from the safetensors header before loading any data, and builds only models
registered in :data:`fedlab.registry.MODELS`, never importing a ``module:attr`` the manifest
names unless the caller passes ``trust_code=True``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from fedlab.atomic import atomic_save_tensors, atomic_write_json
from fedlab.attack_input import AttackInput, ModelSpec
from fedlab.errors import FedlabError
from fedlab.registry import MODELS
from fedlab.trace_validation import (
    FORMAT,
    FORMAT_VERSION,
    KINDS,
    MAX_MODEL_ELEMENTS,
    InvalidRecord,
    check_model_allowed,
    parse_record_fields,
    read_manifest,
    record_target_id,
    resolve_in_folder,
    show_value,
)

MANIFEST = "manifest.json"


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
        return record_target_id(self.round, self.client)

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

        Every field's type and range is checked against the limits of
        :mod:`fedlab.trace_validation` (see ``docs/trace-format.md``, "Limits"); paths must be
        relative and free of ``..``.

        Raises
        ------
        FedlabError
            One line naming ``where``, the field, its value, what is allowed and how to fix it.
        """
        return cls(**parse_record_fields(obj, where))


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
        self._write_manifest()
        return record

    def truncate(self, count: int) -> None:
        """Keep only the first ``count`` records (a resumed run drops what it runs again)."""
        if count < len(self.records):
            self.records = self.records[:count]
            self._write_manifest()

    def _write_manifest(self) -> None:
        atomic_write_json(
            self.path / MANIFEST,
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "records": [r.to_json() for r in self.records],
            },
        )


class TraceReader:
    """Read a trace folder; the manifest is checked on construction.

    Parameters
    ----------
    path : str or Path
        The trace folder (or its ``manifest.json``).
    trust_code : bool
        Allow a record's ``model.name`` to be ``"module:attr"`` (or any name not registered in
        :data:`fedlab.registry.MODELS`), which is then imported and called with the manifest's
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
        self.version, entries = read_manifest(manifest, strict=strict)
        self._entries: list[TraceRecord | InvalidRecord] = [
            e if isinstance(e, InvalidRecord) else TraceRecord(**e) for e in entries
        ]
        self.records = [e for e in self._entries if isinstance(e, TraceRecord)]
        self.invalid = [e for e in self._entries if isinstance(e, InvalidRecord)]

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
        return resolve_in_folder(self.path, label, rel, must_exist=must_exist)

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

    def _build_model(self, record: TraceRecord) -> tuple[ModelSpec, nn.Module]:
        """The record's model spec and a freshly built model, after the name and size checks."""
        name = record.model["name"]
        check_model_allowed(record.target_id, name, trust_code=self.trust_code)
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
                    f"{record.target_id}: model {name!r} with kwargs {show_value(spec.kwargs)} has "
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

    def attack_input(self, record: TraceRecord) -> AttackInput:
        """The :class:`~fedlab.attack_input.AttackInput` of ``record`` (shapes checked on a model).

        Raises
        ------
        FedlabError
            If a path leaves the trace folder, the model is not registered (and ``trust_code``
            is off) or too large, or a file is missing, corrupt or disagrees with the model.
        """
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
