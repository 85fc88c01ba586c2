"""FedFoA on a common basis (issue 31): the declared regime, the selection and the confirmation.

    OMP_NUM_THREADS=1 python simulations/fedfoa_common_basis.py select --seeds 0 1 3
    OMP_NUM_THREADS=1 python simulations/fedfoa_common_basis.py confirm --regime iid
    python simulations/fedfoa_common_basis.py report

Every cell is a run of the ``fedfoa`` app (``run_in_process``: its ServerApp, strategy and
ClientApp code), its figures read back from the run folder (``fedfoa_compare.run_cell``). Each
finished cell is written at once to ``results/fedfoa/common_basis_<stage>.json``, and a rerun
skips the cells already there, so the study resumes across sessions; cells of one stage can run
in two processes (``--methods`` / ``--seeds`` pick a share) that write part files merged by
``report``.

Declared before any cell ran (7 December 2026), from a single-client search of what local SimCLR
can learn on this machine's budget (one core, at most about 10 minutes a cell):

* regime: ``textured-shapes-x4`` (9,600 images) at 16 x 16 pixels, K = 16 clients, encoder
  ``cnn:16`` for every client (so weight sharing is a baseline), SimCLR, Adam lr 0.002, batch 64,
  8 rounds x 80 local steps, probe on 800 labelled training images; Dirichlet(0.1) with
  partitions of at least 64 images, and IID.
* methods (selection, 3 seeds, Dirichlet 0.1): local-only SimCLR (lambda = 0), FedAvg-SSL,
  today's FedFoA (correlation relation, per-client initial models), FedFoA with one shared
  initial model, FedFoA with the basis-free anchor relation (per-client initial models), and
  FedFoA with FedAvg. The best FedFoA variant by mean probe accuracy goes to confirmation.
* confirmation: the best variant, its lambda = 0 ablation (the same keys, no pull; where that
  trains exactly as local-only or FedAvg-SSL, that run is the ablation), local-only and
  FedAvg-SSL on the first 5 seeds not used in the selection that have a partition, in both
  regimes; paired 95 % t intervals over seeds. (The ablation rule was added during the
  selection, before any confirmation cell ran.)
* the regime counts only if local-only is at least 8 points above the random-init probe (the
  same clients' models before training) in it.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from fedfoa_compare import cell_config, paired_interval, random_init_probe, run_cell

from fedlab.atomic import atomic_write_json, atomic_write_text
from fedlab.cli import setup_logging
from fedlab.errors import FedlabError
from fedlab.workload import build_workload

log = logging.getLogger("fedlab.fedfoa_common_basis")
OUT = Path(__file__).resolve().parent / "results" / "fedfoa"

SETTING = {
    "dataset": "textured-shapes-x4",
    "image-size": 16,
    "num-supernodes": 16,
    "encoders": "cnn:16",
    "num-server-rounds": 8,
    "local-steps": 80,
    "batch-size": 64,
    "lr": 0.002,
    "probe-size": 800,
    "probe-every": 0,
    "min-partition-size": 64,
}
REGIMES = {
    "dirichlet": {"partitioner": "dirichlet", "dirichlet-alpha": 0.1},
    "iid": {"partitioner": "iid"},
}
PULL = {"fedfoa-lambda": 1.0, "relation-rank": 16, "warmup-rounds": 1}
OFF = {"fedfoa-lambda": 0.0}
FEDSC = {"ssl-method": "spectral", "relation-objective": "fedsc", "relation-rank": 64}
METHODS = {
    "local-only": OFF,
    "fedavg-ssl": {**OFF, "weight-averaging": True},
    "fedfoa": PULL,
    "fedfoa shared-init": {**PULL, "shared-init": True},
    "fedfoa anchor-gram": {**PULL, "relation-kind": "anchor-gram", "anchor-count": 64},
    "fedfoa+fedavg": {**PULL, "weight-averaging": True},
    # FedEMA's update (autoscaled, tau 0.7 as in the paper) under the pull; added after the
    # confirmation had run (see the docs)
    "fedfoa+fedema": {**PULL, "weight-averaging": True, "fedema-tau": 0.7},
    # FedSC (Jing et al., ICML 2024): spectral loss, the full D x D second moment shared, weights
    # averaged; added to the selection after its first results were seen (see the docs)
    "fedsc": {**FEDSC, "weight-averaging": True},
    "spectral fedavg": {**FEDSC, "weight-averaging": True, "fedsc-alpha-min": 1.0},
}
#: methods trained with another loss than SimCLR: their loss is not in the SimCLR column
SPECTRAL = ("fedsc", "spectral fedavg")
VARIANTS = ("fedfoa", "fedfoa shared-init", "fedfoa anchor-gram", "fedfoa+fedavg", "fedfoa+fedema")
SELECTION_REGIME = "dirichlet"


def first_seeds_with_partition(regime: str, count: int, skip: set[int]) -> list[int]:
    """The first ``count`` seeds outside ``skip`` whose partition into K clients exists."""
    seeds, seed = [], 0
    while len(seeds) < count:
        if seed not in skip:
            config = cell_config({**SETTING, **REGIMES[regime]}, {}, seed=seed, run_dir=Path("-"))
            try:
                build_workload(config).client_dataset(0, config.num_supernodes)
                seeds.append(seed)
            except FedlabError:
                log.info("seed %d: no %s partition with min-partition-size 64", seed, regime)
        seed += 1
    return seeds


def run_stage(stage: str, cells: list[tuple[str, str, int, dict[str, Any]]], out: Path) -> None:
    """Run the cells not yet in ``out`` (regime, method, seed, keys), saving after each."""
    done = json.loads(out.read_text()) if out.is_file() else {"setting": SETTING, "rows": []}
    have = {(r["regime"], r["method"], r["seed"]) for r in done["rows"]}
    runs_dir = OUT / "runs" / f"common_basis_{stage}"
    for regime, method, seed, keys in cells:
        if (regime, method, seed) in have:
            continue
        run_dir = runs_dir / f"{regime}-{method.replace(' ', '-')}-seed{seed}"
        shutil.rmtree(run_dir, ignore_errors=True)  # an unfinished earlier try
        config = cell_config({**SETTING, **REGIMES[regime]}, keys, seed=seed, run_dir=run_dir)
        started = time.perf_counter()
        if method == "random-init":
            row = {"probe-acc-mean": random_init_probe(config)}
        else:
            row = run_cell(config)
        seconds = time.perf_counter() - started
        done["rows"].append({**row, "regime": regime, "method": method, "seed": seed,
                             "seconds": round(seconds, 1)})  # fmt: skip
        atomic_write_json(out, done)
        log.info("%s %s seed %d: probe %.3f (%.0f s)", regime, method, seed,
                 row["probe-acc-mean"], seconds)  # fmt: skip


def load_rows(stage: str) -> list[dict[str, Any]]:
    """Every row of a stage, from its file and its part files."""
    rows: dict[tuple, dict[str, Any]] = {}
    for path in sorted(OUT.glob(f"common_basis_{stage}*.json")):
        for r in json.loads(path.read_text())["rows"]:
            rows[(r["regime"], r["method"], r["seed"])] = r
    return list(rows.values())


def best_variant(rows: list[dict[str, Any]]) -> str:
    """The FedFoA variant with the highest mean probe accuracy in the selection."""
    means = {v: np.mean([r["probe-acc-mean"] for r in rows if r["method"] == v])
             for v in VARIANTS if any(r["method"] == v for r in rows)}  # fmt: skip
    if not means:
        raise FedlabError("no selection rows yet: run the select stage first")
    return max(means, key=means.__getitem__)


#: keys that only shape what a client uploads, which nobody uses when the pull is off
UPLOAD_ONLY = ("relation-rank", "warmup-rounds", "relation-kind", "anchor-count")


def ablation_of(variant: str) -> dict[str, Any]:
    """The variant's keys with the pull off."""
    return {**METHODS[variant], **OFF}


def ablation_name(variant: str) -> str:
    """The method already in the study that trains exactly as the variant's ablation does
    (FedFoA+FedAvg without its pull is FedAvg-SSL), else ``"<variant> lambda=0"``."""
    trains = {k: v for k, v in ablation_of(variant).items() if k not in UPLOAD_ONLY}
    for name in ("local-only", "fedavg-ssl"):
        if {k: v for k, v in METHODS[name].items() if k not in UPLOAD_ONLY} == trains:
            return name
    return f"{variant} lambda=0"


def table(rows: list[dict[str, Any]], pairs: list[tuple[str, str]]) -> str:
    """Markdown: per regime and method mean +- std, upload bytes and wall time per round; then
    the paired differences with their 95 % intervals."""
    rounds = SETTING["num-server-rounds"]
    lines = ["| regime | method | probe accuracy | seeds | upload B/client/round | s/round |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["regime"], r["method"]), []).append(r)
    for (regime, method), rs in sorted(groups.items()):
        accs = [r["probe-acc-mean"] for r in rs]
        upload = [r["upload-bytes-per-client"] for r in rs if "upload-bytes-per-client" in r]
        per_round = (
            "-"
            if method == "random-init"
            else f"{np.mean([r['seconds'] for r in rs]) / rounds:.0f}"
        )
        lines.append(
            f"| {regime} | {method} | {np.mean(accs):.3f} +- {np.std(accs):.3f} | {len(rs)} "
            f"| {f'{np.mean(upload):,.0f}' if upload else '-'} | {per_round} |"
        )
    lines += ["", "| regime | comparison (paired by seed) | mean difference | 95 % interval "
              "| seeds |", "|---|---|---|---|---|"]  # fmt: skip
    for regime in REGIMES:
        for a, b in pairs:
            ra, rb = groups.get((regime, a)), groups.get((regime, b))
            p = paired_interval(ra, rb) if ra and rb else None
            if p is not None:
                lines.append(f"| {regime} | {a} - {b} | {p[0]:+.3f} | {p[1]:+.3f} .. {p[2]:+.3f} "
                             f"| {p[3]} |")  # fmt: skip
    return "\n".join(lines)


def evidence(rows: list[dict[str, Any]]) -> str:
    """Markdown: the last round's SimCLR loss and relation gap (a client's own matrix against the
    aggregate it received; anchor Grams and correlations are different matrices, so the gap
    compares within a relation kind only), means over seeds."""
    lines = ["| regime | method | last-round SimCLR loss | relation gap |", "|---|---|---|---|"]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if "train-ssl-loss" in r and r["method"] not in SPECTRAL:
            groups.setdefault((r["regime"], r["method"]), []).append(r)
    for (regime, method), rs in sorted(groups.items()):
        loss = np.mean([r["train-ssl-loss"] for r in rs])
        gap = np.mean([r["relation-gap"] for r in rs])
        lines.append(f"| {regime} | {method} | {loss:.3f} | {gap:.3f} |")
    return "\n".join(lines)


def report(select: list[dict[str, Any]], confirm: list[dict[str, Any]]) -> str:
    """The published tables: the selection with its evidence, then the confirmation."""
    pairs = [(v, "local-only") for v in VARIANTS] + [("local-only", "random-init"),
                                                      ("fedavg-ssl", "local-only")]  # fmt: skip
    pairs += [("fedsc", "fedavg-ssl"), ("fedsc", "spectral fedavg")]
    text = "#### Selection\n\n" + table(select, pairs) + "\n\n" + evidence(select)
    if confirm:
        best = best_variant(select)
        pairs = [(best, "local-only"), (best, ablation_name(best)), ("local-only", "random-init"),
                 ("fedavg-ssl", "local-only")]  # fmt: skip
        text += "\n\n#### Confirmation\n\n" + table(confirm, pairs)
    return text


def plot(stages: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """Probe accuracy per method (mean, one seed std as the error bar), one panel per stage and
    regime."""
    import matplotlib.pyplot as plt

    panels = [(f"{stage}, {regime}", [r for r in rows if r["regime"] == regime])
              for stage, rows in stages.items() for regime in REGIMES
              if any(r["regime"] == regime for r in rows)]  # fmt: skip
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.8), squeeze=False)
    for ax, (title, rows) in zip(axes[0], panels, strict=True):
        methods = sorted({r["method"] for r in rows})
        accs = [[r["probe-acc-mean"] for r in rows if r["method"] == m] for m in methods]
        ax.bar(range(len(methods)), [np.mean(a) for a in accs],
               yerr=[np.std(a) for a in accs], capsize=3, color="tab:blue")  # fmt: skip
        ax.set_xticks(range(len(methods)), methods, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel("linear-probe accuracy")
        seeds = sorted({len(a) for a in accs})
        ax.set_title(f"{title}, K = 16 ({'/'.join(map(str, seeds))} seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stage", choices=["select", "confirm", "report"])
    p.add_argument("--seeds", type=int, nargs="*", default=[])
    p.add_argument("--methods", nargs="*", default=[])
    p.add_argument("--regime", choices=list(REGIMES), default=SELECTION_REGIME)
    p.add_argument("--part", default="", help="suffix of this process's part file")
    args = p.parse_args()
    setup_logging(verbose=False)
    suffix = f"_{args.part}" if args.part else ""
    if args.stage == "select":
        seeds = args.seeds or first_seeds_with_partition(SELECTION_REGIME, 3, set())
        names = args.methods or ["random-init", *METHODS]
        cells = [(args.regime, m, s, METHODS.get(m, {})) for s in seeds for m in names]
        run_stage("select", cells, OUT / f"common_basis_select{suffix}.json")
    elif args.stage == "confirm":
        best = best_variant(load_rows("select"))
        used = {r["seed"] for r in load_rows("select")}
        seeds = args.seeds or first_seeds_with_partition(args.regime, 5, used)
        methods = {"random-init": {}, best: METHODS[best], ablation_name(best): ablation_of(best),
                   "local-only": OFF, "fedavg-ssl": METHODS["fedavg-ssl"]}  # fmt: skip
        names = args.methods or list(methods)
        cells = [(args.regime, m, s, methods[m]) for s in seeds for m in names]
        run_stage("confirm", cells, OUT / f"common_basis_confirm{suffix}.json")
    select, confirm = load_rows("select"), load_rows("confirm")
    text = report(select, confirm)
    atomic_write_text(OUT / "common_basis.md", text + "\n")
    plot({"selection": select, "confirmation": confirm}, OUT / "common_basis.png")
    log.info("\n%s", text)


if __name__ == "__main__":
    main()
