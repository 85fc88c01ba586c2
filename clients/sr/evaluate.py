"""What a ``diffsr`` client reports: its own crops super-resolved by each method and scale.

Metric names are ``<method>-<metric>-x<scale>-s<seed>`` (``sdedit`` as ``t<t>``; bicubic and
the CNN are deterministic and reported once, as ``-s<first seed>``), means over the client's
crops, plus ``prf-t-x<scale>`` (the PRF start step, mean over crops). The server's weighted
mean over clients is then the mean over every client's crops.
"""

from __future__ import annotations

import logging
import math
from functools import lru_cache

import numpy as np
import torch
from fedlab.clients.sr.cnn import load_cnn
from fedlab.clients.sr.config import DiffSRConfig
from fedlab.clients.sr.data import (
    CONTROL_FRAMES,
    HELDOUT_IMAGES,
    client_images,
    fixed_crops,
    heldout_image_of,
)
from fedlab.clients.sr.degrade import downsample
from fedlab.clients.sr.methods import DiffSR
from fedlab.clients.sr.metrics import image_metrics
from fedlab.clients.sr.prf import PRF

from fedlab.client import derive_seed

log = logging.getLogger("fedlab.sr")

TEST_SEED = 2026
CALIBRATION_SEED = 4051
CONTROL_SEED = 3033
CALIBRATION_CLIENTS = 4
PRF_CALIBRATION_CROPS = 2  # per client: 8 crops of training images, 64 px (docs/diffsr.md)
PRF_CALIBRATION_SIZE = 64


def scale_tag(scale: float) -> str:
    return f"x{scale:g}"


def heldout_crops(partition_id: int, count: int, size: int) -> torch.Tensor:
    """Client ``partition_id``'s test crops: ``count`` crops of its held-out image."""
    name = heldout_image_of(partition_id)
    return fixed_crops((name,), size, count, seed=TEST_SEED + HELDOUT_IMAGES.index(name))


def control_crops(partition_id: int, count: int, size: int) -> torch.Tensor:
    """Client ``partition_id``'s positive-control crops: ``count`` crops of held-out frame
    ``partition_id % 3`` of the prior's training clip (:data:`CONTROL_FRAMES`)."""
    name = CONTROL_FRAMES[partition_id % len(CONTROL_FRAMES)]
    return fixed_crops((name,), size, count, seed=CONTROL_SEED + partition_id)


def calibration_crops(
    partition_id: int, num_partitions: int, count: int, size: int
) -> torch.Tensor:
    """Client ``partition_id``'s calibration crops: ``count`` crops of its training images
    (one per image in turn, positions from a fixed seed)."""
    # Crops are drawn image by image from one seed, so the first images' crops do not depend
    # on the later images: load only those used (no clip is decoded for 2 crops per client).
    names = client_images(partition_id, num_partitions)[:count]
    per_image = math.ceil(count / len(names))
    return fixed_crops(names, size, per_image, seed=CALIBRATION_SEED)[
        _interleave(len(names), per_image)[:count]
    ]


def _interleave(num_images: int, per_image: int) -> list[int]:
    return [i * per_image + k for k in range(per_image) for i in range(num_images)]


@lru_cache(maxsize=8)
def calibrated_prf(
    count: int = PRF_CALIBRATION_CROPS, size: int = PRF_CALIBRATION_SIZE, kappa: float = 1.0
) -> PRF:
    """PRF tabulated on the calibration crops of :data:`CALIBRATION_CLIENTS` clients."""
    crops = torch.cat([calibration_crops(k, CALIBRATION_CLIENTS, count, size)
                       for k in range(CALIBRATION_CLIENTS)])  # fmt: skip
    return PRF.calibrate(crops, kappa=kappa)


def evaluate_client(
    config: DiffSRConfig,
    unet: torch.nn.Module,
    scheduler: object,
    partition_id: int,
    num_partitions: int | None = None,
) -> dict[str, float]:
    """Super-resolve this client's crops with every method at every scale."""
    n, size = config.eval_crops, config.eval_crop_size
    if config.eval_images == "heldout":
        hr = heldout_crops(partition_id, n, size)
    elif config.eval_images == "control":
        hr = control_crops(partition_id, n, size)
    else:
        hr = calibration_crops(partition_id, num_partitions or config.num_supernodes, n, size)
    sr = DiffSR(unet, scheduler, steps=config.sample_steps)
    out: dict[str, float] = {"num-examples": len(hr)}
    for scale in config.scales:
        out.update(_scale_metrics(config, sr, hr, scale, partition_id))
    return out


def _scale_metrics(
    config: DiffSRConfig, sr: DiffSR, hr: torch.Tensor, scale: float, partition_id: int
) -> dict[str, float]:
    methods, seeds = config.methods, config.sample_seeds
    tag, lr, hw = scale_tag(scale), downsample(hr, scale), tuple(hr.shape[-2:])
    out: dict[str, float] = {}

    def record(name: str, images: torch.Tensor, seed: int) -> None:
        for metric, values in image_metrics(images, hr, lr).items():
            out[f"{name}-{metric}-{tag}-s{seed}"] = float(np.mean(values))

    if "bicubic" in methods:
        record("bicubic", sr.bicubic(lr, hw), seeds[0])
    if "ibp" in methods:  # back-projection alone, as many corrections as DDIM steps
        record("ibp", sr.back_projection(lr, hw, config.sample_steps), seeds[0])
    if "cnn" in methods:
        record("cnn", load_cnn(config.cnn_folder()).super_resolve(lr, hw), seeds[0])
    prf = calibrated_prf(PRF_CALIBRATION_CROPS, PRF_CALIBRATION_SIZE, config.prf_kappa)
    for seed in seeds:
        # the same start noise for every method of a seed: paired comparisons
        noise_seed = derive_seed(seed, partition_id) % 2**63
        if "sdedit" in methods:
            for t in config.fixed_t:
                gen = torch.Generator().manual_seed(noise_seed)
                record(f"t{t}", sr.sdedit(lr, hw, t, generator=gen), seed)
        if not {"prf", "ilvr", "ddnm"} & set(methods):
            continue
        gen = torch.Generator().manual_seed(noise_seed)
        images, ts = sr.prf(lr, hw, prf, scale, per_image=config.prf_per_image, generator=gen)
        out[f"prf-t-{tag}"] = float(np.mean(ts))
        if "prf" in methods:
            record("prf", images, seed)
        t0 = int(round(float(np.mean(ts))))
        for guidance in ("ilvr", "ddnm"):
            if guidance in methods:
                gen = torch.Generator().manual_seed(noise_seed)
                record(guidance, sr.run(lr, hw, t0, guidance=guidance, generator=gen), seed)
    return out
