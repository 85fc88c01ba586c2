"""Small image classifiers for the supervised workload, chosen by the run-config key ``model``.

``lenet`` is DLG's victim model, defined with the attacks (``fedlab.attacks.models``) and built here
by its registered name through :data:`fedlab.registry.MODELS`: a workload depends on a model
builder, not on the attack package's code.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from fedlab.errors import FedlabError
from fedlab.registry import MODELS as MODEL_BUILDERS


def cnn(in_channels: int, image_size: int, num_classes: int, width: int = 32) -> nn.Module:
    """Two 3x3 conv blocks with GroupNorm (DP-friendly: no BatchNorm), global pooling, linear."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1), nn.GroupNorm(4, width), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1, stride=2), nn.GroupNorm(4, 2 * width), nn.ReLU(),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.GroupNorm(4, 2 * width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, num_classes),
    )  # fmt: skip


def mlp(in_channels: int, image_size: int, num_classes: int, width: int = 128) -> nn.Module:
    """One hidden layer on flattened pixels."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(in_channels * image_size**2, width), nn.ReLU(),
        nn.Linear(width, num_classes),
    )  # fmt: skip


def lenet(in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    """DLG's sigmoid LeNet, the victim model of the gradient-leakage attacks."""
    build = MODEL_BUILDERS.get("lenet", allow_import=False)
    return build(num_classes=num_classes, in_channels=in_channels, image_size=image_size)


CLASSIFIERS: dict[str, Callable[..., nn.Module]] = {"cnn": cnn, "mlp": mlp, "lenet": lenet}


def build_classifier(name: str, in_channels: int, image_size: int, num_classes: int) -> nn.Module:
    """Build ``name`` from :data:`CLASSIFIERS`."""
    if name not in CLASSIFIERS:
        raise FedlabError(f"model {name!r} is not one of: {', '.join(sorted(CLASSIFIERS))}")
    return CLASSIFIERS[name](in_channels, image_size, num_classes)
