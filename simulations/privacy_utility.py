"""Privacy-utility table and plot of the ``dpfedavg`` app (central DP, server-side clipping).

Every run has the same data, partitions, seed, client sampling (Poisson at ``--sample-rate``
of ``--num-supernodes`` clients) and rounds; only the noise differs: none, then the noise
multiplier the app derives for each ``--epsilons`` target (client-level, RDP, at ``--delta``).
Each run is ``flower-simulation --app fedlab.apps:dpfedavg`` in a fresh process under Ray.

Outputs under ``--out``: ``privacy_utility.md`` (the table), ``privacy_utility.png`` (final
accuracy against epsilon, and accuracy over rounds), ``privacy_utility.json`` (every figure) and
``runs/<setting>/`` (each run folder). ``--reuse`` skips settings whose run folder is complete.

    python simulations/privacy_utility.py --rounds 30 --epsilons 1,2,4,8
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("fedlab.privacy_utility")

HERE = Path(__file__).resolve().parent
DEFAULTS = {
    "workload": "clients.dpfedavg.linear:LinearWorkload",
    "dataset": "digits",
    "local-epochs": 5,
    "batch-size": 16,
    "lr": 0.1,
    "momentum": 0.0,
    "clip-norm": 0.3,
    "sampling": "poisson",
}


def settings(epsilons: list[float]) -> list[tuple[str, dict[str, Any]]]:
    """(name, run-config overrides) for no DP and each target epsilon."""
    out: list[tuple[str, dict[str, Any]]] = [("no-dp", {"dp-mode": "none"})]
    for eps in epsilons:
        out.append((f"eps-{eps:g}", {"dp-mode": "central-server", "noise-multiplier": 0.0,
                                     "target-epsilon": eps}))  # fmt: skip
    return out


def run_one(name: str, overrides: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Run one setting in a subprocess (or reuse it); return its figures."""
    folder = args.out / "runs" / name
    summary = folder / "summary.json"
    config = {**DEFAULTS, "num-server-rounds": args.rounds, "num-supernodes": args.num_supernodes,
              "sample-rate": args.sample_rate, "delta": args.delta, "seed": args.seed,
              **overrides}  # fmt: skip
    if not (args.reuse and summary.is_file()):
        command = [sys.executable, "-c", "import sys; from fedlab.cli import "
                   "flower_simulation_main as m; sys.exit(m())", "--app", "fedlab.apps:dpfedavg",
                   "--out", str(folder), "--run-config",
                   *[f"{k}={json.dumps(v)}" for k, v in config.items()]]  # fmt: skip
        started = time.perf_counter()
        log_file = folder.parent / f"{name}.log"
        folder.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("w") as fh:
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            code = subprocess.run(command, stdout=fh, stderr=subprocess.STDOUT, env=env).returncode
        if code != 0:
            raise RuntimeError(f"setting {name} failed (exit {code}); see {log_file}")
        log.info("%s: %.0f s", name, time.perf_counter() - started)
    history = json.loads((folder / "history.json").read_text())
    done = json.loads(summary.read_text())
    last = history[-1]
    train = last.get("train", {})
    return {
        "setting": name,
        "target-epsilon": overrides.get("target-epsilon"),
        "epsilon": train.get("dp-client-epsilon"),
        "noise-multiplier": train.get("dp-noise-multiplier"),
        "noise-std": train.get("dp-noise-std"),
        "final-accuracy": last["evaluate"]["accuracy"],
        "best-accuracy": max(r["evaluate"]["accuracy"] for r in history),
        "accuracy-by-round": [r["evaluate"]["accuracy"] for r in history],
        "mean-clients-per-round": sum(r["replies"] for r in history) / len(history),
        "rounds": len(history),
        "seconds": done["seconds"],
        "config": config,
    }


def table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """Markdown table of the sweep."""
    head = (
        f"DP-FedAvg (central DP, server-side clipping C = {DEFAULTS['clip-norm']}) on digits, "
        f"{args.num_supernodes} clients, Poisson sampling q = {args.sample_rate}, "
        f"{args.rounds} rounds, seed {args.seed}, softmax regression; client-level epsilon "
        f"(RDP) at delta = {args.delta:g}.\n\n"
        "| setting | client-level epsilon | noise multiplier z | noise std zC/(qN) "
        "| final accuracy | best accuracy | clients/round | seconds |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        eps = "inf (no DP)" if r["epsilon"] is None else f"{r['epsilon']:.2f}"
        z = "-" if r["noise-multiplier"] is None else f"{r['noise-multiplier']:.3f}"
        std = "-" if r["noise-std"] is None else f"{r['noise-std']:.4f}"
        lines.append(f"| {r['setting']} | {eps} | {z} | {std} | {r['final-accuracy']:.3f} | "
                     f"{r['best-accuracy']:.3f} | {r['mean-clients-per-round']:.1f} | "
                     f"{r['seconds']:.0f} |")  # fmt: skip
    return head + "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Final accuracy against epsilon (no DP as a line), and accuracy over rounds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    private = [r for r in rows if r["epsilon"] is not None]
    left.plot([r["epsilon"] for r in private], [r["final-accuracy"] for r in private], "o-",
              label="DP-FedAvg")  # fmt: skip
    for r in rows:
        if r["epsilon"] is None:
            left.axhline(r["final-accuracy"], color="grey", ls="--", label="no DP")
        right.plot(range(1, len(r["accuracy-by-round"]) + 1), r["accuracy-by-round"],
                   label=r["setting"])  # fmt: skip
    left.set(xscale="log", xlabel="client-level epsilon (delta 1e-5)",
             ylabel="final test accuracy", title="privacy-utility")  # fmt: skip
    left.set_xticks([r["epsilon"] for r in private], [f"{r['epsilon']:.2g}" for r in private])
    left.minorticks_off()
    right.set(xlabel="round", ylabel="test accuracy", title="accuracy over rounds")
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
    parser.add_argument("--reuse", action="store_true")
    args = parser.parse_args(argv)
    args.out = args.out.resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    epsilons = [float(e) for e in args.epsilons.split(",")]
    started = time.perf_counter()
    rows = [run_one(name, overrides, args) for name, overrides in settings(epsilons)]
    args.out.mkdir(parents=True, exist_ok=True)
    text = table(rows, args)
    (args.out / "privacy_utility.md").write_text(text)
    (args.out / "privacy_utility.json").write_text(json.dumps(rows, indent=2))
    plot(rows, args.out / "privacy_utility.png")
    log.info("%s\ntotal %.0f s; outputs in %s", text, time.perf_counter() - started, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
