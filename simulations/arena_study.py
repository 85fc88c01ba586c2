"""Arena study: train the detector with the ``streaming_arena`` app, then compare methods.

Two steps, each reproducible on its own:

``train``
    runs the ``streaming_arena`` app itself (``fedlab.inprocess.run_in_process``: its
    ServerApp, ClientApps, FedAvg and training loop) with the study's config, in two stages
    (the second starts from the first's global model, ``init-from``, at a lower learning
    rate), and ships the global detector straight into the package data,
    ``clients/arena/weights/detector`` (``save_pretrained``: ``config.json`` +
    safetensors; ``fedlab arena``'s default), with the runs' histories in
    ``simulations/results/arena/train.json``.

``evaluate``
    loads the shipped detector and runs every method of the declared grid (docs/arena.md) over
    the test videos, one thread, batch 1, methods interleaved video by video so that load from
    other processes hits them alike; writes ``arena.json`` (every figure), ``arena.md`` (the
    table) and ``arena.png`` (AP against bytes and against latency).

``tables``
    regenerates ``arena.md`` from ``arena.json``.

    python simulations/arena_study.py train            # stages 1 and 2, about 30 min
    python simulations/arena_study.py evaluate
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fedlab.clients.arena.app import load_run_model, streaming_arena  # noqa: E402
from fedlab.clients.arena.bandwidth import full_stream, stream_bytes  # noqa: E402
from fedlab.clients.arena.cli import SHIPPED_WEIGHTS  # noqa: E402
from fedlab.clients.arena.infer import ArenaSettings, run_method  # noqa: E402
from fedlab.clients.arena.metrics import average_precision  # noqa: E402
from fedlab.clients.arena.sampler import SamplerConfig  # noqa: E402
from fedlab.clients.arena.workload import ArenaWorkload  # noqa: E402

from fedlab.atomic import atomic_write_json, atomic_write_text  # noqa: E402

log = logging.getLogger("fedlab.arena_study")

RESULTS = ROOT / "simulations" / "results" / "arena"
#: The study's training runs of the app (see docs/arena.md): stage 1, then stage 2 starting
#: from stage 1's global model at a lower learning rate.
STUDY_CONFIG: dict[str, Any] = {
    # One client holding all 96 training videos: the app's FedAvg over one node is central
    # training through the same loop (federated rounds of 4 clients make less progress per
    # CPU-second, which this 2-core machine cannot spare).
    "num-supernodes": 1,
    "videos-per-client": 96,
    "num-server-rounds": 10,
    "local-steps": 250,
    "test-videos": 10,
    "arena-eval": True,
}
STAGE_2: dict[str, Any] = {"num-server-rounds": 4, "lr": 5e-4}
#: The declared grid (docs/arena.md).
BUDGETS = (0.2, 0.3, 0.4, 0.5)
INTERVALS = (2, 3, 4, 6, 8)
HEADLINE = {"method": "arena", "budget": 0.3, "interval": 0}
CRF = 23


def grid() -> list[dict[str, Any]]:
    """Every (method, budget, interval) cell of the declared grid."""
    cells: list[dict[str, Any]] = [{"method": "full", "budget": 1.0, "interval": 1}]
    for budget in BUDGETS:
        for method in ("arena", "random"):
            for interval in (0, *INTERVALS):
                cells.append({"method": method, "budget": budget, "interval": interval})
        for interval in INTERVALS:
            cells.append({"method": "prev-boxes", "budget": budget, "interval": interval})
        cells.append({"method": "evit", "budget": budget, "interval": 1})
    for interval in INTERVALS:
        cells.append({"method": "reuse", "budget": 0.0, "interval": interval})
    return cells


def cell_name(cell: dict[str, Any]) -> str:
    interval = "adaptive" if cell["interval"] == 0 else f"k={cell['interval']}"
    return f"{cell['method']} b={cell['budget']:g} {interval}"


def settings_of(cell: dict[str, Any], seed: int) -> ArenaSettings:
    budget = cell["budget"] if cell["budget"] > 0 else 1.0
    return ArenaSettings(method=cell["method"], interval=cell["interval"] if cell["method"]
                         not in ("full", "evit") else 1, sampler=SamplerConfig(budget=budget),
                         seed=seed)  # fmt: skip


# -- train ------------------------------------------------------------------------------------
def train(args: argparse.Namespace) -> None:
    """Stage 1 into ``run-dir``/stage-1, stage 2 (from stage 1's model) into ``run-dir``/stage-2;
    ship stage 2's global model."""
    from fedlab.inprocess import run_in_process

    run_dir = Path(args.run_dir)
    stages = {"1": dict(STUDY_CONFIG),
              "2": {**STUDY_CONFIG, **STAGE_2, "init-from": str(run_dir / "stage-1")}}  # fmt: skip
    wanted = ["1", "2"] if args.stage == "all" else [args.stage]
    record = {}
    for stage in ("1", "2"):  # stages already run (e.g. --stage 2 after --stage 1)
        folder = run_dir / f"stage-{stage}"
        if stage not in wanted and (folder / "summary.json").is_file():
            record[f"stage-{stage}"] = {
                "config": json.loads((folder / "config.json").read_text())["run-config"],
                "summary": json.loads((folder / "summary.json").read_text()),
                "history": json.loads((folder / "history.json").read_text()),
            }
    for stage in wanted:
        folder = run_dir / f"stage-{stage}"
        config = streaming_arena.resolve_config({**stages[stage], "out-dir": str(folder)})
        summary = run_in_process(streaming_arena, config)
        history = json.loads((folder / "history.json").read_text())
        record[f"stage-{stage}"] = {"config": config.to_mapping(), "summary": summary,
                                    "history": history}  # fmt: skip
        log.info("stage %s: final %s", stage, summary["final"]["evaluate"])
    last = record.get("stage-2") or record["stage-1"]
    config = streaming_arena.resolve_config(
        {k: v for k, v in last["config"].items() if k not in ("out-dir", "init-from")}
    )
    model = load_run_model(config, last["config"]["out-dir"])
    model.save_pretrained(SHIPPED_WEIGHTS, safe_serialization=True)
    record.update({"config": last["config"], "history": last["history"]})
    atomic_write_json(RESULTS / "train.json", record)
    log.info("shipped %s", SHIPPED_WEIGHTS)


# -- evaluate ---------------------------------------------------------------------------------
def evaluate(args: argparse.Namespace) -> None:
    import torch
    from fedlab.clients.arena.model import load_detector

    torch.set_num_threads(1)
    train_info = json.loads((RESULTS / "train.json").read_text())
    config = streaming_arena.resolve_config(
        {k: v for k, v in train_info["config"].items() if k not in ("out-dir", "init-from")}
    )
    videos = ArenaWorkload(config).test_videos
    model = load_detector(SHIPPED_WEIGHTS)
    cells = grid()
    per_cell: dict[str, dict[str, list]] = {
        cell_name(c): {"records": [], "bytes": 0} for c in cells
    }
    reference = 0
    started = time.perf_counter()
    for v_index, video in enumerate(videos):
        reference += full_stream(video.frames, crf=CRF).total_bytes
        for cell in cells:
            recs = run_method(model, video.frames, settings_of(cell, config.seed + v_index))
            slot = per_cell[cell_name(cell)]
            slot["records"] += recs
            slot["bytes"] += stream_bytes(video.frames, [r.keep for r in recs],
                                          model.config.patch_size, crf=CRF)  # fmt: skip
        log.info("video %d/%d done (%.0f s)", v_index + 1, len(videos),
                 time.perf_counter() - started)  # fmt: skip
    truth = [b for v in videos for b in v.boxes]
    full_tokens = model.num_tokens * model.config.depth
    rows = []
    for cell in cells:
        slot = per_cell[cell_name(cell)]
        recs = slot["records"]
        ms = [r.seconds * 1e3 for r in recs]
        rows.append({
            **cell, "name": cell_name(cell),
            "ap50": average_precision([r.detections for r in recs], truth),
            "bytes": slot["bytes"], "bytes-share": slot["bytes"] / reference,
            "tokens-share": float(np.mean([r.tokens for r in recs])) / full_tokens,
            "ms-mean": statistics.fmean(ms), "ms-std": statistics.pstdev(ms),
            "ms-p50": float(np.percentile(ms, 50)), "ms-p90": float(np.percentile(ms, 90)),
            "keyframe-share": float(np.mean([r.keyframe for r in recs])),
        })  # fmt: skip
    full_ms = rows[0]["ms-mean"]
    for row in rows:
        row["speedup"] = full_ms / row["ms-mean"]
    results = {
        "protocol": {"test-videos": len(videos), "frames": len(truth), "crf": CRF,
                     "preset": "veryfast", "budgets": BUDGETS, "intervals": INTERVALS,
                     "headline": HEADLINE, "threads": 1, "batch": 1,
                     "detector": "clients/arena/weights/detector"},
        "full-stream-bytes": reference,
        "rows": rows,
        "goals": goals(rows),
    }  # fmt: skip
    atomic_write_json(RESULTS / "arena.json", results)
    atomic_write_text(RESULTS / "arena.md", table(results))
    plot(results, RESULTS / "arena.png")
    log.info("\n%s", table(results))


def goals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's goals, checked on the rows (definitions in docs/arena.md)."""
    full = rows[0]
    by = {(r["method"], r["budget"], r["interval"]): r for r in rows}
    head = by[(HEADLINE["method"], HEADLINE["budget"], HEADLINE["interval"])]
    meets = [r["name"] for r in rows if r["method"] == "arena" and r["bytes-share"] <= 0.55
             and r["speedup"] >= 1.5 and full["ap50"] - r["ap50"] <= 0.03]  # fmt: skip
    vs_random = [
        {"cell": r["name"], "arena": r["ap50"],
         "random": by[("random", r["budget"], r["interval"])]["ap50"]}
        for r in rows if r["method"] == "arena"
    ]  # fmt: skip
    adaptive = []
    for budget in BUDGETS:
        a = by[("arena", budget, 0)]
        fixed = [by[("arena", budget, k)] for k in INTERVALS]
        near = [f for f in fixed if abs(f["bytes"] / a["bytes"] - 1) <= 0.05]
        nearest = min(fixed, key=lambda f: abs(f["bytes"] / a["bytes"] - 1))
        pool = near or [nearest]
        best = max(pool, key=lambda f: f["ap50"])
        adaptive.append({"budget": budget, "adaptive-ap50": a["ap50"],
                         "best-fixed": best["name"], "best-fixed-ap50": best["ap50"],
                         "bytes-ratio": best["bytes"] / a["bytes"],
                         "within-5pct-bytes": bool(near)})  # fmt: skip
    return {
        "headline": head["name"],
        "headline-ap-loss": full["ap50"] - head["ap50"],
        "headline-bytes-share": head["bytes-share"],
        "headline-speedup": head["speedup"],
        "cells-meeting-bytes-speed-ap-goal": meets,
        "arena-beats-random": sum(v["arena"] > v["random"] for v in vs_random),
        "arena-vs-random-cells": len(vs_random),
        "arena-vs-random": vs_random,
        "adaptive-vs-fixed": adaptive,
    }


def table(results: dict[str, Any]) -> str:
    """Markdown table of every row (regenerated from the JSON)."""
    lines = [
        "| method | budget | keyframe interval | AP@0.5 | bytes (share of full x264) | "
        "tokens (share) | ms/frame mean ± std | speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        interval = "adaptive" if r["interval"] == 0 else str(r["interval"])
        if r["method"] in ("full", "evit"):
            interval = "every frame"
        budget = "-" if r["method"] in ("full", "reuse") else f"{r['budget']:g}"
        lines.append(
            f"| {r['method']} | {budget} | {interval} | {r['ap50']:.3f} | "
            f"{r['bytes']:,} ({100 * r['bytes-share']:.0f} %) | {r['tokens-share']:.2f} | "
            f"{r['ms-mean']:.2f} ± {r['ms-std']:.2f} | {r['speedup']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def compact_table(results: dict[str, Any]) -> str:
    """The README's rows: full, and each method at the headline budget."""
    budget = results["protocol"]["headline"]["budget"]
    keep = [r for r in results["rows"] if r["method"] == "full"
            or (r["budget"] == budget and r["interval"] in (0, 4, 1))
            or (r["method"] == "reuse" and r["interval"] == 4)]  # fmt: skip
    return table({"rows": keep})


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fedlab.atomic import atomic_write

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    colours = {"full": "k", "arena": "tab:red", "random": "tab:blue", "prev-boxes": "tab:green",
               "evit": "tab:purple", "reuse": "tab:orange"}  # fmt: skip
    for method, colour in colours.items():
        rows = [r for r in results["rows"] if r["method"] == method]
        axes[0].scatter([r["bytes-share"] for r in rows], [r["ap50"] for r in rows], c=colour,
                        label=method, s=18)  # fmt: skip
        axes[1].scatter([r["ms-mean"] for r in rows], [r["ap50"] for r in rows], c=colour, s=18)
    axes[0].set_xlabel("bytes / full-frame x264 stream")
    axes[1].set_xlabel("ms per frame (1 CPU thread, batch 1)")
    for ax in axes:
        ax.set_ylabel("AP@0.5 (test videos)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=100))
    plt.close(fig)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    t = sub.add_parser("train")
    t.add_argument("--run-dir", default=str(ROOT / "runs" / "arena-study"))
    t.add_argument("--stage", choices=("1", "2", "all"), default="all")
    sub.add_parser("evaluate")
    sub.add_parser("tables")
    args = parser.parse_args()
    if args.step == "train":
        train(args)
    elif args.step == "evaluate":
        evaluate(args)
    else:
        results = json.loads((RESULTS / "arena.json").read_text())
        atomic_write_text(RESULTS / "arena.md", table(results))


if __name__ == "__main__":
    main()
