"""The FedFoA scaling study's summary across regimes: one table and probe accuracy against K.

    python simulations/fedfoa_scaling.py

Reads every ``simulations/results/fedfoa/scaling_<regime>.json`` that exists (each written by
``simulations/fedfoa_compare.py``, one app run per cell; commands and regimes in
docs/fedfoa.md) and writes ``scaling.md`` (method x regime, mean +- std over seeds; then the
evidence metrics per regime and method) and
``scaling_vs_K.png`` (probe accuracy against the number of clients, one colour per method,
circles for Dirichlet and squares for IID, error bars one seed std). Nothing is run here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "fedfoa"
REGIMES = ("A", "B", "C", "D")


def load_regimes(folder: Path = RESULTS) -> dict[str, dict[str, Any]]:
    """Regime letter -> the study JSON (``args`` and ``runs``), for the files that exist."""
    out = {}
    for regime in REGIMES:
        path = folder / f"scaling_{regime}.json"
        if path.is_file():
            out[regime] = json.loads(path.read_text())
    return out


def _cell(rows: list[dict[str, Any]]) -> str:
    accs = [r["probe-acc-mean"] for r in rows]
    return f"{np.mean(accs):.3f} +- {np.std(accs):.3f} (n={len(accs)})"


def regime_label(regime: str, args: dict[str, Any]) -> str:
    part = "Dirichlet 0.1" if args["partitioner"] == "dirichlet" else "IID"
    if args["partitioner"] == "dirichlet" and args["alpha"] != 0.1:
        part = f"Dirichlet {args['alpha']:g}"
    return f"{regime}: K={args['clients']}, {part}"


def table(regimes: dict[str, dict[str, Any]]) -> str:
    """Markdown: one row per method, one column per regime ("-": not run there)."""
    methods = list(dict.fromkeys(m for study in regimes.values() for m in study["runs"]))
    head = [regime_label(k, v["args"]) for k, v in regimes.items()]
    lines = ["| method | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for method in methods:
        cells = [
            _cell(study["runs"][method]) if method in study["runs"] else "-"
            for study in regimes.values()
        ]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


REQUIRED_EVIDENCE = ("probe-acc-own-mean", "relation-gap")


def evidence(regimes: dict[str, dict[str, Any]]) -> str:
    """Markdown: per regime and trained method, the mean over seeds of the probe on a client's
    own classes and on classes it never held, and the relation gap (its matrix against the
    aggregate it received; docs/fedfoa.md, the evidence step); "-" where no client lacks a class."""
    lines = [
        "| regime | method | probe, own classes | probe, never-held classes | relation gap |",
        "|---|---|---|---|---|",
    ]
    for regime, study in regimes.items():
        for method, rows in study["runs"].items():
            if not all(k in r for r in rows for k in REQUIRED_EVIDENCE):
                continue  # baselines (no training round) and rows from before these metrics
            own, gap = (float(np.mean([r[k] for r in rows])) for k in REQUIRED_EVIDENCE)
            # under IID every client holds every class: there is no never-held probe
            held = [r["probe-acc-unseen-mean"] for r in rows if "probe-acc-unseen-mean" in r]
            unseen = f"{np.mean(held):.3f}" if len(held) == len(rows) else "-"
            lines.append(f"| {regime} | {method} | {own:.3f} | {unseen} | {gap:.2f} |")
    return "\n".join(lines)


def plot(regimes: dict[str, dict[str, Any]], path: Path) -> None:
    """Probe accuracy against K, one line per (method, partitioner)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[tuple[str, str], list[tuple[int, float, float]]] = {}
    for study in regimes.values():
        args = study["args"]
        for method, rows in study["runs"].items():
            accs = [r["probe-acc-mean"] for r in rows]
            points = series.setdefault((method, args["partitioner"]), [])
            if all(k != args["clients"] for k, _, _ in points):  # baselines recur across regimes
                points.append((args["clients"], float(np.mean(accs)), float(np.std(accs))))
    fig, ax = plt.subplots(figsize=(9.5, 4.5))
    colour = {m: plt.cm.tab20(i % 20) for i, m in enumerate(sorted({m for m, _ in series}))}
    for (method, part), points in sorted(series.items()):
        points.sort()
        k, mean, std = (np.array(v) for v in zip(*points, strict=True))
        # one colour per method; IID points as squares, nudged right so they do not hide
        # the Dirichlet point at the same K
        fmt, shift = ("o-", 1.0) if part == "dirichlet" else ("s--", 1.07)
        ax.errorbar(k * shift, mean, yerr=std, fmt=fmt, capsize=3, label=f"{method} ({part})",
                    color=colour[method])  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted({k for pts in series.values() for k, _, _ in pts}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("clients K (total data fixed)")
    ax.set_ylabel("linear-probe accuracy (mean over clients)")
    ax.set_title("fedfoa app, 10 rounds x 20 local steps; mean +- std over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=90)
    plt.close(fig)


def main() -> None:
    from fedlab.atomic import atomic_write, atomic_write_text

    regimes = load_regimes()
    text = table(regimes) + "\n\n" + evidence(regimes)
    atomic_write_text(RESULTS / "scaling.md", text + "\n")
    atomic_write(RESULTS / "scaling_vs_K.png", lambda p: plot(regimes, p))
    print(text)


if __name__ == "__main__":
    main()
