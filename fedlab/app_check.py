"""Checks an app runs on its resolved config before Ray starts (``AppSpec.check``).

A check builds what the server and the clients will build: the app's own strategy (so a DP
wrapper refusing its inner strategy, or an app refusing a foreign one, fails here) and its
workload with the first client's data (so bad names, paths or sizes fail here), in one process
and in seconds, instead of inside a Ray actor after ``ray.init``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from fedlab.appspec import CheckFn
from fedlab.key_groups import RunConfig
from fedlab.limits import MAX_MODEL_PARAMETERS, check_cap
from fedlab.workload import Workload, build_workload


def check_by_building(
    build_strategy: Callable[[Any, int], object],
    build_app_workload: Callable[[Any], Workload] = build_workload,
) -> CheckFn:
    """A check that builds the app's strategy and workload, then the first client's dataset.

    Parameters
    ----------
    build_strategy : callable
        ``(config, num_nodes) -> strategy``, the very function the app's server calls.
    build_app_workload : callable
        ``config -> workload``, the app's own (default :func:`fedlab.workload.build_workload`).

    Returns
    -------
    callable
        ``(config, num_nodes) -> None``, raising :class:`~fedlab.errors.FedlabError`.
    """

    def check(config: RunConfig, num_nodes: int) -> None:
        build_strategy(config, num_nodes)
        # Data first, for real: a process-wide cache filled under the meta device would hand
        # meta tensors to the run itself (compo's feature CNN did). A workload of its own too.
        build_app_workload(config).client_dataset(0, num_nodes)
        check_model_size(build_app_workload(config))

    return check


def check_model_size(workload: Workload) -> int:
    """Build the workload's model on the meta device (names resolved, no memory allocated) and
    refuse one over :data:`fedlab.limits.MAX_MODEL_PARAMETERS`; return its parameter count."""
    try:
        with torch.device("meta"):
            model = workload.build_model()
    except (RuntimeError, NotImplementedError):
        # A model whose construction computes on data ((AR)^2's class statistics) cannot be
        # built on the meta device; it is built for real, its size set by bounded keys.
        model = workload.build_model()
    count = sum(p.numel() for p in model.parameters())
    return check_cap(count, MAX_MODEL_PARAMETERS, "the model's parameter count")
