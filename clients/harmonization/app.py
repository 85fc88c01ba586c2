"""The ``pih_prior`` and ``harmonization`` apps.

``pih_prior``: federated training of the style-conditioned diffusion prior. Clients hold
different photos and styles (:func:`fedlab.clients.harmonization.data.client_pairs`), train a
class-conditional epsilon-prediction ``UNet2DModel`` through THE loop, the server averages it
(FedAvg), reports the held-out conditional denoising loss each round and writes the final UNet
as a ``save_pretrained`` folder ``<run>/prior`` (with ``styles.json``).

``harmonization``: the same federation starting from the shipped prior; every round each
client harmonizes its own declared composites with the federation's prior (FreePIH, SDEdit
and the baselines) and reports content, style and background metrics; the server averages
them weighted by composites. ``train-prior=false`` (the default) only evaluates.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from fedlab.clients.diffusion_prior import (
    build_prior_strategy,
    check_prior_app,
    handle_train_unless_frozen,
)
from fedlab.clients.harmonization.config import HarmonizationConfig, PIHPriorConfig
from fedlab.clients.harmonization.data import STYLES
from fedlab.clients.harmonization.workload import (
    PIHPriorWorkload,
    heldout_conditional_loss,
    save_prior,
)
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid

from fedlab.appspec import AppSpec
from fedlab.client import client_info, handle_query, handle_train, partition_of
from fedlab.diffusion import build_unet
from fedlab.run_folder import RunFolder
from fedlab.server import run_federation, seed_everything
from fedlab.workload import build_workload

log = logging.getLogger("fedlab.harmonization")


def unet_of(workload: PIHPriorWorkload, arrays: ArrayRecord) -> torch.nn.Module:
    """The UNet of ``workload``'s config with ``arrays`` loaded, in eval mode."""
    cfg = workload.config
    if cfg.init_from:
        model = workload.build_model()
    else:
        model = build_unet(cfg.unet, sample_size=cfg.crop_size, num_class_embeds=len(STYLES) + 1)
    model.load_state_dict(arrays.to_torch_state_dict())
    return model.eval()


def pih_prior_server(grid: Grid, config: PIHPriorConfig, run: RunFolder, *,
                     evaluate_clients: bool = False) -> dict[str, Any]:  # fmt: skip
    """FedAvg of the UNet; held-out conditional denoising loss each round; prior saved."""
    config.check_paths()
    workload = build_workload(config)
    seed_everything(config.seed)
    initial = ArrayRecord(workload.build_model().state_dict())
    images, labels = workload.test_dataset().tensors
    last: dict[str, ArrayRecord] = {}

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        last["arrays"] = arrays
        model = unet_of(workload, arrays)
        return MetricRecord(heldout_conditional_loss(model, workload.scheduler, images, labels))

    summary = run_federation(
        grid, config, run, initial_arrays=initial, evaluate_fn=evaluate_fn,
        strategy_factory=lambda n: build_prior_strategy(
            config, n, evaluate_clients=evaluate_clients
        ),
    )  # fmt: skip
    if config.save_prior and "arrays" in last:
        folder = save_prior(unet_of(workload, last["arrays"]), run.path / "prior")
        log.info("prior saved: %s", folder)
    return summary


def harmonization_server(grid: Grid, config: HarmonizationConfig, run: RunFolder) -> dict:
    return pih_prior_server(grid, config, run, evaluate_clients=True)


def handle_harmonization_evaluate(
    msg: Message, context: Context, config: HarmonizationConfig
) -> Message:
    """Harmonize this client's own composites with the received prior; reply with metrics."""
    from fedlab.clients.harmonization.evaluate import evaluate_client

    torch.set_num_threads(1)
    pid, num_partitions = partition_of(context)
    workload = build_workload(config)
    model = unet_of(workload, msg.content["arrays"])  # type: ignore[arg-type]
    metrics = evaluate_client(config, model, workload.scheduler, pid, num_partitions)
    return Message(
        RecordDict({"metrics": MetricRecord(metrics), "client": client_info(context)}),
        reply_to=msg,
    )


pih_prior = AppSpec(
    extras=("diffusion",),
    name="pih_prior",
    config_cls=PIHPriorConfig,
    server_fn=pih_prior_server,  # type: ignore[arg-type]
    client_handlers={"query": handle_query, "train": handle_train},  # type: ignore[dict-item]
    defaults={"num-server-rounds": 3, "num-supernodes": 4, "local-steps": 20},
    description="Federated training of a style-conditioned diffusion prior (FreePIH's prior).",
    check=check_prior_app,  # type: ignore[arg-type]
)

harmonization = AppSpec(
    extras=("diffusion",),
    name="harmonization",
    config_cls=HarmonizationConfig,
    server_fn=harmonization_server,  # type: ignore[arg-type]
    client_handlers={  # type: ignore[dict-item]
        "query": handle_query,
        "train": handle_train_unless_frozen,
        "evaluate": handle_harmonization_evaluate,
    },
    defaults={"num-server-rounds": 1, "num-supernodes": 4, "local-steps": 10},
    description="FreePIH: clients harmonize their own composites with the federation's prior.",
    check=check_prior_app,  # type: ignore[arg-type]
)

__all__ = ["harmonization", "pih_prior"]
