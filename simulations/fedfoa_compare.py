"""FedFoA against local-only SSL, FedAvg-SSL, raw pixels and random init, over seeds.

Every cell is a run of the ``fedfoa`` app itself: its config comes from the app's
``resolve_config`` (the app's defaults, then the study's setting, then the method's keys), it
runs through :func:`fedlab.inprocess.run_in_process` (the app's ServerApp code, its strategy and
its ClientApp with its handlers; no Ray, because the machine has two shared cores), it writes a
normal run folder under ``--runs-dir`` (ignored by git), and the figures are read back from that
folder's ``summary.json``. A fix to the app therefore moves these figures on the next rerun.

Setting: ``textured-shapes``, Dirichlet alpha 0.1 over ``--clients`` clients, SimCLR.

* heterogeneous encoders (``--hetero``, round-robin): FedFoA vs local-only SSL (the same
  models and seeds with lambda = 0: no relation ever reaches a client);
* homogeneous encoders (``--homo``): FedAvg-SSL vs FedFoA vs local-only (the sweep adds
  FedFoA composed with FedAvg);
* random init: the app's ClientApp answers an ``evaluate`` message before any training round;
  a client with no saved model probes the one ``init_model`` gives it in round 1, so this is
  exactly the starting point of every method above (mean over all clients);
* raw pixels: the same probe on the flattened pixels of the app's workload (no model is
  involved, so no app round can produce it; it uses the probe the ClientApp uses).

A gain counts only where it exceeds twice the larger seed std of the two methods.

Usage: ``python simulations/fedfoa_compare.py [--seeds 0 1 2] [--sweep]``; writes
``simulations/results/fedfoa/fedfoa_compare.json`` (or ``fedfoa_sweep.json``) and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from fedlab.clients.ssl.config import SSLConfig
from fedlab.clients.ssl.probe import linear_probe
from flwr.app import ArrayRecord, Message, RecordDict
from study_stats import paired_t_interval

from fedlab.apps import fedfoa
from fedlab.cli import setup_logging
from fedlab.errors import FedlabError
from fedlab.flower_compat import ensure_task_identity
from fedlab.inprocess import InProcessGrid, run_in_process
from fedlab.workload import build_workload

log = logging.getLogger("fedlab.fedfoa_compare")
OUT = Path(__file__).resolve().parent / "results" / "fedfoa"


def study_setting(args: argparse.Namespace) -> dict[str, Any]:
    """Run-config keys every cell shares (on top of the app's defaults)."""
    return {
        "num-supernodes": args.clients,
        "num-server-rounds": args.rounds,
        "local-steps": args.steps,
        "batch-size": args.batch_size,
        "probe-size": args.probe_size,
        "probe-every": 0,
        "partitioner": args.partitioner,
        "dirichlet-alpha": args.alpha,
        "dataset": args.dataset,
        "min-partition-size": args.min_partition_size,
    }


def methods(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Method name -> the run-config keys that make it."""
    lam = {"fedfoa-lambda": args.lam, "relation-rank": args.rank, "warmup-rounds": args.warmup}
    off = {"fedfoa-lambda": 0.0}
    if args.sweep:
        het = {"encoders": args.hetero}
        grid = {"local-only": {**het, **off}, "fedfoa": {**het, **lam}}
        for v in args.sweep_lambda:
            grid[f"lambda={v:g}"] = {**het, **lam, "fedfoa-lambda": v}
        for v in args.sweep_rank:
            grid[f"rank={v}"] = {**het, **lam, "relation-rank": v}
        for v in args.sweep_warmup:
            grid[f"warmup={v}"] = {**het, **lam, "warmup-rounds": v}
        homo = {"encoders": args.homo, "weight-averaging": True}
        grid["homo fedavg-ssl"] = {**homo, **off}
        grid["homo fedfoa+fedavg"] = {**homo, **lam}
        return grid
    het, homo = {"encoders": args.hetero}, {"encoders": args.homo}
    wa = {"weight-averaging": True}
    # FedSC shares the full D x D second moment (rank = proj-dim: nothing is cut)
    fedsc = {"ssl-method": "spectral", "relation-objective": "fedsc", "relation-rank": 64}
    spectral_alone = {**fedsc, "fedsc-alpha-min": 1.0}  # alpha stays 1: the aggregate is unused
    return {
        "hetero fedfoa": {**het, **lam},
        "hetero fedfoa ramp": {**het, **lam, "fedfoa-schedule": "ramp"},
        "hetero fedfoa decay": {**het, **lam, "fedfoa-schedule": "decay"},
        "hetero local-only": {**het, **off},
        "hetero fedsc-objective": {**het, **fedsc},
        "hetero local-only spectral": {**het, **spectral_alone},
        "homo fedavg-ssl": {**homo, **off, **wa},
        "homo fedsc": {**homo, **fedsc, **wa},
        "homo fedfoa": {**homo, **lam},
        "homo fedfoa encoder": {**homo, **lam, "relation-features": "encoder"},
        "homo local-only": {**homo, **off},
        "homo local-only spectral": {**homo, **spectral_alone},
    }


def cell_config(
    setting: Mapping[str, Any], changes: Mapping[str, Any], *, seed: int, run_dir: Path
) -> SSLConfig:
    """The resolved ``fedfoa`` config of one cell: app defaults, setting, method, seed, folder."""
    config = fedfoa.resolve_config(setting, changes, {"seed": seed, "out-dir": str(run_dir)})
    return config  # type: ignore[return-value]


def figures_from_run_folder(run_dir: Path) -> dict[str, float]:
    """The last round's train and evaluate metrics, as the run wrote them to ``summary.json``."""
    summary_path = Path(run_dir) / "summary.json"
    if not summary_path.is_file():
        raise FedlabError(
            f"no summary.json in run folder {run_dir}; the run did not finish: rerun the cell"
        )
    summary = json.loads(summary_path.read_text())
    final = summary.get("final") or {}
    if summary.get("stopped-early") or "probe-acc-mean" not in final.get("evaluate", {}):
        raise FedlabError(
            f"run folder {run_dir} has no final probe accuracy (stopped early: "
            f"{summary.get('stopped-early')!r}); rerun the cell with a longer round-timeout"
        )
    return {**final.get("train", {}), **final["evaluate"]}


def run_cell(config: SSLConfig) -> dict[str, float]:
    """Run the ``fedfoa`` app for ``config`` in this process; return its figures.

    The figures are read back from the run folder (``config.out_dir``), not from the returned
    summary, so the study reports what a user of the app would find on disk.
    """
    run_in_process(fedfoa, config)
    return figures_from_run_folder(Path(config.out_dir))


def random_init_probe(config: SSLConfig) -> float:
    """Mean probe accuracy of every client's model before its first round, via the ClientApp.

    Each client of a fresh in-process grid has an empty ``context.state``, so the app's
    ``evaluate`` handler probes the model ``init_model`` builds for it, the one its first
    training round starts from.
    """
    ensure_task_identity()
    grid = InProcessGrid(fedfoa, config, config.num_supernodes)
    messages = [
        Message(RecordDict({"arrays": ArrayRecord()}), dst_node_id=node, message_type="evaluate")
        for node in grid.get_node_ids()
    ]
    accs = []
    for reply in grid.send_and_receive(messages):
        if reply.has_error():
            raise FedlabError(
                f"random-init probe failed on a client: {reply.error.reason}; fix the evaluate "
                "handler of the fedfoa app"
            )
        accs.append(float(reply.content["metrics"]["probe-acc"]))
    return float(np.mean(accs))


def raw_pixel_probe(config: SSLConfig) -> float:
    """The probe on flattened pixels of the app's workload (probe split -> held-out split)."""
    workload = build_workload(config)
    tr, te = workload.probe_train_dataset(), workload.test_dataset()
    return linear_probe(
        tr.images.numpy(), tr.labels.numpy(), te.images.numpy(), te.labels.numpy(), seed=config.seed
    ).accuracy


def baselines(args: argparse.Namespace, seed: int, runs_dir: Path) -> dict[str, float]:
    """Raw pixels, and the random-init probe of each encoder layout."""
    setting = study_setting(args)
    out = {}
    for label, enc in (("hetero", args.hetero), ("homo", args.homo)):
        config = cell_config(
            setting, {"encoders": enc}, seed=seed, run_dir=runs_dir / f"{label}-init-seed{seed}"
        )
        out[f"{label} random-init"] = random_init_probe(config)
    out["raw pixels"] = raw_pixel_probe(config)
    return out


def check_partitions_exist(args: argparse.Namespace, seeds: list[int]) -> None:
    """Refuse, before any cell runs, seeds whose partition cannot be drawn (a Dirichlet split
    with ``min-partition-size`` may not exist for a seed; the protocol takes the next seeds)."""
    missing = []
    for seed in seeds:
        config = cell_config(study_setting(args), {}, seed=seed, run_dir=Path("unused"))
        try:
            build_workload(config).client_dataset(0, config.num_supernodes)
        except FedlabError:
            missing.append(seed)
    if missing:
        raise FedlabError(
            f"no {args.partitioner} partition into {args.clients} clients of at least "
            f"{args.min_partition_size} examples exists for seeds {missing}; run the next seeds "
            "instead (docs/fedfoa.md: the first seeds whose partition exists)"
        )


def run_dir_name(name: str, seed: int) -> str:
    """A folder name for a method and seed (``hetero fedfoa`` -> ``hetero-fedfoa-seed0``)."""
    return f"{name.replace(' ', '-').replace('=', '')}-seed{seed}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--partitioner", default="dirichlet", choices=["dirichlet", "iid"])
    p.add_argument("--alpha", type=float, default=0.1, help="Dirichlet alpha")
    p.add_argument("--dataset", default="textured-shapes")
    p.add_argument("--min-partition-size", type=int, default=2)
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
    p.add_argument("--runs-dir", default="", help="where the run folders go (default OUT/runs)")
    p.add_argument("--merge", nargs="*", default=[], help="combine per-seed output files")
    p.add_argument(
        "--no-baselines",
        action="store_true",
        help="skip raw-pixel and random-init probes (a second process over the same seeds)",
    )
    args = p.parse_args()
    # The console scripts' setup: one handler on the fedlab hierarchy (the app's round lines and
    # ours, once each), Flower's own INFO lines off.
    setup_logging(verbose=False)
    out = Path(args.out or OUT / ("fedfoa_sweep.json" if args.sweep else "fedfoa_compare.json"))
    runs_dir = Path(args.runs_dir or OUT / "runs") / out.stem
    runs: dict[str, list[dict[str, Any]]] = {}
    for path in args.merge:  # per-seed files from parallel runs
        for name, rows in json.loads(Path(path).read_text())["runs"].items():
            runs.setdefault(name, []).extend(rows)

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"args": vars(args), "runs": runs}, indent=2) + "\n")

    if not args.merge:
        check_partitions_exist(args, args.seeds)
    for seed in [] if args.merge else args.seeds:
        if not args.sweep and not args.no_baselines:
            for name, acc in baselines(args, seed, runs_dir).items():
                runs.setdefault(name, []).append({"seed": seed, "probe-acc-mean": acc})
        for name, changes in methods(args).items():
            if args.only and name not in args.only:
                continue
            run_dir = runs_dir / run_dir_name(name, seed)
            config = cell_config(study_setting(args), changes, seed=seed, run_dir=run_dir)
            started = time.perf_counter()
            final = run_cell(config)
            final.update(seed=seed, seconds=round(time.perf_counter() - started, 1))
            runs.setdefault(name, []).append(final)
            log.info(
                "seed %d %-20s probe %.3f  (%.0f s)",
                seed,
                name,
                final["probe-acc-mean"],
                final["seconds"],
            )
            save()
    save()
    table = summarize(runs)
    out.with_suffix(".md").write_text(table + "\n")
    log.info("\n%s", table)


def _mean_std(rows: list[dict[str, Any]]) -> tuple[float, float]:
    accs = [r["probe-acc-mean"] for r in rows]
    return float(np.mean(accs)), float(np.std(accs))


def summarize(runs: dict[str, list[dict[str, Any]]]) -> str:
    """Markdown: mean +- std of the probe accuracy, per-encoder means, bytes per client."""
    lines = [
        "| method | probe acc (mean +- std over seeds) | per encoder | upload B/client/round "
        "| train s/client/round |",
        "|---|---|---|---|---|",
    ]

    def mean_of(rows: list[dict[str, Any]], key: str, fmt: str) -> str:
        values = [r[key] for r in rows if key in r]
        return format(float(np.mean(values)), fmt) if values else "-"

    for name, rows in runs.items():
        mean, std = _mean_std(rows)
        encs = sorted({k for r in rows for k in r if k.startswith("probe-acc-enc")})
        per_enc = ", ".join(f"{k[10:]} {np.mean([r[k] for r in rows]):.3f}" for k in encs)
        lines.append(
            f"| {name} | {mean:.3f} +- {std:.3f} (n={len(rows)}) | {per_enc or '-'} "
            f"| {mean_of(rows, 'upload-bytes-per-client', ',.0f')} "
            f"| {mean_of(rows, 'train-seconds', '.1f')} |"
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
    present = [(a, b) for a, b in PAIRS if a in runs and b in runs]
    paired = {(a, b): paired_interval(runs[a], runs[b]) for a, b in present}
    if any(p is not None for p in paired.values()):
        lines += [
            "",
            "| comparison (paired by seed) | mean difference | 95 % t interval | seeds |",
            "|---|---|---|---|",
        ]
        for (a, b), p in paired.items():
            if p is not None:
                lines.append(f"| {a} - {b} | {p[0]:+.3f} | {p[1]:+.3f} .. {p[2]:+.3f} | {p[3]} |")
    return "\n".join(lines)


def paired_interval(
    rows_a: list[dict[str, Any]], rows_b: list[dict[str, Any]]
) -> tuple[float, float, float, int] | None:
    """Mean of ``a - b`` probe accuracy over the seeds both have, with its 95 % Student-t
    interval; None with fewer than 2 common seeds."""
    by_seed = {r["seed"]: r["probe-acc-mean"] for r in rows_b}
    diffs = [r["probe-acc-mean"] - by_seed[r["seed"]] for r in rows_a if r["seed"] in by_seed]
    return paired_t_interval(diffs)


def readme_rows(
    short: dict[str, list[dict[str, Any]]], long: dict[str, list[dict[str, Any]]]
) -> str:
    """The FedFoA rows of README.md's results table, from the 4 x 25 and 4 x 100 step runs."""

    def acc(runs: dict[str, list[dict[str, Any]]], name: str) -> str:
        return "{:.3f} +- {:.3f}".format(*_mean_std(runs[name]))

    def upload(name: str) -> float:
        return float(np.mean([r["upload-bytes-per-client"] for r in short[name]]))

    foa, avg = upload("hetero fedfoa"), upload("homo fedavg-ssl")
    return "\n".join(
        [
            "| Dirichlet 0.1, 4 clients, `cnn:16,resnet:8`, 4 x 100 local steps: FedFoA "
            f"| {acc(long, 'hetero fedfoa')} |",
            f"| same, local-only SSL on identical models | {acc(long, 'hetero local-only')} |",
            "| same budget, 4 x 25 steps: FedFoA / local-only / homogeneous FedAvg-SSL "
            f"| {acc(short, 'hetero fedfoa')} / {acc(short, 'hetero local-only')} / "
            f"{acc(short, 'homo fedavg-ssl')} |",
            "| upload per client per round: FedFoA (rank 16) / FedAvg-SSL "
            f"| {foa:,.0f} B / {avg:,.0f} B ({avg / foa:.0f}x) |",
        ]
    )


PAIRS = (
    ("hetero fedfoa", "hetero local-only"),
    ("hetero fedfoa ramp", "hetero local-only"),
    ("hetero fedfoa decay", "hetero local-only"),
    ("hetero fedfoa ramp", "hetero fedfoa"),
    ("hetero fedfoa decay", "hetero fedfoa"),
    ("hetero fedfoa", "hetero random-init"),
    ("hetero local-only", "hetero random-init"),
    ("homo fedfoa", "homo fedavg-ssl"),
    ("homo fedfoa", "homo local-only"),
    ("homo fedfoa encoder", "homo local-only"),
    ("homo fedfoa encoder", "homo fedfoa"),
    ("homo fedavg-ssl", "homo local-only"),
    ("homo fedfoa+fedavg", "homo fedavg-ssl"),
    ("fedfoa", "local-only"),
    ("hetero fedsc-objective", "hetero local-only spectral"),
    ("hetero fedfoa", "hetero fedsc-objective"),
    ("homo fedsc", "homo fedavg-ssl"),
    ("homo fedsc", "homo local-only spectral"),
)


if __name__ == "__main__":
    main()
