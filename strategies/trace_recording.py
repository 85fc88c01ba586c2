"""A Message-API strategy wrapper that records gradient traces of chosen rounds and clients.

``TraceRecording(inner, ...)`` delegates every method to ``inner`` and in addition:

* ``configure_train`` copies the train ConfigRecord and sets, in every round,
  ``fedsgd`` (bool), ``fedsgd-batch-size`` (int) and ``send-ground-truth`` (bool): true only in
  recorded rounds. It saves the global arrays sent to the clients of a recorded round.
* ``aggregate_train`` removes the ``"ground-truth"`` ArrayRecord (arrays ``"images"``,
  ``"labels"``) from every reply (Flower's FedAvg accepts one ArrayRecord per reply), writes a
  trace record for each reply of a recorded round from a recorded client (its MetricRecord's
  ``"partition-id"``), then delegates.

The partition id is read from any MetricRecord or ConfigRecord of the reply (fedlab's clients
send a ConfigRecord ``"client"``). Replies may also report what the client actually used there:
``"lr"``, ``"local-steps"``, ``"batch-size"`` and any ``"dp-*"`` values; these win over the
wrapper's ``lr`` argument, which wins over an ``"lr"`` key of the train config. The trace
format is specified in ``docs/trace-format.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedlab.errors import FedlabError
from fedlab.strategy_wrapper import StrategyWrapper
from fedlab.traces import TraceWriter

logger = logging.getLogger(f"fedlab.{__name__}")

GROUND_TRUTH_KEY = "ground-truth"
CONFIG_FEDSGD = "fedsgd"
CONFIG_BATCH_SIZE = "fedsgd-batch-size"
CONFIG_SEND_GROUND_TRUTH = "send-ground-truth"
METRIC_PARTITION_ID = "partition-id"


class TraceRecording(StrategyWrapper):
    """Record what the server receives, per client and round, around any strategy.

    Parameters
    ----------
    inner : Strategy
        The strategy that samples clients and aggregates (e.g. ``FedAvg``).
    trace_dir : str or Path
        Folder of the trace (created; an existing trace is extended).
    model : dict
        Model spec ``{"name": ..., "kwargs": {...}}`` to rebuild the clients' model.
    num_classes : int
        Classes of the model head.
    image_shape : tuple of int, optional
        ``(C, H, W)``; taken from the ground truth when omitted.
    batch_size : int
        FedSGD batch size asked of the clients.
    lr : float, optional
        Client learning rate, used when replies do not report ``"lr"``.
    rounds, clients : iterable of int, optional
        Rounds and partition ids to record; all when None.
    fedsgd : bool
        Ask recorded clients for one local step on one batch (an update an attack can invert).
    dp : dict, optional
        Local DP mechanism parameters to store with every record.
    mean, std : list of float, optional
        Normalisation the clients apply to their images.
    """

    def __init__(
        self,
        inner: Strategy,
        *,
        trace_dir: str | Path,
        model: dict[str, Any],
        num_classes: int,
        image_shape: tuple[int, int, int] | None = None,
        batch_size: int = 1,
        lr: float | None = None,
        rounds: Iterable[int] | None = None,
        clients: Iterable[int] | None = None,
        fedsgd: bool = True,
        dp: dict[str, Any] | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
    ) -> None:
        if batch_size < 1:
            raise FedlabError(f"trace batch_size {batch_size} must be >= 1")
        super().__init__(inner)
        self.writer = TraceWriter(trace_dir)
        self.model = {"name": model["name"], "kwargs": dict(model.get("kwargs", {}))}
        self.num_classes = num_classes
        self.image_shape = image_shape
        self.batch_size = batch_size
        self.lr = lr
        self.rounds = None if rounds is None else set(rounds)
        self.clients = None if clients is None else set(clients)
        self.fedsgd = fedsgd
        self.dp = dp
        self.mean, self.std = mean, std
        self._global_paths: dict[int, str] = {}
        self._round_lr: dict[int, float] = {}

    def checkpoint_state(self) -> dict[str, Any]:
        """The trace's position: the rounds recorded so far."""
        return {"records": len(self.writer.records)}

    def restore_state(self, state: dict[str, Any]) -> None:
        """Forget records written after the checkpoint (a round in flight when the run stopped,
        which runs again)."""
        self.writer.truncate(int(state["records"]))

    def records_round(self, server_round: int) -> bool:
        """Whether ``server_round`` is recorded."""
        return self.rounds is None or server_round in self.rounds

    def summary(self) -> None:
        """Log the wrapper's settings, then the inner strategy's summary."""
        logger.info(
            "TraceRecording into %s (rounds %s, clients %s, FedSGD %s, batch %d)",
            self.writer.path,
            self.rounds or "all",
            self.clients or "all",
            self.fedsgd,
            self.batch_size,
        )
        self.inner.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Delegate, then set the trace config keys on a copy of the train config."""
        messages = list(self.inner.configure_train(server_round, arrays, config, grid))
        recorded = self.records_round(server_round)
        key = getattr(self.inner, "configrecord_key", "config")
        arrays_key = getattr(self.inner, "arrayrecord_key", "arrays")
        done: set[int] = set()
        for msg in messages:
            content = msg.content
            if id(content) in done:  # strategies share one RecordDict between messages
                continue
            done.add(id(content))
            cfg = ConfigRecord(dict(content[key])) if key in content else ConfigRecord()
            cfg[CONFIG_FEDSGD] = bool(recorded and self.fedsgd)
            cfg[CONFIG_BATCH_SIZE] = int(self.batch_size)
            cfg[CONFIG_SEND_GROUND_TRUTH] = bool(recorded)
            content[key] = cfg
            if "lr" in cfg and self.lr is None:
                self._round_lr[server_round] = float(cfg["lr"])
        if recorded and messages:
            sent = messages[0].content.get(arrays_key, arrays)
            self._global_paths[server_round] = self.writer.write_global(
                server_round, dict(sent.to_torch_state_dict())
            )
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Strip ground truth from the replies, record the chosen ones, then delegate."""
        replies = list(replies)
        for msg in replies:
            if msg.has_error():
                continue
            truth = msg.content.pop(GROUND_TRUTH_KEY, None)
            if self.records_round(server_round):
                self._record(server_round, msg, truth)
        return self.inner.aggregate_train(server_round, replies)

    def _record(self, server_round: int, msg: Message, truth: ArrayRecord | None) -> None:
        content = msg.content
        metrics: dict[str, Any] = {}
        for record in (*content.config_records.values(), *content.metric_records.values()):
            metrics.update(record)
        if METRIC_PARTITION_ID not in metrics:
            raise FedlabError(
                f"a round-{server_round} reply has no {METRIC_PARTITION_ID!r} in its "
                "MetricRecord or ConfigRecord; trace recording needs clients to report their "
                "partition id"
            )
        client = int(metrics[METRIC_PARTITION_ID])
        if self.clients is not None and client not in self.clients:
            return
        arrays_key = getattr(self.inner, "arrayrecord_key", "arrays")
        if arrays_key not in content:
            raise FedlabError(
                f"round-{server_round} reply of client {client} has no ArrayRecord "
                f"{arrays_key!r} (has {list(content.array_records)})"
            )
        gt = None
        image_shape = self.image_shape
        batch_size = int(metrics.get("batch-size", self.batch_size))
        if truth is not None:
            state = truth.to_torch_state_dict()
            gt = (state["images"], state["labels"])
            image_shape = tuple(gt[0].shape[1:])
            batch_size = int(gt[0].shape[0])
        else:
            logger.warning(
                "round %d client %d sent no ground truth; it cannot be scored", server_round, client
            )
        if image_shape is None:
            raise FedlabError("TraceRecording needs image_shape= when clients send no ground truth")
        dp = dict(self.dp or {})
        dp.update({k[3:]: v for k, v in metrics.items() if k.startswith("dp-")})
        lr = metrics.get("lr", self._round_lr.get(server_round, self.lr))
        self.writer.add(
            server_round=server_round,
            client=client,
            received=dict(content[arrays_key].to_torch_state_dict()),
            global_path=self._global_paths[server_round],
            model=self.model,
            batch_size=batch_size,
            image_shape=image_shape,  # type: ignore[arg-type]
            num_classes=self.num_classes,
            kind="arrays",
            lr=None if lr is None else float(lr),
            local_steps=int(metrics.get("local-steps", 1 if self.fedsgd else 0)),
            ground_truth=gt,
            dp=dp or None,
            mean=self.mean,
            std=self.std,
        )
