"""Wall time of the ``fedlab audit`` attack stage alone, on a finished audit (issue 37).

Protocol (fixed before the first timing run). Input: a finished audit folder (``--audit``, e.g.
``fedlab audit --app dpfedavg --out runs/audit``, the default preset). For each attack seed in
``--seeds``, the settings' run folders and ``setting.json`` files are copied to a scratch folder,
the attack rows, ``audit.json`` and the report are left out, and the audit's own
:func:`fedlab.attacks.audit.runner.run_audit` is called on it with the audit's config and that
seed: every setting is found finished, so only the attack stage runs (its process pool of
``workers`` processes, one torch thread each, and the report). The seed changes only the
attacks' random starts, since the runs are reused. Reported per seed: the attack stage's wall
time (from the first attack job handed to the pool to the report being started, i.e. the last
row back; measured from outside the runner, so the same clock serves any version of it), the
wall time of the whole ``run_audit`` call, the boundary, and every row's PSNR, label accuracy,
iterations and seconds.

To compare with the code as it was at the start of issue 37 (commit 3765329), run the same
command on a checkout of that commit's ``attacks/dlg.py`` and ``attacks/inverting.py``
(``git checkout 3765329 -- attacks/dlg.py attacks/inverting.py``; restore them after) with
``--label start``, on the same audit folder and the same machine, with nothing else running.

    OMP_NUM_THREADS=1 python simulations/audit_attack_timing.py --audit runs/audit \\
        --label ours --seeds 0 1 2

Results go under the label into ``simulations/results/attacks/audit-attack-stage.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from fedlab.atomic import atomic_write_json

OUT = Path(__file__).resolve().parent / "results" / "attacks" / "audit-attack-stage.json"


def scratch_copy(audit: Path, scratch: Path) -> None:
    """The settings of ``audit`` (runs and ``setting.json``), without attack rows or report."""
    if scratch.exists():
        shutil.rmtree(scratch)
    for setting in sorted((audit / "settings").iterdir()):
        if not (setting / "setting.json").is_file():
            raise SystemExit(f"{setting} is not a finished setting; finish the audit first")
        shutil.copytree(setting / "run", scratch / "settings" / setting.name / "run")
        shutil.copy2(setting / "setting.json", scratch / "settings" / setting.name)


def attack_stage(audit: Path, scratch: Path, seed: int, workers: int | None) -> dict[str, Any]:
    """Time ``run_audit`` on a copy of ``audit`` whose settings are all finished."""
    import dataclasses

    from fedlab.attacks.audit.config import from_mapping
    from fedlab.attacks.audit.runner import run_audit

    from fedlab.cli import resolve_app

    recorded = json.loads((audit / "audit-config.json").read_text())
    app = recorded.pop("app")
    recorded.pop("workers")
    config = from_mapping({k.replace("_", "-"): v for k, v in recorded.items()})
    config = dataclasses.replace(config, seed=seed)
    if workers is not None:
        config = dataclasses.replace(config, workers=workers)
    spec = resolve_app(app if ":" in app else f"fedlab.apps:{app}")
    scratch_copy(audit, scratch)
    clock: dict[str, float] = {}
    with _stage_clock(clock):
        t0 = time.perf_counter()
        data = run_audit(spec, config, scratch, app)
        wall = time.perf_counter() - t0
    keys = ("setting", "target", "attack", "denoiser", "status", "psnr", "label_accuracy",
            "iterations", "seconds")  # fmt: skip
    rows = [{k: r.get(k) for k in keys} for r in data["rows"]]
    rows.sort(key=lambda r: (r["setting"], r["target"], r["attack"], r["denoiser"]))
    stage = clock["report"] - clock["first-job"]
    return {"seed": seed, "attack_stage_s": stage, "wall_s": wall, "boundary": data["boundary"],
            "rows": rows}  # fmt: skip


@contextlib.contextmanager
def _stage_clock(clock: dict[str, float]) -> Iterator[None]:
    """Record when the first attack job is handed to the pool and when the report starts."""
    from fedlab.attacks.audit import report, runner

    pool_class, write_report = runner.ProcessPoolExecutor, report.write_report

    class ClockedPool(pool_class):  # type: ignore[misc,valid-type]
        def submit(self, fn, *args, **kwargs):  # noqa: ANN001, ANN202
            if getattr(fn, "__name__", "") == "run_job":
                clock.setdefault("first-job", time.perf_counter())
            return super().submit(fn, *args, **kwargs)

    def clocked_report(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        clock["report"] = time.perf_counter()
        return write_report(*args, **kwargs)

    runner.ProcessPoolExecutor, report.write_report = ClockedPool, clocked_report
    try:
        yield
    finally:
        runner.ProcessPoolExecutor, report.write_report = pool_class, write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audit", required=True, help="a finished audit folder")
    parser.add_argument("--label", required=True, help="name of the code measured, e.g. ours")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=None, help="default: the audit's")
    parser.add_argument("--scratch", default=None, help="default: <audit>-attack-timing")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    audit = Path(args.audit)
    scratch = Path(args.scratch or f"{audit}-attack-timing")
    runs = []
    for seed in args.seeds:
        run = attack_stage(audit, scratch, seed, args.workers)
        runs.append(run)
        print(f"{args.label} seed {seed}: attack stage {run['attack_stage_s']:.1f} s, "
              f"run_audit {run['wall_s']:.1f} s, boundary {run['boundary']}")  # fmt: skip
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    results[args.label] = {
        "audit": str(audit),
        "median_attack_stage_s": statistics.median(r["attack_stage_s"] for r in runs),
        "median_wall_s": statistics.median(r["wall_s"] for r in runs),
        "runs": runs,
    }
    atomic_write_json(out, results)
    print(f"{args.label}: median attack stage {results[args.label]['median_attack_stage_s']:.1f} s"
          f" -> {out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
