"""Run-config keys of the ``streaming_cadm`` app (see docs/cadm.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from fedlab.clients.shipped import shipped_weights

from fedlab.config import check_choice, check_non_negative, check_positive
from fedlab.errors import FedlabError
from fedlab.key_groups import LocalTrainingKeys, RunConfig, SamplingKeys, StrategyKeys

#: The codec-aware decoder (``unet/`` + ``cadm.json``) that ``fedlab stream decode`` and
#: ``evaluate`` use by default, shipped as package data (trained by simulations/cadm_train.py).
SHIPPED_DECODER = shipped_weights("fedlab.clients.cadm", "decoder")
DECODER_UNETS = ("tiny", "cpu", "gpu")


def parse_pairs(text: str | Sequence[str], key: str = "pairs") -> list[tuple[int, int]]:
    """``"2x8,4x5"`` (or ``("2x8", "4x5")``) -> ``[(2, 8), (4, 5)]``; one-line errors naming
    the value."""
    items = text.split(",") if isinstance(text, str) else text
    pairs = []
    for part in [p.strip() for p in items if p.strip()]:
        r, sep, b = part.partition("x")
        if not sep or not r.isdigit() or not b.isdigit():
            raise FedlabError(f'{key}: {part!r} is not RxB; write e.g. {key}="2x8,4x5"')
        r_i, b_i = int(r), int(b)
        if r_i < 1:
            raise FedlabError(f"{key}: resolution factor {r_i} in {part!r} must be >= 1")
        if not 1 <= b_i <= 8:
            raise FedlabError(f"{key}: bit-depth {b_i} in {part!r} is outside 1-8")
        pairs.append((r_i, b_i))
    if not pairs or len(set(pairs)) != len(pairs):
        raise FedlabError(f'{key} {text!r} must name distinct pairs, e.g. {key}="2x8,4x5"')
    return pairs


def parse_crfs(text: str | Sequence[int], key: str = "crfs") -> list[int]:
    """``"23,28"`` (or ``(23, 28)``) -> ``[23, 28]``, each in 0-51."""
    try:
        values = (
            [int(p) for p in text.split(",") if p.strip()] if isinstance(text, str) else list(text)
        )
    except ValueError:
        raise FedlabError(f"{key} must be comma-separated integers, got {text!r}") from None
    if not values or any(not 0 <= v <= 51 for v in values):
        raise FedlabError(f'{key} {text!r} must name CRFs in 0-51, e.g. {key}="23,28,33,38"')
    return values


@dataclass
class CadmConfig(LocalTrainingKeys, SamplingKeys, StrategyKeys, RunConfig):
    """The core, strategy and local-training groups plus the CaDM keys: clients hold different
    training clips (procedural and bigbuckbunny crops), encode them with the real codec at
    every ``(r, b)`` pair and CRF, and train the conditional decoder UNet on patch pairs with
    THE loop; the server averages it (FedAvg), checks restoration PSNR on validation clips each
    round and saves the decoder."""

    WORKLOAD: ClassVar[str] = "cadm"

    num_server_rounds: int = 3
    num_supernodes: int = 4
    optimizer: str = "adam"
    lr: float = 0.001
    batch_size: int = 16
    local_steps: int = 20
    unet: str = "cpu"
    pairs: tuple[str, ...] = ("2x8", "2x6", "4x8", "4x5")
    crfs: tuple[int, ...] = (23, 28, 33, 38)
    conditioned: bool = True
    patch_size: int = 32
    patches_per_client: int = 4096
    train_clips: int = 8
    clip_seed: int = 0
    sample_steps: int = 1
    focus_prob: float = 0.75
    residual_scale: float = 0.1
    save_decoder: bool = True
    validate_every: int = 1
    validation_frames: int = 16
    init_from: str = ""
    patch_cache: str = ""

    KEY_HELP: ClassVar[dict[str, str]] = {
        "unet": "decoder UNet: tiny (tests), cpu (about 0.27 M parameters) or gpu",
        "pairs": "RxB (resolution factor x bit-depth) pairs trained on",
        "crfs": "x264 CRFs every training clip is encoded at",
        "conditioned": "codec-aware: (r, b) as class embedding; false: one class (unaware)",
        "patch_size": "side of the training patches in pixels (multiple of 8)",
        "patches_per_client": "random patches in one pass over a client's encoded clips",
        "train_clips": "training clips in all (clip k goes to client k mod N)",
        "clip_seed": "draws the training and validation clips and patches (seed draws batches "
        "and noise), so runs with other seeds train on the same data",
        "sample_steps": "DDIM steps of the decoder (validation and the saved default)",
        "residual_scale": "the decoder predicts (clean - bicubic) / residual-scale (in (0, 1])",
        "focus_prob": "share of training examples drawn at the decoder's own DDIM timesteps",
        "save_decoder": "write the final decoder (UNet + cadm.json) to run/decoder",
        "validation_frames": "first frames of each validation clip the server checks (at most "
        "16 of bigbuckbunny 112-127, 8 of the procedural clip)",
        "validate_every": "rounds between the server's validation (the last round always)",
        "init_from": "start from this decoder folder (a run's decoder/; same pairs, conditioning "
        "and unet); empty: a fresh UNet",
        "patch_cache": "folder where each client's precomputed training patches are stored and "
        "found again (safetensors); empty: computed in memory by each process",
    }

    def validate(self) -> None:
        super().validate()
        check_choice(self, "unet", DECODER_UNETS)
        check_non_negative(self, "clip_seed")
        check_positive(self, "patch_size", "patches_per_client", "train_clips", "sample_steps",
                       "validate_every", "validation_frames")  # fmt: skip
        if self.patch_size % 8:
            raise FedlabError(f"patch-size must be a multiple of 8, got {self.patch_size}")
        for r, _ in self.pair_list():
            if 96 % (2 * r):
                raise FedlabError(
                    f"pairs: r={r} does not divide the 96-px training clips into even frames; "
                    "use r in 1, 2, 3, 4, 6, 8, 12, 16, 24, 48"
                )
        self.crf_list()
        if not 0 < self.residual_scale <= 1:
            raise FedlabError(f"residual-scale must lie in (0, 1], got {self.residual_scale}")
        if not 0 <= self.focus_prob <= 1:
            raise FedlabError(f"focus-prob must lie in [0, 1], got {self.focus_prob}")
        if self.init_from:
            from fedlab.clients.cadm.model import check_init_from

            check_init_from(self.init_from, self.pair_list(), self.conditioned,
                            self.residual_scale)  # fmt: skip

    def pair_list(self) -> list[tuple[int, int]]:
        return parse_pairs(self.pairs)

    def crf_list(self) -> list[int]:
        return parse_crfs(self.crfs)
