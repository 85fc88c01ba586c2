"""Name -> object registries for the plugin types, with entry points for outside packages.

A researcher's package adds to a registry either by importing it and decorating a class
(``@STRATEGIES.register("mine")``) or, without being imported by us, through an entry point in
the group ``fedlab.<kind>`` (for example ``fedlab.strategies``) whose value is ``module:attr``.
fedlab's own built-ins are declared the same way, in its ``pyproject.toml``: the core names no
plugin module, and every process (a Ray worker included) sees the same registries because entry
points are read from the installed metadata, not filled in by whoever imported what. An entry
point is imported on the first lookup of its name, so listing names imports nothing.
Any registry also accepts ``module:attr`` directly, so a run config can name a class that was
never registered, unless the caller passes ``allow_import=False`` to :meth:`Registry.get`: the
trace reader does, because a name read from a file someone else wrote must not choose code to
import and run. A plugin may also be registered under a ``module:attr`` name, which is then
looked up like any other name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from fedlab.errors import FedlabError
from fedlab.extras import explain_missing_module

T = TypeVar("T")


def import_object(spec: str, *, what: str = "object") -> Any:
    """Import ``module:attr`` (``attr`` may be dotted).

    Raises
    ------
    FedlabError
        If the module cannot be imported or has no such attribute.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise FedlabError(
            f"{what} {spec!r} is not of the form 'module:attr'; write e.g. 'mypkg.mymod:MyClass'"
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        explained = explain_missing_module(exc, f"{what} {spec!r}")
        if explained is not None:
            raise explained from None
        raise FedlabError(
            f"{what} {spec!r}: cannot import module {module_name!r} ({exc}); "
            "check the spelling and that its package is installed or on PYTHONPATH"
        ) from None
    except ImportError as exc:
        raise FedlabError(
            f"{what} {spec!r}: cannot import module {module_name!r} ({exc}); "
            "check the spelling and that its package is installed or on PYTHONPATH"
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise FedlabError(
                f"{what} {spec!r}: module {module_name!r} has no attribute {attr!r}; "
                "check the name after the ':'"
            )
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """A named collection of plugins of one kind.

    Parameters
    ----------
    kind : str
        Plural noun used in messages and in the entry-point group ``fedlab.<kind>``.
    singular : str, optional
        Noun for one plugin in messages; default ``kind`` without its final "s".
    """

    def __init__(self, kind: str, singular: str | None = None) -> None:
        self.kind = kind
        self.singular = singular or kind.removesuffix("s")
        self._items: dict[str, T] = {}
        self._lazy: dict[str, str] = {}
        self._entry_points_loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator adding ``obj`` under ``name``; a name can be registered only once."""

        def decorator(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorator

    def add(self, name: str, obj: T) -> None:
        """Add ``obj`` under ``name``.

        Raises
        ------
        FedlabError
            If ``name`` is already taken by another object.
        """
        if name in self._lazy and name not in self._items and self._lazy_target_is(name, obj):
            # A module named by an entry point may also decorate its class: the same object.
            self._items[name] = obj
            return
        existing = self._items.get(name, self._lazy.get(name))
        if existing is not None and existing is not obj:
            raise FedlabError(
                f"{self.kind} name {name!r} is already registered to {existing!r}; "
                "choose another name"
            )
        self._items[name] = obj

    def add_lazy(self, name: str, target: str) -> None:
        """Add the object at ``target`` (``module:attr``) under ``name``, imported on first lookup.

        The import is fixed by the registering code, so a lazy name is as safe to look up with
        ``allow_import=False`` as any other registered one.

        Raises
        ------
        FedlabError
            If ``name`` is already registered.
        """
        if name in self._items or self._lazy.get(name, target) != target:
            raise FedlabError(f"{self.kind} name {name!r} is already registered; choose another")
        self._lazy[name] = target

    def _lazy_target_is(self, name: str, obj: object) -> bool:
        """Whether the lazy target of ``name`` is ``obj`` (compared without a second import when
        ``obj`` is being defined by the target's own module right now)."""
        target = self._lazy[name]
        qualname = getattr(obj, "__qualname__", None)
        if f"{getattr(obj, '__module__', None)}:{qualname}" == target:
            return True
        module_name = target.partition(":")[0]
        if module_name == getattr(obj, "__module__", None):
            return False  # the same module defines another object under this name
        try:
            return import_object(target, what=self.singular) is obj
        except FedlabError:
            return False

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=f"fedlab.{self.kind}"):
            if ep.name not in self._items and ep.name not in self._lazy:
                self._lazy[ep.name] = ep.value

    def names(self) -> list[str]:
        """Sorted names known now, entry points included."""
        self._load_entry_points()
        return sorted({*self._items, *self._lazy})

    def get(self, name: str, *, allow_import: bool = True) -> T:
        """Look up ``name``, or import it when it is ``module:attr`` and not registered.

        Parameters
        ----------
        name : str
            A registered name, or ``module:attr``.
        allow_import : bool
            Whether an unregistered ``module:attr`` is imported; with False only registered
            names (entry points included) are returned.

        Raises
        ------
        FedlabError
            Naming the unknown value and listing the known ones.
        """
        if ":" in name and allow_import and name not in self._items and name not in self._lazy:
            return import_object(name, what=self.singular)
        self._load_entry_points()
        if name in self._lazy and name not in self._items:
            self._items[name] = import_object(self._lazy[name], what=self.singular)
        try:
            return self._items[name]
        except KeyError:
            hint = (
                "(or give 'module:attr' for your own)"
                if allow_import
                else "(importing 'module:attr' is disabled here; register it instead)"
            )
            raise FedlabError(
                f"unknown {self.singular} {name!r}; known: {', '.join(self.names())} {hint}"
            ) from None

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._items or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


# Built-ins come from the `fedlab.<kind>` entry-point groups in pyproject.toml; add new ones there.
STRATEGIES: Registry[Any] = Registry("strategies", singular="strategy")
WORKLOADS: Registry[Any] = Registry("workloads")
DATASETS: Registry[Any] = Registry("datasets")
ATTACKS: Registry[Any] = Registry("attacks")
DENOISERS: Registry[Any] = Registry("denoisers")
MODELS: Registry[Any] = Registry("models")
"""Model builders by name (``builder(**kwargs) -> torch.nn.Module``); a trace's model spec names
one of these, and a ``module:attr`` that is not registered is only built when the reader trusts
the trace's code."""
APPS: Registry[Any] = Registry("apps")
"""The named apps (:class:`~fedlab.appspec.AppSpec`) that ``fedlab.apps:<name>`` resolves."""
COMMANDS: Registry[Any] = Registry("commands")
"""``fedlab`` subcommands: each a ``register(subparsers)`` callable adding its parsers."""
