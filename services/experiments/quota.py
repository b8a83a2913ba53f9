"""Tier limits for experiments, checked and reserved in one transaction.

The check and the insert of the new run happen in the same transaction, serialised per
tenant (SQLite: ``BEGIN IMMEDIATE`` takes the write lock; PostgreSQL: a transaction-scoped
advisory lock on the tenant), so two submissions racing for the last slot cannot both win.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from fedhub import metering
from fedhub.db import session_scope, utcnow
from fedhub.errors import QuotaExceeded
from fedhub.tiers import Tier

from .models import ACTIVE, QUEUED, ExperimentRun

FL_CLIENT_SECONDS = "fl_client_seconds"
FL_ROUNDS = "fl_rounds"


def lock_tenant(session: Session, tenant: str) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
            {"key": f"fedhub-experiments:{tenant}"},
        )


def usage(session: Session, tenant: str, now: datetime | None = None) -> dict[str, Any]:
    """The tenant's experiment usage this calendar month and right now."""
    start, end = metering.month_bounds(now)
    this_month = session.execute(
        select(func.count())
        .select_from(ExperimentRun)
        .where(
            ExperimentRun.tenant == tenant,
            ExperimentRun.created_at >= start,
            ExperimentRun.created_at < end,
        )
    ).scalar_one()
    active = session.execute(
        select(func.count())
        .select_from(ExperimentRun)
        .where(ExperimentRun.tenant == tenant, ExperimentRun.status.in_(ACTIVE))
    ).scalar_one()
    client_s = metering.usage_total(session, tenant, FL_CLIENT_SECONDS, start, end)
    rounds = metering.usage_total(session, tenant, FL_ROUNDS, start, end)
    return {
        "experiments_this_month": int(this_month),
        "concurrent_experiments": int(active),
        "federated_client_hours_this_month": round(client_s / 3600.0, 6),
        "fl_rounds_this_month": int(rounds),
        "month_start": start.isoformat() + "Z",
    }


def limits(tier: Tier) -> dict[str, Any]:
    return {
        "experiments_per_month": tier.experiments_per_month,
        "max_clients_per_experiment": tier.max_clients_per_experiment,
        "max_concurrent_experiments": tier.max_concurrent_experiments,
        "federated_client_hours_per_month": tier.federated_client_hours_per_month,
    }


def check(session: Session, tenant: str, tier_name: str, tier: Tier, clients: int) -> dict:
    """Raise :class:`QuotaExceeded` naming the first limit the new run would break.

    Call inside the transaction that inserts the run, after :func:`lock_tenant`.
    """
    used = usage(session, tenant)

    def refuse(limit: str, value, current, message: str):
        raise QuotaExceeded(
            f"{message} (tier {tier_name}: {limit} = {value}, current usage {current})",
            details={"limit": limit, "value": value, "usage": current, "tier": tier_name},
        )

    if clients > tier.max_clients_per_experiment:
        refuse(
            "max_clients_per_experiment",
            tier.max_clients_per_experiment,
            clients,
            f"an experiment may have at most {tier.max_clients_per_experiment} clients,"
            f" this one asks for {clients}",
        )
    if used["experiments_this_month"] >= tier.experiments_per_month:
        refuse(
            "experiments_per_month",
            tier.experiments_per_month,
            used["experiments_this_month"],
            "your organisation has used all its experiments for this month",
        )
    if used["concurrent_experiments"] >= tier.max_concurrent_experiments:
        refuse(
            "max_concurrent_experiments",
            tier.max_concurrent_experiments,
            used["concurrent_experiments"],
            "your organisation already has as many experiments queued or running as its tier"
            " allows; wait for one to finish or cancel one",
        )
    hours = used["federated_client_hours_this_month"]
    if hours >= tier.federated_client_hours_per_month:
        refuse(
            "federated_client_hours_per_month",
            tier.federated_client_hours_per_month,
            hours,
            "your organisation has used all its federated client-hours for this month",
        )
    return used


def reserve(db_url: str, tenant: str, username: str, tier_name: str, tier: Tier, spec):
    """Check the limits and queue the run in one transaction; returns the new run.

    Serialised per tenant (see the module docstring), so of two submissions racing for the
    last slot exactly one is queued and the other gets :class:`QuotaExceeded`.
    """
    with session_scope(db_url) as s:
        lock_tenant(s, tenant)
        check(s, tenant, tier_name, tier, spec.clients)
        run = ExperimentRun(
            id=uuid.uuid4().hex[:16],
            tenant=tenant,
            username=username,
            name=spec.name or f"{spec.strategy} on {spec.dataset}",
            status=QUEUED,
            spec=spec.model_dump(),
            clients=spec.clients,
            rounds=spec.rounds,
            rounds_done=0,
            cancel_requested=False,
            attempts=0,
            created_at=utcnow(),
        )
        s.add(run)
    return run
