"""Client sampling for DP-FedAvg: Poisson at rate q, or a fixed m of N without replacement.

One independent draw per round over the node list in partition order (the grid the core hands
strategies), so the sampling that is accounted is the sampling that is done. Privacy
amplification by sampling needs the sample to be secret, so under DP the draw comes from a
:class:`~fedlab.strategies.dp_noise.NoiseSource` (OS entropy unless seeded noise was asked for);
without DP it comes from the run's seed, so runs without DP are reproducible.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from fedlab.strategies.dp_noise import NoiseSource

from fedlab.errors import FedlabError

SAMPLINGS = ("poisson", "fixed")


@dataclass(frozen=True)
class ClientSampler:
    """Which clients train in a round.

    Parameters
    ----------
    kind : {"poisson", "fixed"}
        ``poisson``: every client joins independently with probability ``rate`` (the DP-FedAvg
        paper's choice; the round size varies). ``fixed``: exactly ``round(rate * N)`` clients,
        uniformly without replacement.
    rate : float
        q in (0, 1].
    population : int
        N, the number of clients.
    seed : int
        Draws the sample when ``source`` is None (runs without DP).
    source : NoiseSource, optional
        Draws the sample under DP (secret from anyone who knows the seed).
    """

    kind: str
    rate: float
    population: int
    seed: int = 0
    source: NoiseSource | None = None

    def __post_init__(self) -> None:
        if self.kind not in SAMPLINGS:
            raise FedlabError(f"sampling {self.kind!r} is not one of: {', '.join(SAMPLINGS)}")
        if not 0 < self.rate <= 1:
            raise FedlabError(f"sample-rate must lie in (0, 1], got {self.rate}")
        if self.population < 1:
            raise FedlabError(f"the population must have >= 1 client, got {self.population}")
        expected = self.rate * self.population
        if abs(expected - round(expected)) > 1e-6 or round(expected) < 1:
            raise FedlabError(
                f"sample-rate {self.rate} x {self.population} clients = {expected:g} clients per "
                f"round, not a whole number >= 1; choose sample-rate = k/{self.population}"
            )

    @property
    def expected_size(self) -> int:
        """m: the expected (Poisson) or exact (fixed) number of clients per round, qN."""
        return round(self.rate * self.population)

    def sample(self, node_ids: Sequence[int], server_round: int) -> list[int]:
        """The node ids chosen for ``server_round``, in the order of ``node_ids``."""
        if len(node_ids) != self.population:
            raise FedlabError(
                f"{len(node_ids)} nodes are connected but accounting assumes {self.population}; "
                "set num-supernodes to the number of nodes"
            )
        if self.source is None:
            rng = np.random.default_rng([self.seed, server_round])
        else:
            rng = self.source.numpy("client-sample", server_round)
        if self.kind == "poisson":
            chosen = np.flatnonzero(rng.random(self.population) < self.rate)
        else:
            chosen = np.sort(rng.choice(self.population, self.expected_size, replace=False))
        return [node_ids[i] for i in chosen]


class SubsetGrid:
    """A grid that offers only some nodes to the strategy it is passed to.

    Parameters
    ----------
    grid : Grid
        Everything but ``get_node_ids`` is passed through.
    node_ids : iterable of int
    """

    def __init__(self, grid: Any, node_ids: Iterable[int]) -> None:
        self._grid = grid
        self._node_ids = list(node_ids)

    def get_node_ids(self) -> list[int]:
        return list(self._node_ids)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)
