"""Typed configs: dataclasses whose fields are the run-config keys, validated up front.

A run-config key is the field name in kebab case (``num_server_rounds`` <-> ``num-server-rounds``),
as Flower writes them in ``pyproject.toml``. Values come from the dataclass defaults, then TOML
files, then ``key=value`` pairs; every value is checked against the field's type before any
work starts, and the fully resolved config is saved in the run folder.

A field's type is ``bool``, ``int``, ``float``, ``str`` or a tuple of one of them
(``tuple[float, ...]``): a list is parsed here, once, from a TOML array (``scales = [2, 4]``),
a comma-separated string (``scales="2,4"``) or a single value, and reaches the app as a tuple.

:class:`Config` is the machinery; the key groups apps compose (the core run keys, data, local
training, traces) are in :mod:`fedlab.key_groups`. The ``check_*`` validators are public so
that an app's ``validate`` reads like the core's.
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
from fedlab.limits import check_int, short

Scalar = bool | int | float | str
ConfigValue = Scalar | tuple[Scalar, ...]
SCALARS = (bool, int, float, str)


def to_key(field_name: str) -> str:
    """Field name -> run-config key."""
    return field_name.replace("_", "-")


def to_field(key: str) -> str:
    """Run-config key -> field name."""
    return key.replace("-", "_")


@dataclass(frozen=True)
class FieldType:
    """A config field's type: a scalar type, or a tuple of them when ``many``."""

    scalar: type
    many: bool = False

    @property
    def name(self) -> str:
        return f"list of {self.scalar.__name__}" if self.many else self.scalar.__name__

    def example(self) -> str:
        one = {bool: "true", int: "3", float: "0.1", str: '"name"'}[self.scalar]
        many = {bool: '"true,false"', int: '"2,4"', float: '"0.5,1"', str: '"a,b"'}[self.scalar]
        return many if self.many else one


def _coerce_scalar(key: str, value: Any, expected: FieldType) -> Scalar:
    """Check (and where lossless, convert) one value of a field of type ``expected``."""
    kind = expected.scalar
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
    elif kind is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if expected.many and isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:  # also past Python's 4300-digit limit: refused below
                pass
        if isinstance(value, int) and not isinstance(value, bool):
            return check_int(value, f"run-config key {key!r}")
    elif kind is float:
        if expected.many and isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                pass
        if isinstance(value, int) and not isinstance(value, bool):
            value = check_int(value, f"run-config key {key!r}")  # float() of 10**400 overflows
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                what = "hold finite numbers" if expected.many else "be a finite number"
                raise FedlabError(
                    f"run-config key {key!r} must {what}, got {value!r}; "
                    f"write e.g. {key}={expected.example()}"
                )
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value.strip() if expected.many else value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(check_int(value, f"run-config key {key!r}"))
        if isinstance(value, float):
            return str(value)
    raise FedlabError(
        f"run-config key {key!r} must be {expected.name}, got {short(value)} "
        f"({type(value).__name__}); write e.g. {key}={expected.example()}"
    )


def coerce(key: str, value: Any, expected: FieldType) -> ConfigValue:
    """``value`` as a field of type ``expected`` holds it; a one-line error otherwise.

    A list field takes a tuple or list, a comma-separated string (empty parts dropped, so
    ``""`` is the empty list) or one scalar.
    """
    if not expected.many:
        return _coerce_scalar(key, value, expected)
    if isinstance(value, str):
        items: list[Any] = [part for part in value.split(",") if part.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    return tuple(_coerce_scalar(key, item, expected) for item in items)


def field_types(cls: type) -> dict[str, FieldType]:
    """Field name -> :class:`FieldType` of a config dataclass."""
    hints = typing.get_type_hints(cls)
    out: dict[str, FieldType] = {}
    for f in fields(cls):
        hint = hints[f.name]
        if isinstance(hint, types.UnionType):
            raise TypeError(f"{cls.__name__}.{f.name}: config fields must have one type")
        if typing.get_origin(hint) is tuple:
            args = typing.get_args(hint)
            if len(args) != 2 or args[1] is not Ellipsis or args[0] not in SCALARS:
                raise TypeError(f"{cls.__name__}.{f.name}: write tuple[int, ...] (or float, ...)")
            out[f.name] = FieldType(args[0], many=True)
        elif hint in SCALARS:
            out[f.name] = FieldType(hint)
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: unsupported config type {hint!r}")
    return out


@dataclass
class Config:
    """Base of typed configs: construction from run-config keys, help, validation.

    Subclass it as a dataclass (or compose :mod:`fedlab.key_groups`); give each field a line in
    ``KEY_HELP``; override :meth:`validate` to check ranges, calling ``super().validate()``.
    """

    #: One line per key (field name -> meaning), merged along the class hierarchy by
    #: :meth:`key_help`; a test checks that every field of every app's config has one.
    KEY_HELP: ClassVar[dict[str, str]] = {}

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
        types_ = field_types(type(self))
        meaning = self.key_help()
        return sorted(
            (to_key(f.name), types_[f.name].name, getattr(self, f.name), meaning.get(f.name, ""))
            for f in fields(self)
        )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, owner: str = "") -> Self:
        """Build from run-config keys (kebab or snake case), refusing unknown keys and types.

        ``owner`` names who is asking (``app 'diffsr'``) in the unknown-key error.
        """
        types_ = field_types(cls)
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            name = to_field(key)
            if name not in types_:
                raise FedlabError(
                    f"unknown run-config key {key!r} for {owner or cls.__name__}; "
                    f"valid keys: {', '.join(cls.keys())} (--list-keys shows each one's meaning)"
                )
            kwargs[name] = coerce(to_key(name), value, types_[name])
        config = cls(**kwargs)
        config.validate()
        return config

    def to_mapping(self) -> dict[str, ConfigValue]:
        """Run-config keys -> values (lists as tuples)."""
        return {to_key(f.name): getattr(self, f.name) for f in fields(self)}

    def to_json(self) -> dict[str, Any]:
        """Run-config keys -> JSON values (lists as lists), as ``config.json`` holds them."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.to_mapping().items()}

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
        check_finite(self)


# -- public validators (each raises a one-line FedlabError naming the key) ----------------------
def check_finite(cfg: Any) -> None:
    """Every float value is finite (``value <= 0`` is False for NaN, so range checks alone
    would let NaN through)."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, float) and not math.isfinite(item):
                raise FedlabError(f"{to_key(f.name)} must hold finite numbers, got {value}")


def check_positive(cfg: Any, *names: str) -> None:
    """Each named field (or every element of a list field) is > 0."""
    for name in names:
        value = getattr(cfg, name)
        if any(v <= 0 for v in _items(value)):
            raise FedlabError(f"{to_key(name)} must be > 0, got {_show(value)}")


def check_non_negative(cfg: Any, *names: str) -> None:
    """Each named field (or every element of a list field) is >= 0."""
    for name in names:
        value = getattr(cfg, name)
        if any(v < 0 for v in _items(value)):
            raise FedlabError(f"{to_key(name)} must be >= 0, got {_show(value)}")


def check_range(cfg: Any, name: str, low: float, high: float) -> None:
    """``low <= value <= high`` for the named field (or every element of a list field)."""
    value = getattr(cfg, name)
    if any(not low <= v <= high for v in _items(value)):
        raise FedlabError(f"{to_key(name)} must lie in [{low}, {high}], got {_show(value)}")


def check_unit_interval(cfg: Any, name: str, *, open_low: bool, open_high: bool = False) -> None:
    """The named field lies in (0, 1], [0, 1], (0, 1) or [0, 1) as the flags say."""
    value = getattr(cfg, name)
    low_ok = value > 0 if open_low else value >= 0
    high_ok = value < 1 if open_high else value <= 1
    if not (low_ok and high_ok):
        interval = f"{'(' if open_low else '['}0, 1{')' if open_high else ']'}"
        raise FedlabError(f"{to_key(name)} must lie in {interval}, got {value}")


def check_choice(cfg: Any, name: str, allowed: tuple[str, ...]) -> None:
    """The named field (or every element of a list field) is one of ``allowed``."""
    value = getattr(cfg, name)
    bad = [v for v in _items(value) if v not in allowed]
    if bad:
        shown = f"{to_key(name)}: {', '.join(map(repr, bad))}" if isinstance(value, tuple) \
            else f"{to_key(name)} {value!r}"  # fmt: skip
        raise FedlabError(f"{shown} is not one of: {', '.join(allowed)}")


def check_not_empty(cfg: Any, name: str) -> None:
    """A list field names at least one value."""
    if not getattr(cfg, name):
        example = field_types(type(cfg))[name].example()
        key = to_key(name)
        raise FedlabError(f"{key} must name at least one value, e.g. {key}={example}")


def _items(value: Any) -> tuple[Any, ...]:
    return value if isinstance(value, tuple) else (value,)


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


# -- reading keys from the command line and TOML ------------------------------------------------
def parse_override(pair: str) -> tuple[str, Any]:
    """Parse ``key=value`` with TOML value syntax; bare words are strings, ``[2, 4]`` a list."""
    key, sep, raw = pair.partition("=")
    key = key.strip()
    if not sep or not key:
        raise FedlabError(f"run-config override {pair!r} is not key=value; write e.g. lr=0.1")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except (tomllib.TOMLDecodeError, ValueError):  # ValueError: an integer past 4300 digits
        value = raw
    if isinstance(value, dict) or (
        isinstance(value, list) and not all(isinstance(v, SCALARS) for v in value)
    ):
        raise FedlabError(
            f"run-config value for {key!r} must be a bool, number, string or a flat list, "
            f"got {raw!r}"
        )
    return key, value


def load_toml_config(path: str | Path) -> dict[str, Any]:
    """Read a run-config TOML file: top-level keys, or a ``[tool.flwr.app.config]`` table."""
    path = Path(path)
    if not path.is_file():
        raise FedlabError(f"run-config file {str(path)!r} does not exist; give a TOML file path")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, ValueError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise FedlabError(f"run-config file {str(path)!r} is not valid TOML: {reason}") from None
    table = data.get("tool", {}).get("flwr", {}).get("app", {}).get("config")
    return dict(table) if isinstance(table, dict) else data
