"""Marketplace assets named in an experiment spec: the licence checked at every submission,
at the start of every attempt of the run and between its rounds, the use metered and audited.

A spec may name ``strategy``, ``model``, ``dataset`` or ``init_weights`` as
``market/<slug>@<version>``. Each is checked with the marketplace
(:meth:`fedhub.marketplace.store.MarketStore.check_entitlement`): without an active licence
of the caller's tenant (or seat) the submission is refused with 403 ``not_entitled``
naming the asset. This service runs three kinds: an ``algorithm`` named as an FL run's
``strategy`` (:mod:`fedhub.fl.market`), a ``model`` named as its ``init_weights`` (a
state dict loaded on the tenant's worker with ``weights_only=True``) and a ``dataset``
named as its ``dataset`` (materialised into the tenant's own store and read on the
tenant's workers, :mod:`.market_run`); any other reference (``model``, another type of
asset, a graph_td3 run) is refused with 409
``marketplace_not_runnable`` before any quota is reserved, rather than failing in the
runner. The strategy's ``strategy_params`` are checked against the bounds its source
declares on the tenant's worker when the run starts (the service never runs the source).

At the start of every attempt (:func:`start_use`) the scheduler calls
:meth:`~fedhub.marketplace.store.MarketStore.use`: a licence refunded or revoked while the
run waited cancels it with reason ``not_entitled`` (and deletes the tenant's copy of a
licensed dataset); otherwise the use is metered (one per run) and audited, and the
licensed source becomes the run's :class:`RemoteStrategy`. Between two rounds
(:func:`licence_lost`) the licences are checked again, without metering: one lost since the
run started stops it after the current round, cancelled with reason ``not_entitled``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from fedhub import storage
from fedhub.errors import Conflict
from fedhub.marketplace.common import parse_ref
from fedhub.marketplace.errors import NotEntitled
from fedhub.marketplace.models import Asset, Entitlement, EntitlementState
from fedhub.marketplace.store import MarketStore
from fedhub.tenancy.store import TenantStore

from . import market_run
from .spec import is_market, is_market_dataset

FIELDS = ("strategy", "model", "dataset", "init_weights")
PREFIX = "market/"
#: what this service can run: (spec field, asset type)
RUNNABLE = {"strategy": "algorithm", "init_weights": "model", "dataset": "dataset"}


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
    for field, ref in refs.items():
        try:
            market.check_entitlement(tenant, user, ref)
        except NotEntitled:
            if field == "dataset":
                _forget_unless_held(market, tenant, ref)
            raise
    for field, ref in refs.items():
        slug, _ = parse_ref(ref)
        with market.session(None) as s:
            asset_type = s.scalar(select(Asset.asset_type).where(Asset.slug == slug))
        why = None
        if field not in RUNNABLE:
            why = (
                "experiments take marketplace assets only as 'strategy', 'init_weights' or"
                f" 'dataset', not as '{field}'"
            )
        elif asset_type != RUNNABLE[field]:
            why = f"{field} takes an asset of type {RUNNABLE[field]}; {ref} is of type {asset_type}"
        elif body.get("algorithm", "fl") != "fl":
            why = "graph_td3 runs take no marketplace assets"
        elif field == "dataset" and not storage.tenant_data_root():
            why = "this hub keeps no tenant data stores to hold a licensed dataset's copy"
        if why is not None:
            raise MarketplaceNotRunnable(
                f"{field}: {why} (docs/marketplace.md, Using an asset)",
                details={"field": field, "asset": ref},
            )


def start_use(db_url: str, tenant: str, user: str, exp_id: str, spec) -> dict[str, dict]:
    """``{field: asset}`` for the spec's marketplace references (each asset with its
    ``content``, ``sha256``, ...) after :meth:`MarketStore.use` recorded this attempt's
    use; empty for a spec naming none. Raises
    :class:`~fedhub.marketplace.errors.NotEntitled` when a licence is gone."""
    context = {"experiment": exp_id}
    market = _store(db_url)
    used = {}
    for field, ref in _refs(spec).items():
        try:
            used[field] = market.use(tenant, user, ref, context=context)
        except NotEntitled:
            if field == "dataset":
                _forget_unless_held(market, tenant, ref)
            raise
    return used


def licence_lost(db_url: str, tenant: str, user: str, spec) -> str | None:
    """Between two rounds of a run: ``"not_entitled: <message>"`` when a licence the run
    uses was revoked or refunded since it started (the run then stops after the current
    round), else None. A check only: the run's use is already recorded. The tenant's copy
    of a licensed dataset is left to the next refused use, which deletes it."""
    refs = _refs(spec)
    if not refs:
        return None
    market = _store(db_url)
    try:
        for ref in refs.values():
            market.check_entitlement(tenant, user, ref)
    except NotEntitled as e:
        return f"{e.code}: {e.message}"
    return None


def _refs(spec) -> dict[str, str]:
    """``{field: ref}`` of the marketplace assets a parsed spec uses."""
    refs = {
        "strategy": spec.strategy if is_market(spec) else None,
        "init_weights": spec.init_weights,
        "dataset": spec.dataset if is_market_dataset(spec) else None,
    }
    return {field: ref for field, ref in refs.items() if ref}


def _forget_unless_held(market: MarketStore, tenant: str, ref: str) -> None:
    """A dataset's use was refused: delete the tenant's copies of it, unless the tenant
    still holds a licence of the asset (another user's seat, another version)."""
    slug, _ = parse_ref(ref)
    with market.session(None) as s:
        held = s.scalar(
            select(Entitlement.id)
            .join(Asset, Asset.id == Entitlement.asset_id)
            .where(
                Asset.slug == slug,
                Entitlement.tenant == tenant,
                Entitlement.state == EntitlementState.ACTIVE,
            )
            .limit(1)
        )
    if held is None:
        market_run.forget(tenant, slug)


def warm_start(experiment, asset: dict[str, Any], executor) -> None:
    """Make the run start from a model asset's weights: loaded on ``executor`` (the
    tenant's worker, ``torch.load(weights_only=True)``), checked against the run's model,
    then the experiment's model factory starts every model from them."""
    from fedhub.fl.market import WarmStart, initial_weights

    ref = f"market/{asset['asset']}@{asset['version']}"
    weights = executor.submit(
        initial_weights, asset["content"], asset["sha256"], ref, experiment.model
    ).result(timeout=300)
    experiment.model = WarmStart(experiment.model, weights, ref)


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
