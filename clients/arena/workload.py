"""The Arena workload: the ViT detector trained on (keyframe, frame) pairs with token dropping.

A training example is a frame and an earlier frame of the same video, ``1 .. max-gap`` frames
before it, standing in for the keyframe. The step encodes the keyframe on all tokens (no
gradient: it only provides the memory), then the frame either on all tokens (share
``full-prob`` of the batches) or on a random subset of ``keep-min .. keep-max`` of them, the
rest filled from the keyframe's features, as Arena inference does. Kept tokens are drawn at
random, in half of the batches biased towards tokens overlapping the frame's boxes (as patches
of interest are), so the detector learns both regimes. The loss is the dense detection loss on
the frame.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from functools import cached_property

import numpy as np
import torch
from fedlab.clients.arena.config import ArenaConfig
from fedlab.clients.arena.model import ArenaViT, dense_targets, detection_loss, to_tensor
from fedlab.clients.procedural_video import Video, VideoSpec, split_videos
from torch import nn
from torch.utils.data import Dataset

from fedlab.client import derive_seed
from fedlab.workload import Workload


class PairDataset(Dataset):
    """(keyframe, frame, objectness, box, region) tensors of every frame of ``videos``.

    Frames are ``uint8 (3, H, W)``; the keyframe of frame ``t`` is frame ``t - gap`` with a gap
    fixed per example by ``seed`` (frames with ``t < gap`` use frame 0).
    """

    def __init__(self, videos: list[Video], patch_size: int, max_gap: int, seed: int) -> None:
        self.videos = videos
        frames = np.concatenate([v.frames for v in videos]) if videos else np.zeros((0, 1, 1, 3))
        self.frames = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()
        size = frames.shape[1]
        targets = [dense_targets(b, size, patch_size) for v in videos for b in v.boxes]
        self.obj = torch.from_numpy(np.stack([t[0] for t in targets])) if targets else None
        self.box = torch.from_numpy(np.stack([t[1] for t in targets])) if targets else None
        self.region = torch.from_numpy(np.stack([t[2] for t in targets])) if targets else None
        rng = np.random.default_rng(seed)
        self.key_index = []
        offset = 0
        for v in videos:
            for t in range(len(v)):
                gap = int(rng.integers(1, max_gap + 1))
                self.key_index.append(offset + max(t - gap, 0))
            offset += len(v)

    def __len__(self) -> int:
        return len(self.key_index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        k = self.key_index[i]
        return self.frames[k], self.frames[i], self.obj[i], self.box[i], self.region[i]


def sparse_keep(
    region: torch.Tensor, count: int, biased: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``(B, count)`` token indices per example: random, or (where ``biased``) the box region
    first (random order within), then random tokens."""
    score = torch.rand(region.shape, generator=generator) + region * biased[:, None].float() * 2
    return score.argsort(dim=1, descending=True)[:, :count]


@functools.lru_cache(maxsize=2)
def _videos(split: str, count: int, seed: int, spec: VideoSpec, start: int) -> tuple[Video, ...]:
    """Generated videos, memoised: a ClientApp is rebuilt for every round, the videos are not
    (they are a pure function of these arguments; each process keeps at most two sets)."""
    return tuple(split_videos(split, count, seed=seed, spec=spec, start=start))


class ArenaWorkload(Workload):
    """Model, data and step of the ``streaming_arena`` app."""

    config: ArenaConfig

    def build_model(self) -> ArenaViT:
        c = self.config
        return ArenaViT(
            image_size=c.frame_size, patch_size=c.patch_size, dim=c.vit_dim, depth=c.vit_depth,
            heads=c.vit_heads, mlp_ratio=c.vit_mlp_ratio, head_hidden=c.vit_dim,
        )  # fmt: skip

    def train_videos(self, partition_id: int) -> list[Video]:
        """The training videos of one client (disjoint across clients)."""
        c = self.config
        return list(_videos("train", c.videos_per_client, c.seed, c.video_spec(),
                            partition_id * c.videos_per_client))  # fmt: skip

    def client_dataset(self, partition_id: int, num_partitions: int) -> PairDataset:
        c = self.config
        return PairDataset(
            self.train_videos(partition_id), c.patch_size, c.max_gap,
            derive_seed(c.seed, "pairs", partition_id),
        )  # fmt: skip

    @cached_property
    def test_videos(self) -> list[Video]:
        c = self.config
        return split_videos("test", c.test_videos, seed=c.seed, spec=c.video_spec())

    def test_dataset(self) -> PairDataset:
        c = self.config
        return PairDataset(self.test_videos, c.patch_size, c.max_gap, derive_seed(c.seed, "test"))

    def step(
        self, model: nn.Module, batch: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, Mapping[str, float]]:
        key, frame, obj, box, region = batch
        key, frame = key.float() / 255, frame.float() / 255
        c = self.config
        n = model.num_tokens
        if not model.training or torch.rand(()) < c.full_prob:
            out, _ = model(frame)
            kept = 1.0
        else:
            with torch.no_grad():
                _, memory = model(key)
            share = c.keep_min + (c.keep_max - c.keep_min) * float(torch.rand(()))
            count = max(1, round(share * n))
            keep = sparse_keep(region, count, torch.rand(len(frame)) < 0.5)
            out, _ = model(frame, keep.to(frame.device), memory)
            kept = count / n
        loss, metrics = detection_loss(out, obj, box)
        return loss, {**metrics, "kept": kept}


__all__ = ["ArenaWorkload", "PairDataset", "to_tensor"]
