"""Train the Diff-SR diffusion prior federated and central at equal steps, and the CNN baseline.

Declared in docs/diffsr.md ("Prior training"). Three modes, each one process, one thread:

- ``federated``: the ``diffusion`` app itself (``run_in_process``): 4 clients holding
  different training images, ``ROUNDS`` rounds of ``LOCAL_STEPS`` Adam steps at batch 16 each,
  FedAvg of the UNet. Total optimizer steps: 4 x ROUNDS x LOCAL_STEPS. The rounds run in
  chunks of ``CHUNK_ROUNDS``: chunk ``k`` is one app run with ``seed=k`` that starts from
  chunk ``k - 1``'s saved prior (``init-from``), so a stopped run continues from its last
  finished chunk (each round's optimizer starts fresh in the app anyway; only the seeds of the
  crops and noise differ from one long run).
- ``central``: the same UNet, data (all training images), step, batch and learning rate
  through :func:`fedlab.diffusion.train_with_checkpoints` (THE loop in chunks, checkpoints and
  resume), for the same total number of optimizer steps.
- ``cnn``: the arbitrary-scale CNN baseline through THE loop, same steps and batch.

Both priors are evaluated every 100 steps (central) / every round (federated) on the same
held-out denoising loss (fixed crops of the held-out images, fixed t and noise). The final
weights of the models the defaults use go straight into the package data (save_pretrained
folders, safetensors + config.json): ``federated`` to ``clients/sr/weights/prior-federated``
(``SHIPPED_PRIOR``), ``cnn`` to ``clients/sr/weights/cnn`` (``SHIPPED_CNN``); ``central`` (a
study baseline only) to ``simulations/results/diffsr/prior-central``. The histories go to
``simulations/results/diffsr/prior_training.json``.

Usage: ``python simulations/diffsr_train_prior.py federated|central|cnn [--steps N]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fedlab.clients.sr.app import diffusion  # noqa: E402
from fedlab.clients.sr.config import SHIPPED_CNN, SHIPPED_PRIOR  # noqa: E402
from fedlab.clients.sr.data import TRAIN_IMAGES, RandomCrops  # noqa: E402
from fedlab.clients.sr.workload import DiffusionWorkload  # noqa: E402

from fedlab.atomic import atomic_write_json  # noqa: E402
from fedlab.diffusion import (  # noqa: E402
    build_unet,
    denoising_step,
    heldout_denoising_loss,
    train_with_checkpoints,
)
from fedlab.inprocess import run_in_process  # noqa: E402
from fedlab.training import TrainConfig  # noqa: E402

log = logging.getLogger("fedlab.diffsr_train_prior")

CLIENTS, ROUNDS, LOCAL_STEPS, BATCH, LR = 4, 80, 25, 16, 1e-3
CHUNK_ROUNDS = 20
TOTAL_STEPS = CLIENTS * ROUNDS * LOCAL_STEPS  # 8,000
CHECKPOINT_EVERY = 1000
RESULTS_DIR = ROOT / "simulations" / "results" / "diffsr"
RESULTS = RESULTS_DIR / "prior_training.json"
#: where each mode's final weights go (package data for the shipped ones)
DESTINATIONS = {
    "federated": SHIPPED_PRIOR,
    "central": RESULTS_DIR / "prior-central",
    "cnn": SHIPPED_CNN,
}


def _record(mode: str, entry: dict) -> None:
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[mode] = entry
    atomic_write_json(RESULTS, data)


def federated(out: Path) -> None:
    history: list[dict] = []
    seconds = 0.0
    previous = ""
    for chunk in range(ROUNDS // CHUNK_ROUNDS):
        folder = out / f"chunk-{chunk}"
        done = folder / "chunk.json"
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            config = diffusion.resolve_config({
                "num-supernodes": CLIENTS, "num-server-rounds": CHUNK_ROUNDS,
                "local-steps": LOCAL_STEPS, "batch-size": BATCH, "lr": LR, "seed": chunk,
                "init-from": previous, "out-dir": str(folder), "device": "cpu",
            })  # fmt: skip
            start = time.perf_counter()
            run_in_process(diffusion, config)
            atomic_write_json(done, {"seconds": round(time.perf_counter() - start, 1),
                                     "run-config": config.to_mapping()})  # fmt: skip
        record = json.loads(done.read_text())
        seconds += record["seconds"]
        offset = chunk * CHUNK_ROUNDS
        for h in json.loads((folder / "history.json").read_text()):
            rnd = offset + h["round"]
            history.append({"round": rnd, "steps": rnd * CLIENTS * LOCAL_STEPS, **h["evaluate"],
                            "train-loss": h["train"].get("train-loss")})  # fmt: skip
        previous = str(folder / "prior")
        log.info("chunk %d done: round %d", chunk, offset + CHUNK_ROUNDS)
    dest = DESTINATIONS["federated"]
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(previous, dest)
    _record("federated", {
        "run-config": record["run-config"], "total-optimizer-steps": TOTAL_STEPS,
        "chunk-rounds": CHUNK_ROUNDS, "seconds": round(seconds, 1), "history": history,
    })  # fmt: skip


def central(out: Path, steps: int) -> None:
    config = diffusion.resolve_config({"device": "cpu"})
    workload = DiffusionWorkload(config)
    test = workload.test_dataset().tensors[0]
    torch.manual_seed(0)
    model = build_unet("cpu", sample_size=32)
    dataset = RandomCrops(TRAIN_IMAGES, 32, CLIENTS * config.crops_per_client, seed=11)
    step_fn = denoising_step(workload.scheduler)
    start = time.perf_counter()
    result = train_with_checkpoints(
        model, dataset, step_fn, TrainConfig(steps=1, batch_size=BATCH, optimizer="adam", lr=LR),
        out=out, total_steps=steps, checkpoint_every=CHECKPOINT_EVERY, seed=0, keep=100,
        evaluate=lambda m: heldout_denoising_loss(m, workload.scheduler, test),
    )  # fmt: skip
    dest = DESTINATIONS["central"]
    shutil.rmtree(dest, ignore_errors=True)
    model.eval().save_pretrained(dest, safe_serialization=True)
    _record("central", {"total-optimizer-steps": steps, "batch-size": BATCH, "lr": LR,
                        "seconds": round(time.perf_counter() - start, 1),
                        "history": result["history"]})  # fmt: skip


def cnn(out: Path, steps: int) -> None:
    from fedlab.clients.sr.cnn import train_cnn

    start = time.perf_counter()
    history = train_cnn(out, steps=steps, batch_size=BATCH, lr=LR)
    dest = DESTINATIONS["cnn"]
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(out / "cnn", dest)
    _record(
        "cnn",
        {
            "total-optimizer-steps": steps,
            "batch-size": BATCH,
            "lr": LR,
            "seconds": round(time.perf_counter() - start, 1),
            "history": history,
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("federated", "central", "cnn"))
    parser.add_argument("--steps", type=int, default=TOTAL_STEPS)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(1)
    out = Path(args.out or ROOT / "runs" / f"diffsr-prior-{args.mode}").resolve()
    {"federated": lambda: federated(out), "central": lambda: central(out, args.steps),
     "cnn": lambda: cnn(out, args.steps)}[args.mode]()  # fmt: skip


if __name__ == "__main__":
    main()
