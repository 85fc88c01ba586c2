"""Train the Diff-SR diffusion prior federated and central at equal steps, and the CNN baseline.

Declared in docs/diffsr.md ("Prior training"). Three modes, each one process, one thread:

- ``federated``: the ``diffusion`` app itself (``run_in_process``): 4 clients holding
  different training images, ``ROUNDS`` rounds of ``LOCAL_STEPS`` Adam steps at batch 16 each,
  FedAvg of the UNet. Total optimizer steps: 4 x ROUNDS x LOCAL_STEPS.
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
    load_unet,
    train_with_checkpoints,
)
from fedlab.inprocess import run_in_process  # noqa: E402
from fedlab.training import TrainConfig  # noqa: E402

log = logging.getLogger("fedlab.diffsr_train_prior")

CLIENTS, ROUNDS, LOCAL_STEPS, BATCH, LR = 4, 12, 25, 16, 1e-3
TOTAL_STEPS = CLIENTS * ROUNDS * LOCAL_STEPS  # 1,200
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
    config = diffusion.resolve_config({
        "num-supernodes": CLIENTS, "num-server-rounds": ROUNDS, "local-steps": LOCAL_STEPS,
        "batch-size": BATCH, "lr": LR, "out-dir": str(out), "device": "cpu",
    })  # fmt: skip
    start = time.perf_counter()
    summary = run_in_process(diffusion, config)
    history = json.loads((out / "history.json").read_text())
    dest = DESTINATIONS["federated"]
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(out / "prior", dest)
    _record("federated", {
        "run-config": config.to_mapping(), "total-optimizer-steps": TOTAL_STEPS,
        "seconds": round(time.perf_counter() - start, 1), "summary-final": summary["final"],
        "history": [{"round": h["round"], "steps": h["round"] * CLIENTS * LOCAL_STEPS,
                     **h["evaluate"], "train-loss": h["train"].get("train-loss")}
                    for h in history],
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
        out=out, total_steps=steps, checkpoint_every=100, seed=0,
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


def finalize(mode: str, out: Path, steps: int) -> None:
    """Ship a run stopped at a checkpoint/round boundary: its last saved weights and history.

    A federated run folder holds ``model.safetensors`` and ``history.json`` as of its last
    finished round; a central one its checkpoints. Only rounds/steps up to ``steps`` count.
    """
    model = build_unet("cpu", sample_size=32)
    if mode == "federated":
        from safetensors.torch import load_file

        history = json.loads((out / "history.json").read_text())
        rounds = steps // (CLIENTS * LOCAL_STEPS)
        if len(history) != rounds:
            raise SystemExit(f"{out} has {len(history)} rounds, not {rounds}: stop it there")
        model.load_state_dict(load_file(out / "model.safetensors"))
        run_config = json.loads((out / "config.json").read_text())["run-config"]
        entry = {
            "run-config": run_config, "total-optimizer-steps": steps,
            "stopped-after-round": rounds, "seconds": None,
            "history": [{"round": h["round"], "steps": h["round"] * CLIENTS * LOCAL_STEPS,
                         **h["evaluate"], "train-loss": h["train"].get("train-loss")}
                        for h in history],
        }  # fmt: skip
    else:
        from fedlab.diffusion.training import read_latest

        latest = read_latest(out)
        if latest is None or latest["step"] != steps:
            raise SystemExit(f"{out} is not at step {steps}")
        model = load_unet(out / latest["path"])
        entry = {"total-optimizer-steps": steps, "batch-size": BATCH, "lr": LR,
                 "seconds": sum(h["seconds"] for h in latest["history"]),
                 "history": latest["history"]}  # fmt: skip
    dest = DESTINATIONS[mode]
    shutil.rmtree(dest, ignore_errors=True)
    model.eval().save_pretrained(dest, safe_serialization=True)
    _record(mode, entry)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("federated", "central", "cnn"))
    parser.add_argument("--steps", type=int, default=TOTAL_STEPS)
    parser.add_argument("--out", default="")
    parser.add_argument(
        "--finalize", action="store_true", help="ship a run stopped at --steps from its run folder"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(1)
    out = Path(args.out or ROOT / "runs" / f"diffsr-prior-{args.mode}").resolve()
    if args.finalize:
        finalize(args.mode, out, args.steps)
        return
    {"federated": lambda: federated(out), "central": lambda: central(out, args.steps),
     "cnn": lambda: cnn(out, args.steps)}[args.mode]()  # fmt: skip


if __name__ == "__main__":
    main()
