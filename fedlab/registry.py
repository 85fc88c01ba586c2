"""Name -> object registries for the plugin types, with entry points for outside packages.

A researcher's package adds to a registry either by importing it and decorating a class
(``@STRATEGIES.register("mine")``) or, without being imported by us, through an entry point in
the group ``fedlab.<kind>`` (for example ``fedlab.strategies``) whose value is ``module:attr``.
Any registry also accepts ``module:attr`` directly, so a run config can name a class that was
never registered.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from fedlab.errors import FedlabError

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
    builtin_modules : tuple of str
        Modules whose import registers the built-in plugins; imported on first lookup so that
        importing the registry stays cheap.
    """

    def __init__(
        self, kind: str, builtin_modules: tuple[str, ...] = (), singular: str | None = None
    ) -> None:
        self.kind = kind
        self.singular = singular or kind.removesuffix("s")
        self.builtin_modules = builtin_modules
        self._items: dict[str, T] = {}
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
        existing = self._items.get(name)
        if existing is not None and existing is not obj:
            raise FedlabError(
                f"{self.kind} name {name!r} is already registered to {existing!r}; "
                "choose another name"
            )
        self._items[name] = obj

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for module in self.builtin_modules:
            importlib.import_module(module)
        for ep in entry_points(group=f"fedlab.{self.kind}"):
            if ep.name not in self._items:
                self._items[ep.name] = ep.load()

    def names(self) -> list[str]:
        """Sorted names known now, entry points included."""
        self._load_entry_points()
        return sorted(self._items)

    def get(self, name: str) -> T:
        """Look up ``name``, or import it when it is ``module:attr``.

        Raises
        ------
        FedlabError
            Naming the unknown value and listing the known ones.
        """
        if ":" in name:
            return import_object(name, what=self.singular)
        self._load_entry_points()
        try:
            return self._items[name]
        except KeyError:
            raise FedlabError(
                f"unknown {self.singular} {name!r}; known: {', '.join(self.names())} "
                "(or give 'module:attr' for your own)"
            ) from None

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


# Each built-in plugin module registers itself on import; list new ones here.
STRATEGIES: Registry[Any] = Registry(
    "strategies", ("strategies.fedavg", "strategies.fedfoa"), singular="strategy"
)
WORKLOADS: Registry[Any] = Registry(
    "workloads", ("clients.supervised.workload", "clients.ssl.workload", "clients.zsl.workload")
)
DATASETS: Registry[Any] = Registry("datasets", ("fedlab.data.datasets", "clients.ssl.data"))
ATTACKS: Registry[Any] = Registry("attacks", ("attacks.dlg", "attacks.idlg", "attacks.inverting"))
DENOISERS: Registry[Any] = Registry("denoisers", ("attacks.pgla.denoisers",))
