"""The two-sample yardstick for diffusion priors (issue 33), fixed before any new prior trains.

Scores :func:`fedlab.diffusion.sample_quality.two_sample_accuracy` (standardised logistic
regression on image statistics, 5-fold held-out accuracy; 0.5 = indistinguishable) on:

- the prior's samples from pure noise (``SAMPLES`` images, DDIM ``STEPS`` steps, each
  clean-image estimate clipped to [-1, 1] unless ``--no-clip``) against real 32-px crops of
  its training corpus;
- two positive controls that show the test can see what matters: real crops blurred by a
  Gaussian of ``LIGHT_BLUR`` px against real crops (must score >= 0.8), and the shipped prior
  (must score >= 0.95: its samples are saturated colour noise);
- a negative control: two disjoint sets of real crops (should score about 0.5).

    OMP_NUM_THREADS=1 python simulations/prior_two_sample.py [--model DIR] [--label NAME]

Appends one record per call to ``results/diffsr/two_sample.json`` (a curve over checkpoints
when called with each one) and writes a sample sheet beside it (samples left, real crops
right).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from fedlab.clients.sr.config import SHIPPED_PRIOR
from fedlab.clients.sr.data import TRAIN_IMAGES, fixed_crops
from skimage.filters import gaussian

from fedlab.atomic import atomic_write_bytes, atomic_write_json
from fedlab.diffusion import load_unet, make_scheduler
from fedlab.diffusion.sample_quality import generate, two_sample_accuracy
from fedlab.image_io import png_bytes

OUT = Path(__file__).resolve().parent / "results" / "diffsr" / "two_sample.json"
SAMPLES = 64
STEPS = 50
LIGHT_BLUR = 0.7


def real_crops(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint sets of ``SAMPLES`` real crops of the training photos, fixed by seed."""
    crops = fixed_crops(TRAIN_IMAGES, size, -(-2 * SAMPLES // len(TRAIN_IMAGES)), seed=1)
    order = torch.randperm(len(crops), generator=torch.Generator().manual_seed(0))
    return crops[order[:SAMPLES]], crops[order[SAMPLES : 2 * SAMPLES]]


def blurred(images: torch.Tensor, sigma: float) -> torch.Tensor:
    return torch.stack([torch.from_numpy(gaussian(i.permute(1, 2, 0).numpy(), sigma=sigma,
                                                  channel_axis=-1)).permute(2, 0, 1).float()
                        for i in images])  # fmt: skip


def sheet(samples: torch.Tensor, real: torch.Tensor, columns: int = 8) -> torch.Tensor:
    """``(1, 3, H, W)``: ``columns`` x 4 samples (left) beside as many real crops (right),
    each enlarged 3x (nearest), 2-px grey gutters."""

    def tiles(images: torch.Tensor) -> torch.Tensor:
        images = torch.nn.functional.interpolate(images[: 4 * columns], scale_factor=3)
        images = torch.nn.functional.pad(images, (1, 1, 1, 1), value=0.5)
        rows = [torch.cat(list(images[r * columns : (r + 1) * columns]), dim=-1)
                for r in range(4)]  # fmt: skip
        return torch.cat(rows, dim=-2)

    left, right = tiles(samples), tiles(real)
    gap = torch.full((3, left.shape[-2], 8), 1.0)
    return torch.cat([left, gap, right], dim=-1)[None]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="", help="a UNet2DModel folder (default: the shipped prior)")
    p.add_argument("--label", default="shipped prior")
    p.add_argument(
        "--no-clip",
        action="store_true",
        help="sample without clipping the clean-image estimates to [-1, 1]",
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    unet = load_unet(args.model or SHIPPED_PRIOR)
    size = unet.config.sample_size
    size = size if isinstance(size, int) else min(size)
    reference, other = real_crops(size)
    started = time.perf_counter()
    samples = generate(unet, make_scheduler(), SAMPLES, steps=STEPS, seed=0,
                       clip_x0=not args.no_clip)  # fmt: skip
    record = {
        "label": args.label, "model": args.model or "shipped", "samples": SAMPLES,
        "ddim-steps": STEPS, "clip-x0": not args.no_clip,
        "sample-seconds": round(time.perf_counter() - started, 1),
        "prior-vs-real": two_sample_accuracy(samples, reference),
        "real-vs-real": two_sample_accuracy(other, reference),
        f"blur-{LIGHT_BLUR}-vs-real": two_sample_accuracy(blurred(other, LIGHT_BLUR), reference),
    }  # fmt: skip
    slug = "".join(c if c.isalnum() else "-" for c in args.label.lower()).strip("-")
    image = OUT.with_name(f"samples_{slug}.png")
    atomic_write_bytes(image, png_bytes(sheet(samples, reference)))
    record["sheet"] = image.name
    records = json.loads(OUT.read_text()) if OUT.is_file() else []
    atomic_write_json(OUT, [*records, record])
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
