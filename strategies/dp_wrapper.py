"""``ClientSampling``: the strategy wrapper every DP-FedAvg mode shares.

It draws the round's clients itself (Poisson or fixed, :mod:`fedlab.strategies.dp_sampling`) and
hands the inner strategy a grid holding only those nodes, so that the sampling the accountant
assumes is the sampling done, whatever the inner strategy is. After aggregation it adds the privacy
figures clients reported (sample-level DP-SGD epsilon, local DP parameters) to the round's
MetricRecord. :class:`fedlab.strategies.dp_central.CentralDP` adds clipping, noise and client-level
accounting on top.

The inner strategy must train every node it is offered: build it with :func:`inner_kwargs`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from fedlab.strategies.dp_sampling import ClientSampler, SubsetGrid
from fedlab.strategies.dp_updates import Update, float_arrays, with_sent_non_float
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedlab.errors import FedlabError
from fedlab.release import ReleasePolicy, private_log
from fedlab.strategy_wrapper import StrategyWrapper

log = logging.getLogger("fedlab")

DP_RECORD = "dp"  # ConfigRecord in each reply: the mechanism and its parameters, keys "dp-*"
RELEASES = (
    "none",
    "local",
    "sample-level",
)  # what ClientSampling's run claims (central: CentralDP)

#: Released training metrics of each privacy claim, with the reason each may be published
#: (classes of :data:`fedlab.release.RELEASE_CLASSES`); every other key is server-private.
#: docs/dp.md lists the same table; tests hold the two together.
LOCAL_RELEASE_KEYS = {
    "dp-local-epsilon-per-release": "public",
    "dp-local-epsilon-total-max": "accountant",
    "dp-local-noise-std": "public",
    "dp-clip-norm": "public",
    "dp-noise-std": "public",
    "dp-epsilon": "public",
    "dp-delta": "public",
}
CENTRAL_RELEASE_KEYS = {
    "dp-client-epsilon": "accountant",
    "dp-client-epsilon-pld": "accountant",
    "dp-delta": "public",
    "dp-noise-multiplier": "public",
    "dp-noise-std": "derived",
    "dp-clip-norm": "derived",
    "dp-unclipped-fraction-noisy": "accounted",
}


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
    release : {"none", "local", "sample-level"}
        The privacy claim of the run: ``local`` (clients noise their replies,
        :class:`fedlab.strategies.dp_mods.LocalDpClipNoiseMod`), ``sample-level`` (DP-SGD only) or
        ``none``. Under a claim the run folder releases only :meth:`release_policy`'s keys,
        every reply is averaged with weight 1 (a dataset size is a client statistic) and integer
        buffers keep the server's values. Replies that carry local-DP or DP-SGD figures under
        ``none`` are refused.
    """

    def __init__(self, inner: Strategy, sampler: ClientSampler, *, release: str = "none") -> None:
        super().__init__(inner)
        if release not in RELEASES:
            raise FedlabError(f"release {release!r} is not one of: {', '.join(RELEASES)}")
        self.release = release
        self.sampler = sampler
        fraction = getattr(inner, "fraction_train", 1.0)
        if fraction != 1.0:
            raise FedlabError(
                f"the inner strategy samples fraction_train={fraction} itself; DP-FedAvg samples "
                "clients in its wrapper: build the inner strategy with fraction_train=1.0 "
                "(fedlab.strategies.dp_wrapper.inner_kwargs())"
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

    def release_policy(self) -> ReleasePolicy | None:
        """What the run folder may release (:mod:`fedlab.release`); None: no privacy claim."""
        if self.release == "none":
            return None
        return ReleasePolicy(self.release, LOCAL_RELEASE_KEYS if self.release == "local" else {})

    # -- checkpoints (fedlab.checkpoint) --------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        """What the next round depends on: the running worst client-reported epsilons."""
        return {"worst": dict(self._worst)}

    def restore_state(self, state: dict[str, Any]) -> None:
        self._worst = {k: float(v) for k, v in state["worst"].items()}

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
        private_log.info("round %d: sampled %d of %d clients (%s)", server_round, len(chosen),
                         self.sampler.population, self.sampler.kind)  # fmt: skip
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        ok = [r for r in replies if not r.has_error()]
        self.check_claim(ok)
        reported = self.running_worst(client_reports(ok))
        if self.release != "none":
            for msg in ok:
                msg.content[self.arrays_key] = with_sent_non_float(
                    msg.content[self.arrays_key], self.sent_record
                )
                keep_only_dp_metrics(reply_metrics(msg))[self.weight_key] = 1.0
        arrays, metrics = self.inner.aggregate_train(server_round, replies)
        if self.release != "none" and arrays is not None:
            arrays = with_sent_non_float(arrays, self.sent_record)
        metrics = MetricRecord(dict(metrics or {}))
        metrics["dp-sampled"] = self.sampled
        metrics.update(reported)
        return arrays, metrics

    def check_claim(self, replies: list[Message]) -> None:
        """Refuse replies whose privacy figures the run's claim does not cover (fail closed)."""
        if self.release != "none":
            return
        for msg in replies:
            dp = read_dp(msg) or {}
            if dp.get("mechanism") == "local" or "dp-sample-epsilon" in reply_metrics(msg):
                raise FedlabError(
                    "a reply carries local-DP or DP-SGD figures but the server wrapper was built "
                    "with release='none', so the run folder would publish what they protect; "
                    "build ClientSampling(..., release='local' or 'sample-level')"
                )

    def running_worst(self, reported: dict[str, float]) -> dict[str, float]:
        """The composed epsilons as maxima over every client so far, not only this round's:
        a client's total never shrinks, so neither may the reported worst case."""
        for key in ("dp-sample-epsilon-max", "dp-local-epsilon-total-max"):
            if key in reported:
                self._worst[key] = max(self._worst.get(key, 0.0), reported[key])
        return {**reported, **self._worst}


def keep_only_dp_metrics(metrics: MetricRecord) -> MetricRecord:
    """Drop a reply's training metrics (loss, accuracy, counts) before the inner strategy
    averages them: they are statistics of private data that no noise covers."""
    for key in [k for k in metrics if not k.startswith("dp-")]:
        del metrics[key]
    return metrics


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
