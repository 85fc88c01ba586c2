"""The published audit: ``fedlab audit`` on a preset, timed, its figures copied and tabulated.

Runs the real command (the ``fedlab`` console script, in a subprocess) into ``--work`` (not
committed; resumable), measures its wall time, then copies ``audit.json`` and ``report.html``
into ``simulations/results/audit/<preset>/`` with ``timing.json``, and regenerates from that JSON
``table.md`` and ``summary.png`` (estimates against the accountant, and PSNR per setting).
``--tables-only`` regenerates the table and plot from the committed JSON.

    python simulations/audit_study.py --preset default
    python simulations/audit_study.py --preset default --tables-only
    python simulations/audit_study.py --utility-sweep

``--utility-sweep`` (issue 27; protocol fixed before any run): the ``default`` preset's model
stayed at chance (0.10) without DP. The sweep runs the app itself in this process (the run keys
of the ``default`` preset, ``dp-mode = none``, no canaries, 10 rounds, 100 clients, q = 0.1) and
reads the final held-out accuracy from the run's ``history.json``. The sigmoid LeNet is kept
(DLG/iDLG need a twice-differentiable model; the shipped PGLA denoiser was trained on its
gradients). Stage 1, seed 0: every combination of ``lr`` in {0.1, 0.3, 1, 3}, ``momentum`` in
{0, 0.9}, ``local-epochs`` in {5, 20} and ``batch-size`` in {16, 4} (32 runs; sample rate,
rounds and clients stay the preset's, so the DP settings keep their accounting). Stage 2: the
three best of stage 1 by final accuracy at seeds 1 and 2. Pass: final accuracy >= 0.30 (3x
chance, ten classes) at each of the seeds 0, 1, 2. Chosen: of the passing configurations, the
one with the highest mean final accuracy over the three seeds. If none passes, stage 3 tries
``optimizer = adam`` at ``lr`` 0.001 and 0.01 with the same epochs and batch sizes. Results in
``simulations/results/audit/utility_sweep.{json,md}``; a run already in the JSON is not rerun.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fedlab.atomic import atomic_write_json, atomic_write_text

log = logging.getLogger("fedlab.audit_study")

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "audit"


def _num(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def with_verdicts(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with each setting's verdict and the boundary recomputed from its rows.

    Audits written before verdicts existed (the ``full`` preset's) are summarised again with
    the same rule (:func:`fedlab.attacks.audit.report.summarise`); newer ones are returned as they
    are.
    """
    from fedlab.attacks.audit.report import summarise

    if all("verdict" in s for s in data["settings"].values()):
        return data
    settings = json.loads(json.dumps(data["settings"]))
    extra = summarise(settings, data["rows"], data["config"]["targets"])
    return {**data, **extra, "settings": settings}


def table_from_audit(data: dict[str, Any], wall_s: float | None = None) -> str:
    """The Markdown table of one audit: a row per setting and trace attack cell.

    Each estimate is the pooled fit / Andrew et al.'s separate fit; a cell whose attack or
    denoiser errored shows the error text, and an unknown setting says why.
    """
    from fedlab.attacks.audit.report import attack_text, boundary_text, estimate_cell, verdict_text

    data = with_verdicts(data)
    lines = [
        "| setting | verdict | accountant eps | final-model est. [95 %] pooled / separate | "
        "all-iterates est. [95 %] pooled / separate | per-release est. [95 %] pooled / separate "
        "(bound) | accuracy | attack / denoiser | PSNR med [min, max] | label acc | succeeds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in data["settings"].items():
        est = s["estimates"]

        def e(stat: str, est: dict[str, Any] = est) -> str:
            pooled, sep, bound = (
                t.replace(" exceeds", " **exceeds**") for t in estimate_cell(est[stat], stat)
            )
            return f"{pooled} / {sep}{bound}"

        util = [u for u in s["utility"] if u is not None]
        head = [
            name,
            _md(verdict_text(s)),
            _num(s["accountant"].get("epsilon")),
            e("final"),
            e("all-iterates"),
            e("per-release"),
            _num(util[-1] if util else None),
        ]
        first = True
        for key, c in s["attacks"].items():
            if c["n"] == 0 and not c.get("errors"):
                continue
            cells = (head if first else [""] * len(head)) + [
                key,
                _md(attack_text(c)),
                _num(c["label-accuracy"]),
                "yes" if c["succeeds"] else "no",
            ]
            lines.append("| " + " | ".join(cells) + " |")
            first = False
        if first:  # no attack row at all: the setting still gets its line
            lines.append("| " + " | ".join(head + ["-", "-", "-", "-"]) + " |")
    lines.append("")
    lines.append(
        f"Boundary (largest epsilon at which no attack on a traced client beats the "
        f"thresholds): central DP {_md(boundary_text(data, 'central'))}, local DP "
        f"{_md(boundary_text(data, 'local'))}. Audit wall time "
        f"{wall_s or data['seconds']:.0f} s."
    )
    return "\n".join(lines) + "\n"


def compact_table(data: dict[str, Any], wall_s: float | None = None) -> str:
    """One row per setting: accountant, estimates, accuracy, the best trace attack, verdict."""
    from fedlab.attacks.audit.report import boundary_text

    data = with_verdicts(data)
    lines = [
        "| setting | accountant eps | estimate: all-iterates [95 %] | estimate: per-release "
        "[95 %] (bound) | accuracy | best attack (median PSNR dB, label acc) | leaks? |",
        "|---|---|---|---|---|---|---|",
    ]
    words = {"leaks": "attack succeeds", "holds": "no attack succeeds"}
    for name, s in data["settings"].items():
        est = s["estimates"]
        cells = {k: c for k, c in s["attacks"].items() if k.startswith("trace:") and c["n"]}
        best = max(cells.items(), key=lambda kv: kv[1]["psnr-median"], default=None)
        attack = (
            "-"
            if best is None
            else (
                f"{best[0][6:]} {best[1]['psnr-median']:.1f} dB, {_num(best[1]['label-accuracy'])}"
            )
        )
        ar, pr = est["all-iterates"], est["per-release"]
        util = [u for u in s["utility"] if u is not None]
        verdict = words.get(s["verdict"]) or _md(f"unknown: {s['unknown-reason']}")
        lines.append(
            "| "
            + " | ".join(
                [
                    name,
                    _num(s["accountant"].get("epsilon")),
                    f"{_num(ar['epsilon'])} [{_num(ar['low'])}, {_num(ar['high'])}]",
                    f"{_num(pr['epsilon'])} [{_num(pr['low'])}, {_num(pr['high'])}] "
                    f"({_num(pr['accountant'])})",
                    _num(util[-1] if util else None),
                    attack,
                    verdict,
                ]
            )
            + " |"
        )
    lines += [
        "",
        f"Boundary: central DP {_md(boundary_text(data, 'central'))}, local DP "
        f"{_md(boundary_text(data, 'local'))}; audit wall time "
        f"{wall_s or data['seconds']:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


def summary_plot(data: dict[str, Any], path: Path) -> None:
    """Estimates against the accountant, and median PSNR against the threshold, per setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(data["settings"])
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))
    for i, stat in enumerate(("final", "all-iterates", "per-release")):
        xs, ys, err = [], [], [[], []]
        for j, n in enumerate(names):
            v = data["settings"][n]["estimates"][stat]
            if v["epsilon"] is None:
                continue
            xs.append(j + (i - 1) * 0.15)
            ys.append(v["epsilon"])
            err[0].append(v["epsilon"] - v["low"])
            err[1].append(v["high"] - v["epsilon"])
        a.errorbar(xs, ys, yerr=err, fmt="os^"[i], capsize=3, label=f"estimate: {stat}")
    for j, n in enumerate(names):
        acc = data["settings"][n]["accountant"].get("epsilon")
        if acc is not None:
            a.hlines(acc, j - 0.4, j + 0.4, colors="k", label="accountant" if j == 1 else None)
    a.set_yscale("symlog", linthresh=1)
    accs = [data["settings"][n]["accountant"].get("epsilon") or 0.0 for n in names]
    a.set_ylim(bottom=0, top=2 * max([50.0, *accs]))
    a.set_xticks(range(len(names)), names, rotation=15, fontsize=8)
    a.set_ylabel("epsilon (estimates capped at 50)")
    a.legend(fontsize=7)
    keys = sorted(
        {
            k
            for n in names
            for k, c in data["settings"][n]["attacks"].items()
            if k.startswith("trace:") and c["n"]
        }
    )
    width = 0.8 / max(len(keys), 1)
    for i, key in enumerate(keys):
        pts = [
            (j, data["settings"][n]["attacks"].get(key, {}).get("psnr-median"))
            for j, n in enumerate(names)
        ]
        pts = [(j + (i - len(keys) / 2 + 0.5) * width, y) for j, y in pts if y is not None]
        b.bar([p[0] for p in pts], [p[1] for p in pts], width=width, label=key[6:])
    for j, n in enumerate(names):
        b.hlines(
            data["settings"][n]["psnr-threshold"],
            j - 0.45,
            j + 0.45,
            colors="k",
            linestyles="dashed",
            label="mean image + 3 dB" if j == 0 else None,
        )
    b.set_xticks(range(len(names)), names, rotation=15, fontsize=8)
    b.set_ylabel("median PSNR over targets (dB)")
    b.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    tmp.replace(path)


def regenerate(folder: Path) -> str:
    data = json.loads((folder / "audit.json").read_text())
    wall = json.loads((folder / "timing.json").read_text())["wall_s"]
    table = table_from_audit(data, wall)
    atomic_write_text(folder / "table.md", table)
    atomic_write_text(folder / "compact.md", compact_table(data, wall))
    summary_plot(data, folder / "summary.png")
    return table


SWEEP_GRID = {
    "lr": (0.1, 0.3, 1.0, 3.0),
    "momentum": (0.0, 0.9),
    "local-epochs": (5, 20),
    "batch-size": (16, 4),
}
SWEEP_ADAM_LR = (0.001, 0.01)
SWEEP_PASS = 0.30  # 3x chance with ten classes
SWEEP_SEEDS = (0, 1, 2)


def _sweep_key(knobs: dict[str, Any], seed: int) -> str:
    return json.dumps({**knobs, "seed": seed}, sort_keys=True)


def utility_run(knobs: dict[str, Any], seed: int) -> dict[str, Any]:
    """One no-DP run of the ``default`` preset's app with ``knobs``, in this process."""
    import tempfile

    from fedlab.attacks.audit.presets import PRESETS
    from fedlab.clients.dpfedavg.app import dpfedavg

    from fedlab.inprocess import run_in_process

    with tempfile.TemporaryDirectory(prefix="utility-sweep-") as tmp:
        layer = {
            **PRESETS["default"]["run"],
            **knobs,
            "dp-mode": "none",
            "seed": seed,
            "out-dir": str(Path(tmp) / "run"),
        }
        config = dpfedavg.resolve_config(layer)
        started = time.perf_counter()
        run_in_process(dpfedavg, config)
        seconds = time.perf_counter() - started
        history = json.loads((Path(tmp) / "run" / "history.json").read_text())
    acc = [h.get("evaluate", {}).get("accuracy") for h in history]
    return {
        "knobs": knobs,
        "seed": seed,
        "accuracy": acc,
        "final": acc[-1] if acc else None,
        "seconds": round(seconds, 1),
    }


def utility_sweep(path: Path) -> dict[str, Any]:
    """The ``--utility-sweep`` protocol (module docstring); resumable through ``path``."""
    import itertools

    done: dict[str, Any] = json.loads(path.read_text())["runs"] if path.exists() else {}

    def run(knobs: dict[str, Any], seed: int) -> dict[str, Any]:
        key = _sweep_key(knobs, seed)
        if key not in done:
            done[key] = utility_run(knobs, seed)
            print(json.dumps(done[key]), flush=True)
            atomic_write_json(path, {"runs": done})
        return done[key]

    names = list(SWEEP_GRID)
    stage1 = [
        run(dict(zip(names, values, strict=True)), SWEEP_SEEDS[0])
        for values in itertools.product(*SWEEP_GRID.values())
    ]

    def seeds_of(knobs: dict[str, Any]) -> list[dict[str, Any]]:
        return [run(knobs, seed) for seed in SWEEP_SEEDS]

    ranked = sorted(stage1, key=lambda r: -(r["final"] or 0.0))
    candidates = [seeds_of(r["knobs"]) for r in ranked[:3]]
    passing = [c for c in candidates if all((r["final"] or 0.0) >= SWEEP_PASS for r in c)]
    stage3: list[list[dict[str, Any]]] = []
    if not passing:
        for lr in SWEEP_ADAM_LR:
            for epochs in SWEEP_GRID["local-epochs"]:
                for batch in SWEEP_GRID["batch-size"]:
                    knobs = {
                        "optimizer": "adam",
                        "lr": lr,
                        "local-epochs": epochs,
                        "batch-size": batch,
                    }
                    first = run(knobs, SWEEP_SEEDS[0])
                    if (first["final"] or 0.0) >= SWEEP_PASS:
                        stage3.append(seeds_of(knobs))
        passing = [c for c in stage3 if all((r["final"] or 0.0) >= SWEEP_PASS for r in c)]
    chosen = max(passing, key=lambda c: sum(r["final"] for r in c) / len(c), default=None)
    result = {
        "runs": done,
        "protocol": __doc__.split("``--utility-sweep``")[1].strip(),
        "candidates": [c[0]["knobs"] for c in candidates + stage3],
        "chosen": chosen[0]["knobs"] if chosen else None,
        "chosen-final": [r["final"] for r in chosen] if chosen else None,
    }
    atomic_write_json(path, result)
    atomic_write_text(path.with_suffix(".md"), sweep_table(result))
    return result


def sweep_table(result: dict[str, Any]) -> str:
    """Final no-DP accuracy of every configuration tried, by seed."""
    rows: dict[str, dict[int, Any]] = {}
    for r in result["runs"].values():
        rows.setdefault(json.dumps(r["knobs"]), {})[r["seed"]] = r
    lines = [
        "| optimizer | lr | momentum | local-epochs | batch-size | "
        + " | ".join(f"seed {s}" for s in SWEEP_SEEDS)
        + " | s per run |",
        "|---|---|---|---|---|" + "---|" * len(SWEEP_SEEDS) + "---|",
    ]
    for knobs_text, by_seed in rows.items():
        k = json.loads(knobs_text)
        secs = [r["seconds"] for r in by_seed.values()]
        lines.append(
            "| "
            + " | ".join(
                [
                    k.get("optimizer", "sgd"),
                    _num(k["lr"]),
                    _num(k.get("momentum", 0.0)),
                    _num(k["local-epochs"]),
                    _num(k["batch-size"]),
                    *(_num(by_seed[s]["final"]) if s in by_seed else "" for s in SWEEP_SEEDS),
                    f"{sum(secs) / len(secs):.0f}",
                ]
            )
            + " |"
        )
    chosen = result.get("chosen")
    lines += [
        "",
        f"Chosen (>= {SWEEP_PASS} at seeds {', '.join(map(str, SWEEP_SEEDS))}, highest mean): "
        + (
            ", ".join(f"{k} {_num(v)}" for k, v in chosen.items())
            + f" (final accuracy {', '.join(_num(v) for v in result['chosen-final'])})"
            if chosen
            else "none passes"
        )
        + ".",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--work", default=None, help="audit folder (default runs/audit-<preset>)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--tables-only", action="store_true")
    parser.add_argument(
        "--keep-timing",
        action="store_true",
        help="resume a finished --work (estimates recomputed from its canary statistics) and "
        "keep the timing.json of the first, full run",
    )
    parser.add_argument(
        "--utility-sweep",
        action="store_true",
        help="the no-DP utility sweep of the default preset's knobs (module docstring)",
    )
    args = parser.parse_args(argv)
    if args.utility_sweep:
        RESULTS.mkdir(parents=True, exist_ok=True)
        print(sweep_table(utility_sweep(RESULTS / "utility_sweep.json")))
        return 0
    folder = RESULTS / args.preset
    if not args.tables_only:
        work = Path(args.work or f"runs/audit-{args.preset}").resolve()
        fedlab = Path(sys.executable).with_name("fedlab")
        cmd = [str(fedlab), "audit", "--preset", args.preset, "--out", str(work)]
        if args.workers is not None:
            cmd += ["--workers", str(args.workers)]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        started = time.perf_counter()
        subprocess.run(cmd, check=True, env=env)
        wall = time.perf_counter() - started
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("audit.json", "report.html"):
            shutil.copyfile(work / name, folder / f".{name}.tmp")
            (folder / f".{name}.tmp").replace(folder / name)
        if not args.keep_timing:
            atomic_write_json(
                folder / "timing.json",
                {
                    "preset": args.preset,
                    "command": " ".join(cmd[1:]),
                    "wall_s": round(wall, 1),
                    "cpus": os.cpu_count(),
                    "load_average_1min_at_end": os.getloadavg()[0],
                    "note": "2 CPU cores shared with other jobs",
                },
            )
    print(regenerate(folder))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
