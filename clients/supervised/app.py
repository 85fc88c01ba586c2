"""The ``fedavg`` app: supervised image classification with Flower's FedAvg (or any strategy)."""

from __future__ import annotations

from typing import Any

import torch
from fedlab.strategies.fedavg import build_strategy
from fedlab.strategies.trace_recording import TraceRecording
from flwr.app import ArrayRecord, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedlab.app_check import check_by_building
from fedlab.appspec import AppSpec
from fedlab.client import WEIGHT_TRAINING_HANDLERS
from fedlab.key_groups import TrainingRunConfig
from fedlab.run_folder import RunFolder
from fedlab.server import EvaluateFn, run_federation, seed_everything
from fedlab.training import evaluate, resolve_device
from fedlab.workload import Workload, build_workload


def initial_arrays(workload: Workload, seed: int) -> ArrayRecord:
    """The global model's starting arrays, fixed by ``seed``."""
    seed_everything(seed)
    return ArrayRecord(workload.build_model().state_dict())


def central_evaluation(workload: Workload, device: str = "auto") -> EvaluateFn:
    """Evaluate the global arrays on the workload's held-out test split, on the server."""
    test_set = workload.test_dataset()
    dev = resolve_device(device)

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model = workload.build_model()
        model.load_state_dict(arrays.to_torch_state_dict())
        with torch.no_grad():
            return MetricRecord(evaluate(model, test_set, workload.step, device=dev))

    return evaluate_fn


def with_trace_recording(
    strategy: Strategy, config: TrainingRunConfig, workload: Workload, run: RunFolder
) -> Strategy:
    """Wrap ``strategy`` in :class:`TraceRecording` when ``record-traces`` is on.

    It must be the outermost wrapper: it records each reply as the server received it (after
    any local DP, before central clipping or noise) and strips the ground truth that
    recorded clients attach.
    """
    if not config.record_traces:
        return strategy
    test = workload.test_dataset()
    return TraceRecording(
        strategy, trace_dir=run.traces_dir, model=workload.model_spec(),
        num_classes=test.num_classes, image_shape=test.shape, lr=config.lr,
        batch_size=config.trace_batch_size,
        rounds=config.traced_rounds(), clients=config.traced_clients(), fedsgd=True,
    )  # fmt: skip


def fedavg_server(grid: Grid, config: TrainingRunConfig, run: RunFolder) -> dict[str, Any]:
    workload = build_workload(config)

    def strategy_factory(num_nodes: int) -> Strategy:
        return with_trace_recording(build_strategy(config, num_nodes), config, workload, run)

    return run_federation(
        grid, config, run,
        strategy_factory=strategy_factory,
        initial_arrays=initial_arrays(workload, config.seed),
        evaluate_fn=central_evaluation(workload, config.device),
    )  # fmt: skip


fedavg = AppSpec(
    name="fedavg",
    config_cls=TrainingRunConfig,
    server_fn=fedavg_server,
    client_handlers=WEIGHT_TRAINING_HANDLERS,
    defaults={"num-server-rounds": 10, "local-epochs": 3},
    description="Supervised classification (digits by default) with Flower's FedAvg.",
    check=check_by_building(build_strategy),
)
