"""Adaptive clipping after Andrew, Thakkar, McMahan, Ramaswamy (NeurIPS 2021), Algorithm 1.

Each round the server learns the noisy fraction b of sampled updates that were *not* clipped
(norm <= C) and moves C geometrically towards the gamma-quantile of the update norms:

    C <- C * exp(-eta * (b - gamma))

Too many unclipped updates (b > gamma) shrink C; too few grow it. The count is released with
Gaussian noise of std sigma_b, so the update's own noise multiplier is lowered to keep the
round's total privacy cost at z (Andrew et al., Theorem 1):

    z_update = (z^-2 - (2 sigma_b)^-2)^(-1/2)

(Flower 1.42's adaptive wrapper counts *clipped* updates with this same minus sign, so its C
runs the wrong way; this module is tested to converge from both sides.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedlab.errors import FedlabError


@dataclass
class AdaptiveClipping:
    """The clip norm's state and update rule.

    Parameters
    ----------
    clip_norm : float
        C, the current clip norm (starts at C0).
    target_quantile : float
        gamma in (0, 1): the fraction of updates that should stay unclipped.
    learning_rate : float
        eta > 0 (the paper uses 0.2).
    count_stddev : float
        sigma_b, the std of the noise on the count of unclipped updates (the paper's default is
        the expected clients per round / 20). 0 releases the exact count (no DP for it).
    """

    clip_norm: float
    target_quantile: float = 0.5
    learning_rate: float = 0.2
    count_stddev: float = 0.0

    def __post_init__(self) -> None:
        if self.clip_norm <= 0:
            raise FedlabError(f"clip-norm must be > 0, got {self.clip_norm}")
        if not 0 < self.target_quantile < 1:
            raise FedlabError(f"target-quantile must lie in (0, 1), got {self.target_quantile}")
        if self.learning_rate <= 0:
            raise FedlabError(f"clip-lr must be > 0, got {self.learning_rate}")
        if self.count_stddev < 0:
            raise FedlabError(f"clipped-count-stddev must be >= 0, got {self.count_stddev}")

    def update_noise_multiplier(self, noise_multiplier: float) -> float:
        """The noise multiplier left for the update once the count query has taken its share."""
        if self.count_stddev == 0:
            return noise_multiplier
        rest = noise_multiplier**-2 - (2 * self.count_stddev) ** -2
        if rest <= 0:
            raise FedlabError(
                f"clipped-count-stddev {self.count_stddev} is too small for noise-multiplier "
                f"{noise_multiplier}: the count alone would spend the budget; use "
                f"clipped-count-stddev > {noise_multiplier / 2:g} (Andrew et al. use m/20)"
            )
        return rest**-0.5

    def step(self, unclipped: int, expected_clients: float, rng: np.random.Generator) -> float:
        """Update C from the number of unclipped updates; return the noisy fraction b.

        Parameters
        ----------
        unclipped : int
            Sampled updates whose norm was at most the current C.
        expected_clients : float
            The fixed denominator: qN for Poisson sampling, m for fixed sampling.
        rng : numpy Generator
            Draws the count's noise.
        """
        noisy = unclipped + (rng.normal(0.0, self.count_stddev) if self.count_stddev else 0.0)
        fraction = noisy / expected_clients
        self.clip_norm *= math.exp(-self.learning_rate * (fraction - self.target_quantile))
        return fraction
