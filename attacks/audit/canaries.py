"""Canary clients and what the server sees of them (Andrew et al., ICLR 2024).

A canary client ignores its data: whenever it is sampled it returns the global model plus one
fixed random direction scaled to the clip norm (:class:`CanaryMod`, the innermost client mod, so
the app's own DP mods clip and noise it like any update). Canaries are ordinary partitions of
the population, sampled by the app's own sampler, so the accountant's sampling covers them.

:class:`ObservingGrid` is :class:`fedlab.inprocess.InProcessGrid` that also keeps what a server
sees: the global model it sends each round and every canary's individual reply. From those,
:func:`canary_statistics` computes the three statistics of the audit:

* ``final``: cosine of each canary's direction with the final model delta (final-model threat
  model);
* ``all-iterates``: the largest cosine over rounds with that round's aggregate delta;
* ``per-release``: the cosine of each individual reply of a canary with its direction (what a
  server sees before any central noise; under local DP this is the mechanism's own release).

Null statistics are the same cosines with directions never inserted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fedlab.strategies.dp_updates import apply_update, float_arrays
from flwr.app import Context, Message

from fedlab.appspec import AppSpec
from fedlab.client import partition_of
from fedlab.flower_compat import ClientAppCallable
from fedlab.inprocess import InProcessGrid
from fedlab.key_groups import RunConfig

ARRAYS = "arrays"
NODE_OFFSET = 1000  # InProcessGrid: node i holds partition i and has id 1000 + i


def _seed(*parts: Any) -> int:
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def flat(update: dict[str, np.ndarray]) -> np.ndarray:
    """One vector of the float arrays, in sorted key order."""
    return np.concatenate([np.ravel(update[k]) for k in sorted(update)]) if update else np.zeros(0)


def direction(dim: int, *parts: Any) -> np.ndarray:
    """A unit vector uniform on the sphere of ``dim`` dimensions, fixed by ``parts``."""
    v = np.random.default_rng(_seed("canary", *parts)).standard_normal(dim)
    return v / np.linalg.norm(v)


def _unflatten(vector: np.ndarray, like: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out, start = {}, 0
    for key in sorted(like):
        size = like[key].size
        out[key] = vector[start : start + size].reshape(like[key].shape)
        start += size
    return out


def _is_train(msg: Message) -> bool:
    return msg.metadata.message_type.split(".")[0] == "train"


@dataclass(frozen=True)
class CanaryMod:
    """Innermost client mod: a canary partition returns ``global + norm * u_p``.

    The handler still runs (so the reply carries everything the app's mods expect); only the
    float arrays are replaced.

    Parameters
    ----------
    canaries : frozenset of int
        Partition ids of the canary clients.
    norm : float
        Length of every canary update: the clip norm, so clipping leaves it whole.
    seed : int
        Fixes the canary directions.
    """

    canaries: frozenset[int]
    norm: float
    seed: int

    def __call__(self, msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        pid, _ = partition_of(context)
        if not _is_train(msg) or pid not in self.canaries:
            return call_next(msg, context)
        reply = call_next(msg, context)
        if reply.has_error():
            return reply
        sent = float_arrays(msg.content[ARRAYS])
        u = direction(flat(sent).size, self.seed, pid)
        reply.content[ARRAYS] = apply_update(
            reply.content[ARRAYS], sent, _unflatten(self.norm * u, sent)
        )
        return reply


def with_canaries(spec: AppSpec, mod: CanaryMod) -> AppSpec:
    """``spec`` whose clients also run ``mod``, innermost (after the app's own mods)."""
    from dataclasses import replace

    own = spec.client_mods

    def mods(config: RunConfig) -> list:
        return [*(own(config) if own else []), mod]

    return replace(spec, client_mods=mods)


@dataclass
class Observations:
    """What the server saw: global vectors sent per round, canary replies, who was sampled."""

    sent: dict[int, np.ndarray] = field(default_factory=dict)
    releases: list[tuple[int, int, np.ndarray]] = field(default_factory=list)  # round, pid, delta
    sampled: dict[int, list[int]] = field(default_factory=dict)
    arrays: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)  # kept rounds only


class ObservingGrid(InProcessGrid):
    """:class:`InProcessGrid` that also records the server's view of the canaries.

    ``keep``: rounds whose global arrays are kept whole (to rebuild a released aggregate).
    """

    def __init__(
        self,
        spec: AppSpec,
        config: RunConfig,
        num_nodes: int,
        canaries: Iterable[int],
        keep: Iterable[int] = (),
    ) -> None:
        super().__init__(spec, config, num_nodes)
        self.canaries = set(canaries)
        self.keep = set(keep)
        self.seen = Observations()

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> list[Message]:
        messages = list(messages)
        train = [m for m in messages if _is_train(m)]
        sent: dict[int, dict[str, np.ndarray]] = {}
        for msg in train:
            rnd = _round_of(msg, default=max(self.seen.sent, default=0) + 1)
            if rnd not in self.seen.sent and ARRAYS in msg.content:
                self.seen.sent[rnd] = flat(float_arrays(msg.content[ARRAYS]))
                if rnd in self.keep:
                    self.seen.arrays[rnd] = float_arrays(msg.content[ARRAYS])
            self.seen.sampled.setdefault(rnd, []).append(msg.metadata.dst_node_id - NODE_OFFSET)
            sent[msg.metadata.dst_node_id] = float_arrays(msg.content[ARRAYS])
        replies = super().send_and_receive(messages, timeout=timeout)
        for msg, reply in zip(messages, replies, strict=True):  # one reply per message, in order
            pid = msg.metadata.dst_node_id - NODE_OFFSET
            if not _is_train(msg) or pid not in self.canaries:
                continue
            if reply.has_error() or ARRAYS not in reply.content:
                continue
            got = flat(float_arrays(reply.content[ARRAYS]))
            base = flat(sent[msg.metadata.dst_node_id])
            self.seen.releases.append((_round_of(msg, default=0), pid, got - base))
        return replies


def _round_of(msg: Message, default: int) -> int:
    """The ``server-round`` a Flower strategy writes into the train ConfigRecord."""
    for record in msg.content.config_records.values():
        if "server-round" in record:
            return int(record["server-round"])
    return default


def _unit_rows(m: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)


def canary_statistics(
    seen: Observations, final: np.ndarray, canaries: list[int], seed: int, num_null: int
) -> dict[str, dict[str, list[float]]]:
    """Observed and null cosines of the three threat models (see the module docstring).

    Parameters
    ----------
    seen : Observations
    final : np.ndarray
        The final global model as one vector (same order as :func:`flat`).
    canaries : list of int
        Inserted canary partitions.
    seed : int
        The audit's canary seed.
    num_null : int
        Directions never inserted.
    """
    rounds = sorted(seen.sent)
    initial = seen.sent[rounds[0]]
    dim = initial.size
    inserted = np.stack([direction(dim, seed, p) for p in canaries])
    null = np.stack([direction(dim, seed, "null", j) for j in range(num_null)])
    ends = [seen.sent[r] for r in rounds[1:]] + [final]
    deltas = _unit_rows(np.stack([end - seen.sent[r] for r, end in zip(rounds, ends, strict=True)]))
    total = _unit_rows((final - initial)[None, :])[0]
    index = {p: i for i, p in enumerate(canaries)}
    if seen.releases:
        replies = _unit_rows(np.stack([delta for _, _, delta in seen.releases]))
        per_obs = [
            float(replies[k] @ inserted[index[p]]) for k, (_, p, _) in enumerate(seen.releases)
        ]
        per_null = (replies @ null.T).ravel().tolist()
    else:
        per_obs, per_null = [], []
    return {
        "final": {"observed": (inserted @ total).tolist(), "null": (null @ total).tolist()},
        "all-iterates": {
            "observed": (deltas @ inserted.T).max(0).tolist(),
            "null": (deltas @ null.T).max(0).tolist(),
        },
        "per-release": {"observed": per_obs, "null": per_null},
    }
