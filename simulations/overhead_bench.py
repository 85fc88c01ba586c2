"""Wall time of `flower-simulation --app fedlab.apps:fedavg` against bare Flower doing the same.

Alternates fresh processes (ours, bare, ours, bare, ...) so drift on a shared machine hits
both alike, and reports the median and spread of each and of the per-pair ratio ours/bare.
The baseline's code is `simulations/overhead/bare_flower_fedavg.py`.

Run: python simulations/overhead_bench.py --runs 5 --out simulations/results/overhead.md
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return seconds


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "overhead.md")
    args = parser.parse_args()
    ours_t, bare_t = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            ours = [
                str(BIN / "flower-simulation"),
                "--app",
                "fedlab.apps:fedavg",
                "--out",
                f"{tmp}/run{i}",
                "--run-config",
                f"num-server-rounds={args.rounds}",
            ]
            bare = [sys.executable, str(HERE / "overhead" / "bare_flower_fedavg.py"),
                    "--rounds", str(args.rounds)]  # fmt: skip
            ours_t.append(timed(ours))
            bare_t.append(timed(bare))
            print(
                f"pair {i + 1}: fedlab {ours_t[-1]:.2f} s, bare flower {bare_t[-1]:.2f} s",
                flush=True,
            )
    ratios = [a / b for a, b in zip(ours_t, bare_t, strict=True)]
    table = "\n".join([
        f"| command ({args.rounds} rounds, 10 supernodes, digits) | wall s: median (min-max) |",
        "|---|---|",
        f"| flower-simulation --app fedlab.apps:fedavg | {spread(ours_t)} |",
        f"| bare Flower ServerApp/ClientApp (same work) | {spread(bare_t)} |",
        f"| ratio fedlab / bare, per pair | {spread(ratios)} |",
    ])  # fmt: skip
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(f"{table}\n\n{args.runs} alternating fresh-process pairs.\n")


if __name__ == "__main__":
    main()
