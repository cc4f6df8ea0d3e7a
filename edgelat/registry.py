"""One registry class for everything edgelat looks up by name (after timm's ``_registry.py``).

Op kinds, device presets, search spaces, zoo models, accuracy proxies, pruning importances,
compile recipes and transports each live in a :class:`Registry`. Entries are registered where
they are defined (``@OPS.register("conv2d")``); an entry defined in a module that is slow to
import (torch, TVM) is *declared* by name with that module (:meth:`Registry.declare`), so that
listing names for ``--help`` or an error message costs nothing, and the module is imported the
first time one of its entries is asked for.

Example:
    >>> COLOURS: Registry[str] = Registry("colour")
    >>> COLOURS.register("red", "#f00")
    '#f00'
    >>> COLOURS.get("red"), COLOURS.names()
    ('#f00', ['red'])
    >>> COLOURS.get("blue")
    Traceback (most recent call last):
    ...
    edgelat.errors.UsageError: unknown colour 'blue'; known colours: red
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar, cast, overload

from edgelat.errors import UsageError

__all__ = ["Registry"]

T = TypeVar("T")
E = TypeVar("E")


class Registry(Generic[T]):
    """Named entries of one kind.

    Args:
        kind: what an entry is, for messages ("search space", "preset").
        error: the exception an unknown name raises (a :class:`UsageError`: exit code 2 in the CLI).
        hint: appended to the unknown-name message (e.g. "see `edgelat zoo list`").
        sort: list names sorted (else in registration order, which some registries mean).
    """

    def __init__(self, kind: str, *, error: type[UsageError] = UsageError, hint: str = "", sort: bool = False) -> None:
        self.kind = kind
        self.error = error
        self.hint = hint
        self.sort = sort
        self._entries: dict[str, T] = {}
        self._declared: dict[str, str] = {}  # name -> module that registers it when imported

    @overload
    def register(self, name: str) -> Callable[[E], E]: ...

    @overload
    def register(self, name: str, entry: T) -> T: ...

    def register(self, name: str, entry: Any = None) -> Any:
        """Register ``entry`` under ``name``; without ``entry``, a decorator registering what it decorates."""
        if entry is None:

            def decorate(obj: E) -> E:
                self.register(name, cast(T, obj))  # the decorated object is the entry
                return obj

            return decorate
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def declare(self, name: str, module: str) -> None:
        """``name`` is registered by ``module`` when it is imported (imported on first :meth:`get`)."""
        if name in self._entries or name in self._declared:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._declared[name] = module

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)
        self._declared.pop(name, None)

    def get(self, name: str) -> T:
        """The entry registered as ``name``; an unknown name raises ``error`` listing the known ones."""
        if name not in self._entries and name in self._declared:
            importlib.import_module(self._declared[name])
            if name not in self._entries:
                raise RuntimeError(f"{self._declared[name]} was declared to register {self.kind} {name!r} but did not")
        try:
            return self._entries[name]
        except KeyError:
            raise self.error(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        known = self.names()
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6) if len(known) > 12 else []
        listed = ", ".join(known) if len(known) <= 12 else f"{', '.join(known[:12])}, ... ({len(known)} in all)"
        return (
            f"unknown {self.kind} {name!r}"
            + (f"; did you mean {', '.join(close)}?" if close else f"; known {self._plural()}: {listed}")
            + (f" ({self.hint})" if self.hint else "")
        )

    def names(self, pattern: str = "*") -> list[str]:
        """Registered and declared names matching a shell-style pattern; nothing is imported."""
        names = [*self._entries, *(n for n in self._declared if n not in self._entries)]
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        return sorted(names) if self.sort else names

    def items(self) -> list[tuple[str, T]]:
        """Every (name, entry), importing declared entries' modules."""
        return [(n, self.get(n)) for n in self.names()]

    def choices(self, last: str = "or") -> str:
        """The names for help text: ``"a, b or c"``."""
        names = self.names()
        return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {last} {names[-1]}"

    def _plural(self) -> str:
        return self.kind[:-1] + "ies" if self.kind.endswith("y") else self.kind + ("es" if self.kind.endswith("s") else "s")

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._declared

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"
