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
from typing import Any, Self

from fedlab.errors import FedlabError

ConfigValue = bool | int | float | str


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

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def keys(cls) -> list[str]:
        """All run-config keys of this config, sorted."""
        return sorted(to_key(f.name) for f in fields(cls))

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
