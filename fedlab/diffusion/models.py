"""``UNet2DModel`` factories and ``save_pretrained`` folders, with one-line errors.

Named configs (diffusers' keyword names; ``sample_size`` is the training crop):

- :data:`TINY_TEST_CONFIG`: diffusers' own tiny test UNet, for fast tests.
- :data:`CPU_PRIOR_CONFIG`: about 0.9 M parameters, no attention (fully convolutional, so the
  32-px-trained prior applies to 64-96 px images unchanged); about 0.5 s per training step at
  batch 16 on one CPU thread.
- :data:`GPU_PRIOR_CONFIG`: a larger prior for a GPU (about 36 M parameters, attention at
  16 and 8 px, 64-px crops); documented, not trained on CPU.

Class-conditional models pass ``num_class_embeds=K`` and take ``class_labels`` in ``forward``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffusers import UNet2DModel

from fedlab.errors import FedlabError

TINY_TEST_CONFIG: dict[str, Any] = {
    "sample_size": 8,
    "block_out_channels": (4, 8),
    "norm_num_groups": 2,
    "layers_per_block": 1,
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("AttnUpBlock2D", "UpBlock2D"),
}
"""diffusers' tiny ``UNet2DModel`` test config (two blocks, two norm groups)."""

CPU_PRIOR_CONFIG: dict[str, Any] = {
    "sample_size": 32,
    "block_out_channels": (32, 48, 64),
    "layers_per_block": 1,
    "down_block_types": ("DownBlock2D", "DownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "UpBlock2D", "UpBlock2D"),
    "norm_num_groups": 8,
}
"""The prior 2 CPU cores afford: 32-px crops, about 0.9 M parameters, no attention."""

GPU_PRIOR_CONFIG: dict[str, Any] = {
    "sample_size": 64,
    "block_out_channels": (128, 256, 256, 256),
    "layers_per_block": 2,
    "down_block_types": ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    "norm_num_groups": 32,
}
"""A larger prior for a GPU (DDPM-CIFAR-like widths, 64-px crops); not trained here."""

NAMED_CONFIGS = {"tiny": TINY_TEST_CONFIG, "cpu": CPU_PRIOR_CONFIG, "gpu": GPU_PRIOR_CONFIG}

UNET_WEIGHTS = "diffusion_pytorch_model.safetensors"


def build_unet(
    config: dict[str, Any] | str = "cpu",
    *,
    channels: int = 3,
    num_class_embeds: int | None = None,
    **overrides: Any,
) -> UNet2DModel:
    """A fresh ``UNet2DModel`` (epsilon prediction, ``channels`` in and out).

    Parameters
    ----------
    config : dict or str
        diffusers keyword arguments, or a name of :data:`NAMED_CONFIGS` (tiny, cpu, gpu).
    channels : int
        Image channels (3: RGB).
    num_class_embeds : int, optional
        Class-conditional model with this many classes (``forward(x, t, class_labels=...)``).
    **overrides
        Any other ``UNet2DModel`` argument.

    Raises
    ------
    FedlabError
        For an unknown name or arguments diffusers refuses.
    """
    if isinstance(config, str):
        if config not in NAMED_CONFIGS:
            raise FedlabError(
                f"unknown UNet config {config!r}; known: {', '.join(NAMED_CONFIGS)} "
                "(or pass a dict of UNet2DModel arguments)"
            )
        config = NAMED_CONFIGS[config]
    kwargs = {"in_channels": channels, "out_channels": channels, **config, **overrides}
    if num_class_embeds is not None:
        if num_class_embeds < 1:
            raise FedlabError(f"num_class_embeds must be >= 1, got {num_class_embeds}")
        kwargs["num_class_embeds"] = num_class_embeds
    try:
        return UNet2DModel(**kwargs)
    except (TypeError, ValueError) as exc:
        raise FedlabError(
            f"invalid UNet config {kwargs!r}: {exc}; see diffusers UNet2DModel"
        ) from None


def load_unet(folder: str | Path) -> UNet2DModel:
    """A ``UNet2DModel`` from a local ``save_pretrained`` folder (safetensors only).

    ``folder`` may be the UNet folder itself or a folder holding it as ``unet/`` (a pipeline
    folder, e.g. a user's larger pretrained model). Nothing is downloaded.

    Raises
    ------
    FedlabError
        If the folder does not exist or holds no loadable UNet.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FedlabError(
            f"model folder {str(folder)!r} does not exist; give a local diffusers UNet2DModel "
            "folder (config.json + diffusion_pytorch_model.safetensors) written by "
            "save_pretrained"
        )
    if not (folder / "config.json").is_file() and (folder / "unet" / "config.json").is_file():
        folder = folder / "unet"
    try:
        unet = UNet2DModel.from_pretrained(
            folder, use_safetensors=True, local_files_only=True, low_cpu_mem_usage=False
        )
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise FedlabError(
            f"cannot load a UNet2DModel from {str(folder)!r} ({first}); it needs config.json "
            f"and {UNET_WEIGHTS} as written by save_pretrained"
        ) from None
    return unet.eval()


def count_parameters(model: Any) -> int:
    """Number of parameters of a torch module."""
    return sum(p.numel() for p in model.parameters())
