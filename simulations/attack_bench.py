"""Run ``fedlab bench attacks`` and write its figures as a markdown table.

Usage::

    OMP_NUM_THREADS=1 python simulations/attack_bench.py --out runs/attack-bench \\
        [--attacks dlg,ig] [--seeds 0] [--images astronaut,camera] [--max-iterations N]

Re-running with the same ``--out`` resumes. The table goes to ``<out>/attack_bench.md`` (and to
stdout); the setting and image list are those of ``attacks/bench.py``.

Speed against the original DLG (how the ratio is measured; the original's code is not shipped):
for each of the first 5 bench images, seed 0, one process with ``torch.set_num_threads(1)``
and ``OMP_NUM_THREADS=1`` runs, one after the other, (a) the loop of mit-han-lab/dlg
``main.py`` verbatim (``LBFGS`` with defaults, 300 ``step(closure)`` calls, its extra logging
closure every 10 steps, dummy data and label from ``torch.randn`` after
``torch.manual_seed(1234)``) on our image and our victim (``fedlab.attacks.bench.case_input``: same
LeNet, weights, target gradient, float32), then (b) ``DLG()`` with its defaults, restarts
included. After every ``LBFGS.step`` (a) and every 20-iteration chunk (b, through ``monitor``)
the PSNR of the current dummy image against the truth is computed, its cost subtracted from the
clock; the time to the first PSNR >= 30 dB is recorded. The ratio is (a)/(b) per image and its
median is reported; an image on which (a) never reaches 30 dB in its 300 steps counts with a
lower bound (a's total time)/(b), which can only raise the median.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fedlab.attacks.bench import BENCH_IMAGES, FAILURE_PSNR, NUM_CLASSES
from fedlab.attacks.cli import bench_attacks_command

from fedlab.atomic import atomic_write_bytes


def markdown(out: Path, attacks: list[str]) -> str:
    """The summary table and one per-image table per attack, from ``out``'s results."""
    summary = json.loads((out / "summary.json").read_text())
    lines = [
        "## Attack benchmark: the DLG setting",
        "",
        f"LeNet (sigmoid, {NUM_CLASSES} classes, DLG uniform init), one 32x32 RGB image; images: "
        f"{', '.join(BENCH_IMAGES)} (centre crops, `attacks/bench.py`). PSNR/SSIM from "
        f"scikit-image on [0, 1] images, data_range 1. Failure: PSNR < {FAILURE_PSNR:g} dB.",
        "",
        "| attack | n | PSNR median | PSNR q25-q75 | PSNR min-max | failures | SSIM median "
        "| label acc | s/attack (median) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in attacks:
        s = summary.get(name)
        if not s or not s["n"]:
            lines.append(f"| {name} | 0 | - | - | - | - | - | - | - |")
            continue
        lines.append(
            f"| {name} | {s['n']} | {s['psnr_median']:.2f} | {s['psnr_q25']:.2f}-"
            f"{s['psnr_q75']:.2f} | {s['psnr_min']:.2f}-{s['psnr_max']:.2f} | {s['failures']} "
            f"| {s['ssim_median']:.4f} | {s['label_accuracy']:.2f} | {s['seconds_median']:.1f} |"
        )
    for name in attacks:
        results = json.loads((out / name / "results.json").read_text())["targets"]
        lines += [
            "",
            f"### {name} per target",
            "",
            "| target | PSNR | SSIM | label acc | loss | iterations | restarts | s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for tid, r in results.items():
            if r.get("status") != "ok":
                lines.append(f"| {tid} | error: {r.get('error')} | | | | | | |")
                continue
            lines.append(
                f"| {tid} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['label_accuracy']:.2f} | "
                f"{r['loss']:.3g} | {r['iterations']} | {r['restarts']} | {r['seconds']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, then write and print the markdown."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--attacks", default="dlg,ig")
    p.add_argument("--images", default=None)
    p.add_argument("--seeds", default="0")
    p.add_argument("--max-iterations", type=int, default=None)
    p.add_argument("--restarts", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    args = argparse.Namespace(
        attacks=a.attacks,
        images=a.images,
        seeds=[int(s) for s in a.seeds.split(",")],
        max_iterations=a.max_iterations,
        restarts=a.restarts,
        seed=a.seed,
        out=a.out,
    )
    code = bench_attacks_command(args)
    text = markdown(Path(a.out), [n for n in a.attacks.split(",") if n])
    atomic_write_bytes(Path(a.out) / "attack_bench.md", text.encode())
    print(text)
    return code


if __name__ == "__main__":
    sys.exit(main())
