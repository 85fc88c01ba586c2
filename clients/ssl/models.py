"""Encoders of several architectures and widths, with the projector every client shares in size.

A federation may mix encoders freely: only the projector's output size ``D`` (``proj-dim``) is
common to all clients, because that is where FedFoA's D x D relation matrices live. Encoders are
named ``arch`` or ``arch:width`` (``cnn``, ``cnn:48``, ``resnet:16``); see :data:`ENCODERS`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn

from fedlab.errors import FedlabError


def _conv(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def cnn(in_channels: int, width: int = 32) -> tuple[nn.Module, int]:
    """Four 3x3 conv layers (two with stride 2), BatchNorm, global average pooling."""
    w = width
    layers = [
        *_conv(in_channels, w),
        *_conv(w, 2 * w, 2),
        *_conv(2 * w, 2 * w),
        *_conv(2 * w, 4 * w, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    ]
    return nn.Sequential(*layers), 4 * w


class _Block(nn.Module):
    """A basic residual block (two 3x3 convs), with a strided 1x1 shortcut when shapes change."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv(cin, cout, stride),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.skip = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


def resnet(in_channels: int, width: int = 16) -> tuple[nn.Module, int]:
    """A stem conv and three residual blocks (widths w, 2w, 4w), global average pooling."""
    w = width
    net = nn.Sequential(
        *_conv(in_channels, w),
        _Block(w, w, 1),
        _Block(w, 2 * w, 2),
        _Block(2 * w, 4 * w, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    return net, 4 * w


def mlp(in_channels: int, width: int = 256, image_size: int = 32) -> tuple[nn.Module, int]:
    """Two hidden layers on flattened pixels: the weakest encoder, for very mixed federations."""
    net = nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_channels * image_size**2, width),
        nn.ReLU(),
        nn.Linear(width, width),
        nn.ReLU(),
    )
    return net, width


ENCODERS: dict[str, tuple[Callable[..., tuple[nn.Module, int]], int]] = {
    "cnn": (cnn, 32),
    "resnet": (resnet, 16),
    "mlp": (mlp, 256),
}


def feature_dim(arch: str, width: int) -> int:
    """The output size of encoder ``arch:width`` (what the probe and an encoder relation see)."""
    return width if arch == "mlp" else 4 * width


def parse_encoders(spec: str | Sequence[str]) -> list[tuple[str, int]]:
    """``("cnn", "resnet:24")`` (or ``"cnn,resnet:24"``) -> ``[("cnn", 32), ("resnet", 24)]``
    (default widths filled in)."""
    items = spec.split(",") if isinstance(spec, str) else spec
    out = []
    for item in (s.strip() for s in items):
        arch, _, width = item.partition(":")
        if arch not in ENCODERS:
            raise FedlabError(
                f"encoder {item!r} is not one of: {', '.join(ENCODERS)} (optionally arch:width, "
                'e.g. encoders="cnn,resnet:24")'
            )
        try:
            w = int(width) if width else ENCODERS[arch][1]
        except ValueError:
            raise FedlabError(f"encoder {item!r}: the width after ':' must be an integer") from None
        if w < 1:
            raise FedlabError(f"encoder {item!r}: width must be >= 1")
        out.append((arch, w))
    return out


def projector(feature_dim: int, hidden: int, out_dim: int) -> nn.Module:
    """SimCLR's two-layer MLP head; its output size is the shared relation dimension D."""
    return nn.Sequential(
        nn.Linear(feature_dim, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(),
        nn.Linear(hidden, out_dim),
    )


class SSLModel(nn.Module):
    """Encoder + projector (+ predictor for BYOL/SimSiam, + EMA target branch for BYOL).

    Parameters
    ----------
    encoder : str
        ``arch`` or ``arch:width``.
    method : {"simclr", "byol", "simsiam", "spectral"}
    in_channels, image_size : int
    proj_dim : int
        Output size D of the projector (shared across the federation).
    hidden : int
        Hidden size of projector and predictor.
    """

    def __init__(
        self,
        encoder: str,
        method: str,
        in_channels: int,
        image_size: int,
        proj_dim: int,
        hidden: int = 256,
    ) -> None:
        super().__init__()
        ((arch, width),) = parse_encoders(encoder)
        build = ENCODERS[arch][0]
        kwargs = {"image_size": image_size} if arch == "mlp" else {}
        self.encoder, self.feature_dim = build(in_channels, width, **kwargs)
        self.projector = projector(self.feature_dim, hidden, proj_dim)
        self.method = method
        self.predictor: nn.Module = nn.Identity()
        if method in ("byol", "simsiam"):
            self.predictor = projector(proj_dim, hidden, proj_dim)
        if method == "byol":
            self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
            self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder features (what the linear probe sees)."""
        return self.encoder(x)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Projector outputs z (N, D)."""
        return self.projector(self.encoder(x))

    @torch.no_grad()
    def target(self, x: torch.Tensor) -> torch.Tensor:
        """BYOL's target projection."""
        return self.target_projector(self.target_encoder(x))

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        """BYOL's exponential moving average of the online branch."""
        pairs = [(self.target_encoder, self.encoder), (self.target_projector, self.projector)]
        for target, online in pairs:
            for t, o in zip(target.parameters(), online.parameters(), strict=True):
                t.mul_(momentum).add_(o.detach(), alpha=1 - momentum)
            for t, o in zip(target.buffers(), online.buffers(), strict=True):
                t.copy_(o)
