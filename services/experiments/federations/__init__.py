"""Federations across tenants in the experiments service: several tenants train one model,
each one's data read only by workers that run as that tenant's account.

- :mod:`.models`: the tables (and who sees which rows: :mod:`fedhub.db.rls`);
- :mod:`.lifecycle`: the state machine (draft → running → finished | failed | cancelled |
  stopped_budget; members invited → joined | declined);
- :mod:`.handlers`: the REST API (``/api/v1/federations``);
- :mod:`.runner`: the run, in the service's scheduler pool;
- :mod:`.audit`: one event per member's chain.

See ``docs/federations.md``.
"""

from __future__ import annotations

from .handlers import handlers
from .runner import FederationRunner

__all__ = ["FederationRunner", "handlers"]
