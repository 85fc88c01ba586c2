"""Client state that lives across rounds, kept per client on disk so an interrupted run resumes.

Under Ray only the client side can read a client's ``context.state`` (the SSL clients' private
models, the Opacus accountant, the local-DP release counter), so the client side saves it
itself: after each training reply, :func:`client_state_mod` writes the client's whole
``context.state`` to ``RUN_DIR/client-state/<client id>/round-<r>.safetensors`` (atomically;
arrays as tensors, config and metric records as JSON metadata: nothing in it is code). A client
whose ``context.state`` is empty, as every client is in a freshly started process, loads its
newest state from before the round it is asked to work in.

Files are per client id, not per worker or node, and a client keeps at most two (the newest,
and the newest from an earlier round, which is what a resume can need), so the store serves a
population far larger than the number of simulated workers: a client costs disk only once it
has trained.

Privacy ledgers. Records whose names start with ``dp-`` (``dp-sgd-accountant``, ``dp-local``)
count what a client has released. When a run resumes after round k, a client that had already
replied in round k + 1 (in flight when the run stopped) rolls its state back to round k, but
keeps its ledgers from round k + 1: that reply reached the server, so it counts as released
(docs/dp.md, "Resuming").
"""

from __future__ import annotations

import base64
import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict

from fedlab.atomic import atomic_write_bytes
from fedlab.errors import FedlabError
from fedlab.flower_compat import Mod
from fedlab.release import CLIENT_PRIVATE_DIR, private_log

log = logging.getLogger("fedlab")

STATE_DIR = CLIENT_PRIVATE_DIR
LEDGER_PREFIX = "dp-"
FORMAT = "fedlab-client-state/1"
_FILE = re.compile(r"round-(\d{6})\.safetensors")
_README = """\
Client-private: do NOT publish anything in this folder.

Each sub-folder holds one client's state between rounds (private models, privacy ledgers), kept
so that `flower-simulation --resume` can continue the run. In a real federation it would never
leave the client.
"""


def _encode_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode()}
    if isinstance(value, list):
        return [_encode_value(v) for v in value]
    return value


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict) and "__bytes__" in value:
        return base64.b64decode(value["__bytes__"])
    if isinstance(value, list):
        return [_decode_value(v) for v in value]
    return value


def record_dict_bytes(records: RecordDict, meta: dict[str, Any]) -> bytes:
    """A RecordDict as one safetensors file: array records as tensors, the rest as JSON."""
    from safetensors.numpy import save

    tensors: dict[str, np.ndarray] = {}
    entries = []
    for name, record in records.items():
        if isinstance(record, ArrayRecord):
            keys = []
            for key, array in record.items():
                tensors[f"{len(entries)}/{len(keys)}"] = np.ascontiguousarray(array.numpy())
                keys.append(key)
            entries.append({"name": name, "kind": "array", "keys": keys})
        else:
            kind = "config" if isinstance(record, ConfigRecord) else "metric"
            values = {k: _encode_value(v) for k, v in record.items()}
            entries.append({"name": name, "kind": kind, "values": values})
    document = {"format": FORMAT, **meta, "records": entries}
    return save(tensors, metadata={"fedlab-client-state": json.dumps(document)})


def read_record_dict(path: Path) -> tuple[RecordDict, dict[str, Any]]:
    """Load :func:`record_dict_bytes`' file; a one-line error names the file if unusable."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            document = json.loads((f.metadata() or {})["fedlab-client-state"])
            if document.get("format") != FORMAT:
                raise ValueError(f"format {document.get('format')!r}, expected {FORMAT!r}")
            records = RecordDict()
            for i, entry in enumerate(document["records"]):
                if entry["kind"] == "array":
                    records[entry["name"]] = ArrayRecord(
                        {k: Array(f.get_tensor(f"{i}/{j}")) for j, k in enumerate(entry["keys"])}
                    )
                else:
                    cls = ConfigRecord if entry["kind"] == "config" else MetricRecord
                    values = {k: _decode_value(v) for k, v in entry["values"].items()}
                    records[entry["name"]] = cls(values)
    except Exception as exc:  # noqa: BLE001 (any decoding failure is the same user error)
        raise FedlabError(
            f"client state {path} is unreadable ({exc!s:.200}); delete it to let that client "
            "start afresh, or start the run again"
        ) from None
    return records, {k: v for k, v in document.items() if k != "records"}


class ClientStateStore:
    """Per-client state files under ``root`` (``RUN_DIR/client-state``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _folder(self, client: int) -> Path:
        return self.root / str(int(client))

    def rounds(self, client: int) -> list[int]:
        """The rounds this client has a state file for, ascending."""
        folder = self._folder(client)
        if not folder.is_dir():
            return []
        return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _FILE.fullmatch(p.name)))

    def path(self, client: int, server_round: int) -> Path:
        return self._folder(client) / f"round-{server_round:06d}.safetensors"

    def save(self, client: int, server_round: int, state: RecordDict) -> None:
        """Write the state after ``server_round``; keep it and the newest from before it."""
        if not self.root.is_dir():
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / "README.txt").write_text(_README)
        data = record_dict_bytes(state, {"client": int(client), "round": int(server_round)})
        atomic_write_bytes(self.path(client, server_round), data)
        earlier = [r for r in self.rounds(client) if r < server_round]
        for old in earlier[:-1]:
            self.path(client, old).unlink(missing_ok=True)

    def load(self, client: int, before_round: int) -> RecordDict | None:
        """The newest state saved in a round before ``before_round``, or None."""
        earlier = [r for r in self.rounds(client) if r < before_round]
        if not earlier:
            return None
        return read_record_dict(self.path(client, earlier[-1]))[0]

    def roll_back(self, last_round: int) -> int:
        """Forget the rounds after ``last_round`` (a resume), keeping their privacy ledgers.

        A client with a state from a later round gets, as its state after ``last_round``, its
        newest state up to that round with the ledgers (``dp-*`` records) of the later one.
        Returns how many clients were rolled back.
        """
        if not self.root.is_dir():
            return 0
        rolled = 0
        for folder in self.root.iterdir():
            if not (folder.is_dir() and folder.name.isdigit()):
                continue
            client = int(folder.name)
            rounds = self.rounds(client)
            later = [r for r in rounds if r > last_round]
            if not later:
                continue
            newest, _ = read_record_dict(self.path(client, later[-1]))
            kept = self.load(client, last_round + 1) or RecordDict()
            for name, record in newest.items():
                if name.startswith(LEDGER_PREFIX):
                    kept[name] = record
            self.save(client, last_round, kept)
            for r in later:
                self.path(client, r).unlink(missing_ok=True)
            rolled += 1
        return rolled


def roll_back_client_state(run_path: str | Path, last_round: int) -> None:
    """Before a resumed run's first round: see :meth:`ClientStateStore.roll_back`."""
    rolled = ClientStateStore(Path(run_path) / STATE_DIR).roll_back(last_round)
    if rolled:
        # How many replied is an exact count: server-private under a release policy.
        private_log.info("%d client(s) had replied in round %d before the stop: their states roll "
                 "back to round %d, their privacy ledgers count that reply", rolled,
                 last_round + 1, last_round)  # fmt: skip


def client_state_bytes(run_path: str | Path) -> int:
    """Bytes of every client-state file of a run folder."""
    root = Path(run_path) / STATE_DIR
    return sum(p.stat().st_size for p in root.rglob("*.safetensors")) if root.is_dir() else 0


def server_round_of(msg: Message) -> int:
    """The round a message belongs to: Flower's strategies put ``server-round`` in its config."""
    for record in msg.content.config_records.values():
        if "server-round" in record:
            return int(record["server-round"])
    return 0


def client_state_mod(out_dir: str, client_of: Any) -> Mod:
    """The outermost client mod: load a fresh client's state, save it after training.

    Parameters
    ----------
    out_dir : str
        The run folder (the state goes to ``client-state/`` in it).
    client_of : callable
        ``context -> client id`` (the partition id in fedlab's apps).
    """
    store = ClientStateStore(Path(out_dir) / STATE_DIR)

    def mod(msg: Message, context: Context, call_next: Any) -> Message:
        kind = msg.metadata.message_type
        if kind not in ("train", "evaluate"):
            return call_next(msg, context)
        client = int(client_of(context))
        server_round = server_round_of(msg)
        if not context.state and server_round:
            saved = store.load(client, before_round=server_round)
            if saved is not None:
                for name, record in saved.items():
                    context.state[name] = record
        reply = call_next(msg, context)
        if kind == "train" and server_round and context.state and not reply.has_error():
            store.save(client, server_round, context.state)
        return reply

    return mod
