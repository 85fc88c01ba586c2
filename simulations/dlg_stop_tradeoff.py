"""Where DLG could stop: PSNR and time against the relative loss, on two bench images (issue 37).

Protocol. ``fedlab.attacks.dlg.DLG()`` with its defaults (3,000 evaluations, ``rel_tol`` 1e-10)
on the attack bench's ``camera`` and ``coins`` (the two images the stop was first read from; not
the speed benchmark's images), attack seeds 0, 1 and 2, one torch thread. After every 20-evaluation
chunk the ``monitor`` records the evaluations, the seconds (PSNR off the clock) and the PSNR
against the truth; the relative loss is the run's loss history over the target gradient's squared
norm. For each candidate tolerance the table gives where a run with that ``rel_tol`` would have
stopped (the first chunk below it): seconds over the seconds to 30 dB, and PSNR there; beside
them the final PSNR of the default run. Nothing here feeds back into the attack.

    OMP_NUM_THREADS=1 python simulations/dlg_stop_tradeoff.py

Writes ``simulations/results/attacks/dlg-stop-tradeoff.json`` (and ``.md``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
from fedlab.attacks.bench import BENCH_IMAGES, NUM_CLASSES, BenchCase, case_input
from fedlab.attacks.dlg import DLG

from fedlab import image_quality
from fedlab.atomic import atomic_write_json, atomic_write_text

OUT = Path(__file__).resolve().parent / "results" / "attacks" / "dlg-stop-tradeoff.json"
TOLERANCES = (1e-7, 5e-8, 3e-8, 2e-8)
TARGET_DB = 30.0


def trajectory(image: str, seed: int) -> dict[str, Any]:
    """One default DLG run: (evaluations, seconds, PSNR) per chunk and the relative losses."""
    case = BenchCase(image, 0, BENCH_IMAGES.index(image) % NUM_CLASSES)
    inp, truth, _ = case_input(case)
    scale = float(sum((t**2).sum() for t in inp.target_gradients()))
    chunks: list[tuple[int, float, float]] = []
    off = 0.0
    t0 = time.perf_counter()

    def monitor(x: torch.Tensor, evals: int) -> None:
        nonlocal off
        m0 = time.perf_counter()
        psnr = image_quality.psnr(truth[0], inp.to_unit_range(x)[0])
        chunks.append((evals, m0 - t0 - off, psnr))
        off += time.perf_counter() - m0

    result = DLG(monitor=monitor, seed=seed).reconstruct(inp)
    return {
        "image": image,
        "seed": seed,
        "chunks": chunks,
        "relative_loss": [h / scale for h in result.history],
        "final_psnr": image_quality.psnr(truth[0], result.images[0]),
        "label_ok": int(result.labels[0]) == case.label,
    }


def stops(run: dict[str, Any]) -> dict[str, Any]:
    """Where each tolerance would have ended ``run``, against its time to 30 dB."""
    chunks = run["chunks"]
    at30 = next((c for c in chunks if c[2] >= TARGET_DB), None)
    out: dict[str, Any] = {"seconds_to_30db": None if at30 is None else at30[1]}
    out["total_over_30db"] = None if at30 is None else chunks[-1][1] / at30[1]
    for tol in TOLERANCES:
        i = next((i for i, v in enumerate(run["relative_loss"]) if v < tol), None)
        if i is None or at30 is None:
            out[f"{tol:g}"] = None
            continue
        evals, seconds, psnr = chunks[min(i, len(chunks) - 1)]
        out[f"{tol:g}"] = {"over_30db": seconds / at30[1], "psnr": psnr, "evaluations": evals}
    return out


def table(runs: list[dict[str, Any]]) -> str:
    head = " | ".join(f"rel_tol {t:g}: time / to 30 dB, PSNR" for t in TOLERANCES)
    lines = [
        f"| image | seed | default: total / to 30 dB | default final dB | {head} |",
        "|---|---|---|---|" + "---|" * len(TOLERANCES),
    ]
    for run in runs:
        s = run["stops"]
        cells = []
        for tol in TOLERANCES:
            v = s[f"{tol:g}"]
            cells.append("never" if v is None else f"{v['over_30db']:.2f}x, {v['psnr']:.1f}")
        total = "-" if s["total_over_30db"] is None else f"{s['total_over_30db']:.2f}x"
        lines.append(
            f"| {run['image']} | {run['seed']} | {total} | {run['final_psnr']:.1f} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="camera,coins")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    runs = []
    for image in args.images.split(","):
        for seed in args.seeds:
            run = trajectory(image, seed)
            run["stops"] = stops(run)
            runs.append(run)
            print(f"{image} seed {seed}: {run['stops']}", flush=True)
    out = Path(args.out)
    atomic_write_json(out, {"tolerances": list(TOLERANCES), "runs": runs})
    atomic_write_text(out.with_suffix(".md"), table(runs))
    print(table(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
