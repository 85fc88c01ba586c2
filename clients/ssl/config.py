"""Run-config keys of the SSL workload and the FedFoA strategy (see docs/fedfoa.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fedlab.clients.ssl.anchors import MAX_ANCHORS
from fedlab.clients.ssl.models import feature_dim, parse_encoders

from fedlab.config import check_choice, check_non_negative, check_positive
from fedlab.errors import FedlabError
from fedlab.key_groups import (
    DataKeys,
    LocalTrainingKeys,
    RunConfig,
    SamplingKeys,
    StrategyKeys,
)

PULL_SCHEDULES = ("constant", "ramp", "decay")
RELATION_KINDS = ("correlation", "anchor-gram")


@dataclass
class SSLConfig(LocalTrainingKeys, DataKeys, SamplingKeys, StrategyKeys, RunConfig):
    """The core, strategy, data and local-training groups plus the self-supervised and FedFoA
    keys.

    ``encoders`` is a list given to clients round-robin by partition id
    (``"cnn,resnet"``: even partitions a CNN, odd ones a ResNet). ``fedfoa-lambda`` weighs the
    relation-alignment term, switched on after ``warmup-rounds`` rounds (round 1 never aligns: no
    global matrix exists before its aggregation, so 0 and 1 behave alike) and shaped over the
    remaining rounds by ``fedfoa-schedule``; ``relation-rank`` is
    the number of eigenpairs a client uploads. ``weight-averaging`` also averages model weights
    (FedAvg-SSL; homogeneous encoders only). ``probe-every`` runs the linear probe every k rounds
    (and always after the last), on at most ``probe-size`` labelled training examples (0: all).
    ``relation-objective=fedsc`` (with ``ssl-method=spectral``) shares FedSC's uncentred second
    moment instead of the correlation and trains FedSC's objective against the aggregate, with
    the local weight alpha falling from 1 to ``fedsc-alpha-min``; with ``weight-averaging`` this
    is FedSC proper, without it (heterogeneous encoders) our ablation of its relation objective.
    """

    WORKLOAD: ClassVar[str] = "ssl"

    dataset: str = "textured-shapes"
    test_fraction: float = 0.25
    strategy: str = "fedfoa"
    partitioner: str = "dirichlet"
    dirichlet_alpha: float = 0.1
    optimizer: str = "adam"
    lr: float = 0.002
    batch_size: int = 128
    ssl_method: str = "simclr"
    encoders: tuple[str, ...] = ("cnn", "resnet")
    proj_dim: int = 64
    proj_hidden: int = 256
    temperature: float = 0.2
    byol_momentum: float = 0.99
    fedfoa_lambda: float = 1.0
    relation_rank: int = 16
    warmup_rounds: int = 1
    fedfoa_schedule: str = "constant"
    relation_features: str = "projector"
    weight_averaging: bool = False
    probe_every: int = 0
    probe_size: int = 0
    min_partition_size: int = 2
    relation_objective: str = "fedfoa"
    fedsc_alpha_min: float = 0.2
    spectral_mu: float = 5.0
    shared_init: bool = False
    relation_kind: str = "correlation"
    anchor_count: int = 64
    fedema_scaler: float = 0.0
    fedema_tau: float = 0.0

    KEY_HELP: ClassVar[dict[str, str]] = {
        "ssl_method": "self-supervised objective: simclr, byol, simsiam or spectral",
        "encoders": "encoders (arch or arch:width) given to clients round-robin (cnn, resnet, ...)",
        "proj_dim": "projector output dimension D (relation matrices are D x D)",
        "proj_hidden": "projector hidden width",
        "temperature": "SimCLR temperature",
        "byol_momentum": "BYOL target-network EMA momentum",
        "fedfoa_lambda": "weight of FedFoA's relation-alignment term",
        "relation_rank": "eigenpairs of its relation matrix a client uploads (at most D)",
        "warmup_rounds": "rounds before relation alignment is switched on",
        "relation_features": "relation of projector or encoder outputs (encoder: one size for all)",
        "fedfoa_schedule": "pull after warm-up: constant, ramp (up to lambda), decay (from lambda)",
        "weight_averaging": "also average encoder weights (FedAvg-SSL; one encoder only)",
        "probe_every": "run the linear probe every k rounds (and after the last); 0: last only",
        "probe_size": "labelled training examples for the probe; 0: all",
        "min_partition_size": "Dirichlet partitions are redrawn until each client has this many",
        "relation_objective": "fedfoa (align correlations) or fedsc (FedSC's spectral objective)",
        "fedsc_alpha_min": "FedSC: local weight alpha falls linearly from 1 to this over rounds",
        "spectral_mu": "spectral loss: feature norms clamped to sqrt(mu) (FedSC's mu)",
        "shared_init": "one initial model per encoder spec, from the run seed (not per client)",
        "relation_kind": "correlation (D x D, basis-dependent) or anchor-gram (basis-free)",
        "anchor_count": "anchor-gram: procedural anchor images every client generates (2-1024)",
        "fedema_scaler": "FedEMA's lambda (with weight-averaging): local-global mix; 0: off",
        "fedema_tau": "FedEMA's autoscaler: lambda = tau / a client's first divergence; 0: off",
    }

    def validate(self) -> None:
        super().validate()
        check_choice(self, "ssl_method", ("simclr", "byol", "simsiam", "spectral"))
        check_choice(self, "relation_objective", ("fedfoa", "fedsc"))
        check_choice(self, "fedfoa_schedule", PULL_SCHEDULES)
        check_choice(self, "relation_features", ("projector", "encoder"))
        check_choice(self, "relation_kind", RELATION_KINDS)
        check_positive(
            self, "proj_dim", "proj_hidden", "temperature", "relation_rank", "spectral_mu"
        )
        if self.min_partition_size < 2:
            raise FedlabError(
                f"min-partition-size must be >= 2 (a batch of one cannot be contrasted), got "
                f"{self.min_partition_size}"
            )
        if not 0 <= self.fedsc_alpha_min <= 1:
            raise FedlabError(f"fedsc-alpha-min must lie in [0, 1], got {self.fedsc_alpha_min}")
        if self.relation_objective == "fedsc" and self.ssl_method != "spectral":
            raise FedlabError(
                f"relation-objective=fedsc needs ssl-method=spectral (FedSC's loss shares the "
                f"spectral loss's second moment), got ssl-method={self.ssl_method}; set both"
            )
        check_non_negative(
            self, "fedfoa_lambda", "warmup_rounds", "probe_every", "probe_size", "fedema_scaler"
        )
        self._check_common_basis_keys()
        if not 0 <= self.byol_momentum < 1:
            raise FedlabError(f"byol-momentum must lie in [0, 1), got {self.byol_momentum}")
        specs = parse_encoders(self.encoders)
        if self.relation_features == "encoder" and self.relation_kind == "correlation":
            self._check_encoder_relation(specs)
        if self.weight_averaging and len(set(specs)) > 1:
            raise FedlabError(
                f"weight-averaging needs one encoder for every client, got encoders="
                f'{self.encoders!r}; use one (e.g. encoders="cnn") or weight-averaging=false '
                "(FedFoA aggregates relation matrices, which works across architectures)"
            )

    def _check_common_basis_keys(self) -> None:
        if not 2 <= self.anchor_count <= MAX_ANCHORS:
            raise FedlabError(
                f"anchor-count must lie in [2, {MAX_ANCHORS}], got {self.anchor_count}"
            )
        if self.relation_kind == "anchor-gram" and self.relation_objective == "fedsc":
            raise FedlabError(
                "relation-kind=anchor-gram works with relation-objective=fedfoa only (FedSC "
                "shares its D x D second moment); use relation-kind=correlation for fedsc"
            )
        if (self.fedema_scaler > 0 or self.fedema_tau > 0) and not self.weight_averaging:
            raise FedlabError(
                f"fedema-scaler={self.fedema_scaler} / fedema-tau={self.fedema_tau} mix local and "
                "averaged weights, so they need weight-averaging=true (one encoder); set it, or "
                "set both to 0"
            )
        if not 0 <= self.fedema_tau <= 1:
            raise FedlabError(
                f"fedema-tau must lie in [0, 1] (the paper's: 0.7), got {self.fedema_tau}"
            )
        if self.fedema_scaler > 0 and self.fedema_tau > 0:
            raise FedlabError(
                f"fedema-scaler={self.fedema_scaler} and fedema-tau={self.fedema_tau} both set "
                "FedEMA's lambda; give one (fedema-tau: the paper's autoscaler) and 0 for the other"
            )

    def _check_encoder_relation(self, specs: list[tuple[str, int]]) -> None:
        if self.relation_objective == "fedsc":
            raise FedlabError(
                "relation-features=encoder works with relation-objective=fedfoa only (FedSC's "
                "objective is defined on the projector outputs its loss trains); use projector"
            )
        dims = {f"{a}:{w}": feature_dim(a, w) for a, w in specs}
        if len(set(dims.values())) > 1:
            raise FedlabError(
                f"relation-features=encoder needs one encoder output size for every client, got "
                f"{dims}; choose widths that match (cnn:w and resnet:w give 4w, mlp:w gives w) "
                "or use relation-features=projector"
            )

    def rounds_schedule(self) -> str | None:
        if self.fedfoa_schedule != "constant" and self.fedfoa_lambda > 0:
            return f"fedfoa-schedule={self.fedfoa_schedule} shapes the pull over the planned rounds"
        if self.relation_objective == "fedsc":
            return "FedSC's local weight alpha falls linearly over the planned rounds"
        return None

    def probe_rounds(self) -> set[int]:
        """Rounds after which the linear probe runs: every ``probe-every`` and the last."""
        k = self.probe_every
        every = set(range(k, self.num_server_rounds + 1, k)) if k else set()
        return every | {self.num_server_rounds}
