"""The attack benchmark in DLG's setting, on a fixed list of offline images.

Setting (Zhu et al. 2019, github mit-han-lab/dlg ``main.py``): LeNet with sigmoid activations
and a 100-class head (CIFAR-100's, as in DLG's code), DLG's uniform [-0.5, 0.5] initialisation
(seeded with ``torch.manual_seed(seed)``), one 32x32 RGB image, its label, one mean
cross-entropy gradient, float32. Images are the centre square of each scikit-image photo below,
resized to 32x32 with anti-aliasing (grey images repeated to three channels); the label of image
``i`` is ``i``. The list was fixed before any tuning and must not change between reports.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from fedlab.attacks.base import AttackInput, ModelSpec
from skimage import data, transform

BENCH_IMAGES: tuple[str, ...] = (
    "astronaut",
    "camera",
    "chelsea",
    "coffee",
    "coins",
    "rocket",
    "hubble_deep_field",
    "brick",
    "immunohistochemistry",
    "gravel",
)
"""scikit-image photos of the benchmark (all bundled in the wheel, no download)."""

NUM_CLASSES = 100
"""Classes of the victim's head, as in DLG's code."""

FAILURE_PSNR = 20.0
"""A reconstruction below this PSNR (dB) counts as a failure."""


def bench_image(name: str, size: int = 32) -> torch.Tensor:
    """``(3, size, size)`` image in [0, 1]: centre square of ``skimage.data.<name>``, resized."""
    if name not in BENCH_IMAGES:
        from fedlab.errors import FedlabError

        raise FedlabError(f"bench image {name!r} is not one of {list(BENCH_IMAGES)}")
    img = np.asarray(getattr(data, name)(), dtype=np.float64)
    img = img / 255.0 if img.max() > 1 else img
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    img = transform.resize(
        img[top : top + s, left : left + s, :3], (size, size), anti_aliasing=True
    )
    return torch.tensor(img, dtype=torch.float32).permute(2, 0, 1).clamp(0, 1).contiguous()


@dataclass
class BenchCase:
    """One benchmark target: an image, its label and the model seed."""

    image: str
    seed: int
    label: int

    @property
    def target_id(self) -> str:
        """``"<image>/seed-<seed>"``."""
        return f"{self.image}/seed-{self.seed}"


def bench_cases(
    images: tuple[str, ...] = BENCH_IMAGES, seeds: tuple[int, ...] = (0,)
) -> Iterator[BenchCase]:
    """The cases in a fixed order: images outer, seeds inner."""
    for image in images:
        label = BENCH_IMAGES.index(image) % NUM_CLASSES
        for seed in seeds:
            yield BenchCase(image, seed, label)


def case_input(case: BenchCase, size: int = 32) -> tuple[AttackInput, torch.Tensor, torch.Tensor]:
    """The attack input of ``case`` (labels unknown to the attacker) and its ground truth."""
    x = bench_image(case.image, size)[None]
    y = torch.tensor([case.label])
    spec = ModelSpec(
        "lenet", {"num_classes": NUM_CLASSES, "image_size": size, "init": "dlg-uniform"}
    )
    torch.manual_seed(case.seed)
    model = spec.build()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    grads = [g.detach() for g in torch.autograd.grad(loss, list(model.parameters()))]
    inp = AttackInput(
        model=spec,
        params=[p.detach().clone() for p in model.parameters()],
        batch_size=1,
        image_shape=(3, size, size),
        num_classes=NUM_CLASSES,
        gradients=grads,
    )
    return inp, x, y


def summarize(rows: list[dict]) -> dict[str, float]:
    """Median, quartiles, min/max of PSNR, failures, median SSIM, label accuracy, seconds."""
    psnr = [r["psnr"] for r in rows]
    q = np.percentile(psnr, [25, 75]) if psnr else (float("nan"),) * 2
    return {
        "n": len(rows),
        "psnr_median": statistics.median(psnr) if psnr else float("nan"),
        "psnr_q25": float(q[0]),
        "psnr_q75": float(q[1]),
        "psnr_min": min(psnr, default=float("nan")),
        "psnr_max": max(psnr, default=float("nan")),
        "failures": sum(p < FAILURE_PSNR for p in psnr),
        "ssim_median": statistics.median([r["ssim"] for r in rows]) if rows else float("nan"),
        "label_accuracy": statistics.fmean([r["label_accuracy"] for r in rows])
        if rows
        else float("nan"),
        "seconds_median": statistics.median([r["seconds"] for r in rows]) if rows else float("nan"),
    }
