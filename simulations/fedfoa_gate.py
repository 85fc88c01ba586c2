"""The FedFoA gate: does central SSL beat raw pixels and random-init encoders on textured-shapes?

Central (one client holding the whole training split, no federation) SimCLR through the shared
training loop, then the fixed linear probe (clients/ssl/probe.py) on the frozen encoder, against
the same probe on raw pixels and on the same encoder at its random initialisation. Seeds change
the model init, the data order and the augmentations; the dataset is fixed (procedural, seed 0).

Usage: ``python simulations/fedfoa_gate.py [--seeds 0 1 2] [--steps 900] [--encoder cnn:16]``;
writes ``simulations/results/fedfoa/fedfoa_gate.json`` and logs a table.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fedlab.clients.ssl.config import SSLConfig
from fedlab.clients.ssl.probe import linear_probe, probe_model
from fedlab.clients.ssl.workload import SSLWorkload

from fedlab.client import derive_seed
from fedlab.server import seed_everything
from fedlab.training import TrainConfig, train

log = logging.getLogger("fedlab.gate")
OUT = Path(__file__).resolve().parent / "results" / "fedfoa"


def gate_seed(
    seed: int, steps: int, encoder: str, batch_size: int, checkpoints: int
) -> dict[str, Any]:
    """Probe accuracies of central SSL (at each checkpoint), random init and raw pixels."""
    cfg = SSLConfig(seed=seed, encoders=encoder, batch_size=batch_size)
    workload = SSLWorkload(cfg)
    train_ds, test_ds = workload.train_dataset, workload.test_dataset()
    ytr, yte = train_ds.labels.numpy(), test_ds.labels.numpy()
    seed_everything(seed)
    model = workload.build_model()
    random_init = probe_model(model, train_ds.images, ytr, test_ds.images, yte, seed=seed)
    raw = linear_probe(train_ds.images.numpy(), ytr, test_ds.images.numpy(), yte, seed=seed)
    row: dict[str, Any] = {
        "seed": seed,
        "random-init": random_init.accuracy,
        "raw-pixels": raw.accuracy,
        "ssl-curve": [],
    }
    chunk = steps // checkpoints
    started = time.perf_counter()
    for c in range(checkpoints):
        # constant lr, so that the probe after each chunk is of the same run; Adam restarts
        tc = TrainConfig(
            steps=chunk, batch_size=batch_size, optimizer=cfg.optimizer, lr=cfg.lr, drop_last=True
        )
        result = train(model, train_ds, workload.step, tc, seed=derive_seed(seed, "gate", c))
        acc = probe_model(model, train_ds.images, ytr, test_ds.images, yte, seed=seed).accuracy
        row["ssl-curve"].append(
            {"steps": chunk * (c + 1), "probe-acc": acc, "ssl-loss": result.metrics["loss"]}
        )
        log.info(
            "seed %d step %d: probe %.3f loss %.3f",
            seed,
            chunk * (c + 1),
            acc,
            result.metrics["loss"],
        )
    row["ssl"] = row["ssl-curve"][-1]["probe-acc"]
    row["train-seconds"] = round(time.perf_counter() - started, 1)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=900)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--encoder", default="cnn:16")
    p.add_argument("--checkpoints", type=int, default=3, help="probes along the run")
    p.add_argument("--out", default=str(OUT / "fedfoa_gate.json"))
    p.add_argument("--merge", nargs="*", default=[], help="combine per-seed output files")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    rows = []
    for path in args.merge:  # per-seed files from parallel runs
        rows += json.loads(Path(path).read_text())["per-seed"]
    for seed in [] if args.merge else args.seeds:
        rows.append(gate_seed(seed, args.steps, args.encoder, args.batch_size, args.checkpoints))
        log.info("%s", rows[-1])
    summary = {
        k: (float(np.mean([r[k] for r in rows])), float(np.std([r[k] for r in rows])))
        for k in ("ssl", "random-init", "raw-pixels")
    }
    margin = [r["ssl"] - max(r["random-init"], r["raw-pixels"]) for r in rows]
    report = {
        "encoder": args.encoder,
        "steps": args.steps,
        "batch-size": args.batch_size,
        "per-seed": rows,
        "mean-std": summary,
        "margin-per-seed": margin,
        "gate-passed": bool(min(margin) >= 0.05),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    for k, (m, s) in summary.items():
        log.info("%-12s %.3f +- %.3f", k, m, s)
    log.info(
        "margin per seed %s -> gate %s",
        np.round(margin, 3).tolist(),
        "passed" if report["gate-passed"] else "NOT passed",
    )


if __name__ == "__main__":
    main()
