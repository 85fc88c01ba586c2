"""Where an Arena frame's time goes: per-component latency of the shipped detector.

A diagnostic beside the study (not part of its declared protocol): on every frame of the test
videos, one thread, batch 1, it times each step of full-frame and of sparse (PoI) inference
separately (median over frames, ms), to show which costs scale with the tokens kept and which
are fixed per frame. Writes ``simulations/results/arena/cost_breakdown.json``.

    python simulations/arena_cost_breakdown.py
"""

from __future__ import annotations

import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fedlab.clients.arena.model import (  # noqa: E402
    decode,
    load_detector,  # noqa: E402
    to_tensor,
)
from fedlab.clients.arena.sampler import (  # noqa: E402
    SamplerConfig,
    match_tracks,
    poi_distribution,
    sample_pois,
)
from fedlab.clients.procedural_video import split_videos  # noqa: E402

from fedlab.atomic import atomic_write_json  # noqa: E402

log = logging.getLogger("fedlab.arena_cost_breakdown")
RESULTS = ROOT / "simulations" / "results" / "arena"


def _timed(fn, sink: list[float]):
    start = time.perf_counter()
    out = fn()
    sink.append((time.perf_counter() - start) * 1e3)
    return out


@torch.no_grad()
def main(videos: int = 3, budget: float = 0.3) -> dict:
    torch.set_num_threads(1)
    model = load_detector(RESULTS / "detector")
    size, patch = model.config.image_size, model.config.patch_size
    config = SamplerConfig(budget=budget)
    rng = np.random.default_rng(0)
    t: dict[str, list[float]] = {k: [] for k in (
        "to-tensor+patchify", "encoder-all-tokens", "encoder-kept-tokens", "assemble",
        "head-full-grid", "decode", "track+sample")}  # fmt: skip
    for video in split_videos("test", videos):
        tracks: list = []
        _, memory = model(to_tensor(video.frames[0]))
        for frame in video.frames:
            patches = _timed(lambda f=frame: model.patchify(to_tensor(f)), t["to-tensor+patchify"])
            _timed(lambda p=patches: model.encode(p), t["encoder-all-tokens"])

            def select(tr=tracks):
                prob = poi_distribution(tr, model.grid, patch, config)
                return sample_pois(prob, config, rng)[0]

            keep = torch.from_numpy(_timed(select, t["track+sample"]))
            kept = _timed(lambda k=keep, p=patches: model.encode(p[:, k], k),
                          t["encoder-kept-tokens"])  # fmt: skip
            full = _timed(lambda k=keep, f=kept, m=memory: model.assemble(f, k, m), t["assemble"])
            out = _timed(lambda f=full: model.predict(f), t["head-full-grid"])
            dets = _timed(lambda o=out: decode(o, size, patch)[0], t["decode"])
            start = time.perf_counter()
            tracks = match_tracks(tracks, dets.boxes, dets.scores, config.min_score)
            t["track+sample"][-1] += (time.perf_counter() - start) * 1e3
    result = {
        "budget": budget, "kept-tokens": int(round(budget * model.num_tokens)),
        "tokens": model.num_tokens, "frames": len(t["decode"]),
        "median-ms": {k: statistics.median(v) for k, v in t.items()},
        "mean-ms": {k: statistics.fmean(v) for k, v in t.items()},
    }  # fmt: skip
    atomic_write_json(RESULTS / "cost_breakdown.json", result)
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    log.info("%s", main())
