"""Run-config keys of the ``streaming_arena`` app (see docs/arena.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fedlab.clients.procedural_video import VideoSpec

from fedlab.config import check_non_negative, check_positive
from fedlab.errors import FedlabError
from fedlab.key_groups import LocalTrainingKeys, RunConfig, SamplingKeys, StrategyKeys


@dataclass
class ArenaConfig(LocalTrainingKeys, SamplingKeys, StrategyKeys, RunConfig):
    """The core, strategy and local-training groups plus the Arena keys: videos, detector
    size, sparse training, evaluation.

    Client ``i`` of ``N`` holds procedural training videos ``i * videos-per-client ..``: the
    clients hold different videos. The server evaluates full-frame AP@0.5 on ``test-videos``
    held-out videos after every round and, with ``arena-eval``, Arena inference after the last.
    """

    WORKLOAD: ClassVar[str] = "arena"

    num_server_rounds: int = 3
    num_supernodes: int = 4
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 0.01
    batch_size: int = 16
    local_steps: int = 20
    frame_size: int = 96
    frames_per_video: int = 48
    videos_per_client: int = 6
    test_videos: int = 10
    patch_size: int = 8
    vit_dim: int = 64
    vit_depth: int = 4
    vit_heads: int = 4
    vit_mlp_ratio: float = 2.0
    max_gap: int = 8
    keep_min: float = 0.15
    keep_max: float = 0.7
    full_prob: float = 0.3
    arena_eval: bool = True
    arena_budget: float = 0.3
    arena_interval: int = 0
    init_from: str = ""

    KEY_HELP: ClassVar[dict[str, str]] = {
        "frame_size": "side of the square procedural frames in pixels (a multiple of patch-size)",
        "frames_per_video": "frames in each procedural video",
        "videos_per_client": "procedural training videos each client holds (none shared)",
        "test_videos": "held-out procedural videos the server evaluates on",
        "patch_size": "ViT patch (token) side in pixels",
        "vit_dim": "token width of the ViT detector",
        "vit_depth": "transformer blocks of the ViT detector",
        "vit_heads": "attention heads per block",
        "vit_mlp_ratio": "MLP width over token width in each block",
        "max_gap": "largest keyframe-to-frame gap (frames) in sparse training pairs",
        "keep_min": "fewest tokens kept (share) when training with token dropping",
        "keep_max": "most tokens kept (share) when training with token dropping",
        "full_prob": "share of training batches run on all tokens",
        "arena_eval": "after the last round, also run Arena inference on the test videos",
        "arena_budget": "PoI token budget (share of tokens) of that Arena evaluation",
        "arena_interval": "keyframe interval of that evaluation; 0: adaptive",
        "init_from": "start from this run folder's model.safetensors (or a detector folder)",
    }

    def validate(self) -> None:
        super().validate()
        check_positive(self, "frame_size", "frames_per_video", "videos_per_client", "test_videos",
                  "patch_size", "vit_dim", "vit_depth", "vit_heads", "vit_mlp_ratio",
                  "max_gap")  # fmt: skip
        check_non_negative(self, "arena_interval")
        if self.frame_size % self.patch_size:
            raise FedlabError(
                f"frame-size {self.frame_size} is not a multiple of patch-size "
                f"{self.patch_size}; use e.g. frame-size={self.patch_size * 12}"
            )
        if self.vit_dim % self.vit_heads:
            raise FedlabError(
                f"vit-dim {self.vit_dim} is not a multiple of vit-heads {self.vit_heads}"
            )
        if not 0 < self.keep_min <= self.keep_max <= 1:
            raise FedlabError(
                f"need 0 < keep-min <= keep-max <= 1, got keep-min={self.keep_min}, "
                f"keep-max={self.keep_max}"
            )
        for name in ("full_prob",):
            if not 0 <= getattr(self, name) <= 1:
                raise FedlabError(f"full-prob must lie in [0, 1], got {self.full_prob}")
        if not 0 < self.arena_budget <= 1:
            raise FedlabError(
                f"arena-budget must lie in (0, 1] (share of tokens), got {self.arena_budget}"
            )
        if self.init_from:
            # The weights' header against the detector this config builds (the arguments of
            # ArenaWorkload.build_model), on the meta device: nothing allocated before Ray.
            from fedlab.clients.arena.model import check_init_from

            check_init_from(self.init_from, {
                "image_size": self.frame_size, "patch_size": self.patch_size,
                "dim": self.vit_dim, "depth": self.vit_depth, "heads": self.vit_heads,
                "mlp_ratio": self.vit_mlp_ratio, "head_hidden": self.vit_dim,
            })  # fmt: skip
        self.video_spec()

    def video_spec(self) -> VideoSpec:
        """The procedural videos' spec (defaults of :class:`VideoSpec` but size and length)."""
        return VideoSpec(size=self.frame_size, frames=self.frames_per_video)
