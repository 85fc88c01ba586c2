"""``UNet2DModel`` factories and ``save_pretrained`` folders, with one-line errors.

Named configs (diffusers' keyword names; ``sample_size`` is the training crop):

- :data:`TINY_TEST_CONFIG`: diffusers' own tiny test UNet, for fast tests.
- :data:`CPU_PRIOR_CONFIG`: about 0.9 M parameters, no attention in the down and up blocks but
  one self-attention layer in the mid block (diffusers' default ``add_attention=True``), whose
  cost grows with the square of the image's positions; about 0.5 s per training step at
  batch 16 on one CPU thread. Large images go through it in windows
  (:func:`fedlab.diffusion.sampling.tiled_eps`).
- :data:`GPU_PRIOR_CONFIG`: a larger prior for a GPU (about 36 M parameters, attention at
  16 and 8 px, 64-px crops); documented, not trained on CPU.

Class-conditional models pass ``num_class_embeds=K`` and take ``class_labels`` in ``forward``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from diffusers import DDPMScheduler, UNet2DModel

from fedlab.errors import FedlabError
from fedlab.field_rules import Bool, Choice, ChoiceList, Int, IntList, IntOrPair, ListOf, Number
from fedlab.model_folder import (
    MAX_CHANNELS,
    MAX_CLASSES,
    MAX_SIDE,
    MAX_TIMESTEPS,
    ModelSpec,
    load_model,
    read_json_object,
    validate_fields,
    where,
)

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
"""The prior 2 CPU cores afford: 32-px crops, about 0.9 M parameters, attention in the mid
block only."""

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

#: Block types a ``UNet2DModel`` builds and runs with (the cross-attention ones need a text
#: encoder's states, the encoder/decoder and K ones take no time embedding in its forward).
DOWN_BLOCKS = (
    "DownBlock2D", "AttnDownBlock2D", "ResnetDownsampleBlock2D", "SkipDownBlock2D",
    "AttnSkipDownBlock2D",
)  # fmt: skip
UP_BLOCKS = (
    "UpBlock2D", "AttnUpBlock2D", "ResnetUpsampleBlock2D", "SkipUpBlock2D", "AttnSkipUpBlock2D",
)  # fmt: skip
#: Levels of a UNet and ResNet layers per level: the meta build of the largest takes about 1 s.
MAX_LEVELS = 8
MAX_LAYERS_PER_BLOCK = 16

#: A rule for every ``UNet2DModel.__init__`` argument (tests check that none is missing).
UNET_FIELDS = {
    "sample_size": IntOrPair(1, MAX_SIDE, optional=True),
    "in_channels": Int(1, MAX_CHANNELS),
    "out_channels": Int(1, MAX_CHANNELS),
    "center_input_sample": Bool(),
    "time_embedding_type": Choice(("positional", "fourier", "learned")),
    "time_embedding_dim": Int(1, MAX_CHANNELS, optional=True),
    "freq_shift": Int(-MAX_TIMESTEPS, MAX_TIMESTEPS),
    "flip_sin_to_cos": Bool(),
    "down_block_types": ChoiceList(DOWN_BLOCKS, 1, MAX_LEVELS),
    "mid_block_type": Choice(("UNetMidBlock2D",), optional=True),
    "up_block_types": ChoiceList(UP_BLOCKS, 1, MAX_LEVELS),
    "block_out_channels": IntList(1, MAX_CHANNELS, 1, MAX_LEVELS),
    "layers_per_block": Int(1, MAX_LAYERS_PER_BLOCK),
    "mid_block_scale_factor": Number(0, 1e4, open_low=True),
    "downsample_padding": Int(0, 16),
    "downsample_type": Choice(("conv", "resnet")),
    "upsample_type": Choice(("conv", "resnet")),
    "dropout": Number(0, 1),
    "act_fn": Choice(("silu", "swish", "mish", "gelu", "relu")),
    "attention_head_dim": Int(1, MAX_CHANNELS, optional=True),
    "norm_num_groups": Int(1, MAX_CHANNELS),
    "attn_norm_num_groups": Int(1, MAX_CHANNELS, optional=True),
    "norm_eps": Number(0, 1, open_low=True),
    "resnet_time_scale_shift": Choice(("default", "scale_shift")),
    "add_attention": Bool(),
    "class_embed_type": Choice(("timestep", "identity"), optional=True),
    "num_class_embeds": Int(1, MAX_CLASSES, optional=True),
    "num_train_timesteps": Int(1, MAX_TIMESTEPS, optional=True),
}


def _unet_problem(fields: dict[str, Any]) -> str | None:
    """What diffusers would refuse across fields, said with the field names."""
    lengths = {
        name: len(fields[name])
        for name in ("down_block_types", "up_block_types", "block_out_channels")
        if name in fields
    }
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        return f"lists must have one entry per level ({listed})"
    if fields.get("time_embedding_type") == "learned" and fields.get("num_train_timesteps") is None:
        return "field num_train_timesteps must be an integer when time_embedding_type is 'learned'"
    return None


UNET_SPEC = ModelSpec(
    name="UNet2DModel",
    fields=UNET_FIELDS,
    build=UNet2DModel,
    check=_unet_problem,
    hint="fix config.json or give a UNet2DModel folder written by save_pretrained",
)
"""How a ``UNet2DModel`` folder is validated and built (:mod:`fedlab.model_folder`)."""


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


def unet_folder(folder: str | Path) -> Path:
    """``folder``, or its ``unet/`` when it is a pipeline folder (no config.json of its own)."""
    folder = Path(folder)
    if not (folder / "config.json").exists() and (folder / "unet" / "config.json").is_file():
        return folder / "unet"
    return folder


def load_unet(
    folder: str | Path,
    *,
    max_parameters: int | None = None,
    require: Mapping[str, Sequence[Any]] | None = None,
    source: str = "model",
) -> UNet2DModel:
    """A ``UNet2DModel`` from a local ``save_pretrained`` folder (safetensors only).

    ``folder`` may be the UNet folder itself or a folder holding it as ``unet/`` (a pipeline
    folder, e.g. a user's larger pretrained model). Nothing is downloaded. The folder goes
    through :func:`fedlab.model_folder.load_model`: config.json typed and bounded
    (:data:`UNET_FIELDS`), the parameter count taken on the meta device and checked against
    the cap, the weights' names and shapes checked, all before anything is allocated.

    Parameters
    ----------
    folder : str or Path
    max_parameters : int, optional
        The cap on parameters (default :data:`fedlab.limits.MAX_MODEL_PARAMETERS`); a command
        passes its ``--max-parameters`` here.
    require : mapping, optional
        Config values the caller needs, e.g. ``{"in_channels": (3,)}``.
    source : str
        How errors name the folder (``"init-from"``, ``"--model"``).

    Raises
    ------
    FedlabError
        One line naming the folder and the field or file at fault.
    """
    folder = unet_folder(folder)
    return load_model(  # type: ignore[return-value]
        folder, UNET_SPEC, max_parameters=max_parameters, require=require, source=source
    )


SCHEDULER_CONFIG_NAME = "scheduler_config.json"
VARIANCE_TYPES = (
    "fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log", "learned", "learned_range"
)  # fmt: skip
_F64_MAX = 1.7976931348623157e308


def _scheduler_problem(fields: dict[str, Any]) -> str | None:
    betas = fields.get("trained_betas")
    steps = fields.get("num_train_timesteps", 1000)
    if betas is not None and len(betas) != steps:
        return f"field trained_betas has {len(betas)} values but num_train_timesteps is {steps}"
    return None


SCHEDULER_SPEC = ModelSpec(
    name="DDPMScheduler",
    fields={
        "num_train_timesteps": Int(1, MAX_TIMESTEPS),
        "beta_start": Number(0, 1, open_low=True),
        "beta_end": Number(0, 1, open_low=True),
        "beta_schedule": Choice(("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")),
        "trained_betas": ListOf(Number(0, 1), 1, MAX_TIMESTEPS, optional=True),
        "variance_type": Choice(VARIANCE_TYPES),
        "clip_sample": Bool(),
        "prediction_type": Choice(("epsilon", "sample", "v_prediction")),
        "thresholding": Bool(),
        "dynamic_thresholding_ratio": Number(0, 1),
        "clip_sample_range": Number(0, _F64_MAX, open_low=True),
        "sample_max_value": Number(0, _F64_MAX, open_low=True),
        "timestep_spacing": Choice(("linspace", "leading", "trailing")),
        "steps_offset": Int(0, MAX_TIMESTEPS),
        "rescale_betas_zero_snr": Bool(),
    },
    build=DDPMScheduler,
    check=_scheduler_problem,
    config=SCHEDULER_CONFIG_NAME,
    hint="fix scheduler_config.json or give a folder written by DDPMScheduler.save_pretrained",
)
"""How a ``DDPMScheduler`` folder (``scheduler_config.json``) is validated (its betas are
allocated at ``num_train_timesteps``, hence the bound)."""


def load_scheduler(folder: str | Path, *, source: str = "scheduler") -> DDPMScheduler:
    """A ``DDPMScheduler`` from a local ``save_pretrained`` folder, its config typed and bounded
    (:data:`SCHEDULER_SPEC`) before anything is built.

    Raises
    ------
    FedlabError
        One line naming the folder and the field or file at fault.
    """
    folder = Path(folder)
    label = where(folder, source)
    if not folder.is_dir():
        raise FedlabError(f"{label} does not exist or is not a folder; {SCHEDULER_SPEC.hint}")
    raw = read_json_object(folder / SCHEDULER_CONFIG_NAME, label, hint=SCHEDULER_SPEC.hint)
    fields = validate_fields(raw, SCHEDULER_SPEC, label)
    try:
        return DDPMScheduler(**fields)
    except Exception as exc:  # noqa: BLE001 - diffusers' refusal of a validated config
        text = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise FedlabError(f"{label}: {SCHEDULER_CONFIG_NAME} is refused ({text})") from None


def count_parameters(model: Any) -> int:
    """Number of parameters of a torch module."""
    return sum(p.numel() for p in model.parameters())
