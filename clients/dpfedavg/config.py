"""Run-config keys of the ``dpfedavg`` app, checked before any work starts."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import ClassVar

from fedlab.strategies.dp_accounting import MAX_NOISE_MULTIPLIER, epsilon_after
from fedlab.strategies.dp_adaptive import AdaptiveClipping
from fedlab.strategies.dp_mods import LOCAL_NOISES
from fedlab.strategies.dp_noise import SEEDED_NOISE_WARNING, NoiseSource
from fedlab.strategies.dp_sampling import SAMPLINGS, ClientSampler

from fedlab.errors import FedlabError
from fedlab.key_groups import (
    DataKeys,
    LocalTrainingKeys,
    PopulationKeys,
    RunConfig,
    StrategyKeys,
    TraceKeys,
    WorkloadKeys,
)

DP_MODES = ("none", "central-server", "central-client", "local")


@dataclass
class DPFedAvgConfig(
    PopulationKeys, TraceKeys, LocalTrainingKeys, DataKeys, WorkloadKeys, StrategyKeys, RunConfig
):
    """DP-FedAvg keys on top of the training groups (:mod:`fedlab.key_groups`); no
    ``fraction-train``: the DP wrapper samples clients itself (``sampling``, ``sample-rate``).

    ``dp-mode``: ``central-server`` (server clips, server adds noise), ``central-client``
    (clients clip, server adds noise), ``local`` (clients clip and add noise) or ``none``.
    Clients are sampled by ``sampling`` (``poisson`` at rate ``sample-rate``, or ``fixed``:
    exactly ``sample-rate * num-supernodes`` without replacement), also without DP, so that runs
    with and without DP see the same rounds. ``target-epsilon`` > 0 either derives the noise
    multiplier (``noise-multiplier = 0``) or stops the run before the round that would exceed it.
    ``dp-sgd`` adds Opacus' sample-level DP-SGD on each client, accounted separately.
    Under DP every noise draw and the client sample come from the operating system's entropy;
    ``dp-seeded-noise=true`` derives them from ``seed`` instead (reproducible, not private
    against anyone who knows the seed; the run folder says so).
    """

    dp_mode: str = "central-server"
    clip_norm: float = 1.0
    noise_multiplier: float = 1.0
    target_epsilon: float = 0.0
    delta: float = 1e-5
    report_pld: bool = False
    sampling: str = "poisson"
    sample_rate: float = 0.1
    adaptive_clipping: bool = False
    target_quantile: float = 0.5
    clip_lr: float = 0.2
    clipped_count_stddev: float = 0.0
    local_noise: str = "gaussian"
    local_epsilon: float = 0.0
    local_delta: float = 1e-5
    dp_accounted: str = ""
    dp_sgd: bool = False
    dp_sgd_noise_multiplier: float = 1.0
    dp_sgd_max_grad_norm: float = 1.0
    dp_sgd_delta: float = 1e-5
    dp_seeded_noise: bool = False

    KEY_HELP: ClassVar[dict[str, str]] = {
        "dp_mode": "none, central-server, central-client (clients clip) or local (clients noise)",
        "clip_norm": "C: L2 bound of a client update (L1 for Laplace local noise); C0 if adaptive",
        "noise_multiplier": "z of central DP (noise std z C / m); 0 with target-epsilon derives it",
        "target_epsilon": "client-level budget: derive z, or stop before the round exceeding it",
        "delta": "delta of the client-level epsilon",
        "report_pld": "also report dp-accounting's PLD epsilon each round (Poisson only)",
        "sampling": "client sampling: poisson (rate q) or fixed (exactly qN, no replacement)",
        "sample_rate": "q, the client sampling rate; q x num-supernodes must be whole",
        "adaptive_clipping": "adapt C to a quantile of update norms (Andrew et al. 2021)",
        "target_quantile": "gamma: share of updates that should stay unclipped",
        "clip_lr": "eta: step of the geometric clip-norm update",
        "clipped_count_stddev": "sigma_b of the noisy centred unclipped count; 0: max(m/20, z)",
        "local_noise": "local DP noise: gaussian or laplace",
        "local_epsilon": "local DP epsilon per release (per reply)",
        "local_delta": "local DP delta per release (Gaussian)",
        "dp_accounted": "central or local: which guarantee to report when both noises are on",
        "dp_sgd": "Opacus per-sample DP-SGD inside each client's training",
        "dp_sgd_noise_multiplier": "sigma of DP-SGD",
        "dp_sgd_max_grad_norm": "per-sample gradient clip norm of DP-SGD",
        "dp_sgd_delta": "delta of the sample-level epsilon",
        "dp_seeded_noise": "derive DP noise from seed (reproducible, NOT private vs the seed)",
    }

    @property
    def central(self) -> bool:
        """Whether the server adds noise."""
        return self.dp_mode.startswith("central")

    @property
    def local(self) -> bool:
        """Whether clients add noise to their updates."""
        return self.dp_mode == "local" or (self.central and self.local_epsilon > 0)

    @property
    def private(self) -> bool:
        """Whether any DP mechanism runs (central, local or DP-SGD)."""
        return self.dp_mode != "none" or self.dp_sgd

    def noise_source(self) -> NoiseSource:
        """Where DP noise comes from: OS entropy, or the seed with ``dp-seeded-noise``."""
        return NoiseSource(seeded=self.dp_seeded_noise, seed=self.seed)

    def sampler(self, population: int | None = None) -> ClientSampler:
        """The client sampler for ``population`` clients (``num-supernodes`` by default); under
        DP it draws from :meth:`noise_source`, so the sample stays secret."""
        source = self.noise_source() if self.private else None
        return ClientSampler(self.sampling, self.sample_rate,
                             population or self.num_clients, self.seed, source)  # fmt: skip

    @property
    def population_known(self) -> bool:
        """Whether N is fixed by the config; ``num-supernodes=0`` (``flwr run``) leaves it to
        the federation, and :func:`fedlab.clients.dpfedavg.app.build_dp_strategy` validates again
        with the number of connected nodes."""
        return self.num_clients > 0

    def rounds_schedule(self) -> str | None:
        if self.central and self.target_epsilon and self.noise_multiplier == 0:
            return (
                "the noise multiplier was derived from target-epsilon for the planned rounds; "
                "more rounds at that noise would exceed target-epsilon"
            )
        return None

    def warnings(self) -> list[str]:
        return [SEEDED_NOISE_WARNING] if self.private and self.dp_seeded_noise else []

    def count_stddev(self, noise_multiplier: float) -> float:
        """sigma_b of adaptive clipping: as given, or max(m/20, z).

        Andrew et al. use m/20 (m: expected clients per round); with few clients per round that
        leaves nothing for the update once ``sigma_b <= z/2``, so it is raised to z, where the
        count takes a quarter of the budget (the update's z grows by 15 %).
        """
        return self.clipped_count_stddev or max(self.sampler().expected_size / 20,
                                                noise_multiplier)  # fmt: skip

    def validate(self) -> None:
        super().validate()
        if self.dp_mode not in DP_MODES:
            raise FedlabError(f"dp-mode {self.dp_mode!r} is not one of: {', '.join(DP_MODES)}")
        if self.sampling not in SAMPLINGS:
            raise FedlabError(f"sampling {self.sampling!r} is not one of: poisson, fixed")
        if not 0 < self.sample_rate <= 1:
            raise FedlabError(f"sample-rate must lie in (0, 1], got {self.sample_rate}")
        if self.private and self.min_replies > 0:
            raise FedlabError(
                f"min-replies={self.min_replies} under DP: stopping on a reply count would publish "
                "that count (through the run's length), which no accountant composes; set "
                "min-replies=0 (a missing reply counts as a zero update)"
            )
        if not self.population_known:
            return  # the checks that need N run again once the server knows the node count
        self.sampler()  # q*N whole
        if self.dp_mode != "none" and self.clip_norm <= 0:
            raise FedlabError(f"clip-norm must be > 0, got {self.clip_norm}; e.g. clip-norm=1.0")
        if not 0 < self.delta < 1:
            raise FedlabError(f"delta must lie in (0, 1), got {self.delta}; e.g. delta=1e-5")
        if self.central:
            self._validate_central()
        elif self.target_epsilon:
            raise FedlabError(
                f"target-epsilon={self.target_epsilon} needs central DP (dp-mode=central-server "
                "or central-client); local DP is set per release with local-epsilon"
            )
        if self.local:
            self._validate_local()
        if self.dp_sgd:
            self._validate_dp_sgd()

    def _validate_central(self) -> None:
        if self.noise_multiplier < 0 or (self.noise_multiplier == 0 and not self.target_epsilon):
            raise FedlabError(
                f"noise-multiplier must be > 0 under central DP, got {self.noise_multiplier}; "
                "e.g. noise-multiplier=1.0, or noise-multiplier=0 with target-epsilon to derive it"
            )
        if self.target_epsilon < 0:
            raise FedlabError(
                f"target-epsilon must be > 0 (or 0 for none), got {self.target_epsilon}"
            )
        if self.delta >= 1 / self.num_clients:
            message = (
                f"delta={self.delta} >= 1/N = {1 / self.num_clients:.3g}: a "
                "mechanism that reveals one client's update outright meets this delta; use "
                f"delta < {1 / self.num_clients:.3g} (e.g. 1/N^1.1)"
            )
            warnings.warn(message, UserWarning, stacklevel=2)
        if self.adaptive_clipping:
            if not 0 < self.target_quantile < 1:
                raise FedlabError(f"target-quantile must lie in (0, 1), got {self.target_quantile}")
            if self.clip_lr <= 0:
                raise FedlabError(f"clip-lr must be > 0, got {self.clip_lr}; e.g. clip-lr=0.2")
            if self.noise_multiplier > 0:
                stddev = self.count_stddev(self.noise_multiplier)
                AdaptiveClipping(self.clip_norm, self.target_quantile, self.clip_lr,
                                 stddev).update_noise_multiplier(self.noise_multiplier)  # fmt: skip
        if self.target_epsilon:
            self._check_target_reachable()

    def _check_target_reachable(self) -> None:
        sampler = self.sampler()
        if self.noise_multiplier > 0:
            first = epsilon_after(sampler, self.noise_multiplier, 1, self.delta)
            if first > self.target_epsilon:
                raise FedlabError(
                    f"target-epsilon {self.target_epsilon} is unreachable: one round at "
                    f"noise-multiplier {self.noise_multiplier} already spends epsilon {first:.3g}; "
                    "raise noise-multiplier or target-epsilon, or set noise-multiplier=0 to "
                    "derive it"
                )
            return
        best = epsilon_after(sampler, MAX_NOISE_MULTIPLIER, self.num_server_rounds, self.delta)
        if best > self.target_epsilon:
            raise FedlabError(
                f"target-epsilon {self.target_epsilon} is unreachable in {self.num_server_rounds} "
                f"rounds: even noise-multiplier {MAX_NOISE_MULTIPLIER:g} gives epsilon "
                f"{best:.3g}; raise target-epsilon or lower num-server-rounds or sample-rate"
            )

    def _validate_local(self) -> None:
        if self.local_noise not in LOCAL_NOISES:
            raise FedlabError(f"local-noise {self.local_noise!r} is not one of: gaussian, laplace")
        if self.local_epsilon <= 0:
            raise FedlabError(
                f"local-epsilon must be > 0 with dp-mode=local, got {self.local_epsilon}; "
                "e.g. local-epsilon=8 (per release)"
            )
        if self.local_noise == "gaussian" and not 0 < self.local_delta < 1:
            raise FedlabError(f"local-delta must lie in (0, 1), got {self.local_delta}")
        if self.central and self.dp_accounted not in ("central", "local"):
            raise FedlabError(
                f"dp-mode={self.dp_mode} adds central noise and local-epsilon="
                f"{self.local_epsilon} adds local noise too; say which guarantee the run reports "
                "with dp-accounted=central or dp-accounted=local (or set local-epsilon=0)"
            )

    def _validate_dp_sgd(self) -> None:
        if self.dp_sgd_noise_multiplier <= 0 or self.dp_sgd_max_grad_norm <= 0:
            raise FedlabError(
                f"dp-sgd-noise-multiplier ({self.dp_sgd_noise_multiplier}) and "
                f"dp-sgd-max-grad-norm ({self.dp_sgd_max_grad_norm}) must be > 0 with dp-sgd=true"
            )
        if not 0 < self.dp_sgd_delta < 1:
            raise FedlabError(f"dp-sgd-delta must lie in (0, 1), got {self.dp_sgd_delta}")
