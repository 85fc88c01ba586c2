"""Wall time per round and peak memory against the population N (issue 36), ours beside bare
Flower, measured in one run on one machine.

Protocol, fixed before the first run. For N in 10^3, 10^4, 10^5, 10^6 (``--populations``):

- ours: ``flower-simulation --app fedlab.apps:dpfedavg`` with ``dataset=synthetic``
  (Synthetic(1, 1)), ``population=N`` served by ``--workers`` (10) worker nodes, Poisson
  sampling at q = 100 / N, central DP with server-side clipping (C = 1, z = 1,
  delta = 1e-7), one local epoch at batch 32, ``--rounds`` (6) rounds; a round's time is the
  ``seconds`` of its record in ``server-private/rounds.json`` (configure, train, aggregate,
  evaluate on 100 held-out clients, checkpoint), and the reported figure is the median of rounds
  2 onwards (round 1 pays the start-up);
- bare Flower: ``simulations/overhead/bare_flower_population.py``, N virtual nodes, 100 sampled
  per round, replies of a few bytes, ``--rounds`` rounds, the median of rounds 2 onwards and the
  first round apart;
- peak memory: the largest sum of the resident set sizes of the command and every process it
  started (Ray's included), sampled every 0.25 s with psutil.

Both sides run one after the other for each N, on the same machine, with the same number of CPUs
for Ray. ``--skip-bare-above`` leaves out bare Flower above that N (its first round at 10^5
already took half a minute in the issue's measurement).

    python simulations/population_bench.py --out simulations/results/population/bench.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def run_measured(cmd: list[str]) -> tuple[float, int, str]:
    """Run ``cmd``; return (wall seconds, peak summed RSS in bytes of its process tree, output)."""
    import psutil  # installed with Ray

    start = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
        root, peak = psutil.Process(proc.pid), 0
        while proc.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(_rss(p) for p in tree))
            except psutil.NoSuchProcess:
                pass
            time.sleep(0.25)
        log.seek(0)
        output = log.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed:\n{output[-3000:]}")
    return time.perf_counter() - start, peak, output


def _rss(process: Any) -> int:
    import psutil

    try:
        return process.memory_info().rss
    except psutil.Error:
        return 0


def ours(n: int, args: argparse.Namespace, folder: Path) -> dict:
    out = folder / f"ours-{n}"
    keys = [
        "dataset=synthetic", f"population={n}", f"sample-rate={100 / n!r}", "sampling=poisson",
        "dp-mode=central-server", "clip-norm=1.0", "noise-multiplier=1.0", "delta=1e-7",
        "local-epochs=1", "batch-size=32", f"num-server-rounds={args.rounds}",
    ]  # fmt: skip
    cmd = [str(BIN / "flower-simulation"), "--app", "fedlab.apps:dpfedavg", "--out", str(out),
           "--num-supernodes", str(args.workers), "--gpu", "off",
           "--run-config", *keys]  # fmt: skip
    wall, peak, _ = run_measured(cmd)
    rounds = json.loads((out / "server-private" / "rounds.json").read_text())
    seconds = [r["seconds"] for r in rounds]
    return {"round-seconds": seconds, "median-round-seconds": statistics.median(seconds[1:]),
            "first-round-seconds": seconds[0], "sampled": [r["sampled"] for r in rounds],
            "peak-rss-mb": peak / 2**20, "wall-seconds": wall}  # fmt: skip


def bare(n: int, args: argparse.Namespace, folder: Path) -> dict:
    out = folder / f"bare-{n}.json"
    cmd = [sys.executable, str(HERE / "overhead" / "bare_flower_population.py"), "--nodes",
           str(n), "--rounds", str(args.rounds), "--out", str(out)]  # fmt: skip
    wall, peak, _ = run_measured(cmd)
    seconds = json.loads(out.read_text())["round-seconds"]
    return {"round-seconds": seconds, "median-round-seconds": statistics.median(seconds[1:]),
            "first-round-seconds": seconds[0], "peak-rss-mb": peak / 2**20,
            "wall-seconds": wall}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--populations", default="1000,10000,100000,1000000")
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--skip-bare-above", type=int, default=10**6)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    results: dict = {"protocol": __doc__, "workers": args.workers, "rounds": args.rounds,
                     "rows": []}  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(v) for v in args.populations.split(",")):
            row = {"population": n, "ours": ours(n, args, Path(tmp))}
            if n <= args.skip_bare_above:
                row["bare"] = bare(n, args, Path(tmp))
            results["rows"].append(row)
            print(json.dumps(row), flush=True)
            out.write_text(json.dumps(results, indent=2))  # after every N: a crash keeps the rest
    print(table(results))


def table(results: dict) -> str:
    lines = ["| N | ours: s per round (round 1) | ours: peak MB | bare Flower: s per round "
             "(round 1) | bare Flower: peak MB |", "|---|---|---|---|---|"]  # fmt: skip
    for row in results["rows"]:
        o, b = row["ours"], row.get("bare")
        bare_cells = (f"{b['median-round-seconds']:.2f} ({b['first-round-seconds']:.1f}) | "
                      f"{b['peak-rss-mb']:.0f}") if b else "not run | not run"  # fmt: skip
        lines.append(
            f"| {row['population']:,} | {o['median-round-seconds']:.2f} "
            f"({o['first-round-seconds']:.1f}) | {o['peak-rss-mb']:.0f} | {bare_cells} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
