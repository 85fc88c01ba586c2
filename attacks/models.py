"""Victim models of the gradient-leakage literature, rebuilt from a model spec.

Builders are registered in the core's :data:`fedlab.registry.MODELS` through the
``fedlab.models`` entry points in pyproject.toml (``lenet`` is :func:`build_lenet`); a workload
that trains one of these models names it there rather than importing this package.
"""

from __future__ import annotations

import torch
from torch import nn

from fedlab.registry import MODELS


class LeNet(nn.Module):
    """The LeNet of DLG (Zhu et al. 2019): three 5x5 sigmoid convolutions and one linear head.

    Sigmoid activations keep the model twice differentiable everywhere, which the
    gradient-matching attacks need.

    Parameters
    ----------
    num_classes : int
        Output classes.
    in_channels : int
        Image channels.
    image_size : int
        Height and width of the (square) input; must be a multiple of 4.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> None:
        super().__init__()
        if image_size % 4:
            raise ValueError(
                f"image_size {image_size} must be a multiple of 4 (two stride-2 convs)"
            )
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 12, kernel_size=5, padding=2, stride=2),
            nn.Sigmoid(),
            nn.Conv2d(12, 12, kernel_size=5, padding=2, stride=2),
            nn.Sigmoid(),
            nn.Conv2d(12, 12, kernel_size=5, padding=2, stride=1),
            nn.Sigmoid(),
        )
        self.fc = nn.Linear(12 * (image_size // 4) ** 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).flatten(1))


def dlg_uniform_init_(model: nn.Module, low: float = -0.5, high: float = 0.5) -> nn.Module:
    """DLG's initialisation: every weight and bias uniform in [low, high]; returns ``model``."""
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(low, high)
    return model


__all__ = ["MODELS", "LeNet", "build_lenet", "dlg_uniform_init_"]


def build_lenet(
    num_classes: int = 10, in_channels: int = 3, image_size: int = 32, init: str = "default"
) -> nn.Module:
    """DLG's LeNet; ``init="dlg-uniform"`` applies :func:`dlg_uniform_init_`.

    Weights matter only until the trace's global parameters are loaded into the model.
    """
    if init not in ("default", "dlg-uniform"):
        raise ValueError(f"init {init!r} is not one of 'default', 'dlg-uniform'")
    model = LeNet(num_classes=num_classes, in_channels=in_channels, image_size=image_size)
    return dlg_uniform_init_(model) if init == "dlg-uniform" else model
