"""ZSL benchmark: ESZSL, MLP, ParsNets, (AR)^2 and its ablations, centralised and federated.

For each dataset and each of its three fixed seen/unseen splits:

1. **Selection on validation** (seen training data only): two seen classes play the unseen
   ones (:func:`~clients.zsl.data.validation_protocol`). Each method is trained there; the
   MLP's width, ESZSL's (gamma, lambda) and every method's GZSL calibration (calibrated
   stacking, the gamma maximising validation H) are chosen there.
2. **Centralised**: train on all seen training data (the workload code called directly),
   evaluate T1 and H (with the selected calibration) on the real test splits.
3. **Federated**: 4 clients with disjoint seen classes; an in-process FedAvg loop over the
   same client code as the apps (the shared training loop on each client's partition with
   the workload's step, then example-weighted averaging of all arrays). Ray for every cell
   would cost minutes of start-up on 2 cores; the apps themselves run through
   ``flower-simulation``. ESZSL federates exactly: clients send sufficient statistics.

Writes ``results.json`` and ``README.md`` (mean and std over splits) under ``--out``
(default: ``simulations/results/zsl`` beside this script).

    OMP_NUM_THREADS=1 python simulations/zsl_benchmark.py --datasets shapes
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clients.zsl.ar2 import Ar2Net
from clients.zsl.baselines import average_statistics, eszsl_model, eszsl_solve, eszsl_statistics
from clients.zsl.benchmarks import random_filter_features
from clients.zsl.data import ZslData, validation_protocol
from clients.zsl.metrics import count_flops, count_parameters, latency_per_sample
from clients.zsl.workload import ZslConfig, ZslWorkload
from fedlab.client import derive_seed
from fedlab.registry import WORKLOADS
from fedlab.training import TrainConfig, train

log = logging.getLogger("fedlab.zsl_benchmark")
HERE = Path(__file__).resolve().parent
GAMMAS = np.round(np.arange(0.0, 12.01, 0.25), 2)
MLP_WIDTHS = (32, 64, 128, 256, 512)
ESZSL_GRID = ((1e-3, 0.1), (1e-3, 1.0), (1e-2, 0.1), (1e-2, 1.0))
NUM_CLIENTS = 4


@dataclass(frozen=True)
class Method:
    """One table row: a workload, its config overrides and its training schedules."""

    name: str
    workload: str
    overrides: dict[str, Any] = field(default_factory=dict)
    epochs: int = 20  # centralised (for ar2: fine-tuning epochs)
    pretrain_epochs: int = 0
    lr: float = 0.01
    finetune_lr: float = 0.003
    federated_lr: float = 0.003  # feature-based methods: smaller local steps limit drift
    rounds: int = 40  # federated (for ar2: fine-tuning rounds)
    local_epochs: int = 2
    local_steps: int = 5  # federated, per round (0: local_epochs); ar2 fine-tunes by epochs
    pretrain_rounds: int = 0


METHODS = (
    Method("ESZSL", "eszsl"),
    Method("MLP", "zsl_mlp"),
    Method("ParsNets", "zsl_parsnets"),
    *(Method(name, "zsl_ar2", overrides, epochs=10, pretrain_epochs=15, pretrain_rounds=5,
             rounds=5, local_steps=0)
      for name, overrides in (("(AR)^2", {}), ("(AR)^2 w/o UAD", {"ar2-uad": 0.0}),
                              ("(AR)^2 w/o AGL", {"ar2-agl": 0.0}))),
)  # fmt: skip


def make_workload(method: Method, dataset: str, split: int, data: ZslData | None,
                  extra: dict[str, Any]) -> ZslWorkload:  # fmt: skip
    name = "zsl_parsnets" if method.workload == "eszsl" else method.workload
    config = ZslConfig.from_mapping(
        {"workload": name, "zsl-dataset": dataset, "zsl-split": split, **method.overrides, **extra}
    )
    return WORKLOADS.get(name)(config, data)


def _train_cfg(epochs: int, lr: float, steps: int = 0) -> TrainConfig:
    return TrainConfig(epochs=epochs, steps=steps, batch_size=32, optimizer="adam", lr=lr)


def _fit_eszsl(w: ZslWorkload, parts: list[np.ndarray], gamma: float, lam: float) -> Any:
    s = w.attributes[w.seen]
    stats = []
    for idx in parts:
        d = w.data.subset(idx)
        stats.append(eszsl_statistics(d.inputs, w.positions[d.labels], s))
    gram, cross, _ = average_statistics(stats)
    return eszsl_model(eszsl_solve(gram, cross, s, gamma, lam), w.attributes, w.config.zsl_scale)


def fit(
    method: Method,
    w: ZslWorkload,
    *,
    federated: bool,
    seed: int = 0,
    eszsl: tuple[float, float] = ESZSL_GRID[0],
) -> torch.nn.Module:
    """Train ``method`` on ``w``'s training data, centrally or with in-process FedAvg."""
    parts = ([w.partition(p, NUM_CLIENTS) for p in range(NUM_CLIENTS)] if federated
             else [w.data.trainval])  # fmt: skip
    if method.workload == "eszsl":
        return _fit_eszsl(w, parts, *eszsl)
    torch.manual_seed(seed)
    model = w.build_model()
    base = w.config
    if not federated:
        data = w.train_dataset()
        if method.pretrain_epochs:
            w.config = base.replace(ar2_phase="pretrain")
            train(model, data, w.step, _train_cfg(method.pretrain_epochs, method.lr), seed=seed)
            w.config = base.replace(ar2_phase="finetune")
        lr = method.finetune_lr if method.pretrain_epochs else method.lr
        train(model, data, w.step, _train_cfg(method.epochs, lr), seed=seed + 1)
        w.config = base
        return model
    datasets = [w.data.subset(idx) for idx in parts]
    total_rounds = method.pretrain_rounds + method.rounds
    for rnd in range(1, total_rounds + 1):
        pretrain = rnd <= method.pretrain_rounds
        if method.pretrain_rounds:
            w.config = base.replace(ar2_phase="pretrain" if pretrain else "finetune")
        epochs = 3 if pretrain else method.local_epochs
        lr = method.lr if pretrain or not method.pretrain_rounds else method.finetune_lr
        lr = lr if method.pretrain_rounds else method.federated_lr
        start = {k: v.clone() for k, v in model.state_dict().items()}
        states, sizes = [], []
        for pid, data in enumerate(datasets):
            model.load_state_dict(start)
            cfg = _train_cfg(epochs, lr, 0 if pretrain else method.local_steps)
            train(model, data, w.step, cfg, seed=derive_seed(seed, pid, rnd))
            states.append({k: v.clone() for k, v in model.state_dict().items()})
            sizes.append(len(data))
        weights = np.asarray(sizes, dtype=np.float64) / sum(sizes)
        model.load_state_dict({k: sum(s[k].double() * wt for s, wt in zip(states, weights,
                                                                           strict=True)).to(v.dtype)
                               for k, v in start.items()})  # fmt: skip
    w.config = base
    return model


def best_gamma(w: ZslWorkload, model: torch.nn.Module) -> tuple[float, dict[str, float]]:
    scores = w.test_scores(model)
    results = [(g, w.metrics(scores, float(g))) for g in GAMMAS]
    g, m = max(results, key=lambda r: (r[1]["H"], -r[0]))
    return float(g), m


def select(method: Method, dataset: str, split: int) -> dict[str, Any]:
    """Hyperparameters and calibration chosen on the class-disjoint validation task."""
    val = validation_protocol(make_workload(method, dataset, split, None, {}).data, 2, seed=split)
    candidates: list[dict[str, Any]] = [{}]
    if method.workload == "zsl_mlp":
        candidates = [{"mlp-width": h} for h in MLP_WIDTHS]
    if method.workload == "eszsl":
        candidates = [{"eszsl": g} for g in ESZSL_GRID]
    best = None
    for extra in candidates:
        w = make_workload(method, dataset, split, val, {k: v for k, v in extra.items()
                                                         if k != "eszsl"})  # fmt: skip
        model = fit(method, w, federated=False, eszsl=extra.get("eszsl", ESZSL_GRID[0]))
        gamma, m = best_gamma(w, model)
        log.info("  select %s %s: gamma %.2f val %s", method.name, extra, gamma, _fmt(m))
        if best is None or m["H"] > best["val"]["H"]:
            best = {"extra": extra, "gamma": {"central": gamma}, "val": m}
    assert best is not None
    # The federated model's scores are calibrated on its own (federated) validation run.
    extra = best["extra"]
    w = make_workload(method, dataset, split, val, {k: v for k, v in extra.items()
                                                     if k != "eszsl"})  # fmt: skip
    model = fit(method, w, federated=True, eszsl=extra.get("eszsl", ESZSL_GRID[0]))
    best["gamma"]["federated"], best["val-federated"] = best_gamma(w, model)
    return best


def costs(method: Method, model: torch.nn.Module, w: ZslWorkload) -> dict[str, float]:
    x = w.test_sets["seen"].inputs[:32]
    if isinstance(model, Ar2Net):  # teacher and pretraining classifier are not used to predict
        parts = [model.backbone, model.head]
        params = sum(count_parameters(p) for p in parts)
        params += model.prototypes.numel() if model.use_agl else 0
    else:
        params = count_parameters(model)
    return {"params": params, "flops": count_flops(model, x),
            "latency-ms": 1e3 * latency_per_sample(model, x[:1], repeats=50)}  # fmt: skip


def run_cell(method: Method, dataset: str, split: int) -> dict[str, Any]:
    started = time.perf_counter()
    chosen = select(method, dataset, split)
    extra = {k: v for k, v in chosen["extra"].items() if k != "eszsl"}
    out: dict[str, Any] = {"method": method.name, "dataset": dataset, "split": split,
                           "selected": chosen["extra"], "gamma": chosen["gamma"],
                           "validation": chosen["val"],
                           "validation-federated": chosen["val-federated"]}  # fmt: skip
    for mode in ("central", "federated"):
        w = make_workload(method, dataset, split, None, extra)
        model = fit(
            method,
            w,
            federated=mode == "federated",
            eszsl=chosen["extra"].get("eszsl", ESZSL_GRID[0]),
        )
        scores = w.test_scores(model)
        out[mode] = w.metrics(scores, chosen["gamma"][mode])
        out[mode]["H-uncalibrated"] = w.metrics(scores, 0.0)["H"]
        if mode == "central":
            out.update(costs(method, model, w))
    out["seconds"] = round(time.perf_counter() - started, 1)
    log.info("%s %s split %d: central %s | federated %s | %d params, %.0f s", dataset,
             method.name, split, _fmt(out["central"]), _fmt(out["federated"]), out["params"],
             out["seconds"])  # fmt: skip
    return out


def _fmt(m: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.3f}" for k, v in m.items())


def _ms(values: list[float]) -> str:
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def table(results: list[dict[str, Any]], feature_flops: int) -> str:
    lines = []
    for dataset in dict.fromkeys(r["dataset"] for r in results):
        rows = [r for r in results if r["dataset"] == dataset]
        splits = sorted({r["split"] for r in rows})
        lines += [f"### {dataset} (splits {splits}; mean ± std over splits, in %)", "",
                  "| method | central T1 | central H | federated T1 | federated H | "
                  "central H (γ=0) | federated H (γ=0) | params | FLOPs/sample | CPU ms/sample |",
                  "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for name in dict.fromkeys(r["method"] for r in rows):
            cell = [r for r in rows if r["method"] == name]

            def get(mode: str, key: str, cell: list = cell) -> list[float]:
                return [r[mode][key] for r in cell]

            lines.append(
                f"| {name} | {_ms(get('central', 'T1'))} | {_ms(get('central', 'H'))} | "
                f"{_ms(get('federated', 'T1'))} | {_ms(get('federated', 'H'))} | "
                f"{_ms(get('central', 'H-uncalibrated'))} | "
                f"{_ms(get('federated', 'H-uncalibrated'))} | "
                f"{statistics.mean(r['params'] for r in cell):,.0f} | "
                f"{statistics.mean(r['flops'] for r in cell):,.0f} | "
                f"{statistics.mean(r['latency-ms'] for r in cell):.3f} |"
            )
        lines.append("")
    lines.append(f"Feature-based rows exclude the fixed random-filter features ({feature_flops:,} "
                 "FLOPs/sample, shared by ESZSL, MLP and ParsNets).")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["shapes"], choices=["shapes", "digits"])
    p.add_argument("--splits", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=[m.name for m in METHODS])
    p.add_argument("--out", default=str(HERE / "results" / "zsl"))
    p.add_argument(
        "--from-results",
        nargs="+",
        default=[],
        metavar="results.json",
        help="only write the table of earlier runs' results (concatenated)",
    )
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    for path in args.from_results:
        results += json.loads(Path(path).read_text())
    if results:
        (out / "results.json").write_text(json.dumps(results, indent=1))
    for dataset in args.datasets if not results else []:
        for split in args.splits:
            for method in (m for m in METHODS if m.name in args.methods):
                results.append(run_cell(method, dataset, split))
                (out / "results.json").write_text(json.dumps(results, indent=1))
    image = torch.rand(1, 3, 16, 16)
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        random_filter_features(image)
    text = table(results, counter.get_total_flops())
    (out / "README.md").write_text(
        "# ZSL benchmark results\n\nProduced by `simulations/zsl_benchmark.py` "
        f"(one thread; {sum(r['seconds'] for r in results):.0f} s of cells). "
        f"See docs/zsl.md.\n\n{text}\n"
    )
    log.info("\n%s", text)


if __name__ == "__main__":
    main()
