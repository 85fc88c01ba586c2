"""StrategyWrapper: the base of strategies that wrap another one (DP, trace recording, ...).

Flower's Message-API strategies compose by wrapping, as its own DP wrappers do. A subclass
overrides the steps it changes; every other step, and every attribute it lacks (such as the
inner strategy's ``arrayrecord_key``), comes from ``inner``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy


class StrategyWrapper(Strategy):
    """Delegate every step of the strategy protocol to ``inner``.

    Parameters
    ----------
    inner : Strategy
    """

    def __init__(self, inner: Strategy) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes the wrapper lacks; "inner" itself must not recurse.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def summary(self) -> None:
        self.inner.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.inner.configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return self.inner.aggregate_train(server_round, replies)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        return self.inner.aggregate_evaluate(server_round, replies)
