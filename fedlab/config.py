"""Typed run configs: dataclasses whose fields are the run-config keys, validated up front.

A run-config key is the field name in kebab case (``num_server_rounds`` <-> ``num-server-rounds``),
as Flower writes them in ``pyproject.toml``. Values come from the dataclass defaults, then TOML
files, then ``key=value`` pairs; every value is checked against the field's type before any
work starts, and the fully resolved config is saved in the run folder.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Self

from fedlab.errors import FedlabError

ConfigValue = bool | int | float | str

#: The shared keys of gradient-trace recording, honoured by apps that wrap their strategy in
#: trace recording (fedavg, dpfedavg); others list them in ``AppSpec.ignored_keys``.
TRACE_KEYS = ("record-traces", "trace-rounds", "trace-clients", "trace-batch-size")


def to_key(field_name: str) -> str:
    """Field name -> run-config key."""
    return field_name.replace("_", "-")


def to_field(key: str) -> str:
    """Run-config key -> field name."""
    return key.replace("-", "_")


def _coerce(key: str, value: Any, expected: type) -> ConfigValue:
    """Check (and where lossless, convert) ``value`` for a field of type ``expected``."""
    if expected is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise FedlabError(
                    f"run-config key {key!r} must be a finite number, got {value!r}; "
                    f"write e.g. {key}={_example(expected)}"
                )
            return float(value)
    elif expected is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    raise FedlabError(
        f"run-config key {key!r} must be {expected.__name__}, got {value!r} "
        f"({type(value).__name__}); write e.g. {key}={_example(expected)}"
    )


def _example(expected: type) -> str:
    return {bool: "true", int: "3", float: "0.1", str: '"name"'}[expected]


def _field_types(cls: type) -> dict[str, type]:
    hints = typing.get_type_hints(cls)
    out: dict[str, type] = {}
    for f in fields(cls):
        hint = hints[f.name]
        if isinstance(hint, types.UnionType):
            raise TypeError(f"{cls.__name__}.{f.name}: run-config fields must have one type")
        out[f.name] = hint
    return out


@dataclass
class RunConfig:
    """Keys every app understands: rounds, data, partitioning, local training, sampling.

    Subclass it (as a dataclass) to add an app's own keys; override :meth:`validate` to check
    ranges, calling ``super().validate()``.
    """

    num_server_rounds: int = 5
    num_supernodes: int = 10  # the server waits for this many nodes; 0: whoever is connected
    seed: int = 0
    dataset: str = "digits"
    data_path: str = ""
    image_size: int = 0
    test_fraction: float = 0.2
    partitioner: str = "iid"
    dirichlet_alpha: float = 0.5
    shards_per_partition: int = 2
    workload: str = "supervised"
    model: str = "cnn"
    strategy: str = "fedavg"
    fraction_train: float = 1.0
    min_replies: int = 1
    round_timeout: float = 600.0
    local_epochs: int = 1
    local_steps: int = 0
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    device: str = "auto"
    out_dir: str = ""
    fail_partitions: str = ""
    record_traces: bool = False
    trace_rounds: str = ""
    trace_clients: str = ""
    trace_batch_size: int = 1

    #: One line per key (field name -> meaning), merged along the class hierarchy by
    #: :meth:`key_help`; a test checks that every field of every app's config has one.
    KEY_HELP: ClassVar[dict[str, str]] = {
        "num_server_rounds": "rounds of federated training",
        "num_supernodes": "clients (virtual SuperNodes) the server waits for; 0: whoever connects",
        "seed": "seeds data split, partitions, model init, data order (not DP noise)",
        "dataset": "dataset name from the DATASETS registry (digits, patches, ...)",
        "data_path": "local folder or file of a user dataset in its standard format",
        "image_size": "resize images to this side in pixels; 0: the dataset's own size",
        "test_fraction": "share of the data held out for server-side evaluation",
        "partitioner": "how the training data is split across clients: iid, dirichlet, shards",
        "dirichlet_alpha": "label skew of the dirichlet partitioner (small: very non-IID)",
        "shards_per_partition": "label shards per client for the shards partitioner",
        "workload": "workload name or module:attr (model, data and step of the clients)",
        "model": "model name the workload builds (cnn, mlp, lenet, ...)",
        "strategy": "Flower strategy name from the STRATEGIES registry",
        "fraction_train": "share of clients trained each round (Flower's sampling)",
        "min_replies": "fewest successful replies a round needs, else the run stops cleanly",
        "round_timeout": "seconds the server waits for a round's replies",
        "local_epochs": "local epochs per round (ignored when local-steps > 0)",
        "local_steps": "local optimizer steps per round; 0: use local-epochs",
        "batch_size": "local mini-batch size",
        "optimizer": "local optimizer: sgd, adam, adamw",
        "lr": "local learning rate",
        "momentum": "SGD momentum",
        "weight_decay": "L2 weight decay of the local optimizer",
        "lr_schedule": "local learning-rate schedule: constant or cosine",
        "device": "auto (CUDA when torch sees a GPU), cpu or cuda",
        "out_dir": "run folder; default runs/<app>-<UTC time>",
        "fail_partitions": "comma-separated partition ids that raise on purpose (failure tests)",
        "record_traces": "record what chosen clients send, as gradient traces",
        "trace_rounds": "comma-separated rounds to record; empty: all",
        "trace_clients": "comma-separated partition ids to record; empty: all",
        "trace_batch_size": "FedSGD batch size of recorded clients",
    }

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def keys(cls) -> list[str]:
        """All run-config keys of this config, sorted."""
        return sorted(to_key(f.name) for f in fields(cls))

    @classmethod
    def key_help(cls) -> dict[str, str]:
        """Field name -> one-line meaning, subclasses' lines over their bases'."""
        merged: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            merged.update(vars(klass).get("KEY_HELP", {}))
        return merged

    def describe_keys(self) -> list[tuple[str, str, ConfigValue, str]]:
        """(key, type, value, meaning) for every key, sorted by key: what ``--list-keys``
        prints, read from the config class itself so that it cannot drift."""
        types_ = _field_types(type(self))
        meaning = self.key_help()
        return sorted(
            (to_key(name), types_[name].__name__, value, meaning.get(name, ""))
            for name, value in dataclasses.asdict(self).items()
        )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Self:
        """Build from run-config keys (kebab or snake case), refusing unknown keys and types."""
        types_ = _field_types(cls)
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            name = to_field(key)
            if name not in types_:
                raise FedlabError(
                    f"unknown run-config key {key!r} for {cls.__name__}; "
                    f"known keys: {', '.join(cls.keys())}"
                )
            kwargs[name] = _coerce(to_key(name), value, types_[name])
        config = cls(**kwargs)
        config.validate()
        return config

    def to_mapping(self) -> dict[str, ConfigValue]:
        """Run-config keys -> values (what Flower's ``context.run_config`` holds)."""
        return {to_key(k): v for k, v in dataclasses.asdict(self).items()}

    def replace(self, **changes: Any) -> Self:
        """A validated copy with some fields changed."""
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new

    # -- validation ---------------------------------------------------------------------------
    def warnings(self) -> list[str]:
        """Things about this config a reader of the run folder must know (logged and saved in
        ``config.json``); none by default."""
        return []

    def validate(self) -> None:
        """Check ranges and choices; raise :class:`FedlabError` naming the bad value."""
        _finite(self)
        _positive(self, "num_server_rounds", "batch_size")
        _non_negative(
            self, "seed", "num_supernodes", "local_steps", "weight_decay", "momentum",
            "min_replies",
        )  # fmt: skip
        _positive(self, "lr", "round_timeout")
        _in_unit_interval(self, "fraction_train", open_low=True)
        _in_unit_interval(self, "test_fraction", open_low=True, open_high=True)
        if self.local_epochs < 1 and self.local_steps == 0:
            raise FedlabError(
                f"local-epochs is {self.local_epochs} and local-steps is 0: nothing to train; "
                "set local-epochs >= 1 or local-steps >= 1"
            )
        _choice(self, "partitioner", ("iid", "dirichlet", "shards"))
        _choice(self, "optimizer", ("sgd", "adam", "adamw"))
        _choice(self, "lr_schedule", ("constant", "cosine"))
        _choice(self, "device", ("auto", "cpu", "cuda"))
        if self.dirichlet_alpha <= 0:
            raise FedlabError(
                f"dirichlet-alpha must be > 0, got {self.dirichlet_alpha}; "
                "small values (0.1) give very non-IID partitions"
            )
        _positive(self, "trace_batch_size")
        self.failing_partitions()
        self.traced_rounds()
        self.traced_clients()

    def failing_partitions(self) -> set[int]:
        """Partition ids told to fail (for failure-handling tests), from ``fail-partitions``."""
        return _int_set("fail_partitions", self.fail_partitions) or set()

    def traced_rounds(self) -> set[int] | None:
        """Rounds whose replies are recorded (``trace-rounds``); None: all of them."""
        return _int_set("trace_rounds", self.trace_rounds)

    def traced_clients(self) -> set[int] | None:
        """Partition ids whose replies are recorded (``trace-clients``); None: all of them."""
        return _int_set("trace_clients", self.trace_clients)


def _int_set(name: str, text: str) -> set[int] | None:
    """Parse "0,3" into {0, 3}; the empty string gives None."""
    try:
        values = {int(p) for p in text.split(",") if p.strip()}
    except ValueError:
        raise FedlabError(
            f"{to_key(name)} must be comma-separated integers, got {text!r}; "
            f'write e.g. {to_key(name)}="0,3"'
        ) from None
    return values or None


def _finite(cfg: RunConfig) -> None:
    """Every float field is finite (``value <= 0`` is False for NaN, so range checks alone
    would let NaN through)."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise FedlabError(f"{to_key(f.name)} must be a finite number, got {value}")


def _positive(cfg: RunConfig, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if value <= 0:
            raise FedlabError(f"{to_key(name)} must be > 0, got {value}")


def _non_negative(cfg: RunConfig, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if value < 0:
            raise FedlabError(f"{to_key(name)} must be >= 0, got {value}")


def _in_unit_interval(
    cfg: RunConfig, name: str, *, open_low: bool, open_high: bool = False
) -> None:
    value = getattr(cfg, name)
    low_ok = value > 0 if open_low else value >= 0
    high_ok = value < 1 if open_high else value <= 1
    if not (low_ok and high_ok):
        interval = f"{'(' if open_low else '['}0, 1{')' if open_high else ']'}"
        raise FedlabError(f"{to_key(name)} must lie in {interval}, got {value}")


def _choice(cfg: RunConfig, name: str, allowed: tuple[str, ...]) -> None:
    value = getattr(cfg, name)
    if value not in allowed:
        raise FedlabError(f"{to_key(name)} {value!r} is not one of: {', '.join(allowed)}")


def parse_override(pair: str) -> tuple[str, ConfigValue]:
    """Parse ``key=value`` with TOML value syntax; bare words are strings."""
    key, sep, raw = pair.partition("=")
    key = key.strip()
    if not sep or not key:
        raise FedlabError(f"run-config override {pair!r} is not key=value; write e.g. lr=0.1")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    if isinstance(value, (list, dict)):
        raise FedlabError(
            f"run-config value for {key!r} must be a bool, number or string, got {raw!r}"
        )
    return key, value


def load_toml_config(path: str | Path) -> dict[str, Any]:
    """Read a run-config TOML file: top-level keys, or a ``[tool.flwr.app.config]`` table."""
    path = Path(path)
    if not path.is_file():
        raise FedlabError(f"run-config file {str(path)!r} does not exist; give a TOML file path")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise FedlabError(f"run-config file {str(path)!r} is not valid TOML: {exc}") from None
    table = data.get("tool", {}).get("flwr", {}).get("app", {}).get("config")
    return dict(table) if isinstance(table, dict) else data
