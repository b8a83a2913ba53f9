"""Name registries, so that a JSON experiment spec can name datasets, models and strategies.

Every registered constructor declares its parameters as a small table of :class:`Param`
bounds beside it (type, minimum, maximum, allowed values), as dask-gateway declares its
cluster options. The table is read twice: by the experiments service when a spec is
submitted (:meth:`Registry.check`, an error that names ``model_params.hidden`` and the
bound) and by :meth:`Registry.get` when the engine builds the object, because whatever
reaches the engine may not have come through the service. A parameter the table does not
declare is refused: an unbounded knob is how one tenant's spec takes the shared workers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class ParameterError(ValueError):
    """A registry parameter is unknown, of the wrong type or outside its declared bounds."""

    def __init__(self, field: str, message: str, bound: dict[str, Any] | None = None):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.bound = bound or {}


@dataclass(frozen=True)
class Param:
    """One declared parameter: its type and bounds (inclusive).

    ``type`` is ``int``, ``float``, ``bool`` or ``str``; ``choices`` lists the allowed
    values; ``other`` lists further accepted Python types, checked no further (a
    ``Partitioner`` object, say, which is itself built through its own registry).
    """

    type: type
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    other: tuple[type, ...] = ()

    def bound(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type.__name__}
        if self.min is not None:
            out["min"] = self.min
        if self.max is not None:
            out["max"] = self.max
        if self.choices is not None:
            out["choices"] = list(self.choices)
        return out

    def check(self, field: str, value: Any) -> Any:
        """The value (ints as int, numbers as float), or :class:`ParameterError`."""
        if self.other and isinstance(value, self.other):
            return value
        if self.type is bool:
            if not isinstance(value, bool):
                raise ParameterError(field, "must be true or false", self.bound())
            return value
        if self.type is str:
            if not isinstance(value, str):
                raise ParameterError(field, "must be a string", self.bound())
        elif self.type in (int, float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ParameterError(
                    field, f"must be a number ({self.type.__name__})", self.bound()
                )
            if isinstance(value, float) and not math.isfinite(value):
                raise ParameterError(field, "must be a finite number", self.bound())
            if self.type is int:
                if isinstance(value, float) and not value.is_integer():
                    raise ParameterError(field, "must be a whole number", self.bound())
                value = int(value) if isinstance(value, float) else value
            else:
                value = float(value)
            if self.min is not None and value < self.min:
                raise ParameterError(field, f"must be at least {self.min:g}", self.bound())
            if self.max is not None and value > self.max:
                raise ParameterError(
                    field,
                    f"must be at most {self.max:g}, got {_show(value)}",
                    self.bound(),
                )
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(repr(c) for c in self.choices)
            raise ParameterError(field, f"must be one of {allowed}", self.bound())
        return value


def _show(value: int | float) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value) if abs(value) < 10**30 else "a larger integer"


class Registry:
    """Maps short names (``"fedprox"``) to constructors (``FedProx``) and their bounds.

    Names are case-insensitive but otherwise exact: guessing at spellings would hide typos
    in specs, and an unknown name fails with the list of known ones.
    """

    def __init__(self, kind: str, field: str | None = None) -> None:
        self.kind = kind
        #: how a spec names this registry's parameters in errors (``model_params``)
        self.field = field or f"{kind}_params"
        self._entries: dict[str, Callable[..., Any]] = {}
        self._params: dict[str, dict[str, Param]] = {}

    def register(
        self,
        name: str,
        obj: Callable[..., Any] | None = None,
        *,
        params: Mapping[str, Param] | None = None,
    ):
        """Register ``obj`` under ``name`` with its parameters' bounds; usable as a decorator.

        ``params`` declares every parameter the constructor may be given by name
        (:meth:`get` refuses any other); ``None`` means it takes none.
        """

        def _add(target: Callable[..., Any]) -> Callable[..., Any]:
            self._entries[name.lower()] = target
            self._params[name.lower()] = dict(params or {})
            return target

        return _add(obj) if obj is not None else _add

    def constructor(self, name: str) -> Callable[..., Any]:
        """The constructor registered as ``name`` (to inspect its parameters)."""
        try:
            return self._entries[name.lower()]
        except KeyError:
            known = ", ".join(sorted(self._entries))
            raise KeyError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def params(self, name: str) -> dict[str, Param]:
        """The declared bounds of ``name``'s parameters."""
        self.constructor(name)
        return dict(self._params[name.lower()])

    def check(
        self, name: str, params: Mapping[str, Any], where: str | None = None
    ) -> dict[str, Any]:
        """Validate ``params`` against the declared bounds; refuse undeclared ones.

        Raises :class:`ParameterError` whose field reads ``<where>.<parameter>``.
        """
        where = where or self.field
        declared = self.params(name)
        if not isinstance(params, Mapping):
            raise ParameterError(where, "must be an object")
        out = {}
        for key, value in params.items():
            spec = declared.get(key)
            if spec is None:
                known = ", ".join(sorted(declared)) or "none"
                raise ParameterError(
                    f"{where}.{key}", f"unknown parameter of {self.kind} {name!r} (known: {known})"
                )
            out[key] = spec.check(f"{where}.{key}", value)
        return out

    def get(self, name: str, **params: Any) -> Any:
        """Build the registered object ``name`` with ``params``, rechecked against its bounds."""
        return self.constructor(name)(**self.check(name, params))

    def names(self) -> list[str]:
        return sorted(self._entries)
