"""Central DP around any strategy: clip each client update to C, add N(0, (z C / m)^2).

Two placements of the clipping, one noise (the server's):

* :class:`CentralDPServerSideClipping`: the server clips the updates it receives.
* :class:`CentralDPClientSideClipping`: clients clip (:func:`fedlab.strategies.dp_mods.
  central_client_clipping_mod`) and the server checks the bound; the server still adds the
  noise, so this is *central* DP, not local DP.

The aggregate is the fixed-denominator estimator of DP-FedAvg (McMahan et al. 2018):
``sum_i clip(update_i) / m + N(0, (z C / m)^2)`` with ``m = qN`` the expected (Poisson) or exact
(fixed) number of sampled clients, also when fewer reply. Each missing reply then counts as a
zero update: the guarantee is unchanged (one client still moves the sum by at most C) but the
step shrinks by replies/m, which is logged. To work around *any* inner strategy, each reply is
rewritten to ``global + clip(update_i) * r/m + noise`` with the same noise vector and weight 1:
a uniform mean over the r replies is then exactly the estimator above, and whatever the inner
strategy does next (FedAvgM momentum, FedAdam) is post-processing. The guarantee needs the inner
aggregation to be that uniform mean, so only an allowlist of exact classes is wrapped (in flwr
1.42 every strategy subclasses FedAvg, median, Krum, Bulyan and QFedAvg included, so
``isinstance`` would let them through); a user's strategy declares itself a mean with
``dp_mean_aggregation = True`` on its own class (a subclass inherits no such declaration: it
may aggregate differently, so it declares again).

A reply whose arrays hold NaN or Inf counts as failed (a zero update): clipping cannot bound it.
The clients' own training metrics are not aggregated into the round's metrics, integer buffers
keep the server's values, and the run folder releases only :data:`CENTRAL_RELEASE_KEYS`
(:meth:`CentralDP.release_policy`): exact counts, client statistics and timings are
server-private (:mod:`fedlab.release`), so the release is what the accountant composes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

from fedlab.strategies.dp_accounting import ClientLevelAccountant
from fedlab.strategies.dp_adaptive import AdaptiveClipping
from fedlab.strategies.dp_noise import NoiseSource
from fedlab.strategies.dp_sampling import ClientSampler
from fedlab.strategies.dp_updates import (
    Update,
    apply_update,
    clip,
    norm,
    update_of,
    with_sent_non_float,
)
from fedlab.strategies.dp_wrapper import (
    CENTRAL_RELEASE_KEYS,
    LOCAL_RELEASE_KEYS,
    ClientSampling,
    client_reports,
    keep_only_dp_metrics,
    read_dp,
    reply_metrics,
)
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import (
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedProx,
    FedYogi,
    Strategy,
)

from fedlab.errors import FedlabError, RunStopped
from fedlab.release import ReleasePolicy, private_log
from fedlab.server import is_finite_reply

log = logging.getLogger("fedlab")

CLIP_TOLERANCE = 1e-4  # relative slack on client-side clipping (float32 round-off)
#: Exact classes whose aggregate is the (weighted) mean of the replies' arrays, then only
#: post-processing; with weight 1 per reply that mean has sensitivity C/m per client.
MEAN_AGGREGATORS = (FedAvg, FedAvgM, FedProx, FedAdam, FedYogi, FedAdagrad)


def is_mean_aggregator(strategy: Strategy) -> bool:
    """Whether central DP may wrap ``strategy``: an allowlisted class exactly, or a user's
    strategy whose own class (not a base class) declares ``dp_mean_aggregation = True``."""
    cls = type(strategy)
    return cls in MEAN_AGGREGATORS or vars(cls).get("dp_mean_aggregation") is True


class CentralDP(ClientSampling):
    """Central DP-FedAvg around ``inner``; use one of the two subclasses.

    Parameters
    ----------
    inner : Strategy
        Averages the rewritten replies uniformly: FedAvg, FedAvgM, FedProx, FedAdam, FedYogi or
        FedAdagrad exactly, or a strategy declaring ``dp_mean_aggregation = True``.
    sampler : ClientSampler
    clip_norm : float
        C > 0 (C0 when ``adaptive`` is given).
    noise_multiplier : float
        z > 0: the total per-round noise multiplier that is accounted.
    delta : float
        Reported epsilon is at this delta.
    target_epsilon : float, optional
        Stop cleanly (:class:`~fedlab.errors.RunStopped`) before a round that would exceed it.
    adaptive : AdaptiveClipping, optional
        Adapt C towards a quantile of the update norms (Andrew et al. 2021).
    noise : NoiseSource
        Draws the update's and the count's noise: OS entropy by default
        (fedlab.strategies.dp_noise).
    report_pld : bool
        Also report dp-accounting's PLD epsilon each round (Poisson sampling; about a second
        per round more).
    reply_view : callable, optional
        ``RecordDict -> RecordDict``: the form of a reply that is clipped and noised, e.g.
        ``fedlab.strategies.fedfoa.rebuild_reply`` (relation matrices rebuilt from their factors).
    """

    clipping = ""

    def __init__(
        self,
        inner: Strategy,
        sampler: ClientSampler,
        *,
        clip_norm: float,
        noise_multiplier: float,
        delta: float = 1e-5,
        target_epsilon: float | None = None,
        adaptive: AdaptiveClipping | None = None,
        noise: NoiseSource | None = None,
        reply_view: Callable[[RecordDict], RecordDict] | None = None,
        report_pld: bool = False,
    ) -> None:
        super().__init__(inner, sampler)
        self.reply_view = reply_view
        self.report_pld = report_pld
        if not is_mean_aggregator(inner):
            raise FedlabError(
                f"{type(inner).__name__} is not known to aggregate by a mean of the replies, so "
                "one client could move its aggregate by more than C/m and the noise z*C/m would "
                "not cover it; use fedavg, fedavgm, fedprox, fedadam, fedyogi or fedadagrad under "
                "central DP (a strategy of your own must declare dp_mean_aggregation = True in "
                "its own class body; a subclass does not inherit it)"
            )
        for name, value in (
            ("clip-norm", clip_norm),
            ("noise-multiplier", noise_multiplier),
            ("delta", delta),
            ("target-epsilon", target_epsilon or 0.0),
        ):
            if not math.isfinite(value):
                raise FedlabError(f"{name} must be a finite number, got {value}")
        if clip_norm <= 0:
            raise FedlabError(f"clip-norm must be > 0, got {clip_norm}; e.g. clip-norm=1.0")
        if noise_multiplier <= 0:
            raise FedlabError(
                f"noise-multiplier must be > 0 under central DP, got {noise_multiplier}; "
                "e.g. noise-multiplier=1.0, or set target-epsilon to derive it"
            )
        self.noise_multiplier = noise_multiplier
        self.adaptive = adaptive
        self._clip_norm = clip_norm
        if adaptive is not None:
            adaptive.update_noise_multiplier(noise_multiplier)  # fail early if sigma_b too small
        self.accountant = ClientLevelAccountant(sampler, delta)
        self.target_epsilon = target_epsilon
        self.noise = noise or NoiseSource()

    def release_policy(self) -> ReleasePolicy:
        """Central DP releases the noised model, the accountant's figures, public parameters,
        what is derived from them and (adaptive clipping) the accounted noisy count; with local
        noise too, the local mechanism's public figures. Nothing else."""
        return ReleasePolicy("central", {**LOCAL_RELEASE_KEYS, **CENTRAL_RELEASE_KEYS})

    def checkpoint_state(self) -> dict[str, Any]:
        """The accountant's composition so far and the adaptive clip norm, besides the base's."""
        state = super().checkpoint_state()
        state["accountant-runs"] = [[list(m), count] for m, count in self.accountant.runs]
        state["clip-norm"] = float(self.clip_norm)
        return state

    def restore_state(self, state: dict[str, Any]) -> None:
        super().restore_state(state)
        self.accountant.runs = [[(float(m[0]), float(m[1])), int(count)]
                                for m, count in state["accountant-runs"]]  # fmt: skip
        self.accountant._cache.clear()
        if self.adaptive is not None:
            self.adaptive.clip_norm = float(state["clip-norm"])

    @property
    def clip_norm(self) -> float:
        """The current C."""
        return self.adaptive.clip_norm if self.adaptive else self._clip_norm

    @property
    def update_noise_multiplier(self) -> float:
        """z for the update: z itself, or less when adaptive clipping's count takes a share."""
        return self.adaptive.update_noise_multiplier(self.noise_multiplier) if self.adaptive \
            else self.noise_multiplier  # fmt: skip

    @property
    def mechanism(self) -> tuple[float, float]:
        """The round's queries as accounted: (z_update, count multiplier or 0)."""
        count = self.adaptive.count_multiplier if self.adaptive else 0.0
        return self.update_noise_multiplier, count

    def noise_std(self) -> float:
        """Std of the noise added to the aggregate: z_update * C / m."""
        return self.update_noise_multiplier * self.clip_norm / self.sampler.expected_size

    def summary(self) -> None:
        log.info("Central DP, %s-side clipping: C=%g, z=%g, noise std %.4g, delta %g%s",
                 self.clipping, self.clip_norm, self.noise_multiplier, self.noise_std(),
                 self.accountant.delta,
                 f", adaptive to quantile {self.adaptive.target_quantile}" if self.adaptive
                 else "")  # fmt: skip
        super().summary()

    def before_round(self, server_round: int) -> None:
        if self.target_epsilon and self.accountant.would_exceed(
            self.target_epsilon, self.mechanism
        ):
            raise RunStopped(
                f"round {server_round} would take client-level epsilon to "
                f"{self.accountant.epsilon(extra_rounds=1, mechanism=self.mechanism):.3f} > "
                "target-epsilon "
                f"{self.target_epsilon}; stopped after {server_round - 1} rounds at epsilon "
                f"{self.accountant.epsilon():.3f}"
            )

    def round_config(self) -> dict[str, Any]:
        return {"dp-mode": f"central-{self.clipping}", "dp-clip-norm": float(self.clip_norm)}

    def clip_reply(self, msg: Message, update: Update) -> tuple[Update, bool]:
        """The clipped update of one reply and whether it was within C (not clipped)."""
        raise NotImplementedError

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Clip, rescale to the fixed denominator, add one noise draw, let ``inner`` average."""
        replies = [r for r in replies if r.has_error() or is_finite_reply(r, self.arrays_key)]
        ok = [r for r in replies if not r.has_error()]
        m = self.sampler.expected_size
        clip_norm, std = self.clip_norm, self.noise_std()
        mechanism = self.mechanism
        rng = self.noise.numpy("central", server_round)
        noise: Update = {}  # one draw per array, the same for every reply
        unclipped = 0
        for msg in ok:
            if self.reply_view is not None:
                msg.content[self.arrays_key] = self.reply_view(msg.content)[self.arrays_key]
            record = with_sent_non_float(msg.content[self.arrays_key], self.sent_record)
            update, within = self.clip_reply(msg, update_of(record, self.sent))
            unclipped += within
            for key, value in update.items():
                if key not in noise:
                    noise[key] = rng.normal(0.0, std, value.shape)
            scaled = {k: v * len(ok) / m + noise[k] for k, v in update.items()}
            msg.content[self.arrays_key] = apply_update(record, self.sent, scaled)
            keep_only_dp_metrics(reply_metrics(msg))[self.weight_key] = 1.0
        if len(ok) < self.sampled:
            private_log.warning("round %d: %d of %d sampled clients replied; the missing ones "
                                "count as zero updates (same guarantee, step shrunk by %.2f)",
                                server_round, len(ok), self.sampled,
                                len(ok) / max(self.sampled, 1))  # fmt: skip
        reported = self.running_worst(client_reports(ok))
        if ok:
            arrays, metrics = self.inner.aggregate_train(server_round, replies)
            if arrays is not None:
                arrays = with_sent_non_float(arrays, self.sent_record)
        else:
            # Poisson sampling can draw nobody (and every reply can fail): the estimator is then
            # the global model plus the round's noise, a release the accountant counts like any.
            noise = {k: rng.normal(0.0, std, v.shape) for k, v in self.sent.items()}
            arrays, metrics = apply_update(self.sent_record, self.sent, noise), None
        self.accountant.record(*mechanism)
        metrics = MetricRecord({k: v for k, v in (metrics or {}).items() if k.startswith("dp-")})
        metrics.update(reported)
        metrics.update({
            "dp-sampled": self.sampled,
            "dp-clip-norm": float(clip_norm),
            "dp-noise-multiplier": float(self.noise_multiplier),
            "dp-noise-std": float(std),
            "dp-client-epsilon": self.accountant.epsilon(),
            "dp-delta": self.accountant.delta,
        })  # fmt: skip
        if self.report_pld and (pld := self.accountant.pld_epsilon()) is not None:
            metrics["dp-client-epsilon-pld"] = pld
        if self.adaptive is not None:
            fraction = self.adaptive.step(unclipped, len(ok), m, rng)
            metrics["dp-unclipped-fraction-noisy"] = float(fraction)
            metrics["dp-unclipped-exact"] = unclipped  # server-private: not in the release
        log.info("round %d: client-level epsilon %.4f at delta %g (RDP, %s sampling q=%g, z=%g, "
                 "C=%.4g)", server_round, metrics["dp-client-epsilon"], self.accountant.delta,
                 self.sampler.kind, self.sampler.rate, self.noise_multiplier,
                 clip_norm)  # fmt: skip
        return arrays, metrics


class CentralDPServerSideClipping(CentralDP):
    """Central DP with server-side clipping: the server clips every received update to C."""

    clipping = "server"

    def clip_reply(self, msg: Message, update: Update) -> tuple[Update, bool]:
        clipped, before = clip(update, self.clip_norm)
        return clipped, before <= self.clip_norm


class CentralDPClientSideClipping(CentralDP):
    """Central DP with client-side clipping: clients clip to the C the server sends each round
    (``central_client_clipping_mod``); the server checks the bound and adds the noise."""

    clipping = "client"

    def clip_reply(self, msg: Message, update: Update) -> tuple[Update, bool]:
        dp = read_dp(msg)
        if dp is None or dp.get("mechanism") != "central-client-clipping":
            raise FedlabError(
                "a reply was not clipped by its client: CentralDPClientSideClipping needs the "
                "clients to run fedlab.strategies.dp_mods.central_client_clipping_mod "
                "(dp-mode=central-client in the dpfedavg app)"
            )
        size = norm(update)
        if size > self.clip_norm * (1 + CLIP_TOLERANCE):
            raise FedlabError(
                f"a client-clipped update has norm {size:.6g} > clip norm {self.clip_norm:.6g}; "
                "the client mod clipped to another C: use the C the server sends each round"
            )
        return update, bool(dp["unclipped"])
