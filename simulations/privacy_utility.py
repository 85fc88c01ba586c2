"""Privacy-utility table and plot of the ``dpfedavg`` app (central DP, server-side clipping).

Every run has the same data, partitions, seed (data order, model init) and rounds: no DP, then
the noise multiplier the app derives for each ``--epsilons`` target (client-level, RDP, at
``--delta``). Each DP setting runs ``--draws`` times: the app draws its noise and its Poisson
client sample (``--sample-rate`` of ``--num-supernodes``) from the operating system's entropy,
so the draws differ and the table gives their mean and std. The run without DP samples clients
from the seed, so its draws would all be the same run: it runs once.

Each run is the ``dpfedavg`` app's own server and client code in a fresh process:
``--backend inprocess`` (default; ``fedlab.inprocess.run_in_process``, no Ray start-up) or
``--backend ray`` (``flower-simulation --app fedlab.apps:dpfedavg``).

Outputs under ``--out``: ``privacy_utility.md`` (the table), ``privacy_utility.png`` (final
accuracy against epsilon, and accuracy over rounds), ``privacy_utility.json`` (every figure) and
``runs/<setting>/draw-<k>/`` (each run folder). ``--reuse`` skips runs whose folder is complete.

    python simulations/privacy_utility.py --rounds 25 --epsilons 1,2,4,8 --draws 3
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fedlab.atomic import atomic_write_json, atomic_write_text

log = logging.getLogger("fedlab.privacy_utility")

HERE = Path(__file__).resolve().parent
DEFAULTS = {
    "workload": "fedlab.clients.dpfedavg.linear:LinearWorkload",
    "dataset": "digits",
    "local-epochs": 5,
    "batch-size": 16,
    "lr": 0.1,
    "momentum": 0.0,
    "clip-norm": 0.3,
    "sampling": "poisson",
}


SETTINGS = ("rounds", "num_supernodes", "sample_rate", "delta", "seed", "draws", "backend")


def settings(epsilons: list[float]) -> list[tuple[str, dict[str, Any]]]:
    """(name, run-config overrides) for no DP and each target epsilon."""
    out: list[tuple[str, dict[str, Any]]] = [("no-dp", {"dp-mode": "none"})]
    for eps in epsilons:
        out.append((f"eps-{eps:g}", {"dp-mode": "central-server", "noise-multiplier": 0.0,
                                     "target-epsilon": eps}))  # fmt: skip
    return out


IN_PROCESS = """
import json, logging, sys
from fedlab.apps import dpfedavg
from fedlab.inprocess import run_in_process
logging.basicConfig(level=logging.INFO, format="%(message)s")
run_in_process(dpfedavg, dpfedavg.resolve_config(json.loads(sys.argv[1])))
"""


def run_one(
    name: str, draw: int, overrides: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """Run one draw of one setting in a subprocess (or reuse it); return its figures."""
    folder = args.out / "runs" / name / f"draw-{draw}"
    summary = folder / "summary.json"
    config = {**DEFAULTS, "num-server-rounds": args.rounds, "num-supernodes": args.num_supernodes,
              "sample-rate": args.sample_rate, "delta": args.delta, "seed": args.seed,
              **overrides}  # fmt: skip
    if getattr(args, "seeded_noise", False) and config["dp-mode"] != "none":
        config["dp-seeded-noise"] = True
    if not (args.reuse and summary.is_file()):
        if args.backend == "ray":
            command = [sys.executable, "-c", "import sys; from fedlab.cli import "
                       "flower_simulation_main as m; sys.exit(m())", "--app",
                       "fedlab.apps:dpfedavg", "--out", str(folder), "--run-config",
                       *[f"{k}={json.dumps(v)}" for k, v in config.items()]]  # fmt: skip
        else:
            command = [sys.executable, "-c", IN_PROCESS,
                       json.dumps({**config, "out-dir": str(folder)})]  # fmt: skip
        started = time.perf_counter()
        log_file = folder.parent / f"draw-{draw}.log"
        folder.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("w") as fh:
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            code = subprocess.run(command, stdout=fh, stderr=subprocess.STDOUT, env=env).returncode
        if code != 0:
            raise RuntimeError(f"setting {name} failed (exit {code}); see {log_file}")
        log.info("%s draw %d: %.0f s", name, draw, time.perf_counter() - started)
    history = json.loads((folder / "history.json").read_text())
    # Clients per round and seconds are server-private under DP (docs/dp.md): this study of our
    # own runs on public data reads them from there; no run's release holds them.
    private = folder / "server-private"
    whole = json.loads((private / "rounds.json").read_text()) if private.is_dir() else history
    done = json.loads(
        (private if private.is_dir() else folder).joinpath("summary.json").read_text()
    )
    last = history[-1]
    train = last.get("train", {})
    return {
        "setting": name,
        "draw": draw,
        "target-epsilon": overrides.get("target-epsilon"),
        "epsilon": train.get("dp-client-epsilon"),
        "noise-multiplier": train.get("dp-noise-multiplier"),
        "noise-std": train.get("dp-noise-std"),
        "final-accuracy": last["evaluate"]["accuracy"],
        "best-accuracy": max(r["evaluate"]["accuracy"] for r in history),
        "accuracy-by-round": [r["evaluate"]["accuracy"] for r in history],
        "mean-clients-per-round": sum(r["replies"] for r in whole) / len(whole),
        "rounds": len(history),
        "seconds": done["seconds"],
        "config": config,
    }


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per setting: mean and std over its draws."""
    rows = []
    for name in dict.fromkeys(r["setting"] for r in runs):
        draws = [r for r in runs if r["setting"] == name]
        row = {k: draws[0][k] for k in ("setting", "target-epsilon", "epsilon",
                                          "noise-multiplier", "noise-std")}  # fmt: skip
        row["draws"] = len(draws)
        for key in ("final-accuracy", "best-accuracy", "seconds", "mean-clients-per-round"):
            values = [r[key] for r in draws]
            row[key] = statistics.fmean(values)
            row[f"{key}-std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        curves = [r["accuracy-by-round"] for r in draws]
        row["accuracy-by-round"] = [statistics.fmean(c) for c in zip(*curves, strict=True)]
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """Markdown table of the sweep (mean ± std over draws)."""
    head = (
        f"DP-FedAvg (central DP, server-side clipping C = {DEFAULTS['clip-norm']}) on digits, "
        f"{args.num_supernodes} clients, Poisson sampling q = {args.sample_rate}, "
        f"{args.rounds} rounds, seed {args.seed}, softmax regression; client-level epsilon "
        f"(RDP) at delta = {args.delta:g}; DP settings: mean ± std over {args.draws} draws of "
        f"the noise and the client sample (OS entropy), backend {args.backend}.\n\n"
        "| setting | draws | client-level epsilon | noise multiplier z | noise std zC/(qN) "
        "| final accuracy | best accuracy | clients/round | seconds per run |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        eps = "inf (no DP)" if r["epsilon"] is None else f"{r['epsilon']:.2f}"
        z = "-" if r["noise-multiplier"] is None else f"{r['noise-multiplier']:.3f}"
        std = "-" if r["noise-std"] is None else f"{r['noise-std']:.4f}"
        lines.append(f"| {r['setting']} | {r['draws']} | {eps} | {z} | {std} | "
                     f"{_pm(r, 'final-accuracy')} | {_pm(r, 'best-accuracy')} | "
                     f"{r['mean-clients-per-round']:.1f} | {r['seconds']:.0f} |")  # fmt: skip
    return head + "\n".join(lines) + "\n"


def readme_table(rows: list[dict[str, Any]]) -> str:
    """The README's compact table: setting, epsilon, z, final accuracy."""
    lines = [
        "| setting | client-level epsilon (delta 1e-5) | z | final accuracy |",
        "|---|---|---|---|",
    ]
    for r in rows:
        if r["epsilon"] is None:
            note = " (deterministic: one run)" if r["draws"] == 1 else ""
            lines.append(f"| no DP | inf | - | {_pm(r, 'final-accuracy')}{note} |")
        else:
            lines.append(f"| {r['setting']} | {r['epsilon']:.2f} | {r['noise-multiplier']:.3f} "
                         f"| {_pm(r, 'final-accuracy')} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def tables_from_results(results: dict[str, Any]) -> tuple[str, str]:
    """(full table, README table) from a saved ``privacy_utility.json``: what the docs show
    must be what this returns (a test diffs them)."""
    args = argparse.Namespace(**results["settings"])
    return table(results["rows"], args), readme_table(results["rows"])


def _pm(row: dict[str, Any], key: str) -> str:
    if row["draws"] == 1:
        return f"{row[key]:.3f}"
    return f"{row[key]:.3f} ± {row[f'{key}-std']:.3f}"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Final accuracy (mean ± std) against epsilon, no DP as a line; mean accuracy over rounds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    private = [r for r in rows if r["epsilon"] is not None]
    left.errorbar([r["epsilon"] for r in private], [r["final-accuracy"] for r in private],
                  yerr=[r["final-accuracy-std"] for r in private], fmt="o-", capsize=3,
                  label="DP-FedAvg (mean ± std over draws)")  # fmt: skip
    for r in rows:
        if r["epsilon"] is None:
            left.axhline(r["final-accuracy"], color="grey", ls="--", label="no DP")
        right.plot(range(1, len(r["accuracy-by-round"]) + 1), r["accuracy-by-round"],
                   label=r["setting"])  # fmt: skip
    left.set(xscale="log", xlabel="client-level epsilon (delta 1e-5)",
             ylabel="final test accuracy", title="privacy-utility")  # fmt: skip
    left.set_xticks([r["epsilon"] for r in private], [f"{r['epsilon']:.2g}" for r in private])
    left.minorticks_off()
    right.set(xlabel="round", ylabel="test accuracy (mean over draws)",
              title="accuracy over rounds")  # fmt: skip
    left.legend()
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "privacy_utility")
    parser.add_argument("--epsilons", default="1,2,4,8")
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--num-supernodes", type=int, default=100)
    parser.add_argument("--sample-rate", type=float, default=0.1)
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--draws", type=int, default=5, help="runs per DP setting")
    parser.add_argument("--backend", choices=("inprocess", "ray"), default="inprocess")
    parser.add_argument(
        "--seeded-noise",
        action="store_true",
        help="dp-seeded-noise=true: reproducible draws (for tests; not private against the seed)",
    )
    parser.add_argument("--reuse", action="store_true")
    args = parser.parse_args(argv)
    args.out = args.out.resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    epsilons = [float(e) for e in args.epsilons.split(",")]
    started = time.perf_counter()
    runs = []
    for name, overrides in settings(epsilons):
        draws = 1 if overrides["dp-mode"] == "none" else args.draws
        runs.extend(run_one(name, draw, overrides, args) for draw in range(draws))
    rows = summarize(runs)
    args.out.mkdir(parents=True, exist_ok=True)
    text = table(rows, args)
    atomic_write_text(args.out / "privacy_utility.md", text)
    saved_settings = {k: getattr(args, k) for k in SETTINGS}
    atomic_write_json(
        args.out / "privacy_utility.json", {"settings": saved_settings, "rows": rows, "runs": runs}
    )
    plot(rows, args.out / "privacy_utility.png")
    log.info("%s\ntotal %.0f s; outputs in %s", text, time.perf_counter() - started, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
