"""What an attacker is given about one client: :class:`ModelSpec` and :class:`AttackInput`.

These are plain dataclasses that need neither Flower nor the attack package: the trace reader
(:mod:`fedlab.traces`) produces them, attacks (``fedlab.attacks.base`` re-exports both) consume
them, and traces written by other frameworks can be read into them. A model spec names a builder in
:data:`fedlab.registry.MODELS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from fedlab.errors import FedlabError
from fedlab.registry import MODELS


@dataclass(frozen=True)
class ModelSpec:
    """A model rebuilt from a name in :data:`fedlab.registry.MODELS` and keyword arguments.

    Parameters
    ----------
    name : str
        Registered builder name, e.g. ``"lenet"``, or ``"module:attr"`` (when ``allow_import``).
    kwargs : dict
        Keyword arguments of the builder, e.g. ``{"num_classes": 10, "image_size": 32}``.
    allow_import : bool
        Whether a ``"module:attr"`` name that is not registered is imported and called. True
        for specs written in your own code; :class:`fedlab.traces.TraceReader` sets it False
        (unless ``trust_code=True``), since a name read from a file must not run code.
    """

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    allow_import: bool = field(default=True, compare=False)

    def build(self) -> nn.Module:
        """Build a fresh model (weights are the builder's, load parameters afterwards).

        Raises
        ------
        FedlabError
            If the name is unknown (or ``module:attr`` while ``allow_import`` is False), or the
            builder rejects the keyword arguments.
        """
        builder = MODELS.get(self.name, allow_import=self.allow_import)
        try:
            return builder(**self.kwargs)
        except (TypeError, ValueError) as exc:
            raise FedlabError(
                f"model {self.name!r} cannot be built with {self.kwargs!r} ({exc}); "
                "fix the model kwargs in the trace manifest or AttackInput"
            ) from None

    def to_json(self) -> dict[str, Any]:
        """The JSON form used in trace manifests."""
        return {"name": self.name, "kwargs": dict(self.kwargs)}


@dataclass
class AttackInput:
    """What an attacker knows about one client's contribution in one round.

    Give either ``gradients`` or ``update`` (with ``lr`` and ``local_steps``); never both.

    Parameters
    ----------
    model : ModelSpec
        Enough to rebuild the victim model.
    params : list of torch.Tensor
        The global parameters the client started from, in ``model.parameters()`` order.
    batch_size : int
        Images in the client's batch.
    image_shape : tuple of int
        ``(channels, height, width)`` of one model input.
    num_classes : int
        Classes of the classifier head.
    gradients : list of torch.Tensor, optional
        Mean-reduced cross-entropy gradients, in ``model.parameters()`` order.
    update : list of torch.Tensor, optional
        What the client's parameters moved by (received minus global), in parameter order.
    lr : float, optional
        The client's learning rate; needed to convert an update.
    local_steps : int
        Local optimizer steps behind ``update``; only 1 (FedSGD) can be converted exactly.
    labels : torch.Tensor, optional
        Labels known to the attacker (int64, shape ``(batch_size,)``); recovered otherwise.
    dp : dict, optional
        Metadata of the local DP mechanism applied before sending (e.g. ``{"mechanism":
        "gaussian", "clip": 1.0, "std": 0.01}``); informational for the attacks here.
    mean, std : tuple of float, optional
        Per-channel normalisation the client applied (model input = (x - mean) / std); attacks
        report images in [0, 1] by undoing it.
    """

    model: ModelSpec
    params: list[torch.Tensor]
    batch_size: int
    image_shape: tuple[int, int, int]
    num_classes: int
    gradients: list[torch.Tensor] | None = None
    update: list[torch.Tensor] | None = None
    lr: float | None = None
    local_steps: int = 1
    labels: torch.Tensor | None = None
    dp: dict[str, Any] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if (self.gradients is None) == (self.update is None):
            raise FedlabError(
                "AttackInput needs exactly one of gradients= or update= "
                f"(got {'both' if self.gradients is not None else 'neither'}); pass one"
            )
        if self.batch_size < 1:
            raise FedlabError(f"batch_size {self.batch_size} must be >= 1; give the batch size")
        if len(self.image_shape) != 3:
            raise FedlabError(
                f"image_shape {tuple(self.image_shape)} must be (channels, height, width)"
            )
        self.image_shape = tuple(int(s) for s in self.image_shape)  # type: ignore[assignment]
        if self.labels is not None and tuple(self.labels.shape) != (self.batch_size,):
            raise FedlabError(
                f"labels of shape {tuple(self.labels.shape)} do not match batch_size "
                f"{self.batch_size}; give one label per image"
            )
        if self.update is not None and len(self.update) != len(self.params):
            raise FedlabError(
                f"update has {len(self.update)} tensors but params has {len(self.params)}; "
                "both must follow model.parameters() order"
            )
        for name, tensors in (
            ("params", self.params),
            ("gradients", self.gradients),
            ("update", self.update),
        ):
            for i, t in enumerate(tensors or ()):
                if not torch.isfinite(t).all():
                    raise FedlabError(
                        f"{name}[{i}] contains NaN or Inf; the attack needs finite values, "
                        "check the trace file"
                    )

    def target_gradients(self) -> list[torch.Tensor]:
        """The gradients to match: ``gradients`` as given, or ``-update / lr``.

        Raises
        ------
        FedlabError
            If the update came from several local steps, or ``lr`` is missing or not positive.
        """
        if self.gradients is not None:
            return [g.detach().float() for g in self.gradients]
        if self.local_steps != 1:
            steps = "an unknown number of" if self.local_steps < 1 else str(self.local_steps)
            raise FedlabError(
                f"cannot convert an update of {steps} local steps into one gradient "
                "(only FedSGD, local_steps=1, is exact); record traces in FedSGD mode"
            )
        if self.lr is None or not math.isfinite(self.lr) or self.lr <= 0:
            raise FedlabError(
                f"lr {self.lr!r} must be a positive number to convert an update into a gradient "
                "(FedSGD update = -lr * gradient); give the client's lr"
            )
        assert self.update is not None
        return [(-u.detach().float() / self.lr) for u in self.update]

    def build_model(self) -> nn.Module:
        """The victim model with ``params`` loaded, in eval mode, float32.

        Raises
        ------
        FedlabError
            If the number or shapes of ``params`` or gradients disagree with the model.
        """
        model = self.model.build().float().eval()
        named = list(model.named_parameters())
        if len(named) != len(self.params):
            raise FedlabError(
                f"model {self.model.name!r} has {len(named)} parameter tensors but "
                f"{len(self.params)} were given; check the model spec"
            )
        grads = self.gradients if self.gradients is not None else self.update
        assert grads is not None
        if len(grads) != len(named):
            raise FedlabError(
                f"model {self.model.name!r} has {len(named)} parameter tensors but "
                f"{len(grads)} gradients/update tensors were given; check the model spec"
            )
        with torch.no_grad():
            for (pname, p), value, g in zip(named, self.params, grads, strict=True):
                for what, t in (("parameter", value), ("gradient/update", g)):
                    if tuple(t.shape) != tuple(p.shape):
                        raise FedlabError(
                            f"{what} {pname!r} has shape {list(t.shape)} but model "
                            f"{self.model.name!r} expects {list(p.shape)}; check the model spec"
                        )
                p.copy_(value)
        for p in model.parameters():
            p.requires_grad_(True)
        return model

    def to_unit_range(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the normalisation: model inputs -> images in [0, 1] (clamped)."""
        if self.mean is not None and self.std is not None:
            mean = torch.tensor(self.mean, dtype=x.dtype).view(1, -1, 1, 1)
            std = torch.tensor(self.std, dtype=x.dtype).view(1, -1, 1, 1)
            x = x * std + mean
        return x.clamp(0.0, 1.0)

    def from_unit_range(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> model inputs (applies the normalisation, if any)."""
        if self.mean is not None and self.std is not None:
            mean = torch.tensor(self.mean, dtype=x.dtype).view(1, -1, 1, 1)
            std = torch.tensor(self.std, dtype=x.dtype).view(1, -1, 1, 1)
            x = (x - mean) / std
        return x

    def initial_images(self, init: str, generator: torch.Generator) -> torch.Tensor:
        """A random starting batch in model-input space.

        ``"randn"``: standard normal (DLG's and Geiping's code); ``"gray"``: mid-grey images
        ``0.5 + 0.1 * N(0, 1)`` in [0, 1] units, normalised like the inputs.
        """
        shape = (self.batch_size, *self.image_shape)
        if init == "randn":
            return torch.randn(shape, generator=generator)
        if init == "gray":
            return self.from_unit_range(0.5 + 0.1 * torch.randn(shape, generator=generator))
        raise FedlabError(f"init {init!r} is not one of 'randn', 'gray'")

    def input_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower and upper bounds of a model input, shape ``(1, C, 1, 1)``: [0, 1] normalised."""
        c = self.image_shape[0]
        low, high = torch.zeros(1, c, 1, 1), torch.ones(1, c, 1, 1)
        if self.mean is not None and self.std is not None:
            mean = torch.tensor(self.mean).view(1, -1, 1, 1)
            std = torch.tensor(self.std).view(1, -1, 1, 1)
            low, high = (low - mean) / std, (high - mean) / std
        return low, high
