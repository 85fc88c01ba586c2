"""FedFoA ClientApp handlers, and the one local round they (and the loop simulator) run.

A client's own model lives in ``context.state`` (the ClientApp is rebuilt for every message):
it is created, seeded by (seed, partition id), on the client's first round and never sent to the
server unless ``weight-averaging`` is on. Each round: train with the SSL loss plus the alignment
term against the global relation matrix, compute the local relation matrix over the whole
partition, upload its top-r eigenpairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from fedlab.clients.ssl.config import SSLConfig
from fedlab.clients.ssl.models import SSLModel, parse_encoders
from fedlab.clients.ssl.probe import probe_model
from fedlab.clients.ssl.relation import factorize
from fedlab.clients.ssl.workload import SSLWorkload
from fedlab.strategies.fedfoa import EIGVALS, EIGVECS, RELATION, RELATION_KEYS
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict

from fedlab.client import derive_seed, handle_query, partition_of, train_config_from
from fedlab.data.datasets import ImageDataset
from fedlab.server import CLIENT_INFO
from fedlab.training import TrainConfig, resolve_device, train
from fedlab.workload import build_workload

STATE_KEY = "fedfoa-model"
FEDEMA_KEY = "fedema"  # the client's autoscaled lambda


@dataclass
class LocalRound:
    """What one local round produced: metrics and the relation factors to upload."""

    num_examples: int
    metrics: dict[str, float]
    eigvals: np.ndarray
    eigvecs: np.ndarray


def init_model(workload: SSLWorkload, partition_id: int) -> SSLModel:
    """A client's model at its first round: fixed by (seed, partition id), or with
    ``shared-init`` by (seed, encoder spec), so that clients of one architecture start alike."""
    cfg = workload.config
    owner = workload.encoder_of(partition_id) if cfg.shared_init else partition_id
    torch.manual_seed(derive_seed(cfg.seed, "init", owner))
    return workload.build_model(partition_id)


def _mixed_names(state: dict[str, torch.Tensor]) -> list[str]:
    """The entries FedEMA mixes: floating-point weights, not batch-norm running statistics."""
    return [k for k, v in state.items() if v.is_floating_point() and "running_" not in k]


def weight_divergence(local: dict[str, torch.Tensor], global_: dict[str, torch.Tensor]) -> float:
    """``||W_global - W_local||`` over the entries FedEMA mixes."""
    return float(torch.sqrt(sum(((global_[k] - local[k]).double() ** 2).sum()
                                for k in _mixed_names(global_))))  # fmt: skip


def fedema_mix(
    local: dict[str, torch.Tensor], global_: dict[str, torch.Tensor], scaler: float
) -> tuple[dict[str, torch.Tensor], float]:
    """FedEMA's update (Zhuang et al., ICLR 2022): ``mu W_local + (1 - mu) W_global`` with
    ``mu = min(scaler * ||W_global - W_local||, 1)``, the norm over all floating-point weights.

    A client whose model drifted far from the average keeps more of its own; buffers (batch-norm
    statistics) and integer entries come from the global model. Returns (weights, mu).
    """
    mu = float(min(scaler * weight_divergence(local, global_), 1.0))
    mixed = dict(global_)
    for k in _mixed_names(global_):
        mixed[k] = mu * local[k] + (1 - mu) * global_[k]
    return mixed, mu


def fedema_lambda(
    config: SSLConfig, local: dict[str, torch.Tensor], global_: dict[str, torch.Tensor],
    context: Context,
) -> float:  # fmt: skip
    """FedEMA's lambda: ``fedema-scaler``, or with ``fedema-tau`` the paper's autoscaler
    ``tau / ||W_global - W_local||`` fixed at this client's first mix (so its first mu is tau)
    and kept in its ``context.state``."""
    if config.fedema_tau == 0:
        return config.fedema_scaler
    if FEDEMA_KEY not in context.state:
        divergence = max(weight_divergence(local, global_), 1e-12)
        context.state[FEDEMA_KEY] = ConfigRecord({"lambda": config.fedema_tau / divergence})
    return float(context.state[FEDEMA_KEY]["lambda"])


def alignment_weight(config: SSLConfig, server_round: int, has_relation: bool) -> float:
    """The pull of round ``server_round``: 0 during warm-up or without a global matrix, then
    ``fedfoa-lambda`` shaped by ``fedfoa-schedule`` over the n rounds left after warm-up.

    ``constant``: lambda every round; ``ramp``: lambda * k / n in the k-th aligned round (a
    weak pull while the features are young, the full one at the end); ``decay``: lambda *
    (n - k + 1) / n (the full pull first, fading as local features mature).
    """
    if not has_relation or server_round <= config.warmup_rounds:
        return 0.0
    n = max(config.num_server_rounds - config.warmup_rounds, 1)
    k = min(server_round - config.warmup_rounds, n)
    if config.fedfoa_schedule == "ramp":
        return config.fedfoa_lambda * k / n
    if config.fedfoa_schedule == "decay":
        return config.fedfoa_lambda * (n - k + 1) / n
    return config.fedfoa_lambda


def fedsc_alpha(config: SSLConfig, server_round: int) -> float:
    """FedSC's local weight: 1 in round 1, falling linearly towards ``fedsc-alpha-min``."""
    progress = max(server_round - 1, 0) / config.num_server_rounds
    return 1.0 - (1.0 - config.fedsc_alpha_min) * progress


def local_round(
    workload: SSLWorkload,
    model: SSLModel,
    dataset: ImageDataset,
    relation: np.ndarray | None,
    *,
    server_round: int,
    train_cfg: TrainConfig,
    seed: int,
    device: torch.device | str = "cpu",
) -> LocalRound:
    """Train ``model`` in place for one round, then factorize its local relation matrix."""
    cfg = workload.config
    target = torch.as_tensor(relation, dtype=torch.float32) if relation is not None else None
    if cfg.relation_objective == "fedsc":
        use = relation is not None and server_round > cfg.warmup_rounds
        weight = fedsc_alpha(cfg, server_round) if use else 1.0
        step = workload.fedsc_step(target if use else None, weight)
    else:
        weight = alignment_weight(cfg, server_round, relation is not None)
        step = workload.aligned_step(target, weight)
    result = train(model, dataset, step, train_cfg, device=device, seed=seed)
    if cfg.relation_objective == "fedsc":
        torch.manual_seed(derive_seed(seed, "fedsc-views"))
        shared = workload.local_second_moment(model, dataset, device)
    else:
        torch.manual_seed(derive_seed(seed, "relation-views"))
        shared = workload.local_relation(model, dataset, device)
    vals, vecs = factorize(shared, cfg.relation_rank)
    metrics = {f"train-{k}": v for k, v in result.metrics.items()}
    metrics.update({"train-seconds": result.seconds, "align-weight": weight})
    if target is not None:
        # How far the aggregate the client received lies from its own matrix after training:
        # near 0, the aggregate tells the client nothing it does not already know.
        metrics["relation-gap"] = float(
            torch.linalg.norm(shared.cpu() - target) / torch.linalg.norm(target).clamp_min(1e-12)
        )
    return LocalRound(result.num_examples, metrics, vals, vecs)


def handle_train(msg: Message, context: Context, config: SSLConfig) -> Message:
    """One FedFoA round on this client; reply with relation factors (and weights if averaged)."""
    torch.set_num_threads(1)
    pid, num_partitions = partition_of(context)
    round_config = msg.content.get("config", ConfigRecord())
    server_round = int(round_config.get("server-round", 0))
    device = resolve_device(config.device)
    workload = build_workload(config)
    model = init_model(workload, pid)
    if STATE_KEY in context.state:
        model.load_state_dict(context.state[STATE_KEY].to_torch_state_dict())
    arrays = msg.content["arrays"]
    weights = {k: v for k, v in arrays.items() if k not in RELATION_KEYS}
    fedema_mu = None
    fedema_on = config.fedema_scaler > 0 or config.fedema_tau > 0
    if weights:
        global_state = ArrayRecord(weights).to_torch_state_dict()
        if fedema_on and STATE_KEY in context.state:
            local = model.state_dict()
            scaler = fedema_lambda(config, local, global_state, context)
            global_state, fedema_mu = fedema_mix(local, global_state, scaler)
        model.load_state_dict(global_state)
    relation = arrays[RELATION].numpy() if RELATION in arrays else None
    dataset = workload.client_dataset(pid, num_partitions)
    done = local_round(
        workload,
        model,
        dataset,
        relation,
        server_round=server_round,
        train_cfg=train_config_from(config, round_config),
        seed=derive_seed(config.seed, pid, server_round),
        device=device,
    )
    if fedema_on:  # every reply carries the same keys (Flower's consistency rule)
        done.metrics["fedema-mu"] = 0.0 if fedema_mu is None else fedema_mu  # 0: took the average
    model.cpu()
    context.state[STATE_KEY] = ArrayRecord(model.state_dict())
    upload = ArrayRecord(model.state_dict()) if config.weight_averaging else ArrayRecord()
    upload[EIGVALS] = Array(done.eigvals)
    upload[EIGVECS] = Array(done.eigvecs)
    content = RecordDict(
        {
            "arrays": upload,
            "metrics": MetricRecord({**done.metrics, "num-examples": done.num_examples}),
            CLIENT_INFO: ConfigRecord({"partition-id": pid}),
        }
    )
    return Message(content, reply_to=msg)


def probe_metrics(
    workload: SSLWorkload,
    model: SSLModel,
    *,
    seed: int,
    device: torch.device | str = "cpu",
    own_classes: np.ndarray | None = None,
) -> dict[str, float]:
    """Linear-probe accuracy of ``model``'s frozen encoder (labelled train split -> held-out).

    With ``own_classes`` (the labels in the client's partition), the held-out accuracy is also
    split into ``probe-acc-own`` (classes the client trained on) and ``probe-acc-unseen``
    (classes it never saw), with their held-out counts ``probe-n-own``/``-unseen``: where
    federation helps, it should lift the second.
    """
    train_ds, test_ds = workload.probe_train_dataset(), workload.test_dataset()
    result = probe_model(
        model,
        train_ds.images,
        train_ds.labels.numpy(),
        test_ds.images,
        test_ds.labels.numpy(),
        seed=seed,
        device=device,
    )
    metrics = {"probe-acc": result.accuracy, "probe-c": result.c}
    if own_classes is not None:
        # Every client reports every key (Flower aggregates only equal key sets): a part with
        # no held-out example reports accuracy 0 with count 0, and the server skips it.
        test_y = test_ds.labels.numpy()
        unseen = np.setdiff1d(np.unique(test_y), own_classes)
        for split, classes in (("own", own_classes), ("unseen", unseen)):
            acc = result.accuracy_on(test_y, classes)
            metrics[f"probe-acc-{split}"] = 0.0 if acc is None else acc
            metrics[f"probe-n-{split}"] = int(np.isin(test_y, classes).sum())
    return metrics


def handle_evaluate(msg: Message, context: Context, config: SSLConfig) -> Message:
    """Linear probe of this client's own encoder (or of the averaged one under weight averaging)."""
    torch.set_num_threads(1)
    pid, num_partitions = partition_of(context)
    workload = build_workload(config)
    model = init_model(workload, pid)
    if STATE_KEY in context.state:
        model.load_state_dict(context.state[STATE_KEY].to_torch_state_dict())
    weights = {k: v for k, v in msg.content["arrays"].items() if k not in RELATION_KEYS}
    if weights:
        model.load_state_dict(ArrayRecord(weights).to_torch_state_dict())
    own = np.unique(workload.client_dataset(pid, num_partitions).labels.numpy())
    metrics = probe_metrics(
        workload, model, seed=config.seed, device=resolve_device(config.device), own_classes=own
    )
    n_enc = len(parse_encoders(config.encoders))
    record = MetricRecord(
        {
            **metrics,
            "partition-id": pid,
            "encoder-id": pid % n_enc,
            "num-examples": len(workload.test_dataset()),
        }
    )
    return Message(RecordDict({"metrics": record}), reply_to=msg)


FEDFOA_HANDLERS = {"query": handle_query, "train": handle_train, "evaluate": handle_evaluate}
