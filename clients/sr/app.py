"""The ``diffusion`` and ``diffsr`` apps.

``diffusion``: federated training of the diffusion prior. Clients hold different bundled
images (:mod:`fedlab.clients.sr.data`), train an epsilon-prediction ``UNet2DModel`` on random crops
through THE loop (:func:`fedlab.training.train` with :func:`fedlab.diffusion.denoising_step`),
the server averages the UNet (FedAvg), reports the held-out denoising loss each round and
writes the final UNet as a ``save_pretrained`` folder ``<run>/prior``.

``diffsr``: the same federation, starting from the shipped prior, where every round each
client also super-resolves crops of its own held-out image with the federation's prior and
reports PSNR, SSIM, HaarPSI, GMSD and LR-consistency per method and scale; the server
averages them (weighted by crops). ``train-prior=false`` skips training: clients evaluate the
received prior only (the study's setting).
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
from fedlab.clients.sr.config import DiffSRConfig, DiffusionConfig
from fedlab.clients.sr.workload import DiffusionWorkload
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from fedlab.appspec import AppSpec
from fedlab.client import client_info, handle_query, handle_train, partition_of
from fedlab.diffusion import build_unet, heldout_denoising_loss
from fedlab.run_folder import RunFolder
from fedlab.server import run_federation, seed_everything
from fedlab.workload import build_workload

log = logging.getLogger("fedlab.sr")


def _unet_of(workload: DiffusionWorkload, arrays: ArrayRecord) -> torch.nn.Module:
    cfg = workload.config
    model = build_unet(cfg.unet, sample_size=cfg.crop_size)
    if cfg.init_from:
        model = workload.build_model()
    model.load_state_dict(arrays.to_torch_state_dict())
    return model.eval()


def diffusion_server(grid: Grid, config: DiffusionConfig, run: RunFolder, *,
                     evaluate_clients: bool = False) -> dict[str, Any]:  # fmt: skip
    """FedAvg of the UNet; held-out denoising loss each round; final prior saved."""
    config.check_paths()
    workload = build_workload(config)
    seed_everything(config.seed)
    initial = ArrayRecord(workload.build_model().state_dict())
    test = workload.test_dataset().tensors[0]
    last: dict[str, ArrayRecord] = {}

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        last["arrays"] = arrays
        model = _unet_of(workload, arrays)
        return MetricRecord(heldout_denoising_loss(model, workload.scheduler, test))

    def factory(num_nodes: int) -> Strategy:
        return build_prior_strategy(config, num_nodes, evaluate_clients=evaluate_clients)

    summary = run_federation(
        grid, config, run, strategy_factory=factory, initial_arrays=initial,
        evaluate_fn=evaluate_fn,
    )  # fmt: skip
    if config.save_prior and "arrays" in last:
        folder = run.path / "prior"
        _unet_of(workload, last["arrays"]).save_pretrained(folder, safe_serialization=True)
        log.info("prior saved: %s", folder)
    return summary


def diffsr_server(grid: Grid, config: DiffSRConfig, run: RunFolder) -> dict[str, Any]:
    return diffusion_server(grid, config, run, evaluate_clients=True)


def handle_diffsr_evaluate(msg: Message, context: Context, config: DiffSRConfig) -> Message:
    """Super-resolve this client's own crops with the received prior; reply with metrics."""
    from fedlab.clients.sr.evaluate import evaluate_client

    torch.set_num_threads(1)
    pid, _ = partition_of(context)
    workload = build_workload(config)
    model = _unet_of(workload, msg.content["arrays"])  # type: ignore[arg-type]
    metrics = evaluate_client(config, model, workload.scheduler, pid)
    return Message(
        RecordDict({"metrics": MetricRecord(metrics), "client": client_info(context)}),
        reply_to=msg,
    )


diffusion = AppSpec(
    extras=("diffusion",),
    name="diffusion",
    config_cls=DiffusionConfig,
    server_fn=diffusion_server,  # type: ignore[arg-type]
    client_handlers={"query": handle_query, "train": handle_train},  # type: ignore[dict-item]
    defaults={"num-server-rounds": 3, "num-supernodes": 4, "local-steps": 20},
    description="Federated training of an unconditional diffusion prior on bundled images.",
    check=check_prior_app,  # type: ignore[arg-type]
)

diffsr = AppSpec(
    extras=("diffusion",),
    name="diffsr",
    config_cls=DiffSRConfig,
    server_fn=diffsr_server,  # type: ignore[arg-type]
    client_handlers={  # type: ignore[dict-item]
        "query": handle_query,
        "train": handle_train_unless_frozen,
        "evaluate": handle_diffsr_evaluate,
    },
    defaults={"num-server-rounds": 2, "num-supernodes": 4, "local-steps": 10},
    description="Diff-SR: clients super-resolve their own images with the federation's prior.",
    check=check_prior_app,  # type: ignore[arg-type]
)

__all__ = ["diffsr", "diffusion"]
