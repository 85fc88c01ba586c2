"""The published audit: ``fedlab audit`` on a preset, timed, its figures copied and tabulated.

Runs the real command (the ``fedlab`` console script, in a subprocess) into ``--work`` (not
committed; resumable), measures its wall time, then copies ``audit.json`` and ``report.html``
into ``simulations/results/audit/<preset>/`` with ``timing.json``, and regenerates from that JSON
``table.md`` and ``summary.png`` (estimates against the accountant, and PSNR per setting).
``--tables-only`` regenerates the table and plot from the committed JSON.

    python simulations/audit_study.py --preset default
    python simulations/audit_study.py --preset default --tables-only
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


def table_from_audit(data: dict[str, Any], wall_s: float | None = None) -> str:
    """The Markdown table of one audit: a row per setting and trace attack cell."""
    lines = [
        "| setting | accountant eps | final-model est. [95 %] | all-iterates est. [95 %] | "
        "per-release est. [95 %] (bound) | accuracy | attack / denoiser | PSNR med [min, max] | "
        "label acc | succeeds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in data["settings"].items():
        est = s["estimates"]

        def e(stat: str, est: dict[str, Any] = est) -> str:
            v = est[stat]
            text = f"{_num(v['epsilon'])} [{_num(v['low'])}, {_num(v['high'])}]"
            if stat == "per-release":
                text += f" ({_num(v['accountant'])})"
            return text + (" **exceeds**" if v.get("exceeds") else "")

        util = [u for u in s["utility"] if u is not None]
        head = [
            name,
            _num(s["accountant"].get("epsilon")),
            e("final"),
            e("all-iterates"),
            e("per-release"),
            _num(util[-1] if util else None),
        ]
        first = True
        for key, c in s["attacks"].items():
            if c["n"] == 0:
                continue
            psnr = f"{_num(c['psnr-median'])} [{_num(c['psnr-min'])}, {_num(c['psnr-max'])}]"
            cells = (head if first else [""] * len(head)) + [
                key,
                psnr,
                _num(c["label-accuracy"]),
                "yes" if c["succeeds"] else "no",
            ]
            lines.append("| " + " | ".join(cells) + " |")
            first = False
    b = data["boundary"]
    lines.append("")
    lines.append(
        f"Boundary (largest epsilon at which no attack on a traced client beats the "
        f"thresholds): central DP {_num(b['central'])}, local DP {_num(b['local'])}. "
        f"Audit wall time {wall_s or data['seconds']:.0f} s."
    )
    return "\n".join(lines) + "\n"


def compact_table(data: dict[str, Any], wall_s: float | None = None) -> str:
    """One row per setting: accountant, estimates, accuracy, the best trace attack."""
    lines = [
        "| setting | accountant eps | estimate: all-iterates [95 %] | estimate: per-release "
        "[95 %] (bound) | accuracy | best attack (median PSNR dB, label acc) | leaks? |",
        "|---|---|---|---|---|---|---|",
    ]
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
                    "attack succeeds" if s["any-target-attack-succeeds"] else "no attack succeeds",
                ]
            )
            + " |"
        )
    b = data["boundary"]
    lines += [
        "",
        f"Boundary: central DP {_num(b['central'])}, local DP {_num(b['local'])}; "
        f"audit wall time {wall_s or data['seconds']:.0f} s.",
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
    args = parser.parse_args(argv)
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
