"""The ``zsl_parsnets`` and ``zsl_ar2`` apps: ZSL models trained by FedAvg (or any strategy).

Clients hold disjoint seen classes and train with the shared loop; the server evaluates the
global model every round on the held-out seen and the unseen test data and records T1,
acc-s, acc-u and H in ``history.json``'s ``evaluate``.
"""

from __future__ import annotations

from typing import Any

from fedlab.clients.zsl.config import Ar2Config, ParsNetsConfig
from fedlab.clients.zsl.workload import ZslWorkload
from fedlab.strategies.fedavg import build_strategy
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord
from flwr.serverapp import Grid

from fedlab.app_check import check_by_building
from fedlab.appspec import AppSpec
from fedlab.client import WEIGHT_TRAINING_HANDLERS, handle_train
from fedlab.key_groups import RunConfig
from fedlab.run_folder import RunFolder
from fedlab.server import EvaluateFn, run_federation, seed_everything
from fedlab.workload import build_workload


def zsl_evaluation(workload: ZslWorkload) -> EvaluateFn:
    """Server-side T1 / GZSL evaluation of the global arrays."""
    evaluate = workload.evaluator()

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model = workload.build_model()
        model.load_state_dict(arrays.to_torch_state_dict())
        return MetricRecord(evaluate(model))

    return evaluate_fn


def zsl_server(grid: Grid, config: RunConfig, run: RunFolder) -> dict[str, Any]:
    workload = build_workload(config)
    assert isinstance(workload, ZslWorkload)
    seed_everything(config.seed)
    initial = ArrayRecord(workload.build_model().state_dict())
    return run_federation(
        grid, config, run,
        strategy_factory=lambda num_nodes: build_strategy(config, num_nodes),
        initial_arrays=initial,
        evaluate_fn=zsl_evaluation(workload),
    )  # fmt: skip


def handle_train_ar2(msg: Message, context: Context, config: RunConfig) -> Message:
    """(AR)^2 local training: the round number picks pretraining or EMA fine-tuning."""
    assert isinstance(config, Ar2Config)
    round_config = msg.content.get("config", ConfigRecord())
    phase = config.phase(int(round_config.get("server-round", 0)))
    return handle_train(msg, context, config.replace(ar2_phase=phase))


COMMON = {
    "num-supernodes": 4,
    "optimizer": "adam",
    "batch-size": 32,
    "test-fraction": 0.2,
}

zsl_parsnets = AppSpec(
    name="zsl_parsnets",
    config_cls=ParsNetsConfig,
    server_fn=zsl_server,
    client_handlers=WEIGHT_TRAINING_HANDLERS,
    defaults={
        **COMMON,
        "num-server-rounds": 10,
        "local-steps": 10,
        "lr": 0.003,
    },
    description="Zero-shot ParsNets on fixed features, clients with disjoint seen classes.",
    check=check_by_building(build_strategy),
)

zsl_ar2 = AppSpec(
    name="zsl_ar2",
    config_cls=Ar2Config,
    server_fn=zsl_server,
    client_handlers={**WEIGHT_TRAINING_HANDLERS, "train": handle_train_ar2},
    defaults={
        **COMMON,
        "num-server-rounds": 6,
        "local-epochs": 1,
        "lr": 0.005,
        "ar2-pretrain-rounds": 2,
    },
    description="Zero-shot (AR)^2 on images: pretrain on seen classes, then EMA fine-tuning.",
    check=check_by_building(build_strategy),
)
