"""Round checkpoints: everything the next round depends on, written after every round.

A checkpoint is one safetensors file, ``server-private/checkpoints/round-<k>.safetensors``: its
tensors hold the arrays (the global model, the strategy's own arrays such as FedAdam's moments,
the numpy and torch random states) and its metadata one JSON document (the round, the released
and server-private round records, the strategy's other state such as the DP accountant's
composition, Python's random state, the seconds spent). Nothing in it is code: loading one never
imports or executes anything.

It is written atomically *before* the round is published (``history.json``,
``model.safetensors``), so everything a run folder has released is in some checkpoint: a
resumed run never draws again a round it already published.

Strategy state. Every strategy of the chain (a wrapper's ``inner``, recursively) is asked for
its state: a strategy of ours defines ``checkpoint_state()`` and ``restore_state(state)``;
Flower's FedAvgM and FedOpt family (FedAdam, FedYogi, FedAdagrad) are read through
:data:`FLOWER_STATE`. A researcher's strategy that keeps state across rounds defines the two
methods; one that does not is resumed as it is built.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord
from flwr.serverapp.strategy import FedAvgM, Strategy
from flwr.serverapp.strategy.fedopt import FedOpt

from fedlab.atomic import atomic_write_bytes
from fedlab.errors import FedlabError
from fedlab.release import private_dir

log = logging.getLogger("fedlab")

FORMAT = "fedlab-checkpoint/1"
META_KEY = "fedlab-checkpoint"
CHECKPOINT_DIR = "checkpoints"
#: Flower's stateful strategies and the attributes that carry their state across rounds.
FLOWER_STATE: dict[type, tuple[str, ...]] = {
    FedOpt: ("m_t", "v_t"),
    FedAvgM: ("current_arrays", "momentum_vector"),
}


def checkpoint_dir(run_path: str | Path) -> Path:
    """Where a run folder's checkpoints live (server-private)."""
    return Path(run_path) / "server-private" / CHECKPOINT_DIR


def checkpoint_path(run_path: str | Path, server_round: int) -> Path:
    return checkpoint_dir(run_path) / f"round-{server_round:06d}.safetensors"


# -- values <-> JSON + arrays ------------------------------------------------------------------
class _Packer:
    """Turns nested state into JSON, moving every array into ``tensors`` under a short name."""

    def __init__(self) -> None:
        self.tensors: dict[str, np.ndarray] = {}

    def array(self, value: np.ndarray) -> dict[str, str]:
        name = f"a{len(self.tensors)}"
        self.tensors[name] = np.ascontiguousarray(value)
        return {"__array__": name}

    def pack(self, value: Any) -> Any:
        if isinstance(value, np.ndarray):
            return self.array(value)
        if isinstance(value, torch.Tensor):
            return {"__tensor__": self.array(value.detach().cpu().numpy())["__array__"]}
        if isinstance(value, ArrayRecord):
            return {"__arrayrecord__": [[k, self.array(a.numpy())["__array__"]]
                                        for k, a in value.items()]}  # fmt: skip
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                raise FedlabError(f"checkpoint state has non-string dict keys: {value!r:.80}")
            return {k: self.pack(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.pack(v) for v in value]
        if value is None or isinstance(value, bool | int | float | str):
            return value
        raise FedlabError(
            f"checkpoint state holds a {type(value).__name__}, which a checkpoint cannot store "
            "(arrays, ArrayRecords, numbers, strings, lists and dicts only)"
        )


def _unpack(value: Any, tensors: Mapping[str, np.ndarray]) -> Any:
    if isinstance(value, dict):
        if "__array__" in value:
            return np.array(tensors[value["__array__"]])
        if "__tensor__" in value:
            return torch.from_numpy(np.array(tensors[value["__tensor__"]]))
        if "__arrayrecord__" in value:
            pairs = value["__arrayrecord__"]
            return ArrayRecord({k: Array(np.array(tensors[n])) for k, n in pairs})
        return {k: _unpack(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_unpack(v, tensors) for v in value]
    return value


# -- strategy state -----------------------------------------------------------------------------
def strategy_chain(strategy: Strategy) -> list[Strategy]:
    """The strategy and every strategy it wraps (``inner``), outermost first."""
    chain = [strategy]
    while (inner := vars(chain[-1]).get("inner")) is not None:
        chain.append(inner)
    return chain


def strategy_state(strategy: Strategy) -> list[dict[str, Any]]:
    """``[{"class": name, "state": ...}]`` for each strategy of the chain."""
    out = []
    for s in strategy_chain(strategy):
        state = None
        if callable(getattr(type(s), "checkpoint_state", None)):
            state = s.checkpoint_state()  # type: ignore[attr-defined]
        else:
            for cls, attributes in FLOWER_STATE.items():
                if isinstance(s, cls):
                    state = {a: getattr(s, a) for a in attributes}
        out.append({"class": type(s).__name__, "state": state})
    return out


def restore_strategy_state(strategy: Strategy, saved: list[dict[str, Any]], source: Path) -> None:
    """Load :func:`strategy_state`'s output (unpacked) back into an identically built chain."""
    chain = strategy_chain(strategy)
    built = [type(s).__name__ for s in chain]
    written = [entry["class"] for entry in saved]
    if built != written:
        raise FedlabError(
            f"checkpoint {source} was written by the strategy chain {' > '.join(written)}, but "
            f"this run builds {' > '.join(built)}; resume with the run's own config and app"
        )
    for s, entry in zip(chain, saved, strict=True):
        state = entry["state"]
        if state is None:
            continue
        try:
            if callable(getattr(type(s), "restore_state", None)):
                s.restore_state(state)  # type: ignore[attr-defined]
                continue
            # Only the attributes FLOWER_STATE names: the file never chooses what is set.
            attributes = next(a for cls, a in FLOWER_STATE.items() if isinstance(s, cls))
            for name in attributes:
                setattr(s, name, state[name])
        except (KeyError, TypeError, ValueError, StopIteration) as exc:
            raise FedlabError(
                f"checkpoint {source} holds no usable state for {type(s).__name__} ({exc!r:.100}); "
                "resume from an earlier checkpoint by deleting this file, or start the run again"
            ) from None


# -- random streams ----------------------------------------------------------------------------
def random_state() -> dict[str, Any]:
    """Python's, numpy's legacy and torch's global random states (what seed_everything seeds)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    return {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys, int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }


def restore_random_state(state: Mapping[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8))


# -- files --------------------------------------------------------------------------------------
@dataclass
class Checkpoint:
    """A loaded checkpoint: the round it ends, the global arrays, and the rest of its state."""

    path: Path
    round: int
    arrays: ArrayRecord
    document: dict[str, Any]

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.document["history"]

    @property
    def private_history(self) -> list[dict[str, Any]]:
        return self.document["private-history"]


def write_checkpoint(path: Path, document: dict[str, Any]) -> int:
    """Write ``document`` (arrays anywhere inside) atomically to ``path``; returns its bytes."""
    from safetensors.numpy import save

    packer = _Packer()
    packed = packer.pack({**document, "format": FORMAT})
    data = save(packer.tensors, metadata={META_KEY: json.dumps(packed)})
    atomic_write_bytes(path, data)
    return len(data)


def read_checkpoint(path: Path) -> Checkpoint:
    """Load and check one checkpoint file; a one-line error names the file if it is unusable."""
    from safetensors import safe_open

    fix = "resume from an earlier checkpoint by deleting this file, or start the run again"
    if not path.is_file():
        raise FedlabError(f"checkpoint {path} is missing; {fix}")
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
        document = _unpack(json.loads(meta[META_KEY]), tensors)
        if document.get("format") != FORMAT:
            raise ValueError(f"format {document.get('format')!r}, expected {FORMAT!r}")
        server_round = int(document["round"])
        arrays = document["arrays"]
        if not isinstance(arrays, ArrayRecord) or not isinstance(document["history"], list):
            raise ValueError("no global arrays or history")
    except Exception as exc:  # noqa: BLE001 (any decoding failure is the same user error)
        raise FedlabError(f"checkpoint {path} is unreadable ({exc!s:.200}); {fix}") from None
    if path.name != checkpoint_path(path.parent, server_round).name:
        raise FedlabError(f"checkpoint {path} holds round {server_round}, not its name's; {fix}")
    return Checkpoint(path, server_round, arrays, document)


def latest_checkpoint(run_path: str | Path) -> Checkpoint:
    """The run folder's last checkpoint (one-line error if there is none or it is unusable)."""
    folder = checkpoint_dir(run_path)
    files = sorted(folder.glob("round-*.safetensors")) if folder.is_dir() else []
    if not files:
        raise FedlabError(
            f"run folder {run_path} has no checkpoint (no {folder}/round-*.safetensors): it "
            "finished no round, or was written by a fedlab without checkpoints; start it again"
        )
    return read_checkpoint(files[-1])


def prune_checkpoints(run_path: str | Path, keep: int = 1) -> int:
    """Delete all but the ``keep`` most recent checkpoints; returns how many were deleted."""
    files = sorted(checkpoint_dir(run_path).glob("round-*.safetensors"))
    old = files[:-keep] if keep else files
    for file in old:
        file.unlink(missing_ok=True)
    return len(old)


class Checkpointer:
    """Writes a run's checkpoint after each round and keeps its cost.

    Parameters
    ----------
    run_path : Path
    strategy : Strategy
        The whole chain the rounds run (the round recorder's ``inner``).
    static : dict
        Entries written unchanged into every checkpoint (app name, planned rounds, versions).
    seconds_before : float
        Seconds the run spent before this session (a resumed run).
    """

    def __init__(
        self, run_path: Path, strategy: Strategy, static: dict[str, Any], seconds_before: float
    ) -> None:
        self.run_path = Path(run_path)
        self.strategy = strategy
        self.static = static
        self.seconds_before = seconds_before
        self.started = time.perf_counter()
        self.seconds: list[float] = []
        self.bytes = 0
        private_dir(self.run_path)

    def elapsed(self) -> float:
        """Seconds the run has taken so far, earlier sessions included."""
        return self.seconds_before + time.perf_counter() - self.started

    def write(
        self,
        server_round: int,
        arrays: ArrayRecord,
        history: list[dict[str, Any]],
        private_history: list[dict[str, Any]],
    ) -> None:
        """Checkpoint the end of ``server_round``; keep it and the one before."""
        began = time.perf_counter()
        document = {
            **self.static,
            "round": server_round,
            "arrays": arrays,
            "history": history,
            "private-history": private_history,
            "strategy": strategy_state(self.strategy),
            "random": random_state(),
            "seconds": round(self.elapsed(), 3),
        }
        self.bytes = write_checkpoint(checkpoint_path(self.run_path, server_round), document)
        prune_checkpoints(self.run_path, keep=2)
        self.seconds.append(time.perf_counter() - began)

    def cost(self) -> dict[str, Any]:
        """What checkpointing cost this session: seconds per round and the last file's bytes."""
        if not self.seconds:
            return {"rounds": 0}
        return {
            "rounds": len(self.seconds),
            "seconds-per-round-mean": round(float(np.mean(self.seconds)), 4),
            "seconds-per-round-max": round(float(np.max(self.seconds)), 4),
            "bytes": self.bytes,
        }


def restore(checkpoint: Checkpoint, strategy: Strategy) -> Callable[[], None]:
    """Load the strategy's state now; return the call that restores the random streams, to be
    made right before the first resumed round (building the run may draw from them)."""
    restore_strategy_state(strategy, checkpoint.document["strategy"], checkpoint.path)
    return lambda: restore_random_state(checkpoint.document["random"])
