"""ZSL benchmark: ESZSL, MLP, ParsNets, (AR)^2 and its ablations, centralised and federated.

For each dataset and each of its three fixed seen/unseen splits:

1. **Selection on validation** (seen training data only): two seen classes play the unseen
   ones (:func:`~fedlab.clients.zsl.data.validation_protocol`). Each method is trained there; the
   MLP's width, ESZSL's (gamma, lambda) and every method's GZSL calibration (calibrated
   stacking, the gamma maximising validation H) are chosen there.
2. **Centralised**: train on all seen training data (the workload code called directly: no
   server is involved), evaluate T1 and H (with the selected calibration) on the real test
   splits.
3. **Federated**: the apps themselves (``fedlab.apps:zsl_parsnets`` for ParsNets and the MLP,
   ``fedlab.apps:zsl_ar2`` for (AR)^2), their config resolved by the app's ``resolve_config``
   and run by :func:`fedlab.inprocess.run_in_process` (the app's ServerApp and ClientApp code,
   4 class-disjoint clients, no Ray). The figures are read from the run folder: T1, acc-s,
   acc-u and H from the last round of ``history.json`` (the app's evaluation with
   ``gzsl-gamma`` set to the calibration chosen on the federated validation run), H at
   gamma 0 from ``model.safetensors``. The federated validation run is the same app on the
   validation task (the run-config key ``zsl-validation-classes``). ESZSL is run by no
   app: it federates exactly (clients send sufficient statistics, the server solves once),
   computed here.

Writes ``results.json`` and ``README.md`` (mean and std over splits) under ``--out``
(default: ``simulations/results/zsl`` beside this script); run folders go to a temporary
folder unless ``--runs-dir`` names one.

    OMP_NUM_THREADS=1 python simulations/zsl_benchmark.py --datasets shapes digits
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fedlab.clients.zsl.ar2 import Ar2Net
from fedlab.clients.zsl.baselines import (
    average_statistics,
    eszsl_model,
    eszsl_solve,
    eszsl_statistics,
)
from fedlab.clients.zsl.benchmarks import random_filter_features
from fedlab.clients.zsl.config import ZslConfig, zsl_config
from fedlab.clients.zsl.data import ZslData, validation_protocol
from fedlab.clients.zsl.metrics import count_flops, count_parameters, latency_per_sample
from fedlab.clients.zsl.workload import ZslWorkload
from safetensors.torch import load_file

from fedlab.apps import zsl_ar2, zsl_parsnets
from fedlab.appspec import AppSpec
from fedlab.errors import FedlabError
from fedlab.inprocess import run_in_process
from fedlab.registry import WORKLOADS
from fedlab.training import TrainConfig, train
from fedlab.workload import build_workload

log = logging.getLogger("fedlab.zsl_benchmark")
HERE = Path(__file__).resolve().parent
GAMMAS = np.round(np.arange(0.0, 12.01, 0.25), 2)
MLP_WIDTHS = (32, 64, 128, 256, 512)
ESZSL_GRID = ((1e-3, 0.1), (1e-3, 1.0), (1e-2, 0.1), (1e-2, 1.0))
NUM_CLIENTS = 4
VALIDATION_CLASSES = 2
APPS: dict[str, AppSpec] = {"zsl_parsnets": zsl_parsnets, "zsl_ar2": zsl_ar2}
# Feature-based methods: smaller local steps limit class-disjoint drift.
FEATURE_FEDERATION = {"num-server-rounds": 40, "local-steps": 5, "lr": 0.003}
# The app has one local schedule for both phases (pretraining, then EMA fine-tuning).
AR2_FEDERATION = {"num-server-rounds": 10, "ar2-pretrain-rounds": 5, "local-epochs": 2,
                  "local-steps": 0, "lr": 0.005}  # fmt: skip


@dataclass(frozen=True)
class Method:
    """One table row: a workload, its config overrides and its training schedules.

    ``app`` names the app that runs the federated cells (none for ESZSL) and ``federation``
    the run-config keys of those runs on top of the app's defaults.
    """

    name: str
    workload: str
    overrides: dict[str, Any] = field(default_factory=dict)
    epochs: int = 20  # centralised (for ar2: fine-tuning epochs)
    pretrain_epochs: int = 0
    lr: float = 0.01
    finetune_lr: float = 0.003
    app: str | None = None
    federation: dict[str, Any] = field(default_factory=dict)


METHODS = (
    Method("ESZSL", "eszsl"),
    Method("MLP", "zsl_mlp", app="zsl_parsnets", federation=FEATURE_FEDERATION),
    Method("ParsNets", "zsl_parsnets", app="zsl_parsnets", federation=FEATURE_FEDERATION),
    *(Method(name, "zsl_ar2", overrides, epochs=10, pretrain_epochs=15, app="zsl_ar2",
             federation=AR2_FEDERATION)
      for name, overrides in (("(AR)^2", {}), ("(AR)^2 w/o UAD", {"ar2-uad": 0.0}),
                              ("(AR)^2 w/o AGL", {"ar2-agl": 0.0}))),
)  # fmt: skip


def make_workload(method: Method, dataset: str, split: int, data: ZslData | None,
                  extra: dict[str, Any]) -> ZslWorkload:  # fmt: skip
    name = "zsl_parsnets" if method.workload == "eszsl" else method.workload
    config = zsl_config(
        {"workload": name, "zsl-dataset": dataset, "zsl-split": split, **method.overrides, **extra}
    )
    return WORKLOADS.get(name)(config, data)


def _train_cfg(epochs: int, lr: float) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=32, optimizer="adam", lr=lr)


def _fit_eszsl(w: ZslWorkload, parts: list[np.ndarray], gamma: float, lam: float) -> Any:
    s = w.attributes[w.seen]
    stats = []
    for idx in parts:
        d = w.data.subset(idx)
        stats.append(eszsl_statistics(d.inputs, w.positions[d.labels], s))
    gram, cross, _ = average_statistics(stats)
    return eszsl_model(eszsl_solve(gram, cross, s, gamma, lam), w.attributes, w.config.zsl_scale)


def fit_eszsl(w: ZslWorkload, *, federated: bool, eszsl: tuple[float, float]) -> torch.nn.Module:
    """ESZSL in closed form; federated, each client's sufficient statistics are averaged."""
    parts = ([w.partition(p, NUM_CLIENTS) for p in range(NUM_CLIENTS)] if federated
             else [w.data.trainval])  # fmt: skip
    return _fit_eszsl(w, parts, *eszsl)


def fit_central(
    method: Method, w: ZslWorkload, *, seed: int = 0, eszsl: tuple[float, float] = ESZSL_GRID[0]
) -> torch.nn.Module:
    """Train ``method`` on all of ``w``'s training data with the shared training loop."""
    if method.workload == "eszsl":
        return fit_eszsl(w, federated=False, eszsl=eszsl)
    torch.manual_seed(seed)
    model = w.build_model()
    data = w.train_dataset()
    step = w.step
    if method.pretrain_epochs:
        # Each (AR)^2 phase is a workload of its own config, sharing the loaded data.
        pretrain = type(w)(w.config.replace(ar2_phase="pretrain"), w.data)
        train(model, data, pretrain.step, _train_cfg(method.pretrain_epochs, method.lr), seed=seed)
        step = type(w)(w.config.replace(ar2_phase="finetune"), w.data).step
    lr = method.finetune_lr if method.pretrain_epochs else method.lr
    train(model, data, step, _train_cfg(method.epochs, lr), seed=seed + 1)
    return model


def federated_config(
    method: Method, dataset: str, split: int, extra: dict[str, Any], *, validation: bool,
    gamma: float, run_dir: Path,
) -> ZslConfig:  # fmt: skip
    """The app's resolved config of one federated run (validation task or real test)."""
    if method.app is None:
        raise FedlabError(
            f"method {method.name!r} has no app to run its federated cells; give it app="
            f"one of {sorted(APPS)} or federate it in closed form as ESZSL"
        )
    config = APPS[method.app].resolve_config(
        method.federation,
        {"workload": method.workload, "zsl-dataset": dataset, "zsl-split": split,
         "zsl-validation-classes": VALIDATION_CLASSES if validation else 0,
         "num-supernodes": NUM_CLIENTS, "gzsl-gamma": float(gamma), "out-dir": str(run_dir)},
        method.overrides, extra,
    )  # fmt: skip
    assert isinstance(config, ZslConfig)
    return config


def run_federated(method: Method, config: ZslConfig) -> tuple[dict[str, Any], ZslWorkload, Any]:
    """Run ``method``'s app for ``config``; return its last evaluation, workload and scores.

    Everything comes from the run folder: the last round of ``history.json`` and the final
    global model in ``model.safetensors`` (scored on the run's own test data).
    """
    assert method.app is not None
    run_in_process(APPS[method.app], config)
    folder = Path(config.out_dir)
    history = json.loads((folder / "history.json").read_text())
    if len(history) != config.num_server_rounds:
        raise FedlabError(
            f"run {folder} finished {len(history)} of {config.num_server_rounds} rounds; "
            "see its summary.json for why, fix that and rerun the cell"
        )
    workload = build_workload(config)
    assert isinstance(workload, ZslWorkload)
    model = workload.build_model()
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    return dict(history[-1]["evaluate"]), workload, workload.test_scores(model)


def _slug(name: str) -> str:
    """A folder name for a method: ``(AR)^2 w/o UAD`` -> ``ar2-wo-uad``."""
    kept = "".join(c if c.isalnum() else "-" if c == " " else "" for c in name.lower())
    return "-".join(part for part in kept.split("-") if part)


def select_federated(
    method: Method, dataset: str, split: int, extra: dict[str, Any], runs: Path
) -> tuple[float, dict[str, float]]:
    """Calibration gamma of the federated model, chosen on the app's run on validation."""
    run_dir = runs / f"{_slug(method.name)}-{dataset}-{split}-validation"
    config = federated_config(method, dataset, split, extra, validation=True, gamma=0.0,
                              run_dir=run_dir)  # fmt: skip
    _, workload, scores = run_federated(method, config)
    return best_gamma_of_scores(workload, scores)


def federated_cell(
    method: Method, dataset: str, split: int, extra: dict[str, Any], gamma: float, runs: Path
) -> dict[str, Any]:
    """The federated test figures of one cell: the app's run with ``gzsl-gamma = gamma``."""
    config = federated_config(method, dataset, split, extra, validation=False, gamma=gamma,
                              run_dir=runs / f"{_slug(method.name)}-{dataset}-{split}")  # fmt: skip
    evaluation, workload, scores = run_federated(method, config)
    metrics = {k: evaluation[k] for k in ("T1", "acc-s", "acc-u", "H")}
    metrics["H-uncalibrated"] = workload.metrics(scores, 0.0)["H"]
    mapping = config.to_mapping()
    mapping.pop("out-dir")
    return {"metrics": metrics, "app": method.app, "config": mapping}


def best_gamma_of_scores(w: ZslWorkload, scores: Any) -> tuple[float, dict[str, float]]:
    results = [(g, w.metrics(scores, float(g))) for g in GAMMAS]
    g, m = max(results, key=lambda r: (r[1]["H"], -r[0]))
    return float(g), m


def best_gamma(w: ZslWorkload, model: torch.nn.Module) -> tuple[float, dict[str, float]]:
    return best_gamma_of_scores(w, w.test_scores(model))


def _without_eszsl(extra: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in extra.items() if k != "eszsl"}


def select_central(method: Method, dataset: str, split: int) -> dict[str, Any]:
    """Hyperparameters and central calibration chosen on the class-disjoint validation task."""
    val = validation_protocol(make_workload(method, dataset, split, None, {}).data,
                              VALIDATION_CLASSES, seed=split)  # fmt: skip
    candidates: list[dict[str, Any]] = [{}]
    if method.workload == "zsl_mlp":
        candidates = [{"mlp-width": h} for h in MLP_WIDTHS]
    if method.workload == "eszsl":
        candidates = [{"eszsl": g} for g in ESZSL_GRID]
    best = None
    for extra in candidates:
        w = make_workload(method, dataset, split, val, _without_eszsl(extra))
        model = fit_central(method, w, eszsl=extra.get("eszsl", ESZSL_GRID[0]))
        gamma, m = best_gamma(w, model)
        log.info("  select %s %s: gamma %.2f val %s", method.name, extra, gamma, _fmt(m))
        if best is None or m["H"] > best["validation"]["H"]:
            best = {"selected": extra, "gamma": {"central": gamma}, "validation": m}
    assert best is not None
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


CENTRAL_KEYS = ("selected", "gamma", "validation", "central", "params", "flops", "latency-ms")


def central_cell(method: Method, dataset: str, split: int) -> dict[str, Any]:
    """Selection, centralised test figures and costs of one cell."""
    out = select_central(method, dataset, split)
    w = make_workload(method, dataset, split, None, _without_eszsl(out["selected"]))
    model = fit_central(method, w, eszsl=out["selected"].get("eszsl", ESZSL_GRID[0]))
    scores = w.test_scores(model)
    out["central"] = w.metrics(scores, out["gamma"]["central"])
    out["central"]["H-uncalibrated"] = w.metrics(scores, 0.0)["H"]
    out.update(costs(method, model, w))
    return out


def run_cell(
    method: Method, dataset: str, split: int, runs: Path, central: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One table cell; ``central`` reuses an earlier run's selection and centralised part."""
    started = time.perf_counter()
    out: dict[str, Any] = {"method": method.name, "dataset": dataset, "split": split}
    if central is None:
        out.update(central_cell(method, dataset, split))
    else:
        out.update({k: central[k] for k in CENTRAL_KEYS})
    out["gamma"] = {"central": out["gamma"]["central"]}
    extra = _without_eszsl(out["selected"])
    if method.workload == "eszsl":
        eszsl = tuple(out["selected"].get("eszsl", ESZSL_GRID[0]))
        val = validation_protocol(make_workload(method, dataset, split, None, {}).data,
                                  VALIDATION_CLASSES, seed=split)  # fmt: skip
        w_val = make_workload(method, dataset, split, val, extra)
        gamma, out["validation-federated"] = best_gamma(
            w_val, fit_eszsl(w_val, federated=True, eszsl=eszsl)
        )
        w = make_workload(method, dataset, split, None, extra)
        scores = w.test_scores(fit_eszsl(w, federated=True, eszsl=eszsl))
        out["federated"] = w.metrics(scores, gamma)
        out["federated"]["H-uncalibrated"] = w.metrics(scores, 0.0)["H"]
        out["federated-run"] = {"app": None, "config": None}
    else:
        gamma, out["validation-federated"] = select_federated(method, dataset, split, extra, runs)
        cell = federated_cell(method, dataset, split, extra, gamma, runs)
        out["federated"] = cell["metrics"]
        out["federated-run"] = {"app": cell["app"], "config": cell["config"]}
    out["gamma"]["federated"] = gamma
    out["seconds"] = round(time.perf_counter() - started, 1)
    log.info("%s %s split %d: central %s | federated %s | %d params, %.0f s", dataset,
             method.name, split, _fmt(out["central"]), _fmt(out["federated"]), out["params"],
             out["seconds"])  # fmt: skip
    return out


def _fmt(m: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.3f}" for k, v in m.items())


def _ms(values: list[float], sign: str = "±") -> str:
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.1f} {sign} {100 * std:.1f}"


def _rows_by_method(results: list[dict[str, Any]], dataset: str) -> dict[str, list[dict]]:
    rows = [r for r in results if r["dataset"] == dataset]
    return {name: [r for r in rows if r["method"] == name]
            for name in dict.fromkeys(r["method"] for r in rows)}  # fmt: skip


def _values(cell: list[dict[str, Any]], mode: str, key: str) -> list[float]:
    return [r[mode][key] for r in cell]


def table(results: list[dict[str, Any]], feature_flops: int) -> str:
    """The full tables of docs/zsl.md (one per dataset), from the per-cell results."""
    lines = []
    for dataset in dict.fromkeys(r["dataset"] for r in results):
        by_method = _rows_by_method(results, dataset)
        splits = sorted({r["split"] for cell in by_method.values() for r in cell})
        lines += [f"### {dataset} (splits {splits}; mean ± std over splits, in %)", "",
                  "| method | central T1 | central H | federated T1 | federated H | "
                  "central H (γ=0) | federated H (γ=0) | params | FLOPs/sample | CPU ms/sample |",
                  "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for name, cell in by_method.items():
            lines.append(
                f"| {name} | {_ms(_values(cell, 'central', 'T1'))} | "
                f"{_ms(_values(cell, 'central', 'H'))} | "
                f"{_ms(_values(cell, 'federated', 'T1'))} | "
                f"{_ms(_values(cell, 'federated', 'H'))} | "
                f"{_ms(_values(cell, 'central', 'H-uncalibrated'))} | "
                f"{_ms(_values(cell, 'federated', 'H-uncalibrated'))} | "
                f"{statistics.mean(r['params'] for r in cell):,.0f} | "
                f"{statistics.mean(r['flops'] for r in cell):,.0f} | "
                f"{statistics.mean(r['latency-ms'] for r in cell):.3f} |"
            )
        lines.append("")
    lines.append(f"Feature-based rows exclude the fixed random-filter features ({feature_flops:,} "
                 "FLOPs/sample, shared by ESZSL, MLP and ParsNets).")  # fmt: skip
    return "\n".join(lines)


def compact_table(results: list[dict[str, Any]], dataset: str = "shapes") -> str:
    """The README's table: T1 and H, centralised and federated, and parameters."""
    lines = ["| method | central T1 | central H | federated T1 | federated H | params |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for name, cell in _rows_by_method(results, dataset).items():
        figures = [_ms(_values(cell, mode, key), "+-")
                   for mode in ("central", "federated") for key in ("T1", "H")]  # fmt: skip
        params = statistics.mean(r["params"] for r in cell)
        lines.append(f"| {name} | {' | '.join(figures)} | {params:,.0f} |")
    return "\n".join(lines)


def feature_flops() -> int:
    """FLOPs per sample of the fixed random-filter features (16x16 RGB)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        random_filter_features(torch.rand(1, 3, 16, 16))
    return int(counter.get_total_flops())


def results_readme(results: list[dict[str, Any]]) -> str:
    """``README.md`` of the results folder."""
    return (
        "# ZSL benchmark results\n\nProduced by `simulations/zsl_benchmark.py` "
        f"(one thread; {sum(r['seconds'] for r in results):.0f} s of cells). "
        f"See docs/zsl.md.\n\n{table(results, feature_flops())}\n"
    )


def _cell_key(r: dict[str, Any]) -> tuple[str, str, int]:
    return (r["method"], r["dataset"], int(r["split"]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["shapes"], choices=["shapes", "digits"])
    p.add_argument("--splits", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=[m.name for m in METHODS])
    p.add_argument("--out", default=str(HERE / "results" / "zsl"))
    p.add_argument(
        "--runs-dir",
        default="",
        help="keep the apps' run folders here (default: a temporary folder)",
    )
    p.add_argument(
        "--keep-central",
        default="",
        metavar="results.json",
        help="reuse this earlier run's selection, centralised figures and costs per cell; "
        "rerun only the federated columns (cells absent there are run in full)",
    )
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
    earlier = {}
    if args.keep_central:
        earlier = {_cell_key(r): r for r in json.loads(Path(args.keep_central).read_text())}
    with tempfile.TemporaryDirectory(prefix="zsl-benchmark-") as tmp:
        runs = Path(args.runs_dir or tmp)
        for dataset in args.datasets if not results else []:
            for split in args.splits:
                for method in (m for m in METHODS if m.name in args.methods):
                    central = earlier.get((method.name, dataset, split))
                    results.append(run_cell(method, dataset, split, runs, central))
                    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "README.md").write_text(results_readme(results))
    log.info("\n%s", table(results, feature_flops()))


if __name__ == "__main__":
    main()
