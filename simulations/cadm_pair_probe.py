"""Can a codec-unaware decoder tell (r, b) from its input? A probe classifier (docs/cadm.md).

    OMP_NUM_THREADS=1 python simulations/cadm_pair_probe.py

A small CNN (3 strided conv layers, global average pooling, one linear layer; about 20 k
parameters) learns the pair index from the bicubic reception alone (what the unaware decoder
sees), on the decoders' own training patches (the 4 clients' union, every pair and CRF),
through THE loop (``train_with_checkpoints``, 2,000 steps of batch 64, Adam 1e-3, seed 0).
It is then scored on 32-px patches of clips it never saw: the validation clips and the test
clips (carphone, bikes), every pair and CRF. Chance is 25 % (4 pairs). Writes
``simulations/results/cadm/pair-probe.json``. One thread.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from diffusers import ConfigMixin, ModelMixin  # noqa: E402
from diffusers.configuration_utils import register_to_config  # noqa: E402
from torch import nn  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "cadm"
STEPS = 2000
PATCHES_PER_CLIP = 512


class PairProbe(ModelMixin, ConfigMixin):
    """Pair index from a ``(3, p, p)`` reception patch in [0, 1]."""

    @register_to_config
    def __init__(self, classes: int = 4, width: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(width, classes)

    def forward(self, up: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(up * 2 - 1).mean(dim=(2, 3)))


def probe_step(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict]:
    _, up, label = batch
    return F.cross_entropy(model(up), label), {}


@torch.no_grad()
def accuracy(model: nn.Module, clips: list, pairs: list, crfs: list, seed: int) -> dict:
    from fedlab.clients.cadm.data import PairPatches

    data = PairPatches(clips, pairs, crfs, 32, PATCHES_PER_CLIP * len(clips), seed)
    tensors = data.tensors()
    logits = torch.cat([model(tensors["up"][i : i + 256].float() / 255)
                        for i in range(0, len(tensors["label"]), 256)])  # fmt: skip
    guess, label = logits.argmax(1), tensors["label"]
    confusion = torch.zeros(len(pairs), len(pairs), dtype=torch.long)
    for g, t in zip(guess.tolist(), label.tolist(), strict=True):
        confusion[t, g] += 1
    return {"accuracy": float((guess == label).float().mean()),
            "confusion (row: true pair, column: guess)": confusion.tolist()}  # fmt: skip


def main() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from cadm_train import _resolve, union_patches
    from fedlab.clients.cadm.data import test_clip, validation_clips

    from fedlab.atomic import atomic_write_text
    from fedlab.diffusion import train_with_checkpoints
    from fedlab.training import TrainConfig

    torch.set_num_threads(1)
    config = _resolve()
    pairs, crfs = config.pair_list(), config.crf_list()
    torch.manual_seed(0)
    model = PairProbe(classes=len(pairs))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        train_with_checkpoints(
            model, union_patches(), probe_step,
            TrainConfig(steps=1, batch_size=64, optimizer="adam", lr=1e-3),
            out=Path(tmp), total_steps=STEPS, checkpoint_every=STEPS, seed=0,
        )  # fmt: skip
    model.eval()
    result = {
        "pairs": [list(p) for p in pairs], "crfs": crfs, "steps": STEPS,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train-seconds": round(time.perf_counter() - start, 1),
        "validation clips": accuracy(model, validation_clips(config.clip_seed), pairs, crfs, 1),
        "test clips": accuracy(model, [test_clip(n) for n in ("carphone", "bikes")], pairs,
                               crfs, 2),
    }  # fmt: skip
    atomic_write_text(OUT / "pair-probe.json", json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
