"""ZSL on fresh compo splits (issue 32): is federated training within 5 AUSUC points of central?

The first compo study (``zsl_compo_study.py``, splits 0-2) chose the federated schedule on
split 0's test data. This one reruns the claim on five splits no one has looked at (3-7),
with the schedule chosen on the validation tasks only. Protocol (declared in docs/zsl.md
before the run):

1. **central** (per method and split, as in the first study): hyperparameters by
   ``SEARCH_TRIALS`` random-search trials on the split's validation task (seen training data
   only; criterion validation AUSUC), calibration gamma from the same task, then training on
   all seen training data and the real test figures.
2. **schedule** (MLP and ParsNets): every schedule of ``SCHEDULES`` run through the
   ``zsl_parsnets`` app on every split's validation task (4 class-disjoint clients, the
   split's selected hyperparameters, no remedy); per method the schedule with the highest
   mean validation AUSUC over the splits (ties: fewer local steps in all) is used for every
   split and remedy. No test data of any split is read in this stage.
3. **federated** (remedies none and FedRS): the first study's cell (the app on the
   validation task for gamma, then the app on the real split), with the selected schedule.
   ESZSL federates exactly (sufficient statistics).

Primary figure AUSUC (no calibration), H beside it; paired 95 % t intervals over the splits.
Declared reading: "federated within 5 points of central" holds for a method when the whole
interval of (federated - central) AUSUC lies above -5 points; one method is "best" when the
interval of its central AUSUC minus the other's excludes 0.

One JSON per method (``--out``/<method>.json), written after every cell; a rerun resumes.

    OMP_NUM_THREADS=1 python simulations/zsl_fresh_splits.py run --methods ESZSL MLP
    OMP_NUM_THREADS=1 python simulations/zsl_fresh_splits.py run --methods ParsNets
    python simulations/zsl_fresh_splits.py report
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import zsl_compo_study as first
from study_stats import paired_t_interval

from fedlab.atomic import atomic_write_text

log = logging.getLogger("fedlab.zsl_fresh_splits")
HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "zsl_compo" / "fresh_splits"
SPLITS = (3, 4, 5, 6, 7)
METHOD_NAMES = ("ESZSL", "MLP", "ParsNets")
REMEDIES = ("none", "fedrs")
SCHEDULES = tuple(
    {"num-server-rounds": rounds, "local-steps": steps, "lr": lr}
    for rounds, steps in ((40, 10), (80, 5), (160, 5), (80, 20))
    for lr in (0.001, 0.003)
)
SCHEDULE_LABEL = "{num-server-rounds} x {local-steps}, {lr:g}"
WITHIN = 0.05  # the claim: federated AUSUC within 5 points of central


def method(name: str) -> first.Method:
    return next(m for m in first.METHODS if m.name == name)


def slug(name: str) -> str:
    return first._slug(name)


def load(out: Path, name: str) -> list[dict[str, Any]]:
    path = out / f"{slug(name)}.json"
    return json.loads(path.read_text()) if path.is_file() else []


def key(record: dict[str, Any]) -> tuple:
    return (record["stage"], record["split"], record.get("schedule"), record.get("remedy"))


def selected_schedule(records: list[dict[str, Any]]) -> int | None:
    """Index into ``SCHEDULES`` with the best mean validation AUSUC over the splits (ties:
    fewer local steps in all); None until every (schedule, split) has run."""
    scores = {}
    for i in range(len(SCHEDULES)):
        cells = [r for r in records if r["stage"] == "schedule" and r["schedule"] == i]
        if {r["split"] for r in cells} != set(SPLITS):
            return None
        scores[i] = statistics.mean(r["validation"]["AUSUC"] for r in cells)

    def cost(i: int) -> int:
        return SCHEDULES[i]["num-server-rounds"] * SCHEDULES[i]["local-steps"]

    return max(scores, key=lambda i: (round(scores[i], 12), -cost(i)))


def schedule_record(m: first.Method, split: int, index: int, extra: dict, runs: Path) -> dict:
    """The app on the split's validation task with schedule ``index``: validation figures."""
    scheduled = dataclasses.replace(m, federation=SCHEDULES[index])
    run_dir = runs / f"{slug(m.name)}-{split}-s{index}"
    config = first.federated_config(
        scheduled, split, extra, "none", validation=True, gamma=0.0, run_dir=run_dir
    )
    evaluation, workload, scores = first.run_app(scheduled, config)
    gamma, calibrated = first.best_gamma(workload, scores)
    return {"validation": {k: evaluation[k] for k in ("T1", "H", "AUSUC")}, "gamma": gamma,
            "validation-calibrated-H": calibrated["H"]}  # fmt: skip


def _save(out: Path, name: str, records: list[dict], record: dict, started: float) -> None:
    """Append one finished cell to the method's JSON (atomically) and log it."""
    record = {"method": name, **record, "seconds": round(time.perf_counter() - started, 1)}
    records.append(record)
    atomic_write_text(out / f"{slug(name)}.json", json.dumps(records, indent=1))
    figures = record.get("metrics") or record["validation"]
    log.info("%s %s split %d: %s (%.0f s)", name, record["stage"], record["split"],
             first._fmt(figures), record["seconds"])  # fmt: skip


def run(names: list[str], out: Path, runs_dir: str) -> None:
    first.all_images()  # render once, before any cell is timed
    for name in names:
        m = method(name)
        records = load(out, name)
        done = {key(r) for r in records}

        def save(record: dict[str, Any], started: float) -> None:
            _save(out, name, records, record, started)  # noqa: B023  (called in this iteration)
            done.add(key(records[-1]))  # noqa: B023

        with tempfile.TemporaryDirectory(prefix="zsl-fresh-") as tmp:
            runs = Path(runs_dir or tmp)
            for split in SPLITS:
                if ("central", split, None, None) not in done:
                    started = time.perf_counter()
                    save({"stage": "central", "split": split, **first.central_record(m, split)},
                         started)  # fmt: skip
            central = {r["split"]: r for r in records if r["stage"] == "central"}
            if m.app is not None:
                for index in range(len(SCHEDULES)):
                    for split in SPLITS:
                        if ("schedule", split, index, None) in done:
                            continue
                        started = time.perf_counter()
                        cell = schedule_record(m, split, index, central[split]["selected"], runs)
                        save({"stage": "schedule", "split": split, "schedule": index, **cell},
                             started)  # fmt: skip
            chosen = selected_schedule(records) if m.app is not None else None
            scheduled = m if chosen is None else dataclasses.replace(
                m, federation=SCHEDULES[chosen])  # fmt: skip
            for remedy in REMEDIES if m.app is not None else ("none",):
                for split in SPLITS:
                    if ("federated", split, chosen, remedy) in done:
                        continue
                    started = time.perf_counter()
                    cell = first.federated_record(scheduled, split, central[split]["selected"],
                                                  remedy, runs)  # fmt: skip
                    save({"stage": "federated", "split": split, "schedule": chosen,
                          "remedy": remedy, **cell}, started)  # fmt: skip


# -- report -----------------------------------------------------------------------------------
def _by_split(records: list[dict[str, Any]], stage: str, remedy: str | None = None) -> dict:
    return {r["split"]: r for r in records if r["stage"] == stage and r.get("remedy") == remedy}


def _pct(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * std:.1f}"


def _interval(a: dict[int, dict], b: dict[int, dict], metric: str) -> tuple | None:
    common = sorted(set(a) & set(b))
    return paired_t_interval([a[s]["metrics"][metric] - b[s]["metrics"][metric] for s in common])


def _points(p: tuple | None) -> str:
    if p is None:
        return "not run"
    return f"{100 * p[0]:+.1f} ({100 * p[1]:+.1f} .. {100 * p[2]:+.1f}, {p[3]} splits)"


def tables(results: dict[str, list[dict[str, Any]]]) -> str:
    """docs/zsl.md's fresh-split tables, from the per-method JSON."""
    lines = [f"compo, splits {list(SPLITS)}; mean ± std over splits, in %", "",
             "| method | central AUSUC | fed. AUSUC | fed.+FedRS AUSUC | central H | fed. H | "
             "fed.+FedRS H | schedule (rounds x steps, lr) |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, records in results.items():
        modes = [_by_split(records, "central"), _by_split(records, "federated", "none"),
                 _by_split(records, "federated", "fedrs")]  # fmt: skip
        if name == "ESZSL":  # exact federation: no remedy applies
            modes[2] = modes[1]
        figures = [_pct([r["metrics"][k] for r in mode.values()]) if mode else "not run"
                   for k in ("AUSUC", "H") for mode in modes]  # fmt: skip
        chosen = selected_schedule(records)
        plan = "not run" if chosen is None else SCHEDULE_LABEL.format_map(SCHEDULES[chosen])
        plan = "exact" if name == "ESZSL" else plan
        lines.append(f"| {name} | " + " | ".join(figures) + f" | {plan} |")
    lines += ["", "Paired differences over splits, points of AUSUC (H beside); mean (95 % t "
              "interval, splits):", "", "| comparison | AUSUC | H | claim |",
              "|---|---|---|---|"]  # fmt: skip
    for name, records in results.items():
        central = _by_split(records, "central")
        for remedy, label in (("none", "federated"), ("fedrs", "federated + FedRS")):
            fed = _by_split(records, "federated", remedy)
            if name == "ESZSL" and remedy == "fedrs":
                continue
            p = _interval(fed, central, "AUSUC")
            claim = "-" if p is None else (
                "within 5 points" if p[1] >= -WITHIN else "not shown within 5 points")  # fmt: skip
            lines.append(f"| {name}: {label} - central | {_points(p)} | "
                         f"{_points(_interval(fed, central, 'H'))} | {claim} |")  # fmt: skip
    if {"MLP", "ParsNets"} <= set(results):
        for stage, remedy, label in (("central", None, "central"), ("federated", "none", "fed.")):
            a = _by_split(results["MLP"], stage, remedy)
            b = _by_split(results["ParsNets"], stage, remedy)
            p = _interval(a, b, "AUSUC")
            claim = "-" if p is None else "neither best"
            if p is not None and (p[1] > 0 or p[2] < 0):
                claim = "MLP best" if p[1] > 0 else "ParsNets best"
            lines.append(f"| MLP - ParsNets, {label} | {_points(p)} | "
                         f"{_points(_interval(a, b, 'H'))} | {claim} |")  # fmt: skip
    lines += ["", "Schedule selection: mean validation AUSUC over the splits' validation tasks "
              "(%; no test data):", "",
              "| rounds x local steps, lr | " + " | ".join(n for n in results if n != "ESZSL")
              + " |", "|---|" + "---|" * sum(n != "ESZSL" for n in results)]  # fmt: skip
    for i, schedule in enumerate(SCHEDULES):
        row = []
        for name, records in results.items():
            if name == "ESZSL":
                continue
            cells = [r for r in records if r["stage"] == "schedule" and r["schedule"] == i]
            value = _pct([r["validation"]["AUSUC"] for r in cells]) if cells else "not run"
            row.append(f"**{value}**" if selected_schedule(records) == i else value)
        lines.append(f"| {SCHEDULE_LABEL.format_map(schedule)} | "
                     + " | ".join(row) + " |")  # fmt: skip
    return "\n".join(lines)


def readme_summary(results: dict[str, list[dict[str, Any]]]) -> str:
    """The README's ZSL sentence: federated minus central AUSUC per method, and the best."""
    parts = []
    for name in ("MLP", "ParsNets"):
        records = results.get(name, [])
        p = _interval(_by_split(records, "federated", "none"), _by_split(records, "central"),
                      "AUSUC")  # fmt: skip
        parts.append(f"{name} {_points(p)}")
    a, b = (_by_split(results.get(n, []), "central") for n in ("MLP", "ParsNets"))
    p = _interval(a, b, "AUSUC")
    best = "not run"
    if p is not None:
        best = "MLP" if p[1] > 0 else "ParsNets" if p[2] < 0 else "neither"
    return (
        f"ZSL on five fresh compo splits, federated minus central AUSUC in points (95 % "
        f"interval): {'; '.join(parts)}. Best central method: {best} (MLP - ParsNets "
        f"{_points(p)})."
    )


def results_readme(results: dict[str, list[dict[str, Any]]]) -> str:
    seconds = sum(r["seconds"] for records in results.values() for r in records)
    return ("# ZSL on fresh compo splits\n\nProduced by `simulations/zsl_fresh_splits.py` (one "
            f"thread per process; {seconds:.0f} s of cells). See docs/zsl.md.\n\n"
            f"{tables(results)}\n")  # fmt: skip


def load_all(out: Path) -> dict[str, list[dict[str, Any]]]:
    return {n: load(out, n) for n in METHOD_NAMES if load(out, n)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stage", choices=("run", "report"))
    p.add_argument("--methods", nargs="+", default=list(METHOD_NAMES), choices=METHOD_NAMES)
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--runs-dir", default="", help="keep the apps' run folders here")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.stage == "run":
        run(args.methods, out, args.runs_dir)
    results = load_all(out)
    atomic_write_text(out / "README.md", results_readme(results))
    log.info("\n%s", tables(results))


if __name__ == "__main__":
    main()
