"""Marketplace assets named in an experiment spec: the licence checked at every submission
and again at the start of every attempt of the run, the use metered and audited.

A spec may name ``strategy``, ``model``, ``dataset`` or ``init_weights`` as
``market/<slug>@<version>``. Each is checked with the marketplace
(:meth:`fedhub.marketplace.store.MarketStore.check_entitlement`): without an active licence
of the caller's tenant (or seat) the submission is refused with 403 ``not_entitled``
naming the asset. This service runs one kind of asset: an ``algorithm`` named as an FL
run's ``strategy`` (:mod:`fedhub.fl.market`); any other reference (a model, a dataset,
``init_weights``, a non-algorithm strategy, a graph_td3 run's strategy) is refused with
409 ``marketplace_not_runnable`` before any quota is reserved, rather than failing in the
runner. The strategy's ``strategy_params`` are checked against the bounds its source
declares on the tenant's worker when the run starts (the service never runs the source).

At the start of every attempt (:func:`start_use`) the scheduler calls
:meth:`~fedhub.marketplace.store.MarketStore.use`: a licence refunded or revoked while the
run waited cancels it with reason ``not_entitled``; otherwise the use is metered (one per
run) and audited, and the licensed source becomes the run's :class:`RemoteStrategy`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from fedhub.errors import Conflict
from fedhub.marketplace.common import parse_ref
from fedhub.marketplace.models import Asset
from fedhub.marketplace.store import MarketStore
from fedhub.tenancy.store import TenantStore

from .spec import is_market

FIELDS = ("strategy", "model", "dataset", "init_weights")
PREFIX = "market/"
#: what this service can run: (spec field, asset type)
RUNNABLE = {"strategy": "algorithm"}


class MarketplaceNotRunnable(Conflict, code="marketplace_not_runnable"):
    """A licensed marketplace asset that the experiments service cannot run (yet)."""


def market_refs(body: Any) -> dict[str, str]:
    """``{field: "market/<slug>@<version>"}`` for each marketplace reference in a spec."""
    if not isinstance(body, dict):
        return {}
    return {
        f: body[f] for f in FIELDS if isinstance(body.get(f), str) and body[f].startswith(PREFIX)
    }


def _store(db_url: str) -> MarketStore:
    return MarketStore(db_url, TenantStore(db_url))


def check(db_url: str, tenant: str, user: str, refs: dict[str, str], body: dict) -> None:
    """403 for the first reference without a licence; 409 for one this service cannot run."""
    market = _store(db_url)
    for ref in refs.values():
        market.check_entitlement(tenant, user, ref)
    for field, ref in refs.items():
        slug, _ = parse_ref(ref)
        with market.session(None) as s:
            asset_type = s.scalar(select(Asset.asset_type).where(Asset.slug == slug))
        why = None
        if field not in RUNNABLE:
            why = f"experiments run marketplace assets only as 'strategy', not as '{field}'"
        elif asset_type != RUNNABLE[field]:
            why = f"{ref} is a {asset_type}; a strategy must be an algorithm asset"
        elif body.get("algorithm", "fl") != "fl":
            why = "graph_td3 runs take only the engine's own strategies"
        if why is not None:
            raise MarketplaceNotRunnable(
                f"{field}: {why} (docs/marketplace.md, Using an asset)",
                details={"field": field, "asset": ref},
            )


def start_use(db_url: str, tenant: str, user: str, exp_id: str, spec) -> dict[str, Any] | None:
    """The licensed strategy asset of ``spec`` (its ``content``, ``sha256``, ...) after
    :meth:`MarketStore.use` recorded this attempt; None for a spec naming no asset. Raises
    :class:`~fedhub.marketplace.errors.NotEntitled` when the licence is gone."""
    if not is_market(spec):
        return None
    return _store(db_url).use(tenant, user, spec.strategy, context={"experiment": exp_id})


def remote_strategy(spec, asset: dict[str, Any], executor):
    """The run's :class:`~fedhub.fl.market.RemoteStrategy`: the licensed source, its hooks
    on ``executor`` (the tenant's own workers)."""
    from fedhub.fl.market import RemoteStrategy

    return RemoteStrategy(
        spec.strategy,
        asset["content"].decode("utf-8"),
        asset["sha256"],
        spec.strategy_params,
        executor=executor,
    )


def attach(experiment, executor) -> None:
    """A resumed run's :class:`~fedhub.fl.market.RemoteStrategy` gets its executor back."""
    from fedhub.fl.market import attach as attach_executor

    attach_executor(experiment, executor)
