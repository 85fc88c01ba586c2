"""Where DP randomness comes from: the operating system's entropy, or a named seed on request.

Noise drawn from a seed the server knows protects nothing against that server: it can redraw
the noise and subtract it. So every DP noise generator (local-DP noise, central noise, the
adaptive-clipping count, Opacus' noise and its Poisson batches, the client sample) is seeded from
``os.urandom`` by default, fresh at every draw, and nothing that selects it travels in a message
or is stored.

``dp-seeded-noise=true`` asks for reproducible noise, for experiments only: every draw is then
derived from the run's ``seed`` and a counter the drawing party keeps itself (a client's own
release count, never the round number the server sends), and the run folder and the log carry
:data:`SEEDED_NOISE_WARNING`.

Out of scope (documented in docs/dp.md): NumPy's PCG64 and torch's Mersenne Twister are not
cryptographically secure generators, and floating-point attacks on sampled Gaussians (Mironov
2012) are not mitigated; Opacus' ``secure_mode`` needs torchcsprng, which does not install here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

SEEDED_NOISE_WARNING = (
    "dp-seeded-noise=true: DP noise and sampling are derived from the run's seed, so anyone who "
    "knows the seed (it is in config.json) can recompute and remove them; the run's epsilon does "
    "not hold against them. Use only for reproducible experiments."
)


def entropy_seed(bits: int = 128) -> int:
    """A fresh seed of ``bits`` bits from the operating system's entropy."""
    return int.from_bytes(os.urandom(bits // 8), "big")


@dataclass(frozen=True)
class NoiseSource:
    """Generators for DP randomness.

    Parameters
    ----------
    seeded : bool
        False (the default): every generator is seeded from ``os.urandom``. True: from ``seed``
        and the ``parts`` the caller names (reproducible; see :data:`SEEDED_NOISE_WARNING`).
    seed : int
        Used only when ``seeded``.
    """

    seeded: bool = False
    seed: int = 0

    def numpy(self, *parts: Any) -> np.random.Generator:
        """A NumPy generator for one draw; ``parts`` name the draw when ``seeded``."""
        return np.random.default_rng(self._seed(parts, bits=128))

    def torch(self, *parts: Any) -> Any:
        """A ``torch.Generator`` (CPU) for Opacus' noise and Poisson batches."""
        import torch

        return torch.Generator().manual_seed(self._seed(parts, bits=63))

    def _seed(self, parts: tuple[Any, ...], bits: int) -> int:
        if not self.seeded:
            return entropy_seed(128) >> (128 - bits)
        from fedlab.client import derive_seed

        return derive_seed(self.seed, *parts, "dp-noise")  # 63 bits
