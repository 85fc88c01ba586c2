"""Flower's own weight-averaging strategies, registered under their usual names.

We use Flower's implementations unchanged (``flwr.serverapp.strategy``), registered under their
usual names by the ``fedlab.strategies`` entry points in pyproject.toml; this module only maps
run-config values onto their constructors. ``build_strategy`` also accepts ``module:Class`` for a
researcher's own ``Strategy`` subclass, passing the keyword arguments its signature accepts.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

from flwr.serverapp.strategy import Strategy

from fedlab.errors import FedlabError
from fedlab.key_groups import StrategyKeys
from fedlab.registry import STRATEGIES


def sampling_kwargs(config: StrategyKeys, num_nodes: int) -> dict[str, Any]:
    """FedAvg-style sampling arguments: ``fraction-train`` of ``num_nodes``, all of them at 1.0.

    Flower samples ``max(int(fraction * N), min_train_nodes)`` nodes, so the minimum is set
    to the intended count: full participation then really means all N nodes every round.
    """
    # An app without fedlab.key_groups.SamplingKeys samples clients itself (dpfedavg): the
    # strategy then trains every node it is handed.
    fraction = getattr(config, "fraction_train", 1.0)
    sampled = max(1, math.floor(fraction * num_nodes))
    return {
        "fraction_train": fraction,
        "fraction_evaluate": 0.0,
        "min_train_nodes": sampled,
        "min_evaluate_nodes": 0,
        "min_available_nodes": num_nodes,
    }


def build_strategy(config: StrategyKeys, num_nodes: int, **extra: Any) -> Strategy:
    """Instantiate ``config.strategy`` (registered name or ``module:Class``).

    Keyword arguments the class does not accept are left out, so custom strategies with
    their own signatures work; anything else they need comes from their defaults.
    """
    cls = STRATEGIES.get(config.strategy)
    if not (inspect.isclass(cls) and issubclass(cls, Strategy)):
        raise FedlabError(
            f"strategy {config.strategy!r} resolves to {cls!r}, which is not a subclass of "
            "flwr.serverapp.strategy.Strategy; point it at a Strategy class"
        )
    kwargs = {**sampling_kwargs(config, num_nodes), **extra}
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return cls(**kwargs)
