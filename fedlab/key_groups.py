"""The key groups apps compose their run configs from.

:class:`RunConfig` holds the keys every app honours (rounds, nodes, seed, failure handling,
device, output). An app adds the groups it honours, each a dataclass carrying its keys' help
and validation, and its own keys::

    @dataclass
    class MyConfig(LocalTrainingKeys, DataKeys, StrategyKeys, RunConfig):
        temperature: float = 0.5

so the app accepts exactly those keys: any other is an unknown run-config key, refused with
the valid ones listed, and ``--list-keys`` shows only these. An app whose workload is fixed
names it in ``WORKLOAD``; :class:`WorkloadKeys` lets the user choose it (and the model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fedlab.config import (
    Config,
    check_choice,
    check_non_negative,
    check_positive,
    check_range,
    check_unit_interval,
)
from fedlab.errors import FedlabError
from fedlab.limits import MAX_IMAGE_SIZE, SEED_LIMIT, short


@dataclass
class RunConfig(Config):
    """The core keys: how many rounds and nodes, the seed, failure handling, device, output."""

    num_server_rounds: int = 5
    num_supernodes: int = 10  # the server waits for this many nodes; 0: whoever is connected
    seed: int = 0
    min_replies: int = 1
    round_timeout: float = 600.0
    fail_partitions: tuple[int, ...] = ()
    device: str = "auto"
    out_dir: str = ""

    #: The workload of an app that does not let the user choose one (:class:`WorkloadKeys`).
    WORKLOAD: ClassVar[str] = ""

    KEY_HELP: ClassVar[dict[str, str]] = {
        "num_server_rounds": "rounds of federated training",
        "num_supernodes": "clients (virtual SuperNodes) the server waits for; 0: whoever connects",
        "seed": "seeds data split, partitions, model init, data order (not DP noise)",
        "min_replies": "fewest successful replies a round needs, else the run stops cleanly",
        "round_timeout": "seconds the server waits for a round's replies",
        "fail_partitions": "partition ids whose clients raise on purpose (failure tests)",
        "device": "auto (CUDA when torch sees a GPU), cpu or cuda",
        "out_dir": "run folder; default runs/<app>-<UTC time>",
    }

    @property
    def workload_name(self) -> str:
        """The workload this run's clients build (``fedlab.registry.WORKLOADS`` name)."""
        if not self.WORKLOAD:
            raise FedlabError(
                f"{type(self).__name__} names no workload: add WorkloadKeys to the config or "
                "set its WORKLOAD class attribute"
            )
        return self.WORKLOAD

    def rounds_schedule(self) -> str | None:
        """Why this run's schedule depends on ``num-server-rounds`` (so a resumed run may not
        be extended), or None. Apps whose keys shape rounds by their count override this."""
        return None

    def validate(self) -> None:
        super().validate()
        check_positive(self, "num_server_rounds", "round_timeout")
        check_non_negative(self, "num_supernodes", "min_replies", "fail_partitions")
        if not 0 <= self.seed < SEED_LIMIT:
            raise FedlabError(f"seed must lie in [0, 2**63), got {short(self.seed)}")
        check_choice(self, "device", ("auto", "cpu", "cuda"))


@dataclass
class StrategyKeys(Config):
    """A Flower strategy from the registry (or a researcher's ``module:Class``)."""

    strategy: str = "fedavg"

    KEY_HELP: ClassVar[dict[str, str]] = {
        "strategy": "Flower strategy name from the STRATEGIES registry, or module:Class",
    }


@dataclass
class SamplingKeys(Config):
    """Flower's own client sampling: a share of the nodes each round. Apps that sample
    clients themselves (``dpfedavg``: Poisson sampling, accounted) leave this group out."""

    fraction_train: float = 1.0

    KEY_HELP: ClassVar[dict[str, str]] = {
        "fraction_train": "share of clients trained each round (Flower's sampling)",
    }

    def validate(self) -> None:
        super().validate()
        check_unit_interval(self, "fraction_train", open_low=True)


@dataclass
class WorkloadKeys(Config):
    """The workload and model the clients build, chosen by the user."""

    workload: str = "supervised"
    model: str = "cnn"

    KEY_HELP: ClassVar[dict[str, str]] = {
        "workload": "workload name or module:attr (model, data and step of the clients)",
        "model": "model name the workload builds (cnn, mlp, lenet, ...)",
    }

    @property
    def workload_name(self) -> str:
        return self.workload


@dataclass
class DataKeys(Config):
    """One image dataset, a held-out share for the server, partitioned among clients."""

    dataset: str = "digits"
    data_path: str = ""
    image_size: int = 0
    test_fraction: float = 0.2
    partitioner: str = "iid"
    dirichlet_alpha: float = 0.5
    shards_per_partition: int = 2

    KEY_HELP: ClassVar[dict[str, str]] = {
        "dataset": "dataset name from the DATASETS registry (digits, patches, ...), or synthetic",
        "data_path": "local folder or file of a user dataset in its standard format",
        "image_size": "resize images to this side in pixels; 0: the dataset's own size",
        "test_fraction": "share of the data held out for server-side evaluation",
        "partitioner": "how the training data is split across clients: iid, dirichlet, shards",
        "dirichlet_alpha": "label skew of the dirichlet partitioner (small: very non-IID)",
        "shards_per_partition": "label shards per client for the shards partitioner",
    }

    def validate(self) -> None:
        super().validate()
        check_unit_interval(self, "test_fraction", open_low=True, open_high=True)
        check_choice(self, "partitioner", ("iid", "dirichlet", "shards"))
        check_range(self, "image_size", 0, MAX_IMAGE_SIZE)
        check_positive(self, "shards_per_partition")
        if self.dirichlet_alpha <= 0:
            raise FedlabError(
                f"dirichlet-alpha must be > 0, got {self.dirichlet_alpha}; "
                "small values (0.1) give very non-IID partitions"
            )


@dataclass
class PopulationKeys(Config):
    """A client population larger than the simulated workers (:mod:`fedlab.population`), and
    the Synthetic(alpha, beta) data that gives any population its clients
    (``dataset=synthetic``, :mod:`fedlab.data.synthetic`)."""

    population: int = 0
    synthetic_alpha: float = 1.0
    synthetic_beta: float = 1.0
    synthetic_size_mu: float = 4.0
    synthetic_size_sigma: float = 2.0
    synthetic_min_size: int = 50
    synthetic_max_size: int = 10_000
    synthetic_iid: bool = False
    eval_clients: int = 100

    #: Held-out clients have the ids HELD_OUT_BASE, HELD_OUT_BASE + 1, ...: never in a population.
    HELD_OUT_BASE: ClassVar[int] = 10**9

    KEY_HELP: ClassVar[dict[str, str]] = {
        "population": "clients the server samples from; 0: one per node (num-supernodes)",
        "synthetic_alpha": "Synthetic(alpha, beta): how far the clients' models differ",
        "synthetic_beta": "Synthetic(alpha, beta): how far the clients' inputs differ",
        "synthetic_size_mu": "client sizes: floor(LogNormal(mu, sigma)) + min-size (paper: 4)",
        "synthetic_size_sigma": "client sizes: the log-normal's sigma (paper: 2)",
        "synthetic_min_size": "client sizes: examples added to every draw (paper: 50)",
        "synthetic_max_size": "cap on a synthetic client's examples (0: the paper's uncapped law)",
        "synthetic_iid": "Synthetic-IID: one model for every client (learnable on unseen clients)",
        "eval_clients": "held-out synthetic clients the server evaluates on (ids from 10^9)",
    }

    def validate(self) -> None:
        super().validate()
        check_range(self, "population", 0, self.HELD_OUT_BASE - 1)
        check_non_negative(self, "synthetic_alpha", "synthetic_beta", "synthetic_max_size",
                           "synthetic_size_sigma")  # fmt: skip
        check_range(self, "synthetic_size_mu", -10.0, 20.0)
        check_range(self, "synthetic_min_size", 1, 10**7)
        check_range(self, "eval_clients", 1, 100_000)

    @property
    def num_clients(self) -> int:
        """N: the population, or one client per node."""
        return self.population or getattr(self, "num_supernodes", 0)


@dataclass
class LocalTrainingKeys(Config):
    """What each client's local training does (THE loop, :mod:`fedlab.training`)."""

    local_epochs: int = 1
    local_steps: int = 0
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_schedule: str = "constant"

    KEY_HELP: ClassVar[dict[str, str]] = {
        "local_epochs": "local epochs per round (ignored when local-steps > 0)",
        "local_steps": "local optimizer steps per round; 0: use local-epochs",
        "batch_size": "local mini-batch size",
        "optimizer": "local optimizer: sgd, adam, adamw",
        "lr": "local learning rate",
        "momentum": "SGD momentum",
        "weight_decay": "L2 weight decay of the local optimizer",
        "lr_schedule": "local learning-rate schedule: constant or cosine",
    }

    def validate(self) -> None:
        super().validate()
        check_positive(self, "batch_size", "lr")
        check_non_negative(self, "local_steps", "weight_decay", "momentum")
        if self.local_epochs < 1 and self.local_steps == 0:
            raise FedlabError(
                f"local-epochs is {self.local_epochs} and local-steps is 0: nothing to train; "
                "set local-epochs >= 1 or local-steps >= 1"
            )
        check_choice(self, "optimizer", ("sgd", "adam", "adamw"))
        check_choice(self, "lr_schedule", ("constant", "cosine"))


@dataclass
class TraceKeys(Config):
    """Recording what chosen clients send, as gradient traces (:mod:`fedlab.traces`)."""

    record_traces: bool = False
    trace_rounds: tuple[int, ...] = ()
    trace_clients: tuple[int, ...] = ()
    trace_batch_size: int = 1

    KEY_HELP: ClassVar[dict[str, str]] = {
        "record_traces": "record what chosen clients send, as gradient traces",
        "trace_rounds": "rounds to record; empty: all",
        "trace_clients": "partition ids to record; empty: all",
        "trace_batch_size": "FedSGD batch size of recorded clients",
    }

    def validate(self) -> None:
        super().validate()
        check_positive(self, "trace_batch_size", "trace_rounds")
        check_non_negative(self, "trace_clients")

    def traced_rounds(self) -> set[int] | None:
        """Rounds whose replies are recorded; None: all of them."""
        return set(self.trace_rounds) or None

    def traced_clients(self) -> set[int] | None:
        """Partition ids whose replies are recorded; None: all of them."""
        return set(self.trace_clients) or None


@dataclass
class TrainingRunConfig(TraceKeys, LocalTrainingKeys, DataKeys, WorkloadKeys, SamplingKeys,
                        StrategyKeys, RunConfig):  # fmt: skip
    """Every group: the config of an app that trains a user-chosen workload on partitioned data
    with a Flower strategy and can record traces (``fedavg``; a researcher's app built on
    :data:`fedlab.client.WEIGHT_TRAINING_HANDLERS`)."""
