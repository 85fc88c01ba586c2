"""The main job's stored reference: FedFoA and local-only SSL at the ``fedfoa`` app's defaults.

Runs the app itself (``run_in_process``, its ServerApp and ClientApp code) with its default
run config for seeds 0, 1, 2, once as it is (FedFoA) and once with ``fedfoa-lambda=0`` (local-only
SimCLR: the same models, data and seeds, the aggregate never used), and writes

- ``clients/ssl/main_job_reference.json``: the setting and both figures, which the app prints
  at the end of a run with the same setting (:mod:`fedlab.clients.ssl.reference`);
- ``simulations/results/fedfoa/main_job.md``: the table, with the paired difference.

Run: OMP_NUM_THREADS=1 python simulations/fedfoa_main_job_reference.py
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from fedfoa_compare import paired_interval, run_cell  # this folder: run as a script
from fedlab.clients.ssl.app import fedfoa
from fedlab.clients.ssl.reference import REFERENCE_FILE, setting_of

from fedlab.atomic import atomic_write_text
from fedlab.cli import setup_logging

OUT = Path(__file__).resolve().parent / "results" / "fedfoa" / "main_job.md"
METHODS = {"fedfoa": {}, "local-only": {"fedfoa-lambda": 0.0}}
#: The last round's figures kept per run: the probe, and the evidence of what the aggregate
#: carries (its distance from a client's own matrix; the probe on classes a client never saw).
EVIDENCE = ("probe-acc-mean", "probe-acc-own-mean", "probe-acc-unseen-mean", "relation-gap")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--reference", type=Path, default=REFERENCE_FILE)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    setup_logging(verbose=False)
    rows: dict[str, list[dict]] = {name: [] for name in METHODS}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for name, changes in METHODS.items():
                config = fedfoa.resolve_config(
                    changes, {"seed": seed, "out-dir": f"{tmp}/{name}-seed{seed}"}
                )
                final = run_cell(config)
                rows[name].append({"seed": seed, **{k: final[k] for k in EVIDENCE if k in final}})
    command = "python simulations/fedfoa_main_job_reference.py"
    methods = {}
    for name, runs in rows.items():
        accs = [r["probe-acc-mean"] for r in runs]
        methods[name] = {"mean": float(np.mean(accs)), "std": float(np.std(accs)),
                         "seeds": [r["seed"] for r in runs], "per-seed": runs}  # fmt: skip
    reference = {"setting": setting_of(fedfoa.resolve_config()), "methods": methods,
                 "command": command}  # fmt: skip
    atomic_write_text(args.reference, json.dumps(reference, indent=2) + "\n")
    diff = paired_interval(rows["fedfoa"], rows["local-only"])
    lines = [
        "| `flower-simulation --app fedlab.apps:fedfoa` defaults | probe accuracy, mean +- std |",
        "|---|---|",
        *(
            f"| {name} | {m['mean']:.3f} +- {m['std']:.3f} (seeds {m['seeds']}) |"
            for name, m in methods.items()
        ),  # fmt: skip
    ]
    if diff is not None:
        lines.append(
            f"| FedFoA - local-only, paired by seed | {diff[0]:+.3f} "
            f"(95 % t interval {diff[1]:+.3f} .. {diff[2]:+.3f}) |"
        )
    lines += ["", "| last round, mean over seeds | " + " | ".join(EVIDENCE[1:]) + " |",
              "|---|" + "---|" * (len(EVIDENCE) - 1)]  # fmt: skip
    for name, runs in rows.items():
        cells = [f"{np.mean([r[k] for r in runs]):.3f}" if all(k in r for r in runs) else "-"
                 for k in EVIDENCE[1:]]  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    atomic_write_text(args.out, "\n".join(lines) + f"\n\nFrom `{command}`.\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
