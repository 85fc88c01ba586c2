"""A client population decoupled from the simulated workers.

Flower's simulation engine costs time per round in proportion to its virtual nodes, and a node
holds one data partition. With ``population = N`` the server instead samples client ids from
0..N-1 (so every strategy, and the DP accountant, sees a population of N) and
:class:`PopulationGrid` hands each round's sampled ids to the few worker nodes that exist,
several ids per worker when the cohort is larger than the pool: one message per worker carries
the ids (``virtual-clients``), :func:`population_mod` on the worker runs the app's handlers once
per id (each call in a context whose ``partition-id`` is the client's id), and the grid turns the
bundled reply back into one reply per id, as if each client had its own node. A client's data
comes from its id, and its state between rounds from the per-client store on disk
(:mod:`fedlab.client_state`), never from the worker's context.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flwr.app import ConfigRecord, Context, Error, Message, RecordDict

from fedlab.errors import FedlabError

VIRTUAL_CLIENTS = "virtual-clients"  # a worker's bundle: client-ids, population
_ERROR = "virtual-error"  # a failed client inside a bundled reply: code, reason


class PopulationGrid:
    """A grid whose node ids are the client ids 0..N-1, served by the real grid's workers.

    Parameters
    ----------
    grid : Grid
        The real grid (its nodes are the worker pool, in a fixed order).
    population : int
        N, the number of clients.
    """

    def __init__(self, grid: Any, population: int) -> None:
        if population < 1:
            raise FedlabError(f"population must be >= 1, got {population}")
        self._grid = grid
        self.population = population
        self.workers = list(grid.get_node_ids())
        if not self.workers:
            raise FedlabError("no worker node connected; start at least one (num-supernodes)")

    def get_node_ids(self) -> list[int]:
        return list(range(self.population))

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> list[Message]:
        messages = list(messages)
        groups: list[list[Message]] = [[] for _ in self.workers]
        for i, msg in enumerate(messages):
            if not 0 <= msg.metadata.dst_node_id < self.population:
                raise FedlabError(
                    f"a message for client {msg.metadata.dst_node_id}, outside the population "
                    f"0..{self.population - 1}"
                )
            groups[i % len(self.workers)].append(msg)
        bundles = {}
        for worker, group in zip(self.workers, groups, strict=True):
            if group:
                bundles[worker] = group
        sent = [self._bundle(worker, group) for worker, group in bundles.items()]
        replies = self._grid.send_and_receive(sent, timeout=timeout) if sent else []
        out: list[Message] = []
        answered = set()
        for reply in replies:
            worker = reply.metadata.src_node_id
            answered.add(worker)
            out.extend(_unbundle(reply, bundles[worker]))
        for worker, group in bundles.items():
            if worker not in answered:  # timed out: each of its clients failed
                out.extend(Message(Error(0, "worker did not reply"), reply_to=m) for m in group)
        return out

    def _bundle(self, worker: int, group: list[Message]) -> Message:
        content = group[0].content
        if any(m.content is not content or m.metadata.message_type !=
               group[0].metadata.message_type for m in group):  # fmt: skip
            raise FedlabError(
                "a population run sends every sampled client the same message in a round; this "
                "strategy built a message per client, which population mode does not support"
            )
        bundle = RecordDict(dict(content.items()))
        ids = [int(m.metadata.dst_node_id) for m in group]
        bundle[VIRTUAL_CLIENTS] = ConfigRecord({"client-ids": ids, "population": self.population})
        return Message(bundle, message_type=group[0].metadata.message_type, dst_node_id=worker)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)


def _unbundle(reply: Message, group: list[Message]) -> list[Message]:
    if reply.has_error():
        return [Message(reply.error, reply_to=m) for m in group]
    parts: list[RecordDict] = [RecordDict() for _ in group]
    for name, record in reply.content.items():
        index, _, inner = name.partition("/")
        parts[int(index)][inner] = record
    out = []
    for msg, content in zip(group, parts, strict=True):
        if _ERROR in content:
            error = content[_ERROR]
            out.append(Message(Error(int(error["code"]), str(error["reason"])), reply_to=msg))
        else:
            out.append(Message(content, reply_to=msg))
    return out


def population_mod(msg: Message, context: Context, call_next: Any) -> Message:
    """The outermost client mod: run the handlers once per client id a bundle names.

    Each call gets a context of its own: the worker's, with the client's id as its
    ``partition-id`` (and the population as ``num-partitions``), so every handler and mod reads
    the client it serves as usual, and an empty ``state``, which the client-state mod fills from
    that client's files. A worker never carries one client's state into another's.
    """
    record = msg.content.config_records.get(VIRTUAL_CLIENTS)
    if record is None:
        return call_next(msg, context)
    base = {k: v for k, v in msg.content.items() if k != VIRTUAL_CLIENTS}
    out = RecordDict()
    for index, client in enumerate(record["client-ids"]):
        call = Message(RecordDict(dict(base)), message_type=msg.metadata.message_type,
                       dst_node_id=msg.metadata.dst_node_id)  # fmt: skip
        node_config = {**context.node_config, "partition-id": int(client),
                       "num-partitions": int(record["population"])}  # fmt: skip
        call_context = Context(run_id=context.run_id, node_id=context.node_id,
                               node_config=node_config, state=RecordDict(),
                               run_config=context.run_config)  # fmt: skip
        try:
            reply = call_next(call, call_context)
        except Exception as exc:  # noqa: BLE001 (one client's failure is data, as under Flower)
            reply = Message(Error(0, f"{type(exc).__name__}: {exc}"), reply_to=call)
        if reply.has_error():
            out[f"{index}/{_ERROR}"] = ConfigRecord(
                {"code": int(reply.error.code), "reason": str(reply.error.reason)}
            )
            continue
        for name, part in reply.content.items():
            out[f"{index}/{name}"] = part
    return Message(out, reply_to=msg)
