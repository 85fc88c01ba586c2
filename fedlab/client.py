"""ClientApp message handlers shared by the weight-training apps (FedAvg and its wrappers).

A handler is ``(message, context, config) -> reply``. The ClientApp is rebuilt for every
message, so nothing here keeps state between calls; what must persist lives in
``context.state``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict

from fedlab.key_groups import LocalTrainingKeys, RunConfig
from fedlab.server import CLIENT_INFO
from fedlab.training import PrepareFn, TrainConfig, evaluate, resolve_device, train
from fedlab.workload import Workload, build_workload


def derive_seed(*parts: Any) -> int:
    """A stable 63-bit seed from any printable parts (Python's ``hash`` is salted per process)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def partition_of(context: Context) -> tuple[int, int]:
    """(partition id, number of partitions) of this node."""
    return int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])


def train_config_from(
    config: LocalTrainingKeys, round_config: ConfigRecord | None = None
) -> TrainConfig:
    """Local training settings from the run config; the server may override per round."""
    rc = dict(round_config or {})
    return TrainConfig(
        epochs=int(rc.get("local-epochs", config.local_epochs)),
        steps=int(rc.get("local-steps", config.local_steps)),
        batch_size=int(rc.get("batch-size", config.batch_size)),
        optimizer=str(rc.get("optimizer", config.optimizer)),
        lr=float(rc.get("lr", config.lr)),
        momentum=float(rc.get("momentum", config.momentum)),
        weight_decay=float(rc.get("weight-decay", config.weight_decay)),
        schedule=str(rc.get("lr-schedule", config.lr_schedule)),
    )


def client_info(context: Context) -> ConfigRecord:
    pid, _ = partition_of(context)
    return ConfigRecord({"partition-id": pid})


def handle_query(msg: Message, context: Context, config: RunConfig) -> Message:
    """Answer the server's start-up query with this node's partition id."""
    return Message(RecordDict({CLIENT_INFO: client_info(context)}), reply_to=msg)


def check_failure_injection(config: RunConfig, context: Context) -> None:
    """Raise on a node whose partition is listed in ``fail-partitions`` (failure tests);
    :class:`~fedlab.appspec.AppSpec` calls it before every train and evaluate handler."""
    pid, _ = partition_of(context)
    if pid in config.fail_partitions:
        raise RuntimeError(f"partition {pid} is listed in fail-partitions; failing on purpose")


def _load_model(workload: Workload, msg: Message, device: torch.device) -> torch.nn.Module:
    model = workload.build_model()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    return model.to(device)


def handle_train(
    msg: Message,
    context: Context,
    config: LocalTrainingKeys,
    *,
    workload: Workload | None = None,
    prepare: PrepareFn | None = None,
) -> Message:
    """Local training from the received global arrays; reply with the new arrays and metrics.

    With ``fedsgd`` in the round config, one SGD step on one fixed batch of ``fedsgd-batch-size``
    examples; with ``send-ground-truth`` the batch travels back in a separate ArrayRecord
    ``ground-truth``, which only the trace recorder reads (simulation only: it is scoring data).
    ``workload`` replaces the one the config names (e.g. with Opacus-compatible models) and
    ``prepare`` is handed to the training loop (e.g. Opacus' ``make_private``).
    """
    torch.set_num_threads(1)
    pid, num_partitions = partition_of(context)
    round_config = msg.content.get("config", ConfigRecord())
    server_round = int(round_config.get("server-round", 0))
    seed = derive_seed(config.seed, pid, server_round)
    device = resolve_device(config.device)
    workload = workload or build_workload(config)
    model = _load_model(workload, msg, device)
    dataset = workload.client_dataset(pid, num_partitions)
    train_cfg = train_config_from(config, round_config)
    ground_truth = None
    if bool(round_config.get("fedsgd", False)):
        size = min(int(round_config.get("fedsgd-batch-size", 1)), len(dataset))
        chosen = np.sort(np.random.default_rng(seed).choice(len(dataset), size, replace=False))
        dataset = dataset.subset(chosen)
        train_cfg = TrainConfig(
            steps=1,
            batch_size=size,
            optimizer="sgd",
            lr=train_cfg.lr,
            momentum=0.0,
            weight_decay=0.0,
        )
        if bool(round_config.get("send-ground-truth", False)):
            ground_truth = ArrayRecord({"images": Array(dataset.images.numpy()),
                                        "labels": Array(dataset.labels.numpy())})  # fmt: skip
    result = train(
        model, dataset, workload.step, train_cfg, device=device, seed=seed, prepare=prepare
    )
    metrics = {f"train-{k}": v for k, v in result.metrics.items()}
    metrics.update({"num-examples": result.num_examples, "train-seconds": result.seconds})
    info = client_info(context)
    # What the client really used, so a recorded update can be turned back into a gradient.
    info.update(
        {"lr": train_cfg.lr, "local-steps": result.steps, "batch-size": train_cfg.batch_size}
    )
    content = RecordDict({
        "arrays": ArrayRecord(model.cpu().state_dict()),
        "metrics": MetricRecord(metrics),
        CLIENT_INFO: info,
    })  # fmt: skip
    if ground_truth is not None:
        content["ground-truth"] = ground_truth
    return Message(content, reply_to=msg)


def handle_evaluate(msg: Message, context: Context, config: RunConfig) -> Message:
    """Evaluate the received global arrays on this client's partition."""
    torch.set_num_threads(1)
    pid, num_partitions = partition_of(context)
    device = resolve_device(config.device)
    workload = build_workload(config)
    model = _load_model(workload, msg, device)
    dataset = workload.client_dataset(pid, num_partitions)
    metrics = evaluate(model, dataset, workload.step, device=device)
    record = MetricRecord({**{f"eval-{k}": v for k, v in metrics.items()},
                           "num-examples": len(dataset)})  # fmt: skip
    return Message(RecordDict({"metrics": record, CLIENT_INFO: client_info(context)}), reply_to=msg)


WEIGHT_TRAINING_HANDLERS = {
    "query": handle_query,
    "train": handle_train,
    "evaluate": handle_evaluate,
}
