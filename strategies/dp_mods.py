"""Client mods of DP-FedAvg, in Flower's mod shape ``(msg, context, call_next) -> reply``.

* :func:`central_client_clipping_mod`: central DP, client-side clipping. The client clips its
  update to the C the server sends in the round config (``dp-clip-norm``) and tells the server
  whether it was within C (the bit adaptive clipping counts); the server adds the noise.
* :class:`LocalDpClipNoiseMod`: local DP. The client clips its update and adds noise itself,
  before anything leaves it; the server is not trusted. This is the threat model of the PGLA
  attack. Nothing else leaves the client in clear: its training metrics, example count, measured
  steps and integer buffers are replaced by public values (see
  :meth:`LocalDpClipNoiseMod.__call__`).

Both act on train messages only and pass every other message type on unchanged, as Flower's own
mods do, because ``ClientApp(mods=...)`` wraps every handler. ``LocalDpClipNoiseMod`` is not
Flower's ``flwr.clientapp.mod.LocalDpMod`` (Gaussian only, with a sensitivity its user picks).

Every reply gets a ConfigRecord ``"dp"`` with the mechanism and its parameters, and the numeric
ones also as ``dp-*`` entries of its MetricRecord, so recorded traces carry them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from fedlab.strategies.dp_noise import NoiseSource
from fedlab.strategies.dp_updates import (
    apply_update,
    clip,
    float_arrays,
    update_of,
    with_sent_non_float,
)
from fedlab.strategies.dp_wrapper import DP_RECORD, dp_record, reply_metrics
from flwr.app import ConfigRecord, Context, Message, MessageType, MetricRecord

from fedlab.client import partition_of
from fedlab.errors import FedlabError
from fedlab.flower_compat import ClientAppCallable
from fedlab.server import CLIENT_INFO

log = logging.getLogger("fedlab")

ARRAYS = "arrays"
LOCAL_NOISES = ("gaussian", "laplace")
LOCAL_STATE = "dp-local"  # ConfigRecord in context.state: releases so far


def _is_train(msg: Message) -> bool:
    # "train" or "train.<action>": Flower's message types name an action after the dot
    return msg.metadata.message_type.split(".")[0] == MessageType.TRAIN


def _global_of(msg: Message) -> tuple[dict[str, np.ndarray], ConfigRecord]:
    if ARRAYS not in msg.content:
        raise FedlabError(f"the train message has no ArrayRecord {ARRAYS!r} to clip against")
    return float_arrays(msg.content[ARRAYS]), msg.content.get("config", ConfigRecord())


def central_client_clipping_mod(msg: Message, context: Context, call_next: ClientAppCallable
                                ) -> Message:  # fmt: skip
    """Clip this client's update to the server's ``dp-clip-norm`` (central DP, client-side)."""
    if not _is_train(msg):
        return call_next(msg, context)
    sent, round_config = _global_of(msg)
    if "dp-clip-norm" not in round_config:
        raise FedlabError(
            "the train config has no dp-clip-norm: client-side clipping needs the "
            "CentralDPClientSideClipping wrapper in the ServerApp (dp-mode=central-client)"
        )
    clip_norm = float(round_config["dp-clip-norm"])
    reply = call_next(msg, context)
    if reply.has_error():
        return reply
    record = reply.content[ARRAYS]
    clipped, before = clip(update_of(record, sent), clip_norm)
    reply.content[ARRAYS] = apply_update(record, sent, clipped)
    reply.content[DP_RECORD] = dp_record({
        "mechanism": "central-client-clipping", "clip-norm": clip_norm,
        "unclipped": int(before <= clip_norm),
    })  # fmt: skip
    reply_metrics(reply)["dp-clip-norm"] = clip_norm
    return reply


@dataclass(frozen=True)
class LocalDpClipNoiseMod:
    """Local DP: clip the update, then add Gaussian or Laplace noise on the client.

    Neighbouring inputs are any two updates of this client, so the sensitivity of the clipped
    update is 2C: in L2 for Gaussian noise (clipped in L2, the analytic Gaussian mechanism of
    Balle and Wang 2018 for (epsilon, delta) per release, via dp-accounting) and in L1 for
    Laplace noise (clipped in L1, scale 2C/epsilon, pure epsilon-DP per release).

    Parameters
    ----------
    clip_norm : float
        C > 0.
    epsilon : float
        Per release (one reply), > 0.
    delta : float
        Per release, in (0, 1) for Gaussian noise; ignored for Laplace.
    noise : {"gaussian", "laplace"}
    source : NoiseSource
        Draws the noise: OS entropy by default; when seeded, from the seed, the partition and
        this client's own release count (never the round number the server sends, so a server
        that repeats a round cannot make the client repeat its noise).
    """

    clip_norm: float
    epsilon: float
    delta: float = 1e-5
    noise: str = "gaussian"
    source: NoiseSource = NoiseSource()

    def __post_init__(self) -> None:
        if self.noise not in LOCAL_NOISES:
            raise FedlabError(f"local-noise {self.noise!r} is not one of: gaussian, laplace")
        for name, value in (
            ("clip-norm", self.clip_norm),
            ("local-epsilon", self.epsilon),
            ("local-delta", self.delta),
        ):
            if not math.isfinite(value):
                raise FedlabError(f"{name} must be a finite number, got {value}")
        if self.clip_norm <= 0:
            raise FedlabError(f"clip-norm must be > 0 for local DP, got {self.clip_norm}")
        if self.epsilon <= 0:
            raise FedlabError(
                f"local-epsilon must be > 0 for local DP, got {self.epsilon}; e.g. local-epsilon=8"
            )
        if self.noise == "gaussian" and not 0 < self.delta < 1:
            raise FedlabError(
                f"local-delta must lie in (0, 1) for Gaussian noise, got {self.delta}"
            )

    @property
    def sensitivity(self) -> float:
        """2C: the largest distance between two clipped updates (L2 or L1)."""
        return 2 * self.clip_norm

    @property
    def noise_scale(self) -> float:
        """Gaussian std, or Laplace scale b."""
        if self.noise == "laplace":
            return self.sensitivity / self.epsilon
        from dp_accounting.gaussian_mechanism import get_sigma_gaussian

        return self.sensitivity * get_sigma_gaussian(self.epsilon, self.delta)

    @property
    def noise_std(self) -> float:
        """Per-coordinate noise std (Laplace: sqrt(2) b)."""
        return self.noise_scale * (np.sqrt(2.0) if self.noise == "laplace" else 1.0)

    def epsilon_total(self, releases: int) -> float:
        """This client's epsilon over ``releases`` replies: k*epsilon (Laplace, pure DP) or RDP
        composition of the Gaussian at ``delta`` (dp-accounting)."""
        if self.noise == "laplace":
            return releases * self.epsilon
        from dp_accounting import dp_event, rdp

        accountant = rdp.RdpAccountant()
        accountant.compose(dp_event.GaussianDpEvent(self.noise_scale / self.sensitivity), releases)
        return min(float(accountant.get_epsilon(self.delta)), releases * self.epsilon) \
            if releases > 1 else self.epsilon  # fmt: skip

    def record(self, releases: int) -> dict[str, float | int | str]:
        """The mechanism's parameters as they travel with a reply."""
        return {
            "mechanism": "local", "noise": self.noise,
            "clip-norm": self.clip_norm,
            "clip-norm-type": "l1" if self.noise == "laplace" else "l2",
            "sensitivity": self.sensitivity, "noise-std": float(self.noise_std),
            "noise-scale": float(self.noise_scale), "epsilon": self.epsilon,
            "delta": 0.0 if self.noise == "laplace" else self.delta,
            "releases": releases, "epsilon-total": self.epsilon_total(releases),
        }  # fmt: skip

    def __call__(self, msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        """Train, then release only the noised update and public values.

        The reply keeps: the noised float arrays; every non-float array (a BatchNorm counter) as
        the server sent it; a MetricRecord of the mechanism's public parameters with
        ``num-examples`` 1, so the server's average is uniform; the partition id the server
        already knows. Dropped: training metrics, the example count, measured steps, batch size
        and any sample-level DP-SGD figures (their sample rate depends on the dataset size).
        """
        if not _is_train(msg):
            return call_next(msg, context)
        sent, _ = _global_of(msg)
        reply = call_next(msg, context)
        if reply.has_error():
            return reply
        record = reply.content[ARRAYS]
        ord_ = 1 if self.noise == "laplace" else 2
        clipped, _ = clip(update_of(record, sent), self.clip_norm, ord_)
        pid, _ = partition_of(context)
        state = context.state.config_records.get(LOCAL_STATE, ConfigRecord({"releases": 0}))
        releases = int(state["releases"]) + 1
        context.state[LOCAL_STATE] = ConfigRecord({"releases": releases})
        rng = self.source.numpy("local-dp", pid, releases)
        draw = rng.laplace if self.noise == "laplace" else rng.normal
        noisy = {k: v + draw(0.0, self.noise_scale, v.shape) for k, v in clipped.items()}
        released = apply_update(record, sent, noisy)
        reply.content[ARRAYS] = with_sent_non_float(released, msg.content[ARRAYS])
        params = self.record(releases)
        reply.content[DP_RECORD] = dp_record(params)
        public = {f"dp-{k}": float(params[k]) for k in ("clip-norm", "noise-std", "epsilon",
                                                         "delta")}  # type: ignore[arg-type]  # fmt: skip
        for key in list(reply.content.metric_records):
            del reply.content[key]
        reply.content["metrics"] = MetricRecord({**public, "num-examples": 1})
        if CLIENT_INFO in reply.content:
            reply.content[CLIENT_INFO] = ConfigRecord({"partition-id": pid})
        return reply
