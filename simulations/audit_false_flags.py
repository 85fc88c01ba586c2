"""How often the audit's "exceeds" rule flags a correct Gaussian mechanism (issue 27).

Protocol, fixed before any run:

* **Mechanism.** A Gaussian mechanism of known epsilon, seen through canaries as the audit sees
  them: the statistic of an inserted canary is N(mu, 1), that of a never-inserted direction
  N(0, 1) (a Gaussian mechanism's two outputs along the canary direction, in units of its noise
  std; the estimate does not depend on the unit). Its true epsilon at delta 1e-5 is
  ``gaussian_pair_epsilon(mu, 1, 0, 1, 1e-5)`` (the audit's own function, exact for this pair);
  mu is chosen for true epsilons 1, 2, 4, 8 and 16.
* **What is compared.** An exact accountant: the epsilon the estimate is compared with is the
  mechanism's true epsilon. A flag is then always false.
* **Canary counts: the default preset's.** 10 canaries (canary-share 0.1 of 100 clients),
  ``null-canaries`` 200, ``bootstrap`` 200, ``seed`` 0 (``AuditConfig`` defaults). Two shapes:
  ``final`` (10 observed statistics, 200 null: the final-model and all-iterates statistics) and
  ``per-release`` (10 observed: 10 canaries x q 0.1 x 10 rounds replies expected, and each
  reply against 200 null directions, 2,000 null statistics), compared with the audit's own
  per-release bound (``noise-std`` 1, ``clip-norm`` mu).
* **Code under test.** :func:`fedlab.attacks.audit.runner.estimates_of`, imported: both fits
(pooled,
  and Andrew et al.'s separate variances), their intervals and the ``exceeds`` flag exactly as
  the audit computes them.
* **Repetitions.** 200 independent draws per (shape, epsilon), data seeds 0-199
  (``numpy.random.default_rng((shape index, epsilon index, repetition))``): 2,000 audits of
  which each runs both fits (a timing pilot of 5 draws gave 0.3-0.4 s each on one loaded
  thread, so 300 draws would not fit in 10 minutes). The false-flag rate is flags / 200 with
  its 95 % Wilson interval; an exact one-sided 95 % interval would flag at most 2.5 % of the
  time. Also reported: how often the interval covers the true epsilon, and the median estimate.

Results: ``simulations/results/audit/false_flags.{json,md}``.

    OMP_NUM_THREADS=1 python simulations/audit_false_flags.py
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from fedlab.attacks.audit.config import AuditConfig
from fedlab.attacks.audit.estimate import gaussian_pair_epsilon
from fedlab.attacks.audit.runner import estimates_of

from fedlab.atomic import atomic_write_json, atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results" / "audit"
DELTA = 1e-5
EPSILONS = (1.0, 2.0, 4.0, 8.0, 16.0)
REPETITIONS = 200
CANARIES = 10
NULL_DIRECTIONS = AuditConfig().null_canaries
#: statistic, observed count, null count
SHAPES = (
    ("final", CANARIES, NULL_DIRECTIONS),
    ("per-release", CANARIES, CANARIES * NULL_DIRECTIONS),
)


def mu_for(epsilon: float) -> float:
    """The Gaussian mechanism's mu (sensitivity / noise std) with ``epsilon`` at DELTA."""
    lo, hi = 0.0, 20.0
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (
            (mid, hi) if gaussian_pair_epsilon(mid, 1.0, 0.0, 1.0, DELTA) < epsilon else (lo, mid)
        )
    return (lo + hi) / 2


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion ``k / n``."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def one_cell(shape: int, eps_index: int, reps: int, audit: AuditConfig) -> list[dict[str, Any]]:
    """``reps`` audits of one (shape, epsilon); one summary per fit."""
    stat, n_obs, n_null = SHAPES[shape]
    mu = mu_for(EPSILONS[eps_index])
    true = gaussian_pair_epsilon(mu, 1.0, 0.0, 1.0, DELTA)
    acc = {"epsilon": true, "noise-std": 1.0, "clip-norm": mu}
    mode = "local" if stat == "per-release" else "central"
    fits: dict[str, list[dict[str, Any]]] = {"pooled": [], "separate": []}
    for rep in range(reps):
        rng = np.random.default_rng((shape, eps_index, rep))
        stats = {
            stat: {
                "observed": rng.normal(mu, 1.0, n_obs).tolist(),
                "null": rng.normal(0.0, 1.0, n_null).tolist(),
            }
        }
        est = estimates_of(stats, acc, mode, DELTA, audit)[stat]
        assert abs(est["accountant"] - true) < 1e-9  # the audit compares with the true epsilon
        fits["pooled"].append(est)
        fits["separate"].append(est["separate"])
    out = []
    for fit, ests in fits.items():
        flags = sum(bool(e["exceeds"]) for e in ests)
        covered = sum(e["low"] <= true <= e["high"] for e in ests)
        low, high = wilson(flags, reps)
        out.append(
            {
                "statistic": stat,
                "observed": n_obs,
                "null": n_null,
                "epsilon": true,
                "mu": mu,
                "fit": fit,
                "repetitions": reps,
                "false-flags": flags,
                "rate": flags / reps,
                "rate-95": [low, high],
                "coverage": covered / reps,
                "median-estimate": statistics.median(e["epsilon"] for e in ests),
                "median-low": statistics.median(e["low"] for e in ests),
            }
        )
    return out


def table(data: dict[str, Any]) -> str:
    """The Markdown table: false-flag rate and coverage per shape, epsilon and fit."""
    lines = [
        "| statistic (observed / null) | true eps | fit | false flags [95 %] | "
        "interval covers true eps | median estimate | median low end |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in data["results"]:
        lo, hi = r["rate-95"]
        lines.append(
            f"| {r['statistic']} ({r['observed']} / {r['null']}) | {r['epsilon']:g} | {r['fit']} "
            f"| {r['false-flags']}/{r['repetitions']} = {100 * r['rate']:.1f} % "
            f"[{100 * lo:.1f}, {100 * hi:.1f}] | {100 * r['coverage']:.0f} % "
            f"| {r['median-estimate']:.3g} | {r['median-low']:.3g} |"
        )
    lines += [
        "",
        f"{data['repetitions']} draws per row; delta {data['delta']:g}; bootstrap "
        f"{data['bootstrap']}; a flag is the audit's `exceeds` (lower end above the true epsilon); "
        f"{data['seconds']:.0f} s on one thread.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repetitions", type=int, default=REPETITIONS)
    parser.add_argument("--out", default=str(RESULTS), help="folder of false_flags.{json,md}")
    args = parser.parse_args(argv)
    audit = AuditConfig()
    started = time.perf_counter()
    results = []
    for shape in range(len(SHAPES)):
        for eps_index in range(len(EPSILONS)):
            cell = one_cell(shape, eps_index, args.repetitions, audit)
            results.extend(cell)
            print(
                f"{SHAPES[shape][0]} eps {EPSILONS[eps_index]:g}: "
                + ", ".join(f"{r['fit']} {r['false-flags']}/{r['repetitions']}" for r in cell)
                + f" ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    data = {
        "protocol": __doc__.split("Protocol, fixed before any run:")[1]
        .split("Results:")[0]
        .strip(),
        "delta": DELTA,
        "repetitions": args.repetitions,
        "bootstrap": audit.bootstrap,
        "seed": audit.seed,
        "seconds": round(time.perf_counter() - started, 1),
        "results": results,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "false_flags.json", data)
    text = table(data)
    atomic_write_text(out / "false_flags.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
