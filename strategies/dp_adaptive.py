"""Adaptive clipping after Andrew, Thakkar, McMahan, Ramaswamy (NeurIPS 2021), Algorithm 1.

Each round the server learns the noisy fraction b of sampled updates that were *not* clipped
(norm <= C) and moves C geometrically towards the gamma-quantile of the update norms:

    C <- C * exp(-eta * (b - gamma))

Too many unclipped updates (b > gamma) shrink C; too few grow it. Each reply contributes its
bit centred, ``unclipped - 1/2`` (as TF Privacy's quantile estimator does), so adding or removing
one client moves the released sum by at most 1/2; the sum gets Gaussian noise of std sigma_b and
the fraction is ``noisy_sum / m + 1/2``. With that sensitivity the count is a Gaussian query of
multiplier ``2 sigma_b``, and lowering the update's own multiplier to

    z_update = (z^-2 - (2 sigma_b)^-2)^(-1/2)

keeps the round, both queries under one sampling, exactly a Gaussian mechanism of multiplier z
(Andrew et al., Theorem 1). The accountant composes the two queries as they are run
(:mod:`fedlab.strategies.dp_accounting`); an uncentred count (sensitivity 1) with this split would
cost far more than z says (about epsilon 10.4 instead of 5.885 at q 0.1, z 1, 50 rounds).

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
        sigma_b, the std of the noise on the centred count of unclipped updates (the paper's
        default is the expected clients per round / 20). 0 releases the exact count (no DP for
        it; only for tests of the update rule).
    """

    clip_norm: float
    target_quantile: float = 0.5
    learning_rate: float = 0.2
    count_stddev: float = 0.0

    #: How far adding or removing one client moves the centred count sum(b_i - 1/2).
    count_sensitivity = 0.5

    def __post_init__(self) -> None:
        if not all(map(math.isfinite, (self.clip_norm, self.learning_rate, self.count_stddev))):
            raise FedlabError(
                f"adaptive clipping needs finite numbers, got clip-norm {self.clip_norm}, "
                f"clip-lr {self.learning_rate}, clipped-count-stddev {self.count_stddev}"
            )
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

    @property
    def count_multiplier(self) -> float:
        """The count query's noise multiplier: sigma_b over its sensitivity 1/2 (add/remove)."""
        return self.count_stddev / self.count_sensitivity

    def released_count(self, unclipped: int, replies: int, rng: np.random.Generator) -> float:
        """The noisy centred count ``sum_i (b_i - 1/2) + N(0, sigma_b^2)`` over the replies."""
        centred = unclipped - replies / 2
        return centred + (rng.normal(0.0, self.count_stddev) if self.count_stddev else 0.0)

    def step(
        self, unclipped: int, replies: int, expected_clients: float, rng: np.random.Generator
    ) -> float:
        """Update C from the number of unclipped updates; return the noisy fraction b.

        Parameters
        ----------
        unclipped : int
            Replies whose update norm was at most the current C.
        replies : int
            Replies counted (each contributes ``b_i - 1/2``).
        expected_clients : float
            The fixed denominator: qN for Poisson sampling, m for fixed sampling.
        rng : numpy Generator
            Draws the count's noise.
        """
        if not 0 <= unclipped <= replies:
            raise FedlabError(f"{unclipped} unclipped of {replies} replies is not a count")
        fraction = self.released_count(unclipped, replies, rng) / expected_clients + 0.5
        self.clip_norm *= math.exp(-self.learning_rate * (fraction - self.target_quantile))
        return fraction
