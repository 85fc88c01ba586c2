"""Typed, bounded fields of a JSON config from someone else (a model folder's config.json).

Each :class:`Rule` says what one field may hold; :func:`fedlab.model_folder.validate_fields`
applies a model kind's rules before anything is built, so that a wrong type or a huge value is
a one-line error, not a ``TypeError`` deep inside a constructor or a 17 GB allocation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from fedlab.limits import MAX_INT


class Rule:
    """What one config field may hold; :meth:`check` returns the value or raises ValueError
    with the allowed text (the caller adds folder, file and field)."""

    optional: bool = False

    def describe(self) -> str:
        raise NotImplementedError

    def accepts(self, value: Any) -> bool:
        raise NotImplementedError

    def check(self, value: Any) -> Any:
        if value is None and self.optional:
            return None
        if not self.accepts(value):
            raise ValueError(self.describe() + (" or null" if self.optional else ""))
        return value


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Int(Rule):
    """An integer in ``[low, high]`` (never a bool or a float)."""

    low: int
    high: int
    optional: bool = False

    def __post_init__(self) -> None:
        assert -MAX_INT <= self.low <= self.high <= MAX_INT

    def describe(self) -> str:
        return f"an integer in [{self.low}, {self.high}]"

    def accepts(self, value: Any) -> bool:
        return is_int(value) and self.low <= value <= self.high


@dataclass(frozen=True)
class Number(Rule):
    """A finite number (int or float) in ``[low, high]`` (``(low, high]`` when ``open_low``)."""

    low: float
    high: float
    optional: bool = False
    open_low: bool = False

    def describe(self) -> str:
        return f"a finite number in {'(' if self.open_low else '['}{self.low}, {self.high}]"

    def accepts(self, value: Any) -> bool:
        if not (is_int(value) or isinstance(value, float)):
            return False
        if is_int(value) and abs(value) > MAX_INT:  # float(10**400) would overflow
            return False
        number = float(value)
        if not math.isfinite(number):
            return False
        above = self.low < number if self.open_low else self.low <= number
        return above and number <= self.high


@dataclass(frozen=True)
class Bool(Rule):
    """``true`` or ``false``."""

    optional: bool = False

    def describe(self) -> str:
        return "true or false"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)


@dataclass(frozen=True)
class Choice(Rule):
    """One string of an allowlist (the value selects a class or a code path)."""

    values: tuple[str, ...]
    optional: bool = False

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.values


@dataclass(frozen=True)
class IntList(Rule):
    """A list of ``min_len``-``max_len`` integers, each in ``[low, high]``."""

    low: int
    high: int
    min_len: int = 1
    max_len: int = 16
    optional: bool = False

    def describe(self) -> str:
        return f"a list of {self.min_len}-{self.max_len} integers in [{self.low}, {self.high}]"

    def accepts(self, value: Any) -> bool:
        return (
            isinstance(value, list | tuple)
            and self.min_len <= len(value) <= self.max_len
            and all(is_int(v) and self.low <= v <= self.high for v in value)
        )


@dataclass(frozen=True)
class ChoiceList(Rule):
    """A list of ``min_len``-``max_len`` strings, each from an allowlist."""

    values: tuple[str, ...]
    min_len: int = 1
    max_len: int = 16
    optional: bool = False

    def describe(self) -> str:
        return f"a list of {self.min_len}-{self.max_len} names, each one of " + ", ".join(
            repr(v) for v in self.values
        )

    def accepts(self, value: Any) -> bool:
        return (
            isinstance(value, list | tuple)
            and self.min_len <= len(value) <= self.max_len
            and all(isinstance(v, str) and v in self.values for v in value)
        )


@dataclass(frozen=True)
class ListOf(Rule):
    """A list of ``min_len``-``max_len`` items, each accepted by ``item``."""

    item: Rule
    min_len: int = 1
    max_len: int = 16
    optional: bool = False

    def describe(self) -> str:
        return f"a list of {self.min_len}-{self.max_len} items, each {self.item.describe()}"

    def accepts(self, value: Any) -> bool:
        return (
            isinstance(value, list | tuple)
            and self.min_len <= len(value) <= self.max_len
            and all(self.item.accepts(v) for v in value)
        )


@dataclass(frozen=True)
class Tuple(Rule):
    """A list of exactly ``len(items)`` values, the i-th accepted by ``items[i]``."""

    items: tuple[Rule, ...]
    optional: bool = False

    def describe(self) -> str:
        return "a list [" + ", ".join(item.describe() for item in self.items) + "]"

    def accepts(self, value: Any) -> bool:
        return (
            isinstance(value, list | tuple)
            and len(value) == len(self.items)
            and all(item.accepts(v) for item, v in zip(self.items, value, strict=True))
        )


@dataclass(frozen=True)
class IntOrPair(Rule):
    """An integer in ``[low, high]`` or a list of two such (an image side, or height and
    width)."""

    low: int
    high: int
    optional: bool = False

    def describe(self) -> str:
        return f"an integer in [{self.low}, {self.high}] or a list of two such"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, list | tuple):
            return len(value) == 2 and all(Int(self.low, self.high).accepts(v) for v in value)
        return Int(self.low, self.high).accepts(value)
