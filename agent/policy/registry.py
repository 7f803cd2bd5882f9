"""One registry: plugin name -> factory, for filters, scorers and queue orderers.

A name means one plugin across all kinds, so a profile entry is never ambiguous.
Registering a name twice raises: a silent replacement would change decisions without
anyone noticing. Later plugins (learned scorers, other orderers) register here too.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from enum import StrEnum
from inspect import Parameter
from typing import Any

from cloudai.errors import ConfigError

from . import filters, ordering, scorers


class Kind(StrEnum):
    FILTER = "filter"
    SCORER = "scorer"
    ORDERER = "orderer"


class Registry:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[Kind, Callable[..., Any]]] = {}

    def register(self, kind: Kind | str, name: str, factory: Callable[..., Any]) -> None:
        if not name:
            raise ConfigError(f"a {kind} plugin needs a name")
        if name in self._entries:
            have = self._entries[name][0]
            raise ConfigError(f"plugin name {name!r} is already registered (as a {have})")
        self._entries[name] = (Kind(kind), factory)

    def kind_of(self, name: str) -> Kind | None:
        entry = self._entries.get(name)
        return entry[0] if entry else None

    def names(self, kind: Kind | str) -> list[str]:
        return sorted(n for n, (k, _) in self._entries.items() if k == Kind(kind))

    def create(self, kind: Kind | str, name: str, **params: Any) -> Any:
        """A new plugin instance; raises ConfigError for an unknown or wrong-kind name."""
        kind = Kind(kind)
        entry = self._entries.get(name)
        if entry is None:
            known = ", ".join(self.names(kind)) or "none"
            raise ConfigError(f"unknown {kind} {name!r} (known: {known})")
        if entry[0] != kind:
            raise ConfigError(f"{name!r} is a {entry[0]}, not a {kind}")
        try:
            return entry[1](**params)
        except TypeError as err:
            unknown = _unknown_params(entry[1], params)
            if unknown is None:
                raise
            raise ConfigError(f"{kind} {name!r} has no parameter {unknown}") from err

    def copy(self) -> Registry:
        new = Registry()
        new._entries = dict(self._entries)
        return new


def _unknown_params(factory: Callable[..., Any], params: dict[str, Any]) -> str | None:
    """Which of `params` `factory` does not take, with what it does take; None when it
    takes them all (or its signature cannot be read)."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    kinds = (Parameter.POSITIONAL_OR_KEYWORD, Parameter.KEYWORD_ONLY)
    takes = [n for n, p in sig.parameters.items() if p.kind in kinds]
    if any(p.kind == Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    unknown = [k for k in params if k not in takes]
    if not unknown:
        return None
    return f"{unknown[0]!r} (it takes: {', '.join(takes) or 'none'})"


def _with_builtins() -> Registry:
    reg = Registry()
    for cls in filters.BUILTIN_FILTERS:
        reg.register(Kind.FILTER, cls.name, cls)
    for cls in scorers.BUILTIN_SCORERS:
        reg.register(Kind.SCORER, cls.name, cls)
    for cls in ordering.BUILTIN_ORDERERS:
        reg.register(Kind.ORDERER, cls.name, cls)
    return reg


REGISTRY = _with_builtins()
