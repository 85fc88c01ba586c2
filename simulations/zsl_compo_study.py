"""ZSL study on the compositional benchmark: central and federated, with and without the
label-skew remedies, ParsNets and the MLP tuned by the same random search.

Protocol (declared in docs/zsl.md before the run): ``compo``, splits 0, 1, 2 (the split also
seeds training). For each split:

1. **Validation task** from the split's seen training data only: ``VALIDATION_CLASSES`` seen
   classes play the unseen ones (:func:`~fedlab.clients.zsl.data.validation_protocol`, seeded by the
   split). Everything tuned is tuned there: ESZSL's (gamma, lambda) from a grid, the MLP's
   (width, lr) and ParsNets' (K, k, orthogonality, low-rank and OLE weights, lr) by
   ``SEARCH_TRIALS`` random-search trials each (criterion: validation AUSUC, no gamma), and
   every model's calibration gamma (the grid value maximising validation H).
2. **Central**: the selected method trained on all seen training data with the shared loop,
   evaluated on the real test splits: T1, acc-s, acc-u, H (calibrated), AUSUC.
3. **Federated**: the apps themselves (``zsl_parsnets`` for ParsNets and the MLP, ``zsl_ar2``
   for (AR)^2) through ``resolve_config`` + ``run_in_process``, 4 class-disjoint clients, for
   each ``zsl-label-skew`` remedy (none, fedrs, fedlc). Each cell is two app runs: one on the
   validation task (its gamma) and one on the real split with ``gzsl-gamma`` set to it; the
   figures are the last round of ``history.json``. ESZSL federates exactly (sufficient
   statistics), computed here; the remedies do not apply to it.

Writes ``results.json`` and ``README.md`` under ``--out`` (default
``simulations/results/zsl_compo``), one JSON record per (method, split, mode), after every
cell, so an interrupted run keeps what finished.

    OMP_NUM_THREADS=1 python simulations/zsl_compo_study.py
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
from fedlab.clients.zsl.compo import CompoFeatureNet, all_images
from fedlab.clients.zsl.config import ZslConfig, zsl_config
from fedlab.clients.zsl.data import ZslData, validation_protocol
from fedlab.clients.zsl.metrics import count_flops, count_parameters, latency_per_sample
from fedlab.clients.zsl.sources import load_zsl
from fedlab.clients.zsl.workload import ZslWorkload

from fedlab.apps import zsl_ar2, zsl_parsnets
from fedlab.appspec import AppSpec
from fedlab.atomic import atomic_write_text
from fedlab.errors import FedlabError
from fedlab.inprocess import run_in_process
from fedlab.registry import WORKLOADS
from fedlab.training import TrainConfig, train
from fedlab.workload import build_workload

log = logging.getLogger("fedlab.zsl_compo_study")
HERE = Path(__file__).resolve().parent
DATASET = "compo"
NUM_CLIENTS = 4
VALIDATION_CLASSES = 12
SEARCH_TRIALS = 20
SEARCH_STREAMS = {"zsl_mlp": 1, "zsl_parsnets": 2}
GAMMAS = np.round(np.arange(-5.0, 15.01, 0.25), 2)
ESZSL_GRID = ((1e-3, 0.1), (1e-3, 1.0), (1e-2, 0.1), (1e-2, 1.0), (1e-1, 1.0), (1e-1, 10.0))
REMEDIES = ("none", "fedrs", "fedlc")
CENTRAL_EPOCHS = 20
AR2_EPOCHS = (8, 6)  # central pretraining, fine-tuning epochs
APPS: dict[str, AppSpec] = {"zsl_parsnets": zsl_parsnets, "zsl_ar2": zsl_ar2}
FEATURE_FEDERATION = {"num-server-rounds": 80, "local-steps": 5, "lr": 0.001}
AR2_FEDERATION = {"num-server-rounds": 8, "ar2-pretrain-rounds": 4, "local-epochs": 1,
                  "local-steps": 0, "lr": 0.005}  # fmt: skip


@dataclass(frozen=True)
class Method:
    """A table row: workload, fixed overrides, central lr, app and federated schedule."""

    name: str
    workload: str
    overrides: dict[str, Any] = field(default_factory=dict)
    lr: float = 0.01
    app: str | None = None
    federation: dict[str, Any] = field(default_factory=dict)


METHODS = (
    Method("ESZSL", "eszsl"),
    Method("MLP", "zsl_mlp", app="zsl_parsnets", federation=FEATURE_FEDERATION),
    Method("ParsNets", "zsl_parsnets", app="zsl_parsnets", federation=FEATURE_FEDERATION),
    *(Method(name, "zsl_ar2", overrides, lr=0.01, app="zsl_ar2", federation=AR2_FEDERATION)
      for name, overrides in (("(AR)^2", {}), ("(AR)^2 w/o UAD", {"ar2-uad": 0.0}),
                              ("(AR)^2 w/o AGL", {"ar2-agl": 0.0}))),
)  # fmt: skip


def sample_trial(workload: str, rng: np.random.Generator) -> dict[str, Any]:
    """One random-search trial: run-config overrides plus ``lr`` (central training)."""

    def log_uniform(lo: float, hi: float) -> float:
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))

    trial: dict[str, Any] = {}
    if workload == "zsl_mlp":
        trial["mlp-width"] = int(round(log_uniform(16, 512)))
    else:
        bases = int(rng.integers(2, 9))
        trial.update({"parsnets-bases": bases, "parsnets-topk": int(rng.integers(1, bases + 1)),
                      "parsnets-ortho": log_uniform(1e-4, 1e-1),
                      "parsnets-lowrank": log_uniform(1e-6, 1e-3),
                      "parsnets-ole": log_uniform(1e-3, 1.0)})  # fmt: skip
    trial["lr"] = log_uniform(1e-3, 3e-2)
    return trial


def _keys(extra: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in extra.items() if k not in ("lr", "eszsl")}


def make_workload(method: Method, split: int, extra: dict[str, Any],
                  data: ZslData | None = None) -> ZslWorkload:  # fmt: skip
    name = "zsl_parsnets" if method.workload == "eszsl" else method.workload
    mapping = {"workload": name, "zsl-dataset": DATASET, "zsl-split": split, "seed": split}
    config = zsl_config({**mapping, **method.overrides, **_keys(extra)})
    return WORKLOADS.get(name)(config, data)


def validation_data(method: Method, split: int) -> ZslData:
    """The validation task of ``split`` in ``method``'s representation (features, images)."""
    representation = "images" if method.workload == "zsl_ar2" else "features"
    full = load_zsl(DATASET, split=split, representation=representation)
    return validation_protocol(full, VALIDATION_CLASSES, seed=split)


def _train_cfg(epochs: int, lr: float) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=32, optimizer="adam", lr=lr)


def fit_eszsl(w: ZslWorkload, parts: list[np.ndarray], grid: tuple[float, float]) -> Any:
    s = w.attributes[w.seen]
    stats = []
    for idx in parts:
        d = w.data.subset(idx)
        stats.append(eszsl_statistics(d.inputs, w.positions[d.labels], s))
    gram, cross, _ = average_statistics(stats)
    return eszsl_model(eszsl_solve(gram, cross, s, *grid), w.attributes, w.config.zsl_scale)


def fit_central(method: Method, w: ZslWorkload, extra: dict[str, Any], seed: int) -> Any:
    """Train ``method`` on all of ``w``'s training data (the shared loop)."""
    if method.workload == "eszsl":
        return fit_eszsl(w, [w.data.trainval], tuple(extra["eszsl"]))
    torch.manual_seed(seed)
    model = w.build_model()
    data = w.train_dataset()
    lr = float(extra.get("lr", method.lr))
    if method.workload == "zsl_ar2":
        pretrain = type(w)(w.config.replace(ar2_phase="pretrain"), w.data)
        train(model, data, pretrain.step, _train_cfg(AR2_EPOCHS[0], lr), seed=seed)
        finetune = type(w)(w.config.replace(ar2_phase="finetune"), w.data)
        train(model, data, finetune.step, _train_cfg(AR2_EPOCHS[1], lr / 3), seed=seed + 1)
        return model
    train(model, data, w.step, _train_cfg(CENTRAL_EPOCHS, lr), seed=seed)
    return model


def best_gamma(w: ZslWorkload, scores: dict[str, np.ndarray]) -> tuple[float, dict[str, float]]:
    """The grid gamma maximising H (ties: the smallest |gamma|) and the metrics there."""
    results = [(float(g), w.metrics(scores, float(g))) for g in GAMMAS]
    g, m = max(results, key=lambda r: (round(r[1]["H"], 12), -abs(r[0])))
    return g, m


def candidates(method: Method, split: int) -> list[dict[str, Any]]:
    if method.workload == "eszsl":
        return [{"eszsl": list(g)} for g in ESZSL_GRID]
    if method.workload in ("zsl_mlp", "zsl_parsnets"):
        rng = np.random.default_rng([split, SEARCH_STREAMS[method.workload]])
        return [sample_trial(method.workload, rng) for _ in range(SEARCH_TRIALS)]
    return [{}]


def select(method: Method, split: int) -> dict[str, Any]:
    """Every candidate trained on the validation task; the best by validation AUSUC."""
    val = validation_data(method, split)
    trials = []
    for extra in candidates(method, split):
        w = make_workload(method, split, extra, val)
        gamma, m = best_gamma(w, w.test_scores(fit_central(method, w, extra, split)))
        trials.append({"extra": extra, "gamma": gamma, "validation": m})
        log.info("  %s split %d trial %s: %s", method.name, split, extra, _fmt(m))
    best = max(trials, key=lambda t: t["validation"]["AUSUC"])
    return {"selected": best["extra"], "gamma": best["gamma"], "validation": best["validation"],
            "trials": trials}  # fmt: skip


def costs(model: torch.nn.Module, w: ZslWorkload) -> dict[str, float]:
    x = w.test_sets["seen"].inputs[:32]
    if isinstance(model, Ar2Net):  # the EMA teacher and pretraining classifier do not predict
        params = sum(count_parameters(p) for p in (model.backbone, model.head))
        params += model.prototypes.numel() if model.use_agl else 0
    else:
        params = count_parameters(model)
    return {"params": params, "flops": count_flops(model, x),
            "latency-ms": 1e3 * latency_per_sample(model, x[:1], repeats=50)}  # fmt: skip


def central_record(method: Method, split: int) -> dict[str, Any]:
    """Selection, centralised test figures and costs of one (method, split)."""
    out = select(method, split)
    extra = out["selected"]
    w = make_workload(method, split, extra)
    model = fit_central(method, w, extra, split)
    scores = w.test_scores(model)
    out["metrics"] = w.metrics(scores, out["gamma"])
    out["metrics"]["H-uncalibrated"] = w.metrics(scores, 0.0)["H"]
    out.update(costs(model, w))
    return out


def federated_config(method: Method, split: int, extra: dict[str, Any], remedy: str, *,
                     validation: bool, gamma: float, run_dir: Path) -> ZslConfig:  # fmt: skip
    """The app's resolved config of one federated run."""
    if method.app is None:
        raise FedlabError(f"method {method.name!r} has no app; federate it in closed form")
    config = APPS[method.app].resolve_config(
        method.federation,
        {"workload": method.workload, "zsl-dataset": DATASET, "zsl-split": split, "seed": split,
         "zsl-validation-classes": VALIDATION_CLASSES if validation else 0,
         "num-supernodes": NUM_CLIENTS, "gzsl-gamma": float(gamma), "zsl-label-skew": remedy,
         "out-dir": str(run_dir)},
        method.overrides, _keys(extra),
    )  # fmt: skip
    assert isinstance(config, ZslConfig)
    return config


def run_app(method: Method, config: ZslConfig) -> tuple[dict[str, float], ZslWorkload, Any]:
    """Run the app; its last evaluation, workload and final model's test scores."""
    from safetensors.torch import load_file

    assert method.app is not None
    run_in_process(APPS[method.app], config)
    folder = Path(config.out_dir)
    history = json.loads((folder / "history.json").read_text())
    if len(history) != config.num_server_rounds:
        raise FedlabError(f"run {folder} finished {len(history)} of {config.num_server_rounds} "
                          "rounds; see its summary.json")  # fmt: skip
    workload = build_workload(config)
    assert isinstance(workload, ZslWorkload)
    model = workload.build_model()
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    return dict(history[-1]["evaluate"]), workload, workload.test_scores(model)


def _slug(name: str) -> str:
    kept = "".join(c if c.isalnum() else "-" if c == " " else "" for c in name.lower())
    return "-".join(part for part in kept.split("-") if part)


def federated_record(method: Method, split: int, extra: dict[str, Any], remedy: str,
                     runs: Path) -> dict[str, Any]:  # fmt: skip
    """Gamma from the app's validation run, then the app's test run with that gamma."""
    if method.workload == "eszsl":
        val = make_workload(method, split, extra, validation_data(method, split))
        parts = [val.partition(p, NUM_CLIENTS) for p in range(NUM_CLIENTS)]
        gamma, m_val = best_gamma(val, val.test_scores(fit_eszsl(val, parts, extra["eszsl"])))
        w = make_workload(method, split, extra)
        parts = [w.partition(p, NUM_CLIENTS) for p in range(NUM_CLIENTS)]
        scores = w.test_scores(fit_eszsl(w, parts, extra["eszsl"]))
        metrics = w.metrics(scores, gamma)
        metrics["H-uncalibrated"] = w.metrics(scores, 0.0)["H"]
        return {"gamma": gamma, "validation": m_val, "metrics": metrics, "app": None,
                "config": None}  # fmt: skip
    base = runs / f"{_slug(method.name)}-{split}-{remedy}"
    config = federated_config(method, split, extra, remedy, validation=True, gamma=0.0,
                              run_dir=base.with_name(base.name + "-validation"))  # fmt: skip
    _, w_val, scores_val = run_app(method, config)
    gamma, m_val = best_gamma(w_val, scores_val)
    config = federated_config(method, split, extra, remedy, validation=False, gamma=gamma,
                              run_dir=base)  # fmt: skip
    evaluation, w, scores = run_app(method, config)
    metrics = {k: evaluation[k] for k in ("T1", "acc-s", "acc-u", "H", "AUSUC")}
    metrics["H-uncalibrated"] = w.metrics(scores, 0.0)["H"]
    mapping = config.to_mapping()
    mapping.pop("out-dir")
    return {"gamma": gamma, "validation": m_val, "metrics": metrics, "app": method.app,
            "config": mapping}  # fmt: skip


def _fmt(m: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.3f}" for k, v in m.items())


# -- tables -----------------------------------------------------------------------------------
MODES = ("central", *(f"federated-{r}" for r in REMEDIES))


def _ms(values: list[float], sign: str = "±") -> str:
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.1f} {sign} {100 * std:.1f}"


def _cells(results: list[dict[str, Any]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """method -> mode -> records (one per split), in the order of first appearance."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in results:
        out.setdefault(r["method"], {}).setdefault(r["mode"], []).append(r)
    return out


def _records(modes: dict[str, list[dict[str, Any]]], mode: str) -> list[dict[str, Any]] | None:
    """The records of ``mode``; closed-form rows (no app: ESZSL) have one federated result
    whatever the remedy, so their remedy columns repeat it."""
    records = modes.get(mode)
    if records is None and mode.startswith("federated-"):
        plain = modes.get("federated-none") or []
        if plain and plain[0].get("app", "") is None:
            return plain
    return records


def _figure(records: list[dict[str, Any]] | None, key: str, sign: str = "±") -> str:
    if not records:
        return "not run"
    return _ms([r["metrics"][key] for r in records], sign)


def table(results: list[dict[str, Any]]) -> str:
    """docs/zsl.md's tables: figures per method and mode, then costs and selection."""
    cells = _cells(results)
    splits = sorted({r["split"] for r in results})
    head = ["method"] + [f"{mode} {key}" for mode in MODES for key in ("T1", "H", "AUSUC")]
    lines = [f"compo, splits {splits}; mean ± std over splits, in %", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]  # fmt: skip
    for name, modes in cells.items():
        figures = [_figure(_records(modes, mode), key) for mode in MODES
                   for key in ("T1", "H", "AUSUC")]  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(figures) + " |")
    lines += ["", "| method | params | FLOPs/sample | CPU ms/sample | selected (split 0) | "
              "central H (γ=0) | validation AUSUC |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, modes in cells.items():
        central = modes.get("central") or []
        if not central:
            continue
        first = min(central, key=lambda r: r["split"])
        chosen = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in first["selected"].items()) or "fixed"  # fmt: skip
        lines.append(
            f"| {name} | {statistics.mean(r['params'] for r in central):,.0f} | "
            f"{statistics.mean(r['flops'] for r in central):,.0f} | "
            f"{statistics.mean(r['latency-ms'] for r in central):.3f} | {chosen} | "
            f"{_figure(central, 'H-uncalibrated')} | "
            f"{_ms([r['validation']['AUSUC'] for r in central])} |"
        )
    lines += ["", f"Feature-based rows exclude the compo feature CNN ({feature_flops():,} "
              "FLOPs/sample, shared by ESZSL, MLP and ParsNets)."]  # fmt: skip
    return "\n".join(lines)


def compact_table(results: list[dict[str, Any]]) -> str:
    """README's table: central T1/H/AUSUC and federated H/AUSUC per remedy, parameters."""
    cells = _cells(results)
    lines = ["| method | central T1 | central H | central AUSUC | fed. H | fed. AUSUC | "
             "fed.+FedRS H | fed.+FedLC H | params |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, modes in cells.items():
        central = modes.get("central") or []
        params = f"{statistics.mean(r['params'] for r in central):,.0f}" if central else "-"
        figures = [_figure(central, "T1", "+-"), _figure(central, "H", "+-"),
                   _figure(central, "AUSUC", "+-"),
                   _figure(_records(modes, "federated-none"), "H", "+-"),
                   _figure(_records(modes, "federated-none"), "AUSUC", "+-"),
                   _figure(_records(modes, "federated-fedrs"), "H", "+-"),
                   _figure(_records(modes, "federated-fedlc"), "H", "+-")]  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(figures) + f" | {params} |")
    return "\n".join(lines)


def feature_flops() -> int:
    """FLOPs per sample of the compo feature CNN (without its pretraining heads)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        CompoFeatureNet()(torch.rand(1, 3, 24, 24))
    return int(counter.get_total_flops())


def results_readme(results: list[dict[str, Any]]) -> str:
    seconds = sum(r["seconds"] for r in results)
    return ("# ZSL study on compo\n\nProduced by `simulations/zsl_compo_study.py` (one thread; "
            f"{seconds:.0f} s of cells). See docs/zsl.md.\n\n{table(results)}\n")  # fmt: skip


def _find(results: list[dict[str, Any]], method: str, split: int, mode: str) -> dict | None:
    return next(
        (r for r in results if (r["method"], r["split"], r["mode"]) == (method, split, mode)), None
    )


def _save(out: Path, results: list[dict[str, Any]]) -> None:
    atomic_write_text(out / "results.json", json.dumps(results, indent=1))
    atomic_write_text(out / "README.md", results_readme(results))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--splits", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=[m.name for m in METHODS])
    p.add_argument("--remedies", nargs="+", default=list(REMEDIES), choices=REMEDIES)
    p.add_argument("--out", default=str(HERE / "results" / "zsl_compo"))
    p.add_argument("--runs-dir", default="", help="keep the apps' run folders here")
    p.add_argument("--resume", action="store_true", help="keep the records in --out's JSON")
    p.add_argument("--tables-only", action="store_true", help="rewrite README.md from the JSON")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    if args.resume or args.tables_only:
        results = json.loads((out / "results.json").read_text())
    if args.tables_only:
        _save(out, results)
        return
    done = {(r["method"], r["split"], r["mode"]) for r in results}
    all_images()  # render once, before any cell is timed
    methods = [m for m in METHODS if m.name in args.methods]
    with tempfile.TemporaryDirectory(prefix="zsl-compo-") as tmp:
        runs = Path(args.runs_dir or tmp)
        # Remedies last: every method's plain central and federated cells come first.
        for remedy in args.remedies:
            for method in (m for m in methods if remedy == "none" or m.app is not None):
                for split in args.splits:
                    central = _find(results, method.name, split, "central")
                    for mode in ("central", f"federated-{remedy}"):
                        if (method.name, split, mode) in done:
                            continue
                        started = time.perf_counter()
                        if mode == "central":
                            record = central_record(method, split)
                            central = {"mode": mode, **record}
                        else:
                            assert central is not None
                            record = federated_record(method, split, central["selected"],
                                                      remedy, runs)  # fmt: skip
                        record = {"method": method.name, "dataset": DATASET, "split": split,
                                  "mode": mode, **record,
                                  "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
                        results.append(record)
                        done.add((method.name, split, mode))
                        _save(out, results)
                        log.info("%s split %d %s: %s (%.0f s)", method.name, split, mode,
                                 _fmt(record["metrics"]), record["seconds"])  # fmt: skip
    log.info("\n%s", table(results))


if __name__ == "__main__":
    main()
