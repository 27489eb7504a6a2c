"""Extension points: one registry per kind of thing Conclave can be extended with (methods, scorers, tools).

A registry maps names to entries. Built-in entries register where they are defined, with a decorator
(``@METHODS.register("cot", ...)`` in ``workflows/methods.py``); third-party packages add entries through a Python
entry-point group (``conclave.methods``, ``conclave.scorers``, ``conclave.tools``) whose entries are loaded the first
time a registry is listed or looked up. Help strings, ``conclave methods|scorers`` listings and the errors for unknown
names all come from the registry, so adding a method or a scorer touches one file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from conclave.errors import ConfigError

__all__ = ["Registry"]

T = TypeVar("T")
log = logging.getLogger(__name__)


class Registry(Generic[T]):
    """Named entries of one kind. ``kind`` names them in messages ("method"); ``group`` is the entry-point group
    plugins use; ``adapt(name, loaded)`` turns what a plugin's entry point loads into an entry (``ValueError`` or
    ``TypeError`` when it cannot). A plugin that fails to import or adapt, whatever it raises (``SystemExit``
    included; only Ctrl-C goes through), is skipped with a warning and listed in :attr:`plugin_errors`; the rest
    keep working."""

    def __init__(self, kind: str, group: str, adapt: Callable[[str, object], T] | None = None):
        self.kind = kind
        self.group = group
        self._adapt = adapt
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self._plugins_loaded = False
        self.plugin_errors: list[str] = []
        """One line per plugin entry that could not be loaded (shown by the listings)."""
        self._origins: dict[str, str] = {}
        """Plugin name -> what its entry point names (``module:attr``), for messages."""

    def add(self, name: str, entry: T, *, aliases: tuple[str, ...] = ()) -> T:
        """Register ``entry`` under ``name`` (and ``aliases``); a name taken twice is a programming error."""
        for key in (name, *aliases):
            if key in self._entries or key in self._aliases:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
        self._entries[name] = entry
        for alias in aliases:
            self._aliases[alias] = name
        return entry

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        if self._adapt is None:
            return
        for ep in sorted(entry_points(group=self.group), key=lambda e: e.name):
            if ep.name in self._entries or ep.name in self._aliases:
                self.plugin_errors.append(f"{ep.name} ({ep.value}): the name is taken by a built-in {self.kind}")
                continue
            self._origins[ep.name] = ep.value
            try:
                self._entries[ep.name] = self._adapt(ep.name, ep.load())
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - a plugin's SystemExit or crash must not stop Conclave
                self.report(ep.name, exc)

    def report(self, name: str, problem: BaseException | str) -> None:
        """Record that plugin ``name`` failed (to load, or later: a tools plugin making its tools): one line in
        :attr:`plugin_errors` for the listings, and one warning."""
        what = problem if isinstance(problem, str) else f"{type(problem).__name__}: {problem}"
        line = f"{name} ({self._origins.get(name, self.group)}): {what}"
        if line not in self.plugin_errors:
            self.plugin_errors.append(line)
            log.warning("%s plugin not loaded: %s", self.kind, line)

    def canonical(self, name: str) -> str:
        """The registered name ``name`` (or an alias of it) stands for; ConfigError naming the choices otherwise."""
        self._load_plugins()
        key = name.strip()
        key = self._aliases.get(key, key)
        if key not in self._entries:
            raise ConfigError(f"unknown {self.kind} {name!r}", hint=f"use one of: {', '.join(self.names())}")
        return key

    def get(self, name: str) -> T:
        return self._entries[self.canonical(name)]

    def names(self) -> tuple[str, ...]:
        """Every registered name, built-ins first in registration order, then plugins by name."""
        self._load_plugins()
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return isinstance(name, str) and (name in self._entries or name in self._aliases)

    def __iter__(self) -> Iterator[T]:
        self._load_plugins()
        return iter(list(self._entries.values()))

    def aliases_of(self, name: str) -> tuple[str, ...]:
        return tuple(a for a, n in self._aliases.items() if n == name)
