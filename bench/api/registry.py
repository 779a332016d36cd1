"""A small, typed registry shared by classifiers, defenses, attacks, datasets, sources and checks.

Entries are registered with decorators at import time (the timm ``register_model`` pattern). Every package,
Frontline's own built-ins included, arrives the same way: through an entry point in one of the
``frontline.*`` groups, whose module registers its entries when imported. The first lookup in any registry
imports them all, so a package that fills several registries (a zoo with architectures and recipes) is
complete whichever registry is asked first, and nothing in this repository has to be edited to plug in a
new model or defense.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from bench.errors import BenchError, UnknownNameError

T = TypeVar("T")

#: The entry-point groups a package may register through; see the README's plug-in section. A group only
#: says what a package is expected to register: its module may fill any registry.
GROUPS = (
    "frontline.attacks",
    "frontline.checks",
    "frontline.classifiers",
    "frontline.datasets",
    "frontline.defenses",
    "frontline.losses",
    "frontline.recipes",
    "frontline.source_checks",
    "frontline.sources",
)
_plugins_loaded = False


def load_plugins() -> None:
    """Import every module named by a ``frontline.*`` entry point, once per process.

    The flag is set before importing, so a plug-in module that looks something up while it registers
    (a defense reading the attack registry) does not start the loading again.
    """
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in (ep for group in GROUPS for ep in entry_points(group=group)):
        try:
            ep.load()
        except ImportError as e:
            raise BenchError(f"plug-in {ep.name!r} ({ep.group} = {ep.value}) failed to import: {e}") from e


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    description: str


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def add(self, name: str, obj: T, description: str | None = None) -> T:
        if name in self._entries and self._entries[name].obj is not obj:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        doc = description if description is not None else (getattr(obj, "__doc__", None) or "")
        self._entries[name] = Entry(name, obj, _first_line(doc))
        return obj

    def register(self, name: str, description: str | None = None) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            return self.add(name, obj, description)

        return decorator

    def entry(self, name: str) -> Entry[T]:
        load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._entries) from None

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        load_plugins()
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def names(self) -> list[str]:
        return [e.name for e in self]


def _first_line(doc: str) -> str:
    for line in doc.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""
