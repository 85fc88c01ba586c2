"""The one call of Flower's simulation engine, on the Ray backend.

``flwr.simulation.run_simulation`` is deprecated in flwr 1.42 (it warns); keeping its only call
here makes moving to its successor one change.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

from fedlab.appspec import AppSpec
from fedlab.config import RunConfig

log = logging.getLogger("fedlab")


def backend_config(
    num_supernodes: int, *, gpu: str = "auto", ray_address: str | None = None
) -> tuple[dict[str, Any], str]:
    """Ray backend config fitted to this machine, and the device clients should use.

    One CPU per client; with ``gpu="auto"`` and a GPU visible to torch, each client also gets an
    equal fraction of the GPUs such that all clients that can run at once (one per CPU) fit.
    """
    import torch

    cpus = os.cpu_count() or 1
    use_gpu = gpu == "auto" and torch.cuda.is_available()
    num_gpus = 0.0
    if use_gpu:
        concurrent = max(1, min(num_supernodes, cpus))
        num_gpus = min(1.0, torch.cuda.device_count() / concurrent)
    init_args: dict[str, Any] = {"address": ray_address} if ray_address else {"num_cpus": cpus}
    if use_gpu and not ray_address:
        init_args["num_gpus"] = torch.cuda.device_count()
    config = {"client_resources": {"num_cpus": 1, "num_gpus": num_gpus}, "init_args": init_args}
    return config, ("cuda" if use_gpu else "cpu")


def simulate(
    spec: AppSpec,
    config: RunConfig,
    *,
    gpu: str = "auto",
    ray_address: str | None = None,
    verbose: bool = False,
) -> None:
    """Run ``spec`` with ``config`` on ``config.num_supernodes`` virtual SuperNodes under Ray."""
    from flwr.simulation import run_simulation

    backend, device = backend_config(config.num_supernodes, gpu=gpu, ray_address=ray_address)
    if config.device == "auto":
        config = config.replace(device=device)
    log.info("ray backend: %s", backend)
    # Flower sets its logger's level when imported; quieten its per-round INFO lines after that.
    logging.getLogger("flwr").setLevel(logging.DEBUG if verbose else logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        run_simulation(
            server_app=spec.server_app(config),
            client_app=spec.client_app(config),
            num_supernodes=config.num_supernodes,
            backend_name="ray",
            backend_config=backend,
            verbose_logging=verbose,
        )
