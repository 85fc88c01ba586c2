"""Arena inference over a clip, and the baselines it is compared with at equal patch budget.

Methods (``METHODS``):

``full``
    every frame on all tokens (the reference).
``arena``
    keyframes on all tokens; between them only the PoI tokens (:mod:`.arena_sampler`, ours),
    each with its own positional embedding, the keyframe's last-layer features filling the other
    positions; keyframe interval fixed (``interval > 0``) or adaptive (``interval = 0``: a new
    keyframe when the PoIs' coverage or the detections' confidence drops, or after
    ``max_interval`` frames).
``random``
    as ``arena``, but the tokens between keyframes drawn uniformly at random.
``prev-boxes``
    as ``arena``, but only the tokens under the previous frame's boxes (no motion, no spread,
    no exploration), at most the budget.
``evit``
    in-model pruning on full frames (EViT-style: after the first block only the ``budget``
    most-attended tokens go on, plus one fused token); every frame sends everything.
``reuse``
    keyframes on all tokens; between them nothing is sent or computed and the keyframe's
    detections are reported again.

Latency is measured per frame, batch 1, around everything the server does for that frame:
token selection (sampling, tracking), patch gathering, the encoder, feature assembly, the head
and decoding.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from fedlab.clients.arena.model import ArenaViT, Detections, decode, to_tensor
from fedlab.clients.arena.sampler import (
    SamplerConfig,
    Track,
    box_tokens,
    check_budget,
    match_tracks,
    poi_distribution,
    sample_pois,
)

from fedlab.errors import FedlabError

METHODS = ("full", "arena", "random", "prev-boxes", "evit", "reuse")


@dataclass(frozen=True)
class ArenaSettings:
    """How a clip is processed.

    Parameters
    ----------
    method : str
        One of :data:`METHODS`.
    interval : int
        Keyframe interval in frames; 0: adaptive (``arena`` and ``random`` only).
    sampler : SamplerConfig
        Budget and PoI distribution.
    min_coverage : float
        Adaptive rule: a keyframe follows a frame whose PoIs covered less than this share of
        the predicted mass.
    min_confidence : float
        Adaptive rule: ... or whose confident detections' mean score fell below this share of
        the keyframe's.
    max_interval : int
        Adaptive rule: ... or after this many frames.
    seed : int
        Seeds the token draws.
    """

    method: str = "arena"
    interval: int = 0
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    min_coverage: float = 0.6
    min_confidence: float = 0.8
    max_interval: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise FedlabError(f"method {self.method!r} is not one of: {', '.join(METHODS)}")
        if self.interval < 0 or self.max_interval < 1:
            raise FedlabError(
                f"interval must be >= 0 (0: adaptive) and max-interval >= 1, got "
                f"{self.interval}, {self.max_interval}"
            )
        if self.interval == 0 and self.method in ("reuse", "prev-boxes"):
            raise FedlabError(f"method {self.method!r} needs a fixed interval >= 1")
        check_budget(self.sampler.budget)


@dataclass
class FrameRecord:
    """What happened to one frame."""

    detections: Detections
    keep: np.ndarray | None  # token indices sent; None: the whole frame
    tokens: int  # tokens the encoder processed, summed over blocks / depth
    keyframe: bool
    seconds: float
    coverage: float = 1.0


def _mean_confident(scores: np.ndarray, threshold: float) -> float:
    confident = scores[scores >= threshold]
    return float(confident.mean()) if len(confident) else 0.0


class ArenaRunner:
    """Runs one method over the frames of a clip, frame by frame (batch 1)."""

    def __init__(self, model: ArenaViT, settings: ArenaSettings) -> None:
        self.model = model.eval()
        self.settings = settings
        self.size = model.config.image_size
        self.patch = model.config.patch_size
        self.grid = model.grid
        self.n = model.num_tokens
        self.depth = model.config.depth

    @torch.no_grad()
    def run(self, frames: np.ndarray) -> list[FrameRecord]:
        """Process ``frames`` (``uint8 (T, H, W, 3)``) in order; one record per frame."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[0] == 0 or 0 in frames.shape:
            raise FedlabError(
                f"need a non-empty clip of shape (T, H, W, 3), got {frames.shape}; an empty "
                "frame cannot be processed"
            )
        s = self.settings
        rng = np.random.default_rng(s.seed)
        budget_count = max(1, round(s.sampler.budget * self.n))
        records: list[FrameRecord] = []
        tracks: list[Track] = []
        memory = None
        key_conf = 0.0
        since_key = 0
        need_key = True
        key_record: FrameRecord | None = None
        for frame in frames:
            start = time.perf_counter()
            x = to_tensor(frame)
            if s.method == "full":
                out, _ = self.model(x)
                record = FrameRecord(self._decode(out), None, self.n * self.depth, True, 0.0)
            elif s.method == "evit":
                out, processed = self.model.forward_evit(x, budget_count)
                record = FrameRecord(self._decode(out), None, processed, True, 0.0)
            else:
                interval_due = s.interval > 0 and since_key >= s.interval
                adaptive_due = s.interval == 0 and (need_key or since_key >= s.max_interval)
                if memory is None or interval_due or adaptive_due:
                    out, memory = self.model(x)
                    dets = self._decode(out)
                    record = FrameRecord(dets, None, self.n * self.depth, True, 0.0)
                    key_conf = _mean_confident(dets.scores, s.sampler.min_score)
                    key_record = record
                    since_key, need_key = 0, False
                elif s.method == "reuse":
                    assert key_record is not None
                    record = FrameRecord(key_record.detections, np.zeros(0, np.int64), 0, False, 0)
                else:
                    keep, coverage = self._select(tracks, rng, budget_count)
                    out = self._sparse(x, keep, memory)
                    dets = self._decode(out)
                    record = FrameRecord(dets, keep, len(keep) * self.depth, False, 0.0, coverage)
                    conf = _mean_confident(dets.scores, s.sampler.min_score)
                    need_key = coverage < s.min_coverage or conf < s.min_confidence * key_conf
                since_key += 1
            if s.method in ("arena", "prev-boxes"):  # the others need no tracks
                tracks = match_tracks(
                    tracks, record.detections.boxes, record.detections.scores, s.sampler.min_score
                )
            record.seconds = time.perf_counter() - start
            records.append(record)
        return records

    def _decode(self, out: torch.Tensor) -> Detections:
        return decode(out, self.size, self.patch)[0]

    def _select(
        self, tracks: list[Track], rng: np.random.Generator, budget_count: int
    ) -> tuple[np.ndarray, float]:
        s = self.settings
        if s.method == "random":
            keep = np.sort(rng.choice(self.n, budget_count, replace=False))
            return keep, 1.0
        if s.method == "prev-boxes":
            keep = np.zeros(0, np.int64)
            for track in sorted(tracks, key=lambda t: -t.score):
                extra = box_tokens(track.box, self.grid, self.patch)
                keep = np.union1d(keep, extra[: max(0, budget_count - len(keep))])
                if len(keep) >= budget_count:
                    break
            return keep.astype(np.int64), 1.0
        prob = poi_distribution(tracks, self.grid, self.patch, s.sampler)
        keep, coverage = sample_pois(prob, s.sampler, rng)
        if not any(t.score >= s.sampler.min_score for t in tracks):
            coverage = 1.0  # nothing predicted, so nothing left uncovered
        return keep, coverage

    def _sparse(self, x: torch.Tensor, keep: np.ndarray, memory: torch.Tensor) -> torch.Tensor:
        """Head outputs with only ``keep`` encoded, the keyframe memory at the other positions."""
        if len(keep) == 0:
            return self.model.predict(memory + self.model.stale)
        index = torch.from_numpy(keep)
        patches = self.model.patchify(x)[:, index]
        features = self.model.assemble(self.model.encode(patches, index), index, memory)
        return self.model.predict(features)


def run_method(model: ArenaViT, frames: np.ndarray, settings: ArenaSettings) -> list[FrameRecord]:
    """Convenience: ``ArenaRunner(model, settings).run(frames)``."""
    return ArenaRunner(model, settings).run(frames)
