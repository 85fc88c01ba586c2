"""The ``streaming_arena`` app: federated training of the Arena ViT detector with FedAvg.

``flower-simulation --app fedlab.apps:streaming_arena`` runs, with its defaults, 4 clients that
each hold 6 different procedural sprite videos (:mod:`.arena_data`), training the detector with
random token dropping (:mod:`.arena_workload`) through the shared training loop, averaged by
Flower's FedAvg. After every round the server reports full-frame AP@0.5 on the held-out test
videos; after the last, with ``arena-eval`` (default), Arena inference against full-frame
inference on them: AP, bytes of the x264 streams, tokens and single-thread latency.
The run folder's ``model.safetensors`` holds the global detector (load it with
:func:`load_run_model`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from fedlab.clients.arena.config import ArenaConfig
from fedlab.clients.arena.evaluate import evaluate_method, full_frame_ap
from fedlab.clients.arena.infer import ArenaSettings
from fedlab.clients.arena.model import ArenaViT
from fedlab.clients.arena.sampler import SamplerConfig
from fedlab.clients.arena.workload import ArenaWorkload
from fedlab.strategies.fedavg import build_strategy
from flwr.app import ArrayRecord, MetricRecord
from flwr.serverapp import Grid

from fedlab.app_check import check_by_building
from fedlab.appspec import AppSpec
from fedlab.client import WEIGHT_TRAINING_HANDLERS
from fedlab.errors import FedlabError
from fedlab.run_folder import RunFolder
from fedlab.server import EvaluateFn, run_federation, seed_everything

log = logging.getLogger("fedlab.arena")

#: Shared keys about image datasets that this app's procedural videos do not use.


def model_from_arrays(workload: ArenaWorkload, arrays: ArrayRecord) -> ArenaViT:
    model = workload.build_model()
    model.load_state_dict(arrays.to_torch_state_dict())
    return model.eval()


def load_run_model(config: ArenaConfig, run_dir: str | Path) -> ArenaViT:
    """The global detector a run left in ``run_dir/model.safetensors``."""
    from safetensors.torch import load_file

    model = ArenaWorkload(config).build_model()
    model.load_state_dict(load_file(str(Path(run_dir) / "model.safetensors")))
    return model.eval()


def initial_weights(path: str | Path) -> dict:
    """Weights to start from: a run folder (its ``model.safetensors``) or a detector folder
    written by ``save_pretrained`` (its ``diffusion_pytorch_model.safetensors``)."""
    from safetensors.torch import load_file

    folder = Path(path)
    for name in ("model.safetensors", "diffusion_pytorch_model.safetensors"):
        if (folder / name).is_file():
            return load_file(str(folder / name))
    raise FedlabError(
        f"init-from {str(path)!r} holds neither model.safetensors (a run folder) nor "
        "diffusion_pytorch_model.safetensors (a detector folder); give one of those folders"
    )


def arena_evaluation(config: ArenaConfig, workload: ArenaWorkload) -> EvaluateFn:
    """Full-frame AP every round; Arena against full frames after the last (``arena-eval``)."""

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        torch.set_num_threads(1)
        model = model_from_arrays(workload, arrays)
        metrics = {"ap50-full": full_frame_ap(model, workload.test_videos)}
        if config.arena_eval and server_round == config.num_server_rounds:
            sampler = SamplerConfig(budget=config.arena_budget)
            full = evaluate_method(model, workload.test_videos, ArenaSettings(method="full"))
            arena = evaluate_method(
                model, workload.test_videos,
                ArenaSettings(method="arena", interval=config.arena_interval, sampler=sampler,
                              seed=config.seed),
            )  # fmt: skip
            metrics.update({
                "ap50-arena": arena["ap50"],
                "bytes-share-arena": arena["bytes-share"],
                "tokens-share-arena": arena["tokens-share"],
                "ms-full": full["ms-mean"],
                "ms-arena": arena["ms-mean"],
                "speedup-arena": full["ms-mean"] / arena["ms-mean"],
            })  # fmt: skip
        return MetricRecord(metrics)

    return evaluate_fn


def arena_server(grid: Grid, config: ArenaConfig, run: RunFolder) -> dict[str, Any]:
    workload = ArenaWorkload(config)
    seed_everything(config.seed)
    model = workload.build_model()
    if config.init_from:
        model.load_state_dict(initial_weights(config.init_from))
        log.info("starting from %s", config.init_from)
    initial = ArrayRecord(model.state_dict())
    return run_federation(
        grid, config, run,
        strategy_factory=lambda num_nodes: build_strategy(config, num_nodes),
        initial_arrays=initial,
        evaluate_fn=arena_evaluation(config, workload),
    )  # fmt: skip


streaming_arena = AppSpec(
    extras=("video", "diffusion"),
    name="streaming_arena",
    config_cls=ArenaConfig,
    server_fn=arena_server,  # type: ignore[arg-type]
    client_handlers=WEIGHT_TRAINING_HANDLERS,
    description="Arena ViT video detector trained federatedly on procedural sprite videos.",
    check=check_by_building(build_strategy),
)
