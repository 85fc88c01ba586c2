"""Evaluate methods on clips: AP@0.5 (pycocotools), bytes (x264), tokens and latency."""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from fedlab.clients.arena.bandwidth import full_stream, stream_bytes
from fedlab.clients.arena.infer import ArenaSettings, FrameRecord, run_method
from fedlab.clients.arena.metrics import average_precision
from fedlab.clients.arena.model import ArenaViT, decode, to_tensor
from fedlab.clients.procedural_video import Video

log = logging.getLogger("fedlab.arena")


@torch.no_grad()
def full_frame_ap(model: ArenaViT, videos: Sequence[Video], batch: int = 16) -> float:
    """AP@0.5 of full-frame inference over every frame of ``videos`` (batched, no timing)."""
    model.eval()
    detections, truth = [], []
    size, patch = model.config.image_size, model.config.patch_size
    for video in videos:
        for i in range(0, len(video), batch):
            out, _ = model(to_tensor(video.frames[i : i + batch]))
            detections += decode(out, size, patch)
        truth += video.boxes
    return average_precision(detections, truth)


def evaluate_method(
    model: ArenaViT,
    videos: Sequence[Video],
    settings: ArenaSettings,
    *,
    crf: int = 23,
    full_bytes: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Run one method over ``videos`` (single thread, batch 1) and summarise it.

    Video ``i`` is run with seed ``settings.seed + i`` (as the study does).

    Returns
    -------
    dict
        ``ap50``; ``bytes`` (x264 stream, all videos) and ``bytes-share`` of the full-frame
        stream's; ``tokens-share`` (tokens processed over full inference's); latency
        ``ms-mean``, ``ms-std``, ``ms-p50``, ``ms-p90`` over all frames; ``keyframe-share``.
    """
    torch.set_num_threads(1)
    records: list[FrameRecord] = []
    total_bytes = 0
    reference = 0
    patch = model.config.patch_size
    for i, video in enumerate(videos):
        recs = run_method(model, video.frames, replace(settings, seed=settings.seed + i))
        records += recs
        total_bytes += stream_bytes(video.frames, [r.keep for r in recs], patch, crf=crf)
        reference += (
            full_bytes[i]
            if full_bytes is not None
            else full_stream(video.frames, crf=crf).total_bytes
        )
    truth = [b for v in videos for b in v.boxes]
    ms = [r.seconds * 1e3 for r in records]
    full_tokens = model.num_tokens * model.config.depth
    return {
        "ap50": average_precision([r.detections for r in records], truth),
        "bytes": total_bytes,
        "bytes-share": total_bytes / reference,
        "tokens-share": float(np.mean([r.tokens for r in records])) / full_tokens,
        "ms-mean": statistics.fmean(ms),
        "ms-std": statistics.pstdev(ms),
        "ms-p50": float(np.percentile(ms, 50)),
        "ms-p90": float(np.percentile(ms, 90)),
        "keyframe-share": float(np.mean([r.keyframe for r in records])),
        "frames": len(records),
    }
