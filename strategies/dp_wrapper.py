"""``ClientSampling``: the strategy wrapper every DP-FedAvg mode shares.

It draws the round's clients itself (Poisson or fixed, :mod:`strategies.dp_sampling`) and hands
the inner strategy a grid holding only those nodes, so that the sampling the accountant assumes
is the sampling done, whatever the inner strategy is. After aggregation it adds the privacy
figures clients reported (sample-level DP-SGD epsilon, local DP parameters) to the round's
MetricRecord. :class:`strategies.dp_central.CentralDP` adds clipping, noise and client-level
accounting on top.

The inner strategy must train every node it is offered: build it with :func:`inner_kwargs`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedlab.errors import FedlabError
from fedlab.strategy_wrapper import StrategyWrapper
from strategies.dp_sampling import ClientSampler, SubsetGrid
from strategies.dp_updates import Update, float_arrays

log = logging.getLogger("fedlab")

DP_RECORD = "dp"  # ConfigRecord in each reply: the mechanism and its parameters, keys "dp-*"


def inner_kwargs() -> dict[str, Any]:
    """Keyword arguments that make a FedAvg-family strategy train every node it is offered."""
    return {
        "fraction_train": 1.0,
        "min_train_nodes": 0,
        "min_available_nodes": 0,
        "fraction_evaluate": 0.0,
        "min_evaluate_nodes": 0,
    }


def dp_record(params: dict[str, Any]) -> ConfigRecord:
    """The reply's ``"dp"`` ConfigRecord, keys prefixed ``dp-`` (what trace recording keeps)."""
    return ConfigRecord({f"dp-{k}": v for k, v in params.items()})


def read_dp(msg: Message) -> dict[str, Any] | None:
    """The DP parameters a reply carries, without the ``dp-`` prefix; None if it has none."""
    record = msg.content.config_records.get(DP_RECORD)
    if record is None:
        return None
    return {k.removeprefix("dp-"): v for k, v in record.items()}


def reply_metrics(msg: Message) -> MetricRecord:
    """The one MetricRecord of a reply (Flower's strategies expect exactly one)."""
    records = list(msg.content.metric_records.values())
    if len(records) != 1:
        raise FedlabError(
            f"a reply carries {len(records)} MetricRecords; DP-FedAvg expects exactly one"
        )
    return records[0]


class ClientSampling(StrategyWrapper):
    """Sample clients for the inner strategy and report the privacy figures of the replies.

    Parameters
    ----------
    inner : Strategy
        Aggregates the replies; it must train every node it is offered
        (``fraction_train=1.0, min_train_nodes=0, min_available_nodes=0``).
    sampler : ClientSampler
    """

    def __init__(self, inner: Strategy, sampler: ClientSampler) -> None:
        super().__init__(inner)
        self.sampler = sampler
        fraction = getattr(inner, "fraction_train", 1.0)
        if fraction != 1.0:
            raise FedlabError(
                f"the inner strategy samples fraction_train={fraction} itself; DP-FedAvg samples "
                "clients in its wrapper: build the inner strategy with fraction_train=1.0 "
                "(strategies.dp_wrapper.inner_kwargs())"
            )
        self.arrays_key = getattr(inner, "arrayrecord_key", "arrays")
        self.weight_key = getattr(inner, "weighted_by_key", "num-examples")
        self.sent: Update = {}
        self.sent_record = ArrayRecord()
        self._worst: dict[str, float] = {}
        self.sampled = 0

    def summary(self) -> None:
        log.info("%s: %s sampling, rate %g of %d clients", type(self).__name__,
                 self.sampler.kind, self.sampler.rate, self.sampler.population)  # fmt: skip
        self.inner.summary()

    # -- hooks for subclasses -------------------------------------------------------------------
    def before_round(self, server_round: int) -> None:
        """Called before sampling (the budget check of central DP)."""

    def round_config(self) -> dict[str, Any]:
        """Keys added to the train ConfigRecord sent to clients."""
        return {}

    # -- Strategy -------------------------------------------------------------------------------
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Sample, then let the inner strategy configure exactly the sampled nodes."""
        self.before_round(server_round)
        chosen = self.sampler.sample(list(grid.get_node_ids()), server_round)
        cfg = ConfigRecord({**dict(config), **self.round_config()})
        subset = SubsetGrid(grid, chosen)
        messages = list(self.inner.configure_train(server_round, arrays, cfg, subset))  # type: ignore[arg-type]
        sent_to = sorted(m.metadata.dst_node_id for m in messages)
        if sent_to != sorted(chosen):
            raise FedlabError(
                f"round {server_round}: the inner strategy configured {len(sent_to)} nodes, not "
                f"the {len(chosen)} sampled; build it with fraction_train=1.0, "
                "min_train_nodes=0, min_available_nodes=0 so the accounted sampling is the real one"
            )
        first = messages[0].content.get(self.arrays_key, arrays) if messages else arrays
        self.sent_record = first
        self.sent = float_arrays(first)
        self.sampled = len(chosen)
        log.info("round %d: sampled %d of %d clients (%s)", server_round, len(chosen),
                 self.sampler.population, self.sampler.kind)  # fmt: skip
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        reported = self.running_worst(client_reports([r for r in replies if not r.has_error()]))
        arrays, metrics = self.inner.aggregate_train(server_round, replies)
        metrics = MetricRecord(dict(metrics or {}))
        metrics["dp-sampled"] = self.sampled
        metrics.update(reported)
        return arrays, metrics

    def running_worst(self, reported: dict[str, float]) -> dict[str, float]:
        """The composed epsilons as maxima over every client so far, not only this round's:
        a client's total never shrinks, so neither may the reported worst case."""
        for key in ("dp-sample-epsilon-max", "dp-local-epsilon-total-max"):
            if key in reported:
                self._worst[key] = max(self._worst.get(key, 0.0), reported[key])
        return {**reported, **self._worst}


def client_reports(replies: list[Message]) -> dict[str, float]:
    """Worst-case privacy figures the clients reported: sample-level and local epsilons."""
    out: dict[str, float] = {}
    sample_eps = [float(reply_metrics(r)["dp-sample-epsilon"]) for r in replies
                  if "dp-sample-epsilon" in reply_metrics(r)]  # fmt: skip
    if sample_eps:
        out["dp-sample-epsilon-max"] = max(sample_eps)
    local = [d for d in map(read_dp, replies) if d and d.get("mechanism") == "local"]
    if local:
        out["dp-local-epsilon-per-release"] = max(float(d["epsilon"]) for d in local)
        out["dp-local-epsilon-total-max"] = max(float(d["epsilon-total"]) for d in local)
        out["dp-local-noise-std"] = max(float(d["noise-std"]) for d in local)
    return out
