"""Client-level privacy accounting of DP-FedAvg with Flower's ``RdpAccountant`` (dp-accounting).

One round of central DP-FedAvg is a sampled Gaussian mechanism over clients: Poisson sampling at
rate q (add/remove-one neighbours) or a fixed m of N without replacement (replace-one
neighbours). Replacing one client moves the sum of clipped updates by up to 2C, so under
replace-one the accounted noise multiplier is z/2 (dp-accounting expects noise std over the
sensitivity); Poisson sampling with add/remove-one moves it by C and accounts z itself.

Rounds with the same noise multiplier are kept as one run of events, so each epsilon costs one
RDP evaluation however many rounds have passed (Flower's accountant replays events one by one).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from flwr.serverapp import (
    GaussianPrivacyEvent,
    NeighboringRelation,
    PrivacyConfig,
    RdpAccountant,
    SamplingMethod,
)

from fedlab.errors import FedlabError
from strategies.dp_sampling import ClientSampler

# dp-accounting's default RDP orders without 1.1-1.5, which its series does not converge for at
# small q (it logs a warning per order and leaves them out anyway).
RDP_ORDERS = (
    tuple(1 + x / 10 for x in range(6, 100))
    + tuple(float(x) for x in range(11, 64))
    + (128.0, 256.0, 512.0, 1024.0)
)
MAX_NOISE_MULTIPLIER = 100.0


@dataclass
class ClientLevelAccountant:
    """Epsilon at ``delta`` after each round, for the sampling that is actually done.

    Parameters
    ----------
    sampler : ClientSampler
        Poisson (rate q) or fixed (m of N without replacement).
    delta : float
    """

    sampler: ClientSampler
    delta: float
    runs: list[list[float]] = field(default_factory=list)  # [[noise multiplier, rounds], ...]
    _cache: dict[tuple[tuple[float, float], ...], float] = field(default_factory=dict)

    @property
    def rounds(self) -> int:
        """Rounds accounted so far."""
        return int(sum(count for _, count in self.runs))

    def record(self, noise_multiplier: float) -> None:
        """Account one round at ``noise_multiplier`` (z: noise std over the clip norm C)."""
        if self.runs and self.runs[-1][0] == noise_multiplier:
            self.runs[-1][1] += 1
        else:
            self.runs.append([noise_multiplier, 1])

    def epsilon(self, *, extra_rounds: int = 0, noise_multiplier: float | None = None) -> float:
        """Epsilon so far, or after ``extra_rounds`` more rounds at ``noise_multiplier``."""
        runs = [tuple(r) for r in self.runs]
        if extra_rounds:
            z = noise_multiplier if noise_multiplier is not None else self.runs[-1][0]
            runs.append((z, float(extra_rounds)))
        key = tuple(runs)
        if not runs:
            return 0.0
        if key not in self._cache:
            self._cache[key] = _rdp_epsilon(self.sampler, runs, self.delta)
        return self._cache[key]

    def would_exceed(self, target_epsilon: float, noise_multiplier: float) -> bool:
        """Whether one more round at ``noise_multiplier`` would take epsilon above the target."""
        return self.epsilon(extra_rounds=1, noise_multiplier=noise_multiplier) > target_epsilon

    def pld_epsilon(self) -> float | None:
        """Epsilon from dp-accounting's PLD accountant (tighter than RDP); Poisson sampling only."""
        if self.sampler.kind != "poisson" or not self.runs:
            return None
        from dp_accounting import dp_event
        from dp_accounting.pld import pld_privacy_accountant

        accountant = pld_privacy_accountant.PLDAccountant()
        for z, count in self.runs:
            event = dp_event.PoissonSampledDpEvent(
                self.sampler.rate, dp_event.GaussianDpEvent(accounted_multiplier(self.sampler, z))
            )
            accountant.compose(event, int(count))
        return float(accountant.get_epsilon(self.delta))

    def state_dict(self) -> dict[str, object]:
        """Flower's JSON-serialisable accountant state for the rounds so far."""
        return _flower_accountant(self.sampler, [tuple(r) for r in self.runs], self.delta)[
            0
        ].state_dict()


def accounted_multiplier(sampler: ClientSampler, noise_multiplier: float) -> float:
    """Noise std over the sensitivity: z for Poisson (add/remove), z/2 for fixed (replace-one)."""
    return noise_multiplier if sampler.kind == "poisson" else noise_multiplier / 2


def _flower_accountant(
    sampler: ClientSampler, runs: list[tuple[float, float]], delta: float
) -> tuple[RdpAccountant, list[GaussianPrivacyEvent]]:
    if sampler.kind == "poisson":
        method, relation = SamplingMethod.POISSON, NeighboringRelation.ADD_OR_REMOVE_ONE
    else:
        method, relation = SamplingMethod.WITHOUT_REPLACEMENT, NeighboringRelation.REPLACE_ONE
    accountant = RdpAccountant(
        PrivacyConfig(delta, sampler.population, relation, method), orders=RDP_ORDERS
    )
    events = []
    for z, count in runs:
        event = GaussianPrivacyEvent(
            accounted_multiplier(sampler, z), sampler.expected_size, sampler.population
        )
        accountant.compose(event, int(count))
        events.append(event)
    return accountant, events


def _rdp_epsilon(sampler: ClientSampler, runs: list[tuple[float, float]], delta: float) -> float:
    absl = logging.getLogger("absl")
    previous = absl.level
    absl.setLevel(logging.ERROR)  # dp-accounting logs one warning per non-converging RDP order
    try:
        accountant, _ = _flower_accountant(sampler, runs, delta)
        return accountant.get_epsilon(delta)
    finally:
        absl.setLevel(previous)


def epsilon_after(
    sampler: ClientSampler, noise_multiplier: float, rounds: int, delta: float
) -> float:
    """Client-level epsilon of ``rounds`` rounds at ``noise_multiplier``."""
    return _rdp_epsilon(sampler, [(noise_multiplier, float(rounds))], delta)


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
