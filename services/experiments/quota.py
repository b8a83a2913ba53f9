"""Tier limits for experiments, checked and reserved in one transaction.

The check and the insert of the new run happen in the same transaction, serialised per
tenant by :func:`fedhub.db.tenant_lock`, the same lock as spawn reservations (SQLite:
``BEGIN IMMEDIATE`` takes the write lock; PostgreSQL: a transaction-scoped advisory lock on
the tenant), so two submissions racing for the last slot cannot both win.

The same transaction records the ``experiments`` meter event (one per accepted run, keyed
by the run's id), so ``experiments_per_month`` and billing's ``experiments`` line count the
same events (:mod:`fedhub.limits`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fedhub import limits as registry
from fedhub import metering
from fedhub.db import session_scope, tenant_lock, utcnow
from fedhub.errors import NotFound, QuotaExceeded
from fedhub.tenancy import teams
from fedhub.tenancy.models import Membership, Tenant, TenantStatus
from fedhub.tiers import Tier, TierCatalog

from .models import ACTIVE, QUEUED, ExperimentRun

FL_CLIENT_SECONDS = registry.FL_CLIENT_SECONDS
FL_ROUNDS = registry.FL_ROUNDS
EXPERIMENTS = registry.EXPERIMENTS
#: the meter source of every event this service records (rounds, client time, experiments)
SOURCE = "experiments"

#: Why the runner stopped or cancelled a run by itself (the start of the run's ``error``).
CLIENT_HOURS_EXHAUSTED = "client_hours_exhausted"
TENANT_SUSPENDED = "tenant_suspended"
TENANT_REMOVED = "tenant_removed"
USER_REMOVED = "user_removed"
TIER_LIMIT = "tier_limit"


def usage(session: Session, tenant: str, now: datetime | None = None) -> dict[str, Any]:
    """The tenant's experiment usage this calendar month and right now.

    ``concurrent_experiments`` counts the tenant's queued and running experiments and the
    running federations it takes part in (each holds its workers like an experiment).
    """
    from .federations.lifecycle import running_federations  # the package imports this one

    start, _end = metering.month_bounds(now)
    active = session.execute(
        select(func.count())
        .select_from(ExperimentRun)
        .where(ExperimentRun.tenant == tenant, ExperimentRun.status.in_(ACTIVE))
    ).scalar_one() + running_federations(session, tenant)
    # the registry's definitions: the numbers billing prices
    experiments = metering.used(session, tenant, "experiments_per_month", now)
    client_hours = metering.used(session, tenant, "federated_client_hours_per_month", now)
    rounds = metering.usage_total(session, tenant, FL_ROUNDS, start, _end)
    return {
        "experiments_this_month": int(experiments),
        "concurrent_experiments": int(active),
        "federated_client_hours_this_month": round(client_hours, 6),
        "fl_rounds_this_month": int(rounds),
        "month_start": start.isoformat() + "Z",
    }


#: The tier keys this service enforces (each one's entry in fedhub.limits names a check here).
SERVICE_LIMITS = (
    "experiments_per_month",
    "max_clients_per_experiment",
    "max_agents_per_experiment",
    "max_concurrent_experiments",
    "federated_client_hours_per_month",
    "max_rounds_per_experiment",
    "max_local_epochs",
)


def limits(tier: Tier) -> dict[str, Any]:
    return {key: registry.get(key).value(tier) for key in SERVICE_LIMITS}


def _refuse(tier_name: str, limit: str, value, current, message: str, requested=None):
    # a size limit (clients, rounds, epochs) has no usage: the request is what is refused
    measured = f"requested {requested}" if current is None else f"current usage {current}"
    raise QuotaExceeded(
        f"{message} (tier {tier_name}: {limit} = {value}, {measured})",
        details=registry.details(limit, value, current, requested, tier=tier_name),
    )


def check_size(tier_name: str, tier: Tier, rounds: int, local_epochs: int, agents: int = 0) -> None:
    """Refuse a run longer or larger than the tier allows one experiment to hold the
    shared workers (``agents``: a graph_td3 experiment's agent groups, 0 for FL).

    Checked at submission (:func:`check`) and again by the runner before it starts a run,
    because a tier (or a tenant's override) may have changed while the run was queued.
    """
    if agents > tier.max_agents_per_experiment:
        _refuse(
            tier_name,
            "max_agents_per_experiment",
            tier.max_agents_per_experiment,
            None,
            f"an experiment may have at most {tier.max_agents_per_experiment} agent groups,"
            f" this one asks for {agents}",
            requested=agents,
        )
    if rounds > tier.max_rounds_per_experiment:
        _refuse(
            tier_name,
            "max_rounds_per_experiment",
            tier.max_rounds_per_experiment,
            None,
            f"an experiment may run at most {tier.max_rounds_per_experiment} rounds,"
            f" this one asks for {rounds}",
            requested=rounds,
        )
    if local_epochs > tier.max_local_epochs:
        _refuse(
            tier_name,
            "max_local_epochs",
            tier.max_local_epochs,
            None,
            f"an experiment may train at most {tier.max_local_epochs} local epochs per round,"
            f" this one asks for {local_epochs}",
            requested=local_epochs,
        )


def check(
    session: Session,
    tenant: str,
    tier_name: str,
    tier: Tier,
    clients: int,
    rounds: int = 1,
    local_epochs: int = 1,
    agents: int = 0,
) -> dict:
    """Raise :class:`QuotaExceeded` naming the first limit the new run would break.

    Call inside the transaction that inserts the run, after :func:`fedhub.db.tenant_lock`.
    """
    used = usage(session, tenant)

    def refuse(limit: str, value, current, message: str, requested=1):
        _refuse(tier_name, limit, value, current, message, requested)

    check_size(tier_name, tier, rounds, local_epochs, agents)
    if clients > tier.max_clients_per_experiment:
        refuse(
            "max_clients_per_experiment",
            tier.max_clients_per_experiment,
            None,
            f"an experiment may have at most {tier.max_clients_per_experiment} clients,"
            f" this one asks for {clients}",
            requested=clients,
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
            requested=None,
        )
    return used


def check_team(session: Session, tenant: str, username: str) -> None:
    """Refuse a run when the user's team has as many experiments queued or running as its
    ``experiments`` quota (carved out of ``max_concurrent_experiments``; docs/organisations.md).

    Counted over the team's current members, in the transaction that inserts the run.
    """
    team = teams.team_of(session, username)
    if team is None or team.tenant != tenant or "experiments" not in team.quotas:
        return
    allowed = team.quotas["experiments"]
    active = session.execute(
        select(func.count())
        .select_from(ExperimentRun)
        .where(
            ExperimentRun.tenant == tenant,
            ExperimentRun.username.in_(team.members),
            ExperimentRun.status.in_(ACTIVE),
        )
    ).scalar_one()
    if active >= allowed:
        raise QuotaExceeded(
            f"your team {team.name} already has {active} of the {allowed} experiments queued "
            "or running that its team quota allows; wait for one to finish or cancel one, or "
            "ask your team lead to request a higher team quota",
            details={
                "limit": "team.experiments",
                "team": team.name,
                "carved_from": teams.QUOTA_KEYS["experiments"],
                "allowed": allowed,
                "used": active,
                "requested": 1,
            },
        )


def _default_name(spec) -> str:
    if spec.algorithm == "graph_td3":
        grid = spec.environment.grid
        return f"{spec.strategy} graph_td3 on traffic-grid {grid}x{grid}"
    return f"{spec.strategy} on {spec.dataset}"


def reserve(db_url: str, tenant: str, username: str, tier_name: str, tier: Tier, spec):
    """Check the limits and queue the run in one transaction; returns the new run.

    Serialised per tenant (see the module docstring), so of two submissions racing for the
    last slot exactly one is queued and the other gets :class:`QuotaExceeded`.
    """
    with session_scope(db_url) as s:
        tenant_lock(s, tenant)
        check(s, tenant, tier_name, tier, spec.clients, spec.rounds, spec.local_epochs,
              spec.agents or 0)  # fmt: skip
        check_team(s, tenant, username)
        run = ExperimentRun(
            id=uuid.uuid4().hex[:16],
            tenant=tenant,
            username=username,
            name=spec.name or _default_name(spec),
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
        # the experiments meter: one event per accepted run, in the run's transaction
        # (idempotent by the run's id), what experiments_per_month and billing both count
        metering.record(
            s,
            [
                metering.Usage(
                    tenant=tenant,
                    kind=EXPERIMENTS,
                    quantity=1,
                    start=run.created_at,
                    end=run.created_at,
                    source=SOURCE,
                    idempotency_key=f"{run.id}:experiment",
                    username=username,
                    attributes={"experiment": run.id},
                )
            ],
        )
    return run


# ---------------------------------------------------------------- while runs run
def tenant_tier(session: Session, catalog: TierCatalog, tenant: str) -> tuple[str, Tier]:
    """(tier name, effective tier with the tenant's overrides), read without its members.

    Raises :class:`~fedhub.errors.NotFound` for a removed tenant and
    :class:`~fedhub.errors.ConfigError` for a tier the catalog no longer has.
    """
    row = session.execute(
        select(Tenant.tier, Tenant.overrides).where(Tenant.slug == tenant)
    ).one_or_none()
    if row is None:
        raise NotFound(f"organisation {tenant} was removed")
    return row.tier, catalog.effective(row.tier, row.overrides)


def client_hours_left(session: Session, tenant: str, tier: Tier) -> tuple[float, float]:
    """(used, limit) federated client-hours this month; the budget is spent when used >= limit.

    The runner asks before a run starts and after every round, so a run stops at the
    round that spends the month's budget instead of holding the workers to its end.
    """
    used = metering.used(session, tenant, "federated_client_hours_per_month")
    return used, float(tier.federated_client_hours_per_month)


def standing(session: Session, runs: list[tuple[str, str, str]]) -> dict[str, tuple[str, str]]:
    """For (id, tenant, username) runs that may no longer run: id → (reason, message).

    A run may not go on when its tenant is suspended or removed, or its user is no longer
    a member of that tenant (removed, or moved to another one). Read from the tenancy
    tables, the source of truth the hub mirrors.
    """
    if not runs:
        return {}
    slugs = {t for _, t, _ in runs}
    users = {u for _, _, u in runs}
    tenants = dict(
        session.execute(select(Tenant.slug, Tenant.status).where(Tenant.slug.in_(slugs))).all()
    )
    members = dict(
        session.execute(
            select(Membership.username, Tenant.slug)
            .join(Tenant, Membership.tenant_id == Tenant.id)
            .where(Membership.username.in_(users))
        ).all()
    )
    out: dict[str, tuple[str, str]] = {}
    for exp_id, tenant, user in runs:
        status = tenants.get(tenant)
        if status is None:
            out[exp_id] = (TENANT_REMOVED, f"organisation {tenant} was removed")
        elif status == TenantStatus.SUSPENDED:
            out[exp_id] = (TENANT_SUSPENDED, f"organisation {tenant} is suspended")
        elif members.get(user) != tenant:
            out[exp_id] = (USER_REMOVED, f"user {user} is no longer a member of {tenant}")
    return out
