"""A marketplace strategy's source: checked against its SHA-256, executed, its one
:class:`~fedhub.fl.Strategy` subclass picked, its declared parameters checked.

Runs where the source may run: in the strategy host (:mod:`fedhub.fl.market_host`), never
in the experiments service or a Dask worker process (docs/marketplace.md, "Using an
asset"). :mod:`fedhub.fl.market` re-exports these names.
"""

from __future__ import annotations

import hashlib
import re
import sys
import types
from collections.abc import Mapping
from typing import Any

from .registry import Registry
from .strategies import Strategy


class MarketCodeError(ValueError):
    """A marketplace source that cannot be used: wrong hash, no strategy, a failing hook,
    a parameter out of its bounds, or state that is not plain data. Names the asset."""


#: classes already loaded in this process, by the source's SHA-256
_LOADED: dict[str, type[Strategy]] = {}


def load_strategy(source: str, sha256: str, ref: str) -> type[Strategy]:
    """The one :class:`Strategy` subclass that ``source`` defines (``STRATEGY = Name`` picks
    one of several), after checking the source against ``sha256``. Cached by hash."""
    if hashlib.sha256(source.encode()).hexdigest() != sha256:
        raise MarketCodeError(f"{ref}: the source does not match its SHA-256 {sha256}")
    cls = _LOADED.get(sha256)
    if cls is not None:
        return cls
    name = "fedhub_market_" + re.sub(r"\W", "_", ref.removeprefix("market/"))
    module = types.ModuleType(name, f"marketplace asset {ref}")
    module.__file__ = f"<{ref}>"
    sys.modules[name] = module  # dataclasses and pickling by reference look here
    try:
        exec(compile(source, f"<{ref}>", "exec"), module.__dict__)  # noqa: S102 - reviewed source
    except Exception as e:  # noqa: BLE001 - any error of the asset's code is the asset's
        sys.modules.pop(name, None)
        raise MarketCodeError(
            f"{ref}: the source failed to load: {type(e).__name__}: {e}"
        ) from None
    cls = _pick_class(module, ref)
    _LOADED[sha256] = cls
    return cls


def _pick_class(module: types.ModuleType, ref: str) -> type[Strategy]:
    chosen = module.__dict__.get("STRATEGY")
    if chosen is not None:
        if not (isinstance(chosen, type) and issubclass(chosen, Strategy)):
            raise MarketCodeError(f"{ref}: STRATEGY must name a fedhub.fl.Strategy subclass")
        return chosen
    own = [
        v
        for v in module.__dict__.values()
        if isinstance(v, type) and issubclass(v, Strategy) and v.__module__ == module.__name__
    ]
    if not own:
        raise MarketCodeError(f"{ref}: the source defines no fedhub.fl.Strategy subclass")
    if len(own) > 1:
        names = ", ".join(sorted(c.__name__ for c in own))
        raise MarketCodeError(
            f"{ref}: the source defines several strategies ({names}); "
            "name one with STRATEGY = <class>"
        )
    return own[0]


def check_params(cls: type[Strategy], ref: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` against the class's declared ``params`` bounds (none declared: none
    taken); :class:`~fedhub.fl.registry.ParameterError` naming ``strategy_params.<key>``."""
    registry = Registry("strategy")
    registry.register(ref, cls, params=getattr(cls, "params", None) or {})
    return registry.check(ref, params)
