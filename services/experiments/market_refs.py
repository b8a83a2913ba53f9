"""Marketplace assets named in an experiment spec: the licence is checked at every submission.

A spec may name ``strategy``, ``model``, ``dataset`` or ``init_weights`` as
``market/<slug>@<version>``. Each is checked with the marketplace
(:meth:`fedhub.marketplace.store.MarketStore.check_entitlement`): without an active licence
of the caller's tenant (or seat) the submission is refused with 403 ``not_entitled``
naming the asset. The FL engine cannot load marketplace assets yet (docs/marketplace.md,
"Not built yet"), so a licensed reference is refused too, with 409
``marketplace_not_runnable``, before any quota is reserved, rather than failing in the runner.
"""

from __future__ import annotations

from typing import Any

from fedhub.errors import Conflict
from fedhub.marketplace.store import MarketStore
from fedhub.tenancy.store import TenantStore

FIELDS = ("strategy", "model", "dataset", "init_weights")
PREFIX = "market/"


class MarketplaceNotRunnable(Conflict, code="marketplace_not_runnable"):
    """A licensed marketplace asset that the experiments service cannot run yet."""


def market_refs(body: Any) -> dict[str, str]:
    """``{field: "market/<slug>@<version>"}`` for each marketplace reference in a spec."""
    if not isinstance(body, dict):
        return {}
    return {
        f: body[f] for f in FIELDS if isinstance(body.get(f), str) and body[f].startswith(PREFIX)
    }


def check(db_url: str, tenant: str, user: str, refs: dict[str, str]) -> None:
    """403 for the first reference without a licence; 409 if every one is licensed."""
    market = MarketStore(db_url, TenantStore(db_url))
    for ref in refs.values():
        market.check_entitlement(tenant, user, ref)
    field, ref = next(iter(refs.items()))
    raise MarketplaceNotRunnable(
        f"{field}: {ref} is licensed to {tenant}, but the experiments service cannot run "
        "marketplace assets yet (docs/marketplace.md)",
        details={"field": field, "asset": ref},
    )
