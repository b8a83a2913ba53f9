"""Name registries, so that a JSON experiment spec can name datasets, models and strategies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Registry:
    """Maps short names (``"fedprox"``) to constructors (``FedProx``).

    Names are case-insensitive but otherwise exact: guessing at spellings would hide typos
    in specs, and an unknown name fails with the list of known ones.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str, obj: Callable[..., Any] | None = None):
        """Register ``obj`` under ``name``; usable as a decorator."""

        def _add(target: Callable[..., Any]) -> Callable[..., Any]:
            self._entries[name.lower()] = target
            return target

        return _add(obj) if obj is not None else _add

    def constructor(self, name: str) -> Callable[..., Any]:
        """The constructor registered as ``name`` (to inspect its parameters)."""
        try:
            return self._entries[name.lower()]
        except KeyError:
            known = ", ".join(sorted(self._entries))
            raise KeyError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def get(self, name: str, **params: Any) -> Any:
        """Build the registered object ``name`` with ``params``."""
        return self.constructor(name)(**params)

    def names(self) -> list[str]:
        return sorted(self._entries)
