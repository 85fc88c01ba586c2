"""Gradient traces: what the server received per client and round, on disk.

A trace is a folder holding ``manifest.json`` (format version ``"1.0"``) and safetensors files;
``docs/trace-format.md`` is the specification. :class:`TraceWriter` appends records atomically
(every file is written to a temporary name, then ``os.replace``-d), :class:`TraceReader` checks
the manifest up front and each record's files when they are loaded, raising
:class:`~fedlab.errors.FedlabError` that names the record and the problem. No pickle is involved.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

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
        """Parse and check one manifest record; ``where`` names it in errors."""
        if not isinstance(obj, dict):
            raise FedlabError(f"{where}: a record must be a JSON object, got {type(obj).__name__}")
        missing = [k for k in _REQUIRED if k not in obj]
        if missing:
            raise FedlabError(
                f"{where}: record misses keys {missing}; required: {list(_REQUIRED)} "
                "(see docs/trace-format.md)"
            )
        if obj["kind"] not in KINDS:
            raise FedlabError(f"{where}: kind {obj['kind']!r} is not one of {list(KINDS)}")
        model = obj["model"]
        if not isinstance(model, dict) or not isinstance(model.get("name"), str):
            raise FedlabError(
                f'{where}: model {model!r} must be {{"name": str, "kwargs": {{...}}}}'
            )
        shape = obj["image_shape"]
        if not (
            isinstance(shape, list)
            and len(shape) == 3
            and all(isinstance(s, int) and s > 0 for s in shape)
        ):
            raise FedlabError(f"{where}: image_shape {shape!r} must be [channels, height, width]")
        for key in ("round", "client", "batch_size", "num_classes", "local_steps"):
            value = obj.get(key, 1)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise FedlabError(f"{where}: {key} {value!r} must be a non-negative integer")
        known = set(_REQUIRED) | {
            "lr",
            "local_steps",
            "ground_truth",
            "dp",
            "mean",
            "std",
            "param_names",
        }
        return cls(
            round=obj["round"],
            client=obj["client"],
            kind=obj["kind"],
            received=obj["received"],
            global_=obj["global"],
            model={"name": model["name"], "kwargs": dict(model.get("kwargs") or {})},
            batch_size=obj["batch_size"],
            image_shape=tuple(shape),  # type: ignore[arg-type]
            num_classes=obj["num_classes"],
            lr=obj.get("lr"),
            local_steps=obj.get("local_steps", 1),
            ground_truth=obj.get("ground_truth"),
            dp=obj.get("dp"),
            mean=obj.get("mean"),
            std=obj.get("std"),
            param_names=obj.get("param_names"),
            extra={k: v for k, v in obj.items() if k not in known},
        )


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

    Raises
    ------
    FedlabError
        If the manifest is missing, not JSON, of another format or of an unknown major version,
        or a record is malformed.
    """

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        self.path = path.parent if path.name == MANIFEST else path
        manifest = self.path / MANIFEST
        if not manifest.is_file():
            raise FedlabError(
                f"no {MANIFEST} in trace folder {str(self.path)!r}; give the folder a recorded "
                "run wrote (e.g. <run>/traces) or write one as docs/trace-format.md says"
            )
        try:
            obj = json.loads(manifest.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FedlabError(f"{manifest}: not valid JSON ({exc}); rewrite the manifest") from None
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise FedlabError(f"{manifest}: 'format' must be {FORMAT!r}; is this a fedlab trace?")
        version = str(obj.get("format_version", ""))
        if version.split(".")[0] != FORMAT_VERSION.split(".")[0]:
            raise FedlabError(
                f"{manifest}: format_version {version!r} is not supported; this fedlab reads "
                f"{FORMAT_VERSION.split('.')[0]}.x; upgrade fedlab or rewrite the trace"
            )
        records = obj.get("records")
        if not isinstance(records, list):
            raise FedlabError(f"{manifest}: 'records' must be a list of record objects")
        self.version = version
        self.records = [
            TraceRecord.from_json(r, f"{manifest} record {i}") for i, r in enumerate(records)
        ]

    def select(
        self, rounds: list[int] | None = None, clients: list[int] | None = None
    ) -> list[TraceRecord]:
        """Records of the given rounds and clients (all when None), in manifest order."""
        return [
            r
            for r in self.records
            if (rounds is None or r.round in rounds) and (clients is None or r.client in clients)
        ]

    def load(self, record: TraceRecord, rel: str) -> dict[str, torch.Tensor]:
        """Load one safetensors file of ``record``, refusing missing, corrupt or non-finite data."""
        file = self.path / rel
        where = f"{record.target_id}: {rel}"
        if not file.is_file():
            raise FedlabError(f"{where} does not exist; the trace is incomplete, re-record it")
        try:
            tensors = load_file(file)
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise FedlabError(f"{where} is not a readable safetensors file ({exc})") from None
        for name, t in tensors.items():
            if t.is_floating_point() and not torch.isfinite(t).all():
                raise FedlabError(f"{where}: tensor {name!r} contains NaN or Inf")
        return tensors

    def attack_input(self, record: TraceRecord):
        """The :class:`attacks.base.AttackInput` of ``record`` (model built to check shapes)."""
        from attacks.base import AttackInput, ModelSpec

        spec = ModelSpec(record.model["name"], record.model["kwargs"])
        model = spec.build()
        names = record.param_names or [n for n, _ in model.named_parameters()]
        shapes = [tuple(p.shape) for _, p in model.named_parameters()]
        if len(names) != len(shapes):
            raise FedlabError(
                f"{record.target_id}: param_names lists {len(names)} names but model "
                f"{spec.name!r} has {len(shapes)} parameters"
            )
        tensors = {}
        for what, rel in (("global", record.global_), ("received", record.received)):
            data = self.load(record, rel)
            ordered = []
            for name, shape in zip(names, shapes, strict=True):
                if name not in data:
                    raise FedlabError(
                        f"{record.target_id}: {rel} has no tensor {name!r} (has "
                        f"{sorted(data)[:6]}...); names must match the model's parameters"
                    )
                if tuple(data[name].shape) != shape:
                    raise FedlabError(
                        f"{record.target_id}: {rel} tensor {name!r} has shape "
                        f"{list(data[name].shape)} but model {spec.name!r} expects {list(shape)}"
                    )
                ordered.append(data[name].float())
            tensors[what] = ordered
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
        data = self.load(record, record.ground_truth)
        if "images" not in data or "labels" not in data:
            raise FedlabError(
                f"{record.target_id}: {record.ground_truth} must hold 'images' and 'labels', "
                f"has {sorted(data)}"
            )
        images, labels = data["images"].float(), data["labels"].long()
        want = (record.batch_size, *record.image_shape)
        if tuple(images.shape) != want or tuple(labels.shape) != (record.batch_size,):
            raise FedlabError(
                f"{record.target_id}: ground truth images {list(images.shape)} / labels "
                f"{list(labels.shape)} disagree with the manifest's {list(want)} / "
                f"[{record.batch_size}]"
            )
        return images, labels
