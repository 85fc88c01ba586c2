"""A federation simulated in one process, for sweeps on a CPU budget (no Ray, no Flower messages).

The clients run the same :func:`~clients.ssl.client.local_round` as the ClientApp and the server
runs the same :meth:`FedFoA.aggregate_train`, on stand-in replies; only the transport differs.
Every client trains every round (full participation), in partition order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict

from clients.ssl.client import init_model, local_round, probe_metrics
from clients.ssl.config import SSLConfig
from clients.ssl.models import parse_encoders
from clients.ssl.workload import SSLWorkload
from fedlab.client import derive_seed, train_config_from
from strategies.fedfoa import EIGVALS, EIGVECS, RELATION, RELATION_KEYS, FedFoA, probe_summary

log = logging.getLogger("fedlab")


@dataclass
class _Meta:
    src_node_id: int


@dataclass
class LoopReply:
    """What :meth:`FedFoA.aggregate_train` reads from a reply: content, metadata, has_error."""

    content: RecordDict
    metadata: _Meta = field(default_factory=lambda: _Meta(0))

    def has_error(self) -> bool:
        return False


def run_in_process(config: SSLConfig) -> list[dict[str, Any]]:
    """Run ``config.num_server_rounds`` rounds; return one record per round like history.json."""
    workload = SSLWorkload(config)
    n = config.num_supernodes
    datasets = [workload.client_dataset(p, n) for p in range(n)]
    models = [init_model(workload, p) for p in range(n)]
    strategy = FedFoA(weight_averaging=config.weight_averaging)
    arrays = ArrayRecord(models[0].state_dict()) if config.weight_averaging else ArrayRecord()
    history = []
    for rnd in range(1, config.num_server_rounds + 1):
        replies = []
        weights = {k: v for k, v in arrays.items() if k not in RELATION_KEYS}
        relation = arrays[RELATION].numpy() if RELATION in arrays else None
        for p, model in enumerate(models):
            if weights:
                model.load_state_dict(ArrayRecord(weights).to_torch_state_dict())
            done = local_round(
                workload, model, datasets[p], relation, server_round=rnd,
                train_cfg=train_config_from(config), seed=derive_seed(config.seed, p, rnd),
            )  # fmt: skip
            upload = ArrayRecord(model.state_dict()) if config.weight_averaging else ArrayRecord()
            upload[EIGVALS], upload[EIGVECS] = Array(done.eigvals), Array(done.eigvecs)
            metrics = MetricRecord({**done.metrics, "num-examples": done.num_examples})
            replies.append(LoopReply(RecordDict({"arrays": upload, "metrics": metrics}), _Meta(p)))
        arrays, train_metrics = strategy.aggregate_train(rnd, replies)
        record: dict[str, Any] = {"round": rnd, "train": dict(train_metrics or {})}
        if rnd in config.probe_rounds():
            record["evaluate"] = _probe(workload, models, arrays, config)
        history.append(record)
        log.info("round %d: %s", rnd, record.get("evaluate", {}).get("probe-acc-mean", "-"))
    return history


def _probe(workload: SSLWorkload, models: list, arrays: ArrayRecord, config: SSLConfig) -> dict:
    if config.weight_averaging:
        model = init_model(workload, 0)
        weights = {k: v for k, v in arrays.items() if k not in RELATION_KEYS}
        model.load_state_dict(ArrayRecord(weights).to_torch_state_dict())
        acc = probe_metrics(workload, model, seed=config.seed)["probe-acc"]
        return {"probe-acc-mean": acc, "probe-acc-global": acc}
    n_enc = len(parse_encoders(config.encoders))
    rows = [
        {**probe_metrics(workload, m, seed=config.seed), "partition-id": p, "encoder-id": p % n_enc}
        for p, m in enumerate(models)
    ]
    return probe_summary(rows)
