"""Tiny seeded PGLA pieces for fast tests (diffusers' own tiny UNet, an 8x8 gradient image)."""

from __future__ import annotations

import torch
from diffusers import UNet2DModel
from fedlab.attacks.pgla.pipeline import PGLAPipeline
from fedlab.attacks.pgla.schedule import make_scheduler
from fedlab.attacks.pgla.transform import GradientImageTransform

NUM_PARAMS = 60  # -> an 8x8 image with 4 padding pixels

FAST_UNET = {
    "block_out_channels": [4, 8],
    "layers_per_block": 1,
    "down_block_types": ["DownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "UpBlock2D"],
    "norm_num_groups": 2,
}
"""A training config's ``model`` that trains a 128x128 UNet in well under a second a step."""


def tiny_unet(seed: int = 0) -> UNet2DModel:
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(4, 8),
        norm_num_groups=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    )


def tiny_pipeline(seed: int = 0, scale: float = 0.125) -> PGLAPipeline:
    tf = GradientImageTransform(num_params=NUM_PARAMS, side=8, scale=scale, clip_norm=1.0)
    return PGLAPipeline(unet=tiny_unet(seed).eval(), scheduler=make_scheduler(), transform=tf)
