"""The ``fedfoa`` app: federated SimCLR with FedFoA relation aggregation, mixed encoders.

``flower-simulation --app fedlab.apps:fedfoa`` runs, with its defaults, 4 clients on Dirichlet
(alpha 0.1) partitions of the procedural ``textured-shapes`` dataset, half of them with a CNN
and half with a ResNet, and reports each client's linear-probe accuracy in ``history.json``.
"""

from __future__ import annotations

import logging
from typing import Any

from fedlab.clients.ssl.client import FEDFOA_HANDLERS, init_model, probe_metrics
from fedlab.clients.ssl.config import SSLConfig
from fedlab.clients.ssl.reference import reference_line
from fedlab.strategies.fedavg import build_strategy, sampling_kwargs
from fedlab.strategies.fedfoa import RELATION_KEYS, FedFoA
from flwr.app import ArrayRecord, MetricRecord
from flwr.serverapp import Grid

from fedlab.app_check import check_by_building
from fedlab.appspec import AppSpec
from fedlab.errors import FedlabError
from fedlab.run_folder import RunFolder
from fedlab.server import EvaluateFn, run_federation, seed_everything
from fedlab.training import resolve_device
from fedlab.workload import build_workload

log = logging.getLogger("fedlab")


def _evaluate_fn(config: SSLConfig, strategies: list[FedFoA]) -> EvaluateFn:
    """Probe results of the round: the clients' (heterogeneous) or the global model's (averaged)."""
    workload = build_workload(config)
    probe_rounds = config.probe_rounds()

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        if server_round not in probe_rounds:
            return None
        if config.weight_averaging:
            model = init_model(workload, 0)
            weights = {k: v for k, v in arrays.items() if k not in RELATION_KEYS}
            model.load_state_dict(ArrayRecord(weights).to_torch_state_dict())
            acc = probe_metrics(
                workload, model, seed=config.seed, device=resolve_device(config.device)
            )["probe-acc"]
            return MetricRecord({"probe-acc-mean": acc, "probe-acc-global": acc})
        results = strategies[0].probe_results.get(server_round) if strategies else None
        return MetricRecord(results) if results else None

    return evaluate_fn


def build_fedfoa_strategy(config: SSLConfig, num_nodes: int) -> FedFoA:
    """The run's strategy, which must be a :class:`FedFoA` (this app exchanges relations).

    Raises
    ------
    FedlabError
        If ``strategy`` names anything else.
    """
    strategy = build_strategy(
        config,
        num_nodes,
        weight_averaging=config.weight_averaging,
        fraction_evaluate=1.0,  # FedFoA.configure_evaluate asks every node in probe rounds
        probe_rounds=set() if config.weight_averaging else config.probe_rounds(),
    )
    if not isinstance(strategy, FedFoA):
        raise FedlabError(
            f"strategy {config.strategy!r} builds a {type(strategy).__name__}, but the fedfoa "
            "app needs a FedFoA strategy; set strategy=fedfoa (or a FedFoA subclass)"
        )
    return strategy


def fedfoa_server(grid: Grid, config: SSLConfig, run: RunFolder) -> dict[str, Any]:
    """Build the FedFoA strategy once the nodes are known and run the rounds."""
    workload = build_workload(config)
    seed_everything(config.seed)
    initial = ArrayRecord()
    if config.weight_averaging:
        initial = ArrayRecord(init_model(workload, 0).state_dict())
    strategies: list[FedFoA] = []

    def factory(num_nodes: int) -> FedFoA:
        strategy = build_fedfoa_strategy(config, num_nodes)
        strategies.append(strategy)
        return strategy

    summary = run_federation(
        grid,
        config,
        run,
        strategy_factory=factory,
        initial_arrays=initial,
        evaluate_fn=_evaluate_fn(config, strategies),
    )
    final = (summary.get("final") or {}).get("evaluate", {})
    if "probe-acc-mean" in final:
        log.info(
            "linear-probe accuracy after %d rounds: mean %.3f over clients (%s)",
            summary["rounds-finished"],
            final["probe-acc-mean"],
            ", ".join(
                f"{k[10:]}={v:.3f}"
                for k, v in final.items()
                if k.startswith("probe-acc-") and k != "probe-acc-mean"
            ),
        )
        line = reference_line(config)
        log.info(
            "%s",
            line
            or "no stored local-only reference for this setting: compare with a run of "
            "fedfoa-lambda=0 (same seed), or see simulations/fedfoa_main_job_reference.py",
        )
    return summary


fedfoa = AppSpec(
    name="fedfoa",
    config_cls=SSLConfig,
    server_fn=fedfoa_server,  # type: ignore[arg-type]
    client_handlers=FEDFOA_HANDLERS,  # type: ignore[arg-type]
    defaults={
        "num-server-rounds": 4,
        "num-supernodes": 4,
        "local-steps": 80,
        "batch-size": 64,
        "encoders": "cnn:16,resnet:8",
        "probe-size": 600,
    },
    description="Federated SimCLR with FedFoA relation aggregation across mixed encoders.",
    check=check_by_building(build_fedfoa_strategy),
    # its own handlers: no trace recording, no failure injection
)

__all__ = ["fedfoa", "sampling_kwargs"]
