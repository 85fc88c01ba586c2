"""Client-level privacy accounting of DP-FedAvg with dp-accounting's RDP accountant.

One round of central DP-FedAvg samples clients once and releases one or two Gaussian queries of
the sampled clients: the sum of clipped updates, and with adaptive clipping the centred count of
unclipped updates. It is accounted as exactly that, one sampling event wrapping the composed
queries (``PoissonSampledDpEvent(q, ComposedDpEvent([GaussianDpEvent(z_update),
GaussianDpEvent(sigma_b / (1/2))]))``), never as separately sampled events.

Sampling decides the neighbouring relation: Poisson at rate q goes with add/remove-one
neighbours, a fixed m of N without replacement with replace-one. Noise multipliers are stored in
add/remove units (noise std over the add/remove sensitivity: C for the update sum, 1/2 for the
centred count); replacing one client moves both queries by twice that, so under fixed sampling
every accounted multiplier is halved.

Rounds with the same mechanism are kept as one run of events, so each epsilon costs one RDP
evaluation however many rounds have passed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from dp_accounting import dp_event
from dp_accounting.rdp import rdp_privacy_accountant as rdp
from fedlab.strategies.dp_sampling import ClientSampler

from fedlab.errors import FedlabError

# dp-accounting's default RDP orders without 1.1-1.5, which its series does not converge for at
# small q (it logs a warning per order and leaves them out anyway).
RDP_ORDERS = (
    tuple(1 + x / 10 for x in range(6, 100))
    + tuple(float(x) for x in range(11, 64))
    + (128.0, 256.0, 512.0, 1024.0)
)
MAX_NOISE_MULTIPLIER = 100.0

#: One round's queries: (update multiplier z_update, count multiplier 2 sigma_b or 0 for none).
Mechanism = tuple[float, float]


def effective_multiplier(update_multiplier: float, count_multiplier: float = 0.0) -> float:
    """The single Gaussian multiplier equivalent to both queries: (z_u^-2 + z_b^-2)^(-1/2)."""
    precision = update_multiplier**-2 + (count_multiplier**-2 if count_multiplier else 0.0)
    return precision**-0.5


def round_event(sampler: ClientSampler, mechanism: Mechanism) -> dp_event.DpEvent:
    """One round as dp-accounting sees it: one client sample wrapping the Gaussian queries."""
    scale = 1.0 if sampler.kind == "poisson" else 0.5  # replace-one doubles each sensitivity
    queries = [dp_event.GaussianDpEvent(m * scale) for m in mechanism if m]
    inner = queries[0] if len(queries) == 1 else dp_event.ComposedDpEvent(queries)
    if sampler.kind == "poisson":
        return dp_event.PoissonSampledDpEvent(sampler.rate, inner)
    return dp_event.SampledWithoutReplacementDpEvent(
        sampler.population, sampler.expected_size, inner
    )


@dataclass
class ClientLevelAccountant:
    """Epsilon at ``delta`` after each round, for the sampling and queries actually run.

    Parameters
    ----------
    sampler : ClientSampler
        Poisson (rate q) or fixed (m of N without replacement).
    delta : float
    """

    sampler: ClientSampler
    delta: float
    runs: list[list] = field(default_factory=list)  # [[(z_update, z_count), rounds], ...]
    _cache: dict[tuple, float] = field(default_factory=dict)

    @property
    def rounds(self) -> int:
        """Rounds accounted so far."""
        return int(sum(count for _, count in self.runs))

    def record(self, update_multiplier: float, count_multiplier: float = 0.0) -> None:
        """Account one round: the update sum at ``update_multiplier`` (noise std over C) and,
        with adaptive clipping, the centred count at ``count_multiplier`` (sigma_b over 1/2)."""
        mechanism = (float(update_multiplier), float(count_multiplier))
        if self.runs and self.runs[-1][0] == mechanism:
            self.runs[-1][1] += 1
        else:
            self.runs.append([mechanism, 1])

    def epsilon(self, *, extra_rounds: int = 0, mechanism: Mechanism | None = None) -> float:
        """Epsilon so far, or after ``extra_rounds`` more rounds of ``mechanism`` (the last
        recorded one by default)."""
        runs = [(m, count) for m, count in self.runs]
        if extra_rounds:
            runs.append((mechanism or self.runs[-1][0], extra_rounds))
        key = tuple(runs)
        if not runs:
            return 0.0
        if key not in self._cache:
            self._cache[key] = _rdp_epsilon(self.sampler, runs, self.delta)
        return self._cache[key]

    def would_exceed(self, target_epsilon: float, mechanism: Mechanism) -> bool:
        """Whether one more round of ``mechanism`` would take epsilon above the target."""
        return self.epsilon(extra_rounds=1, mechanism=mechanism) > target_epsilon

    def pld_epsilon(self) -> float | None:
        """Epsilon from dp-accounting's PLD accountant (tighter than RDP); Poisson sampling only.

        The PLD accountant refuses a sampled composition of queries, so each round is the single
        Gaussian of the same total multiplier (:func:`effective_multiplier`), which is exact for
        Gaussian queries sharing one sample.
        """
        if self.sampler.kind != "poisson" or not self.runs:
            return None
        from dp_accounting.pld import pld_privacy_accountant

        accountant = pld_privacy_accountant.PLDAccountant()
        for mechanism, count in self.runs:
            single = (effective_multiplier(*mechanism), 0.0)
            accountant.compose(round_event(self.sampler, single), int(count))
        return float(accountant.get_epsilon(self.delta))

    def state_dict(self) -> dict[str, object]:
        """The accounted rounds as plain JSON."""
        return {
            "sampling": self.sampler.kind, "rate": self.sampler.rate,
            "population": self.sampler.population, "delta": self.delta,
            "compositions": [{"update-multiplier": m[0], "count-multiplier": m[1],
                              "count": int(count)} for m, count in self.runs],
        }  # fmt: skip


def _rdp_epsilon(sampler: ClientSampler, runs: list[tuple[Mechanism, int]], delta: float) -> float:
    relation = (
        rdp.NeighborRel.ADD_OR_REMOVE_ONE
        if sampler.kind == "poisson"
        else rdp.NeighborRel.REPLACE_ONE
    )
    absl = logging.getLogger("absl")
    previous = absl.level
    absl.setLevel(logging.ERROR)  # dp-accounting logs one warning per non-converging RDP order
    try:
        accountant = rdp.RdpAccountant(RDP_ORDERS, relation)
        for mechanism, count in runs:
            accountant.compose(round_event(sampler, mechanism), int(count))
        return float(accountant.get_epsilon(delta))
    finally:
        absl.setLevel(previous)


def epsilon_after(
    sampler: ClientSampler, noise_multiplier: float, rounds: int, delta: float
) -> float:
    """Client-level epsilon of ``rounds`` rounds of one Gaussian query at ``noise_multiplier``."""
    return _rdp_epsilon(sampler, [((noise_multiplier, 0.0), rounds)], delta)


def noise_for_target(
    sampler: ClientSampler, target_epsilon: float, rounds: int, delta: float, rel_tol: float = 0.005
) -> float:
    """The smallest noise multiplier (within ``rel_tol``) whose epsilon after ``rounds`` is at most
    ``target_epsilon``, by bisection on the accountant.

    Raises
    ------
    FedlabError
        If even z = 100 cannot meet the target (the noise would drown every update).
    """
    if target_epsilon <= 0:
        raise FedlabError(f"target-epsilon must be > 0, got {target_epsilon}")
    high = MAX_NOISE_MULTIPLIER
    best = epsilon_after(sampler, high, rounds, delta)
    if best > target_epsilon:
        raise FedlabError(
            f"target-epsilon {target_epsilon} is unreachable in {rounds} rounds at delta {delta} "
            f"with sample-rate {sampler.rate}: even noise-multiplier {high:g} gives epsilon "
            f"{best:.3g}; raise target-epsilon, lower num-server-rounds or sample-rate"
        )
    low = 0.05
    if epsilon_after(sampler, low, rounds, delta) <= target_epsilon:
        return low
    while high / low > 1 + rel_tol:
        mid = math.sqrt(low * high)
        if epsilon_after(sampler, mid, rounds, delta) <= target_epsilon:
            high = mid
        else:
            low = mid
    return high
