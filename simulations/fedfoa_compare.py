"""FedFoA against local-only SSL, FedAvg-SSL, raw pixels and random init, over seeds.

Centrally simulated (``clients/ssl/loop.py``: the clients' ``local_round`` and the server's
``FedFoA.aggregate_train`` in one process, no Ray), because the machine has two shared cores;
the ``fedfoa`` app runs the same code through ``flower-simulation``.

Setting: ``textured-shapes``, Dirichlet alpha 0.1 over ``--clients`` clients, SimCLR.
* heterogeneous encoders (``--hetero``, round-robin): FedFoA vs local-only SSL (the same
  models and seeds with lambda = 0: no relation ever reaches a client);
* homogeneous encoders (``--homo``): FedAvg-SSL vs FedFoA vs local-only (the sweep adds
  FedFoA composed with FedAvg);
* raw-pixel and random-init probes (each client's model at round 0).
A gain counts only where it exceeds twice the larger seed std of the two methods.

Usage: ``python simulations/fedfoa_compare.py [--seeds 0 1 2] [--sweep]``; writes
``simulations/results/fedfoa/fedfoa_compare.json`` (or ``fedfoa_sweep.json``) and a markdown table.
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

from clients.ssl.client import init_model, probe_metrics
from clients.ssl.config import SSLConfig
from clients.ssl.loop import run_in_process
from clients.ssl.probe import linear_probe
from clients.ssl.workload import SSLWorkload

log = logging.getLogger("fedlab.compare")
OUT = Path(__file__).resolve().parent / "results" / "fedfoa"


def base_config(args: argparse.Namespace, seed: int, **changes: Any) -> SSLConfig:
    """The shared setting; ``changes`` pick the method."""
    cfg = SSLConfig(
        seed=seed,
        num_supernodes=args.clients,
        num_server_rounds=args.rounds,
        local_steps=args.steps,
        batch_size=args.batch_size,
        probe_size=args.probe_size,
        probe_every=0,
    )
    return cfg.replace(**changes)


def methods(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    lam = {"fedfoa_lambda": args.lam, "relation_rank": args.rank, "warmup_rounds": args.warmup}
    off = {"fedfoa_lambda": 0.0}
    if args.sweep:
        het = {"encoders": args.hetero}
        grid = {"local-only": {**het, **off}, "fedfoa": {**het, **lam}}
        for v in args.sweep_lambda:
            grid[f"lambda={v:g}"] = {**het, **lam, "fedfoa_lambda": v}
        for v in args.sweep_rank:
            grid[f"rank={v}"] = {**het, **lam, "relation_rank": v}
        for v in args.sweep_warmup:
            grid[f"warmup={v}"] = {**het, **lam, "warmup_rounds": v}
        homo = {"encoders": args.homo, "weight_averaging": True}
        grid["homo fedavg-ssl"] = {**homo, **off}
        grid["homo fedfoa+fedavg"] = {**homo, **lam}
        return grid
    het, homo = {"encoders": args.hetero}, {"encoders": args.homo}
    wa = {"weight_averaging": True}
    return {
        "hetero fedfoa": {**het, **lam},
        "hetero local-only": {**het, **off},
        "homo fedavg-ssl": {**homo, **off, **wa},
        "homo fedfoa": {**homo, **lam},
        "homo local-only": {**homo, **off},
    }


def baselines(args: argparse.Namespace, seed: int) -> dict[str, float]:
    """Raw pixels, and the mean over clients of each encoder's random-init probe."""
    out = {}
    for label, enc in (("hetero", args.hetero), ("homo", args.homo)):
        cfg = base_config(args, seed, encoders=enc)
        workload = SSLWorkload(cfg)
        accs = [
            probe_metrics(workload, init_model(workload, p), seed=seed)["probe-acc"]
            for p in range(len(enc.split(",")))
        ]
        out[f"{label} random-init"] = float(np.mean(accs))
    tr, te = workload.probe_train_dataset(), workload.test_dataset()
    out["raw pixels"] = linear_probe(
        tr.images.numpy(), tr.labels.numpy(), te.images.numpy(), te.labels.numpy(), seed=seed
    ).accuracy
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--probe-size", type=int, default=800)
    p.add_argument("--hetero", default="cnn:16,resnet:8")
    p.add_argument("--homo", default="cnn:16")
    p.add_argument("--lam", type=float, default=1.0)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--sweep", action="store_true", help="lambda/rank/warm-up sweep (hetero)")
    p.add_argument("--sweep-lambda", type=float, nargs="*", default=[0.3, 3.0, 10.0])
    p.add_argument("--sweep-rank", type=int, nargs="*", default=[2, 64])
    p.add_argument("--sweep-warmup", type=int, nargs="*", default=[0, 2])
    p.add_argument("--only", nargs="*", default=[], help="run only these method names")
    p.add_argument("--out", default="")
    p.add_argument("--merge", nargs="*", default=[], help="combine per-seed output files")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    out = Path(args.out or OUT / ("fedfoa_sweep.json" if args.sweep else "fedfoa_compare.json"))
    runs: dict[str, list[dict[str, Any]]] = {}
    for path in args.merge:  # per-seed files from parallel runs
        for name, rows in json.loads(Path(path).read_text())["runs"].items():
            runs.setdefault(name, []).extend(rows)
    for seed in [] if args.merge else args.seeds:
        if not args.sweep:
            for name, acc in baselines(args, seed).items():
                runs.setdefault(name, []).append({"seed": seed, "probe-acc-mean": acc})
        for name, changes in methods(args).items():
            if args.only and name not in args.only:
                continue
            started = time.perf_counter()
            history = run_in_process(base_config(args, seed, **changes))
            final = {**history[-1]["train"], **history[-1].get("evaluate", {})}
            final.update(seed=seed, seconds=round(time.perf_counter() - started, 1))
            runs.setdefault(name, []).append(final)
            log.info(
                "seed %d %-20s probe %.3f  (%.0f s)",
                seed,
                name,
                final["probe-acc-mean"],
                final["seconds"],
            )
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"args": vars(args), "runs": runs}, indent=2) + "\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "runs": runs}, indent=2) + "\n")
    table = summarize(runs)
    out.with_suffix(".md").write_text(table + "\n")
    log.info("\n%s", table)


def summarize(runs: dict[str, list[dict[str, Any]]]) -> str:
    """Markdown: mean +- std of the probe accuracy, per-encoder means, bytes per client."""
    lines = [
        "| method | probe acc (mean +- std over seeds) | per encoder | upload B/client/round |",
        "|---|---|---|---|",
    ]
    for name, rows in runs.items():
        accs = [r["probe-acc-mean"] for r in rows]
        encs = sorted({k for r in rows for k in r if k.startswith("probe-acc-enc")})
        per_enc = ", ".join(f"{k[10:]} {np.mean([r[k] for r in rows]):.3f}" for k in encs)
        up = [r["upload-bytes-per-client"] for r in rows if "upload-bytes-per-client" in r]
        lines.append(
            f"| {name} | {np.mean(accs):.3f} +- {np.std(accs):.3f} (n={len(accs)}) "
            f"| {per_enc or '-'} | {f'{np.mean(up):,.0f}' if up else '-'} |"
        )
    lines += [
        "",
        "| comparison | difference of means | 2 x seed std | counts? |",
        "|---|---|---|---|",
    ]
    for a, b in PAIRS:
        if a in runs and b in runs:
            xa = [r["probe-acc-mean"] for r in runs[a]]
            xb = [r["probe-acc-mean"] for r in runs[b]]
            diff, bar = np.mean(xa) - np.mean(xb), 2 * max(np.std(xa), np.std(xb))
            verdict = "gain" if diff > bar else ("loss" if -diff > bar else "no (within noise)")
            lines.append(f"| {a} - {b} | {diff:+.3f} | {bar:.3f} | {verdict} |")
    return "\n".join(lines)


PAIRS = (
    ("hetero fedfoa", "hetero local-only"),
    ("hetero fedfoa", "hetero random-init"),
    ("hetero local-only", "hetero random-init"),
    ("homo fedfoa", "homo fedavg-ssl"),
    ("homo fedfoa", "homo local-only"),
    ("homo fedavg-ssl", "homo local-only"),
    ("homo fedfoa+fedavg", "homo fedavg-ssl"),
    ("fedfoa", "local-only"),
)


if __name__ == "__main__":
    main()
