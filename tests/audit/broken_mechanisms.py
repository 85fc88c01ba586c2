"""Test doubles: the ``dpfedavg`` app with a deliberately broken local DP mechanism.

The broken mechanisms report exactly what the real one reports (noise std, epsilon), so the
app's accountant is fooled; only what is added differs. ``scale`` multiplies every noise draw of
the local DP mod: 0 is "noise computed but not added", 0.5 is "noise std halved". Draws are
seeded (from the run's seed), so the tests are reproducible.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from fedlab.clients.dpfedavg.app import dpfedavg
from fedlab.strategies.dp_mods import LocalDpClipNoiseMod
from fedlab.strategies.dp_noise import NoiseSource

from fedlab.appspec import AppSpec


class _ScaledDraws:
    """A NumPy generator whose ``normal``/``laplace`` draws are computed, then scaled."""

    def __init__(self, rng: np.random.Generator, scale: float) -> None:
        self.rng, self.scale = rng, scale

    def normal(self, loc: float, std: float, size: Any) -> np.ndarray:
        return loc + self.scale * (self.rng.normal(0.0, std, size))

    def laplace(self, loc: float, b: float, size: Any) -> np.ndarray:
        return loc + self.scale * (self.rng.laplace(0.0, b, size))


@dataclasses.dataclass(frozen=True)
class ScaledNoiseSource(NoiseSource):
    """A noise source whose draws are multiplied by ``scale`` (the bug under test)."""

    scale: float = 1.0

    def numpy(self, *parts: Any) -> Any:
        return _ScaledDraws(super().numpy(*parts), self.scale)


def broken_app(scale: float) -> AppSpec:
    """``dpfedavg`` whose local DP mod adds ``scale`` times the noise it reports."""

    def mods(config: Any) -> list:
        return [
            LocalDpClipNoiseMod(
                clip_norm=config.clip_norm,
                epsilon=config.local_epsilon,
                delta=config.local_delta,
                noise=config.local_noise,
                source=ScaledNoiseSource(seeded=True, seed=config.seed, scale=scale),
            )
        ]

    return dataclasses.replace(dpfedavg, name=f"dpfedavg-noise-x{scale:g}", client_mods=mods)
