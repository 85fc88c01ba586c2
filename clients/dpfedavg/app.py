"""The ``dpfedavg`` app: supervised classification with DP-FedAvg.

Server: the run config's strategy (``fedavg`` by default) inside :class:`ClientSampling` (no DP
or local DP) or a central DP wrapper (server-side or client-side clipping). Clients: the shared
training loop, with Opacus DP-SGD when ``dp-sgd`` is on, wrapped in the client mods of the mode
(``AppSpec.client_mods``, so Ray and in-process runs apply them alike).
"""

from __future__ import annotations

import logging
from typing import Any

from fedlab.clients.dpfedavg.config import DPFedAvgConfig
from fedlab.clients.dpfedavg.dpsgd import DPSGDSession, OpacusCompatible
from fedlab.clients.dpfedavg.synthetic import SyntheticWorkload
from fedlab.clients.supervised.app import central_evaluation, initial_arrays, with_trace_recording
from fedlab.strategies.dp_accounting import noise_for_target
from fedlab.strategies.dp_adaptive import AdaptiveClipping
from fedlab.strategies.dp_central import CentralDPClientSideClipping, CentralDPServerSideClipping
from fedlab.strategies.dp_mods import LocalDpClipNoiseMod, central_client_clipping_mod
from fedlab.strategies.dp_wrapper import ClientSampling, inner_kwargs
from fedlab.strategies.fedavg import build_strategy
from flwr.app import Context, Message
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedlab.app_check import check_by_building
from fedlab.appspec import AppSpec
from fedlab.client import handle_evaluate, handle_query, handle_train
from fedlab.flower_compat import Mod
from fedlab.key_groups import RunConfig
from fedlab.run_folder import RunFolder
from fedlab.server import run_federation
from fedlab.workload import Workload, build_workload

log = logging.getLogger("fedlab")


def dp_workload(config: DPFedAvgConfig) -> Workload:
    """The config's workload (Synthetic(alpha, beta) with ``dataset=synthetic``), with
    Opacus-compatible models when ``dp-sgd`` is on."""
    synthetic = config.dataset == "synthetic"
    workload = SyntheticWorkload(config) if synthetic else build_workload(config)
    return OpacusCompatible(workload) if config.dp_sgd else workload


def build_dp_strategy(config: DPFedAvgConfig, num_nodes: int) -> Strategy:
    """The run's strategy inside the DP wrapper its ``dp-mode`` names.

    With ``num-supernodes=0`` (the federation decides, as under ``flwr run``) the config is
    validated again for the ``num_nodes`` that connected, so every population-dependent check
    (q N whole, reachable target, delta < 1/N) runs before the first round.
    """
    if not config.population_known:
        config = config.replace(num_supernodes=num_nodes)
    clients = config.population or num_nodes  # with a population, nodes are only its workers
    inner = build_strategy(config, clients, **inner_kwargs())
    sampler = config.sampler(clients)
    if not config.central:
        release = "local" if config.local else "sample-level" if config.dp_sgd else "none"
        return ClientSampling(inner, sampler, release=release)
    z = config.noise_multiplier
    if z == 0:
        z = noise_for_target(sampler, config.target_epsilon, config.num_server_rounds, config.delta)
        log.info("noise-multiplier %.4f derived for target-epsilon %g in %d rounds", z,
                 config.target_epsilon, config.num_server_rounds)  # fmt: skip
    adaptive = None
    if config.adaptive_clipping:
        adaptive = AdaptiveClipping(config.clip_norm, config.target_quantile, config.clip_lr,
                                    config.count_stddev(z))  # fmt: skip
    cls = CentralDPServerSideClipping if config.dp_mode == "central-server" \
        else CentralDPClientSideClipping  # fmt: skip
    target = config.target_epsilon if config.dp_accounted != "local" else 0.0
    return cls(inner, sampler, clip_norm=config.clip_norm, noise_multiplier=z,
               delta=config.delta, target_epsilon=target or None, adaptive=adaptive,
               noise=config.noise_source(), report_pld=config.report_pld)  # fmt: skip


def dpfedavg_server(grid: Grid, config: RunConfig, run: RunFolder) -> dict[str, Any]:
    assert isinstance(config, DPFedAvgConfig)
    workload = dp_workload(config)
    return run_federation(
        grid, config, run,
        strategy_factory=lambda num_nodes: with_trace_recording(
            build_dp_strategy(config, num_nodes), config, workload, run
        ),
        initial_arrays=initial_arrays(workload, config.seed),
        evaluate_fn=central_evaluation(workload, config.device),
    )  # fmt: skip


def dp_train(msg: Message, context: Context, config: RunConfig) -> Message:
    """Train, with Opacus DP-SGD inside the loop if ``dp-sgd`` is on.

    DP-SGD is part of training, not a mod: its accountant steps with the optimizer. The mode's
    client mods (:func:`dp_client_mods`) wrap this handler through the ClientApp.
    """
    assert isinstance(config, DPFedAvgConfig)
    workload = dp_workload(config)
    if not config.dp_sgd:
        return handle_train(msg, context, config, workload=workload)
    session = DPSGDSession(context, noise_multiplier=config.dp_sgd_noise_multiplier,
                           max_grad_norm=config.dp_sgd_max_grad_norm, delta=config.dp_sgd_delta,
                           source=config.noise_source())  # fmt: skip
    reply = handle_train(msg, context, config, workload=workload, prepare=session.prepare)
    epsilon = session.finish(context, reply)
    # A function of this client's dataset size: only the client's own debug log shows it.
    log.debug("sample-level (DP-SGD) epsilon %.4f at delta %g", epsilon, session.delta)
    return reply


def dp_client_mods(config: RunConfig) -> list[Mod]:
    """The client mods of the run's ``dp-mode``, outermost first (Flower's order).

    Central DP with client-side clipping: :func:`central_client_clipping_mod`. Local DP:
    :class:`LocalDpClipNoiseMod`, which clips and noises the update itself. Otherwise none.
    """
    assert isinstance(config, DPFedAvgConfig)
    mods: list[Mod] = []
    if config.dp_mode == "central-client":
        mods.append(central_client_clipping_mod)
    if config.local:
        mods.append(
            LocalDpClipNoiseMod(
                clip_norm=config.clip_norm,
                epsilon=config.local_epsilon,
                delta=config.local_delta,
                noise=config.local_noise,
                source=config.noise_source(),
            )
        )
    return mods


dpfedavg = AppSpec(
    name="dpfedavg",
    config_cls=DPFedAvgConfig,
    server_fn=dpfedavg_server,
    client_handlers={"query": handle_query, "train": dp_train, "evaluate": handle_evaluate},
    client_mods=dp_client_mods,
    check=check_by_building(build_dp_strategy, dp_workload),
    # Softmax regression: z C / m noise falls on every coordinate, and at these epsilons it
    # buries a 57k-parameter CNN (see docs/dp.md); the privacy-utility study uses the same.
    defaults={
        "num-server-rounds": 10,
        "num-supernodes": 100,
        "workload": "fedlab.clients.dpfedavg.linear:LinearWorkload",
        "local-epochs": 5,
        "batch-size": 16,
        "lr": 0.1,
        "momentum": 0.0,
        "clip-norm": 0.3,
        # Under DP a stop on a reply count would publish that count (docs/dp.md, "Release").
        "min-replies": 0,
    },  # fmt: skip
    description="DP-FedAvg: central DP (server- or client-side clipping) or local DP, "
    "Poisson or fixed client sampling, client-level accounting, optional Opacus DP-SGD.",
)
