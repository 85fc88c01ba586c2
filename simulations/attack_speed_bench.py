"""DLG latency and throughput on images no one tuned for (issue 37), ours against the original.

Plan, fixed (with the image list and crops below) before the first timing run of this script.

Images: eight scikit-image pictures bundled in the wheel that are in none of the lists used so
far (the attack bench's ten, ``audit_dlg_speed.py``'s six, the ``patches`` dataset's ten sources,
the test crops): ``stereo_motorcycle`` (its left view), ``colorwheel``, ``logo`` (RGB, alpha
dropped), ``clock``, ``page``, ``microaneurysms``, ``cell`` and ``shepp_logan_phantom``. Each is
the square ``[top:top+side, left:left+side]`` of :data:`CROPS` (positions chosen from the
pictures' sizes, not from any result), resized to 32x32 with anti-aliasing, grey ones repeated to
three channels. Target ``i`` has label ``i``. Victim: the attack bench's (DLG's sigmoid LeNet,
100-class head, DLG's uniform initialisation seeded 0, one mean cross-entropy gradient, float32).
Nothing in the attacks was tuned on these images.

Latency (one process, one torch thread, ``OMP_NUM_THREADS=1``), per target, one after the other:
(a) the original mit-han-lab/dlg loop, exactly as ``simulations/audit_dlg_speed.py`` runs it
(read at run time from a local clone, never copied here; time to 30 dB or its whole run,
capped at ``--cap-s``), then (b) ``fedlab.attacks.dlg.DLG()`` with its defaults, restarts
included. For both, PSNR against the truth is computed off the clock after every step/chunk.
Reported per target: (a) seconds to 30 dB (a target (a) never brings to 30 dB counts at its whole
run time, marked as a lower bound), (b) seconds to 30 dB and total seconds, the ratio (a)/(b) to
30 dB, and (b)'s total over its own time to 30 dB; then median and range over targets.

Throughput: ``DLG()`` on all targets in a pool of ``--workers`` processes (2: both cores), one
torch thread each, wall clock from the first submission to the last result, reported as targets
per minute; the pool's start-up is included.

    OMP_NUM_THREADS=1 python simulations/attack_speed_bench.py \\
        --dlg-git-dir path/to/a/clone/of/mit-han-lab/dlg [--skip-original] [--targets N]

Writes ``simulations/results/attacks/speed-bench.json`` (and ``.md``). ``--throughput-only``
reruns the throughput alone into that file (when the first run's shared the machine).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedlab.atomic import atomic_write_json, atomic_write_text

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
OUT = HERE / "results" / "attacks"
TARGET_DB = 30.0

CROPS: dict[str, tuple[int, int, int]] = {
    "stereo_motorcycle": (150, 250, 200),
    "colorwheel": (85, 85, 200),
    "logo": (100, 100, 300),
    "clock": (50, 100, 200),
    "page": (0, 96, 191),
    "microaneurysms": (0, 0, 102),
    "cell": (200, 150, 256),
    "shepp_logan_phantom": (100, 100, 200),
}
"""Image name -> (top, left, side) of the square crop, fixed before any timing run."""


def image(name: str, size: int = 32) -> torch.Tensor:
    """``(3, size, size)`` in [0, 1]: the declared crop of ``skimage.data.<name>``, resized."""
    from skimage import data, transform

    img = getattr(data, name)()
    img = img[0] if isinstance(img, tuple) else img  # stereo pairs: the left view
    img = np.asarray(img, dtype=np.float64)
    img = img / 255.0 if img.max() > 1 else img
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    top, left, side = CROPS[name]
    crop = img[top : top + side, left : left + side, :3]
    crop = transform.resize(crop, (size, size), anti_aliasing=True)
    return torch.tensor(crop, dtype=torch.float32).permute(2, 0, 1).clamp(0, 1).contiguous()


def _ours(index: int) -> dict[str, Any]:
    """One target with ``DLG()``'s defaults (one thread); times to 30 dB and in all."""
    from audit_dlg_speed import ours

    torch.set_num_threads(1)
    name = list(CROPS)[index]
    t0 = time.perf_counter()
    row = ours(image(name)[None], index)
    row["wall"] = time.perf_counter() - t0
    return row


def latency(args: argparse.Namespace, names: list[str]) -> list[dict[str, Any]]:
    from audit_dlg_speed import original

    rows = []
    for i, name in enumerate(names):
        x = image(name)[None]
        a = None if args.skip_original else original(args.dlg_git_dir, x, i, args.cap_s)
        b = _ours(i)
        row: dict[str, Any] = {"image": name, "label": i, "original": a, "ours": b}
        if a is not None and b["reached"]:
            row["ratio_to_30db"] = a["seconds"] / b["seconds"]
            row["ratio_lower_bound"] = not a["reached"]
        row["ours_total_over_30db"] = b["total"] / b["seconds"] if b["reached"] else None
        rows.append(row)
        print(f"{name}: {row}", flush=True)
    return rows


def throughput(workers: int, count: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    ctx = get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        rows = list(pool.map(_ours, range(count)))
    wall = time.perf_counter() - t0
    return {"workers": workers, "targets": count, "wall_s": wall, "per_minute": 60 * count / wall,
            "final_psnr": [r["final_psnr"] for r in rows]}  # fmt: skip


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} [{min(values):.2f}, {max(values):.2f}]"


def table(result: dict[str, Any]) -> str:
    lines = [
        "| image | original: s to 30 dB | ours: s to 30 dB | ours: s in all | ours final dB "
        "| ratio to 30 dB | ours total / to 30 dB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["latency"]:
        a, b = r["original"], r["ours"]
        orig = "-" if a is None else f"{a['seconds']:.1f}" + ("" if a["reached"] else " (never)")
        ratio = r.get("ratio_to_30db")
        mark = " (>=)" if r.get("ratio_lower_bound") else ""
        over = r["ours_total_over_30db"]
        lines.append(
            f"| {r['image']} | {orig} | {b['seconds']:.1f}{'' if b['reached'] else ' (never)'} "
            f"| {b['total']:.1f} | {b['final_psnr']:.1f} | "
            f"{'-' if ratio is None else f'{ratio:.2f}{mark}'} | "
            f"{'-' if over is None else f'{over:.2f}'} |"
        )
    rows = result["latency"]
    ratios = [r["ratio_to_30db"] for r in rows if "ratio_to_30db" in r]
    overs = [r["ours_total_over_30db"] for r in rows if r["ours_total_over_30db"]]
    lines += [
        "",
        f"Ratio to 30 dB, median [range]: {_spread(ratios)}; ours total / to 30 dB: "
        f"{_spread(overs)}.",
    ]
    if result.get("throughput"):
        t = result["throughput"]
        lines.append(
            f"Throughput: {t['per_minute']:.1f} targets/min ({t['targets']} targets, "
            f"{t['workers']} processes, {t['wall_s']:.1f} s wall)."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dlg-git-dir", default=None, help="git dir of mit-han-lab/dlg")
    parser.add_argument("--cap-s", type=float, default=150.0, help="original's time cap")
    parser.add_argument("--skip-original", action="store_true")
    parser.add_argument("--targets", type=int, default=len(CROPS))
    parser.add_argument("--workers", type=int, default=2, help="0: no throughput run")
    parser.add_argument("--out", default=str(OUT / "speed-bench.json"))
    parser.add_argument(
        "--throughput-only", action="store_true",
        help="rerun only the throughput into an existing --out (the earlier figure is kept as "
        "throughput_earlier)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.dlg_git_dir is None and not (args.skip_original or args.throughput_only):
        parser.error("give --dlg-git-dir, or --skip-original")
    torch.set_num_threads(1)
    names = list(CROPS)[: args.targets]
    out = Path(args.out)
    if args.throughput_only:
        result = json.loads(out.read_text())
        result["throughput_earlier"] = result.get("throughput")
        result["throughput"] = throughput(args.workers or 2, len(result["images"]))
    else:
        result = {"threads": 1, "cap_s": args.cap_s, "images": names}
        result["latency"] = latency(args, names)
        if args.workers:
            result["throughput"] = throughput(args.workers, len(names))
    atomic_write_json(out, result)
    atomic_write_text(out.with_suffix(".md"), table(result))
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
