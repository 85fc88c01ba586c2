"""Train FreePIH's style-conditioned diffusion prior federated and central at equal steps.

Declared in docs/freepih.md ("Prior"). Two modes, each one process, one thread:

- ``federated``: the ``pih_prior`` app itself (``run_in_process``): 4 clients holding
  different photos and styles, ``ROUNDS`` rounds of ``LOCAL_STEPS`` Adam steps at batch 16,
  FedAvg of the UNet. Total optimizer steps: 4 x ROUNDS x LOCAL_STEPS.
- ``central``: the same UNet, data (every training photo in every style), step, batch and
  learning rate through :func:`fedlab.diffusion.train_with_checkpoints` (THE loop), for the
  same total number of optimizer steps.

Both are evaluated on the same held-out conditional denoising loss. The final weights
(save_pretrained + styles.json) of ``federated``, the prior the defaults use, go straight into
the package data, ``clients/harmonization/weights/prior-federated`` (``SHIPPED_PRIOR``); those
of ``central`` (a study baseline) to ``simulations/results/pih/prior-central``. The histories
go to ``simulations/results/pih/prior_training.json``.

Usage: ``python simulations/pih_train_prior.py federated|central [--steps N]``.
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

from fedlab.clients.harmonization.app import pih_prior  # noqa: E402
from fedlab.clients.harmonization.config import SHIPPED_PRIOR  # noqa: E402
from fedlab.clients.harmonization.data import STYLES, StyledCrops, all_pairs  # noqa: E402
from fedlab.clients.harmonization.workload import (  # noqa: E402
    PIHPriorWorkload,
    heldout_conditional_loss,
    save_prior,
)

from fedlab.atomic import atomic_write_json  # noqa: E402
from fedlab.diffusion import build_unet, denoising_step, train_with_checkpoints  # noqa: E402
from fedlab.inprocess import run_in_process  # noqa: E402
from fedlab.training import TrainConfig  # noqa: E402

log = logging.getLogger("fedlab.pih_train_prior")

CLIENTS, ROUNDS, LOCAL_STEPS, BATCH, LR = 4, 10, 25, 16, 1e-3
TOTAL_STEPS = CLIENTS * ROUNDS * LOCAL_STEPS  # 1,000
RESULTS_DIR = ROOT / "simulations" / "results" / "pih"
RESULTS = RESULTS_DIR / "prior_training.json"


def _record(mode: str, entry: dict) -> None:
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[mode] = entry
    atomic_write_json(RESULTS, data)


def federated(out: Path, steps: int) -> None:
    rounds = steps // (CLIENTS * LOCAL_STEPS)
    config = pih_prior.resolve_config({
        "num-supernodes": CLIENTS, "num-server-rounds": rounds, "local-steps": LOCAL_STEPS,
        "batch-size": BATCH, "lr": LR, "out-dir": str(out), "device": "cpu",
    })  # fmt: skip
    start = time.perf_counter()
    summary = run_in_process(pih_prior, config)
    history = json.loads((out / "history.json").read_text())
    dest = SHIPPED_PRIOR
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(out / "prior", dest)
    _record("federated", {
        "run-config": config.to_mapping(), "total-optimizer-steps": rounds * CLIENTS * LOCAL_STEPS,
        "seconds": round(time.perf_counter() - start, 1), "summary-final": summary["final"],
        "history": [{"round": h["round"], "steps": h["round"] * CLIENTS * LOCAL_STEPS,
                     **h["evaluate"], "train-loss": h["train"].get("train-loss")}
                    for h in history],
    })  # fmt: skip


def central(out: Path, steps: int) -> None:
    config = pih_prior.resolve_config({"device": "cpu"})
    workload = PIHPriorWorkload(config)
    images, labels = workload.test_dataset().tensors
    torch.manual_seed(0)
    model = build_unet("cpu", sample_size=32, num_class_embeds=len(STYLES) + 1)
    dataset = StyledCrops(all_pairs(), 32, CLIENTS * config.crops_per_client, seed=11)
    step_fn = denoising_step(workload.scheduler, conditional=True)
    start = time.perf_counter()
    result = train_with_checkpoints(
        model, dataset, step_fn, TrainConfig(steps=1, batch_size=BATCH, optimizer="adam", lr=LR),
        out=out, total_steps=steps, checkpoint_every=100, seed=0,
        evaluate=lambda m: heldout_conditional_loss(m, workload.scheduler, images, labels),
    )  # fmt: skip
    save_prior(model.eval(), RESULTS_DIR / "prior-central")
    _record("central", {"total-optimizer-steps": steps, "batch-size": BATCH, "lr": LR,
                        "seconds": round(time.perf_counter() - start, 1),
                        "history": result["history"]})  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("federated", "central"))
    parser.add_argument("--steps", type=int, default=TOTAL_STEPS)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(1)
    out = Path(args.out or ROOT / "runs" / f"pih-prior-{args.mode}").resolve()
    if args.mode == "federated":
        federated(out, args.steps)
    else:
        central(out, args.steps)


if __name__ == "__main__":
    main()
