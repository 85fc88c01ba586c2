"""Gradient <-> one-channel square image, the representation the PGLA denoiser works in.

A gradient (a list of tensors in ``model.parameters()`` order, or one flat vector) is flattened,
divided by a scalar ``scale`` and zero-padded to ``side * side`` values, then reshaped to
``(1, side, side)``. The scale is a power of two, so dividing and multiplying by it only changes
the floating-point exponent: the inverse is bit-exact (while the values stay normal numbers).

Only a scalar normalisation is used, on purpose: DP noise is isotropic in gradient space, and a
per-coordinate normalisation would make it anisotropic in image space, which breaks the
diffusion model's noise model and the noise level -> timestep mapping.

The transform is a diffusers ``ConfigMixin``: its four numbers are frozen with it by
``@register_to_config`` and saved as ``transform/transform_config.json`` beside the model's own
folder (``unet/`` or ``dncnn/``), as a diffusers pipeline saves its scheduler.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config

from fedlab.errors import FedlabError
from fedlab.field_rules import Int, Number
from fedlab.model_folder import MAX_SIDE, ModelSpec, read_json_object, validate_fields, where

TRANSFORM_SUBFOLDER = "transform"
TRANSFORM_CONFIG = "transform_config.json"
LEGACY_TRANSFORM_FILE = "transform.json"
"""Where denoiser folders written before the diffusers mixins kept the transform."""
CONVERT_HINT = "convert it with `python simulations/convert_pgla_denoisers.py DIR`"
TRANSFORM_FIELDS = ("num_params", "side", "scale", "clip_norm")


TRANSFORM_HINT = "it needs num_params, side, scale and clip_norm; re-train or restore the file"
_F64_MAX = 1.7976931348623157e308


def _transform_problem(values: dict[str, Any]) -> str | None:
    """``side`` fits the gradient: at least ``sqrt(num_params)``, and not so large that one
    image outweighs the gradient many times (``for_size`` never exceeds ``sqrt(n) + 8``)."""
    if "num_params" not in values or "side" not in values:
        return None
    n, side = values["num_params"], values["side"]
    if side * side < n:
        return (
            f"field side {side} gives {side * side} pixels, fewer than num_params {n}; use side "
            f">= {math.isqrt(n - 1) + 1}"
        )
    if side * side > 4 * n + 64:
        return (
            f"field side {side} gives {side * side:,} pixels for {n} values; it must be at most "
            f"{math.isqrt(4 * n + 64)}"
        )
    return None


def _transform_spec(cls: type) -> ModelSpec:
    return ModelSpec(
        name="GradientImageTransform",
        fields={
            "num_params": Int(1, MAX_SIDE * MAX_SIDE),
            "side": Int(1, MAX_SIDE),
            "scale": Number(0, _F64_MAX, open_low=True),
            "clip_norm": Number(0, _F64_MAX, open_low=True),
        },
        build=cls,
        check=_transform_problem,
        config=TRANSFORM_CONFIG,
        hint=TRANSFORM_HINT,
    )


def flatten_gradients(grads: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """Concatenate gradient tensors into one float32 vector (a tensor is flattened as is)."""
    if isinstance(grads, torch.Tensor):
        return grads.detach().reshape(-1).float()
    return torch.cat([g.detach().reshape(-1).float() for g in grads])


def unflatten_gradients(flat: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Split a flat vector back into tensors shaped like ``like``.

    Raises
    ------
    FedlabError
        If the sizes disagree.
    """
    total = sum(t.numel() for t in like)
    if flat.numel() != total:
        raise FedlabError(
            f"flat gradient has {flat.numel()} values but the model has {total} parameters; "
            "denoise the gradient of the same model"
        )
    out, start = [], 0
    for t in like:
        out.append(flat[start : start + t.numel()].view_as(t).to(t.dtype))
        start += t.numel()
    return out


def power_of_two(x: float) -> float:
    """The power of two nearest to ``x`` in log scale (``x > 0``)."""
    return float(2.0 ** round(math.log2(x)))


class GradientImageTransform(ConfigMixin):
    """Flat gradient of ``num_params`` values <-> ``(1, side, side)`` image.

    Immutable: the values live in the frozen ``config`` and are read through properties.

    Parameters
    ----------
    num_params : int
        Length of the flattened gradient.
    side : int
        Image side; ``side * side >= num_params``.
    scale : float
        Divisor applied to the gradient (a power of two; see :meth:`fit`).
    clip_norm : float
        L2 clip norm of the gradients the statistics were fitted on (the denoiser's training
        data), so that gradients clipped to another norm can be brought to the same units.
    """

    config_name = TRANSFORM_CONFIG

    @register_to_config
    def __init__(
        self, num_params: int, side: int, scale: float = 1.0, clip_norm: float = 1.0
    ) -> None:
        if num_params < 1:
            raise FedlabError(f"num_params {num_params} must be >= 1")
        if side * side < num_params:
            raise FedlabError(
                f"side {side} gives {side**2} pixels, fewer than num_params "
                f"{num_params}; use side >= {math.ceil(math.sqrt(num_params))}"
            )
        if not (scale > 0 and math.isfinite(scale)):
            raise FedlabError(f"scale {scale} must be a positive finite number")
        if not (clip_norm > 0 and math.isfinite(clip_norm)):
            raise FedlabError(f"clip_norm {clip_norm} must be a positive finite number")

    # Properties over the frozen config, so a transform cannot drift from what it saves.
    @property
    def num_params(self) -> int:
        """Length of the flattened gradient."""
        return int(self.config["num_params"])

    @property
    def side(self) -> int:
        """Image side."""
        return int(self.config["side"])

    @property
    def scale(self) -> float:
        """Divisor applied to the gradient."""
        return float(self.config["scale"])

    @property
    def clip_norm(self) -> float:
        """Clip norm of the fitting gradients."""
        return float(self.config["clip_norm"])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GradientImageTransform):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(tuple(self.to_dict().values()))

    @classmethod
    def for_size(
        cls, num_params: int, *, multiple: int = 8, **kwargs: float
    ) -> GradientImageTransform:
        """The smallest square whose side is a multiple of ``multiple`` (UNets halve it)."""
        side = math.ceil(math.sqrt(num_params) / multiple) * multiple
        return cls(num_params=num_params, side=side, **kwargs)

    @classmethod
    def fit(
        cls, flat_grads: torch.Tensor, *, clip_norm: float, multiple: int = 8
    ) -> GradientImageTransform:
        """Fit the scale on clean clipped gradients ``(N, num_params)``.

        The scale is the root-mean-square coordinate rounded to a power of two, so the images
        have roughly unit variance and the inverse is exact.
        """
        if flat_grads.ndim != 2 or flat_grads.shape[0] < 1:
            raise FedlabError(
                f"fit needs a (N, num_params) tensor of gradients, got {tuple(flat_grads.shape)}"
            )
        rms = float(flat_grads.double().pow(2).mean().sqrt())
        if not rms > 0:
            raise FedlabError("all fitting gradients are zero; fit on real gradients")
        return cls.for_size(
            flat_grads.shape[1], multiple=multiple, scale=power_of_two(rms), clip_norm=clip_norm
        )

    def check(self, flat: torch.Tensor) -> None:
        """Refuse a flat gradient (or batch of them) of the wrong length."""
        n = flat.shape[-1]
        if n != self.num_params:
            raise FedlabError(
                f"gradient has {n} values but this denoiser was trained for {self.num_params} "
                f"({self.side}x{self.side} image); use a denoiser trained on this model's "
                "gradients (fedlab pgla train) or the matching model"
            )

    def to_image(self, flat: torch.Tensor) -> torch.Tensor:
        """``(num_params,)`` or ``(B, num_params)`` -> ``(B, 1, side, side)``."""
        flat = flat if flat.ndim == 2 else flat.reshape(1, -1)
        self.check(flat)
        out = flat.new_zeros(flat.shape[0], self.side * self.side)
        out[:, : self.num_params] = flat / self.scale
        return out.view(-1, 1, self.side, self.side)

    def from_image(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 1, side, side)`` -> ``(B, num_params)``, the exact inverse of :meth:`to_image`."""
        if tuple(image.shape[-3:]) != (1, self.side, self.side):
            raise FedlabError(
                f"image of shape {tuple(image.shape)} is not (B, 1, {self.side}, {self.side})"
            )
        return image.reshape(image.shape[0], -1)[:, : self.num_params] * self.scale

    def to_dict(self) -> dict[str, Any]:
        """The four statistics as plain JSON-serialisable values."""
        return {name: getattr(self, name) for name in TRANSFORM_FIELDS}

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write ``transform/transform_config.json`` under the denoiser folder ``folder``.

        Callers write into a temporary checkpoint folder that is renamed when complete, so the
        non-atomic write of diffusers' ``save_config`` cannot leave a half-written checkpoint.
        """
        target = Path(folder) / TRANSFORM_SUBFOLDER
        self.save_config(target)
        return target / TRANSFORM_CONFIG

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> GradientImageTransform:
        """Read ``transform/transform_config.json`` from the local denoiser folder ``folder``.

        Only local files are read (``local_files_only``): a folder that does not exist is
        refused here before diffusers could take its name for a hub id.

        Raises
        ------
        FedlabError
            If the file is missing, malformed, of another class, or from the old layout.
        """
        folder = Path(folder)
        path = folder / TRANSFORM_SUBFOLDER / TRANSFORM_CONFIG
        if not path.is_file():
            if (folder / LEGACY_TRANSFORM_FILE).is_file():
                raise FedlabError(
                    f"{folder} holds a denoiser in the layout before the diffusers mixins "
                    f"({LEGACY_TRANSFORM_FILE}); {CONVERT_HINT}"
                )
            raise FedlabError(
                f"{path} not found; a PGLA denoiser folder holds {TRANSFORM_SUBFOLDER}/"
                f"{TRANSFORM_CONFIG} and unet/ (or dncnn/) (write one with "
                "`fedlab pgla train --out DIR`)"
            )
        # Read through the model-folder step: size-capped, typed and bounded, one line each.
        label = where(folder, "denoiser")
        file = f"{TRANSFORM_SUBFOLDER}/{TRANSFORM_CONFIG}"
        raw = read_json_object(path, label, hint=TRANSFORM_HINT)
        values = validate_fields(raw, _transform_spec(cls), label, file=file)
        missing = [name for name in TRANSFORM_FIELDS if name not in values]
        if missing:
            raise FedlabError(
                f"{label}: {file} is malformed: it lacks {', '.join(missing)}; {TRANSFORM_HINT}"
            )
        return cls(**values)
