"""Server quotas: atomic reservations, refusals a user can act on, and server metering.

A server counts against its tenant's limits from the moment its spawn is
accepted until it has stopped: one row in ``fedhub_server_reservations`` per
pending or running server. :func:`reserve` checks every limit and inserts that
row in one transaction that holds the tenant's lock, so N hub requests (or N
hub replicas) racing for the last slot start exactly as many servers as the
tier allows:

- SQLite: every fedhub transaction starts with ``BEGIN IMMEDIATE`` (see
  :mod:`fedhub.db`), which serialises writers for the whole database;
- PostgreSQL: :func:`fedhub.db.tenant_lock` (a transaction-scoped advisory lock on
  the tenant) serialises reservations of one tenant and leaves other tenants alone.

The same rows drive metering: :func:`meter_running` turns the time since each
reservation's ``metered_until`` into usage events and moves ``metered_until``
forward in the same transaction; :func:`release` records the last slice and
deletes the row. Idempotency keys are ``<reservation>:<kind>:<slice start>``, so
a replayed or retried slice counts once and a restarted hub carries on from
``metered_until`` without counting anything twice.

The refusals :func:`reserve` raises (and :func:`check_profile`) live in
:mod:`fedhub.quotas.refusals` and are re-exported here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    DateTime,
    Float,
    Index,
    String,
    UniqueConstraint,
    and_,
    delete,
    func,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from fedhub import limits, metering
from fedhub.db import insert_ignore, session_scope, tenant_lock
from fedhub.db.base import Base, utcnow
from fedhub.errors import NotFound

# re-exported: callers raise and catch them as fedhub.quotas.X
from fedhub.quotas.refusals import (  # noqa: F401
    TEAM_HINT,
    UPGRADE_HINT,
    ComputeBudgetExhausted,
    LimitReached,
    ProfileNotAllowed,
    SpawnRefused,
    StorageOverQuota,
    TeamComputeLimit,
    TeamLimitReached,
    TeamServerLimit,
    TenantServerLimit,
    TenantSuspendedRefusal,
    UserServerLimit,
    check_profile,
)
from fedhub.tenancy import teams
from fedhub.tenancy.models import Membership, Tenant, TenantStatus
from fedhub.tiers import Profile, Tier, TierCatalog

GIB = 1024**3
METER_SOURCE = "tier-spawner"
# compute hours are CPU-core hours of the reserved profile: one definition, in fedhub.limits,
# read by this quota, the reconciler and billing's compute_hours line alike
COMPUTE_KIND = limits.get("compute_hours_per_month").kind

PENDING = "pending"
RUNNING = "running"


class ServerReservation(Base):
    """One pending or running server, counted against its tenant's and user's limits."""

    __tablename__ = "fedhub_server_reservations"
    __table_args__ = (
        UniqueConstraint("key", name="uq_reservation_key"),
        UniqueConstraint("username", "server_name", name="uq_reservation_server"),
        Index("ix_reservation_tenant", "tenant"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(36))
    tenant: Mapped[str] = mapped_column(String(63))
    username: Mapped[str] = mapped_column(String(255))
    server_name: Mapped[str] = mapped_column(String(255))
    tier: Mapped[str] = mapped_column(String(63))
    profile: Mapped[str] = mapped_column(String(63))
    cpu: Mapped[float] = mapped_column(Float)
    memory_gb: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    metered_until: Mapped[datetime] = mapped_column(DateTime)


class QuotaNotice(Base):
    """A notice given once per tenant and key (``compute-80:2026-11``, ``suspended``).

    Its ``created_at`` is when the condition was first seen: the start of the
    grace period before servers are stopped.
    """

    __tablename__ = "fedhub_quota_notices"
    __table_args__ = (UniqueConstraint("tenant", "key", name="uq_quota_notice"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63))
    key: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(DateTime)


# -- reservations ---------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """A detached copy of a reservation row (safe after its session is gone)."""

    key: str
    tenant: str
    username: str
    server_name: str
    tier: str
    profile: str
    cpu: float
    memory_gb: float
    state: str
    created_at: datetime
    metered_until: datetime

    @classmethod
    def of(cls, row: ServerReservation) -> Slot:
        return cls(**{f: getattr(row, f) for f in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Reservation:
    """What :func:`reserve` granted: the profile and tier a server runs with."""

    key: str
    tenant: str
    username: str
    server_name: str
    tier_name: str
    tier: Tier
    profile: str
    cpu: float
    memory_gb: float

    def row(self, now: datetime) -> ServerReservation:
        """The pending row that counts this server against its limits from ``now`` on."""
        fields = ("key", "tenant", "username", "server_name", "profile", "cpu", "memory_gb")
        return ServerReservation(
            **{f: getattr(self, f) for f in fields},
            tier=self.tier_name,
            state=PENDING,
            created_at=now,
            metered_until=now,
        )


def _locked_tenant(session: Session, slug: str) -> Tenant:
    # the shared per-tenant lock (an advisory lock on PostgreSQL, BEGIN IMMEDIATE on SQLite)
    tenant_lock(session, slug)
    tenant = session.scalar(select(Tenant).where(Tenant.slug == slug))
    if tenant is None:
        raise NotFound(f"no tenant {slug!r}")
    return tenant


def compute_hours_used(session: Session, tenant: str, now: datetime | None = None) -> float:
    """CPU-core hours this month (:func:`fedhub.metering.compute_hours_used`)."""
    return metering.compute_hours_used(session, tenant, now)


def next_month(now: datetime | None = None) -> str:
    return metering.month_bounds(now)[1].strftime("%Y-%m-%d")


def reserve(
    db,
    *,
    tenant: str,
    username: str,
    server_name: str,
    profile: str | None,
    catalog: TierCatalog,
    storage_bytes: int | None = None,
    now: datetime | None = None,
) -> Reservation:
    """Check every spawn-time limit and reserve a server slot, atomically.

    Raises a :class:`SpawnRefused` subclass whose message names the limit, the
    usage and what the user can do. ``storage_bytes`` is the tenant's measured
    storage (None: not measured on this backend).

    A refusal writes nothing and ends its transaction with a commit, not a
    rollback: in the hub the transaction is the hub's own session
    (:func:`fedhub.db.share_session`), where a rollback expires every object the
    hub holds, so each refused spawn made every user and spawner reload (and a
    worker thread reading one then raced the loop: the 500 of route 9).
    """
    now = now or utcnow()
    refusal: SpawnRefused | None = None
    with session_scope(db) as s:
        t = _locked_tenant(s, tenant)
        tier = catalog.effective(t.tier, t.overrides)
        profile = profile or tier.profiles[0]
        try:
            _check_limits(
                s,
                t,
                tier,
                profile,
                catalog.profiles.get(profile),
                username,
                server_name,
                storage_bytes,
                now,
            )
        except SpawnRefused as e:
            refusal = e
        else:
            # the hub only spawns a server that is not running: a row left for this
            # server is stale (a crash between reserve and release) and is replaced
            s.execute(
                delete(ServerReservation).where(
                    ServerReservation.username == username,
                    ServerReservation.server_name == server_name,
                )
            )
            spec = catalog.profiles[profile]
            granted = Reservation(
                str(uuid.uuid4()),
                tenant,
                username,
                server_name,
                t.tier,
                tier,
                profile,
                spec.cpu,
                spec.memory_gb,
            )
            s.add(granted.row(now))
    if refusal is not None:
        raise refusal
    return granted


def _check_limits(
    s: Session,
    t: Tenant,
    tier: Tier,
    profile: str,
    spec: Profile | None,
    username: str,
    server_name: str,
    storage_bytes: int | None,
    now: datetime,
) -> None:
    """Raise the first :class:`SpawnRefused` that applies; reads only."""
    if t.status == TenantStatus.SUSPENDED:
        raise TenantSuspendedRefusal(
            f"Your organisation '{t.name}' is suspended, so no server can start. "
            "Ask your organisation's administrator or the platform team.",
            details={"suspended_reason": t.suspended_reason},
        )
    check_profile(t.tier, tier, profile, spec)
    used = compute_hours_used(s, t.slug, now)
    if used >= tier.compute_hours_per_month:
        raise ComputeBudgetExhausted.over(tier, used, resume=next_month(now))
    if storage_bytes is not None and storage_bytes > tier.storage_gb * GIB:
        raise StorageOverQuota.over(tier, storage_bytes / GIB)
    # a row left for this very server is stale (see reserve): it does not count
    mine, theirs = s.execute(
        select(
            func.count().filter(ServerReservation.username == username),
            func.count(),
        ).where(
            ServerReservation.tenant == t.slug,
            ~and_(
                ServerReservation.username == username,
                ServerReservation.server_name == server_name,
            ),
        )
    ).one()
    if mine >= tier.max_servers_per_user:
        raise UserServerLimit.over(tier, mine, requested=1)
    if theirs >= tier.max_servers_per_tenant:
        raise TenantServerLimit.over(tier, theirs, requested=1)
    _check_team(s, t.slug, username, server_name, now)


def _check_team(s: Session, tenant: str, username: str, server_name: str, now: datetime) -> None:
    """The user's team's quotas (carved out of the tenant's), counted over the team's
    current members: its servers reserved now, its compute hours this month."""
    team = teams.team_of(s, username)
    if team is None or team.tenant != tenant or not team.quotas:
        return
    if "compute_hours" in team.quotas:
        used = teams.compute_hours_used(s, tenant, team.members, now)
        if used >= team.quotas["compute_hours"]:
            raise TeamComputeLimit.over(team, used, resume=next_month(now))
    if "servers" in team.quotas:
        running = s.scalar(
            select(func.count()).where(
                ServerReservation.tenant == tenant,
                ServerReservation.username.in_(team.members),
                ~and_(
                    ServerReservation.username == username,
                    ServerReservation.server_name == server_name,
                ),
            )
        )
        if running >= team.quotas["servers"]:
            raise TeamServerLimit.over(team, running, requested=1)


def team_servers(s: Session, tenant: str, members: list[str]) -> int:
    """Servers the team's members have reserved now (pending or running)."""
    if not members:
        return 0
    return s.scalar(
        select(func.count()).where(
            ServerReservation.tenant == tenant, ServerReservation.username.in_(members)
        )
    )


def mark_running(db, key: str) -> None:
    with session_scope(db) as s:
        row = s.scalar(select(ServerReservation).where(ServerReservation.key == key))
        if row is not None:
            row.state = RUNNING


def _usages(row: ServerReservation, end: datetime, source: str) -> list[metering.Usage]:
    """The usage of one reservation from ``metered_until`` to ``end``: what was reserved."""
    seconds = (end - row.metered_until).total_seconds()
    if seconds <= 0:
        return []
    attrs = {"profile": row.profile, "tier": row.tier, "server": row.server_name}
    slice_key = row.metered_until.isoformat()
    return [
        metering.Usage(
            tenant=row.tenant,
            kind=kind,
            quantity=seconds * factor,
            start=row.metered_until,
            end=end,
            source=source,
            idempotency_key=f"{row.key}:{kind}:{slice_key}",
            username=row.username,
            attributes=attrs,
        )
        for kind, factor in (
            (metering.SERVER_SECONDS, 1.0),
            (metering.CPU_SECONDS, row.cpu),
            (metering.MEMORY_GB_SECONDS, row.memory_gb),
        )
    ]


def meter_running(
    db, *, now: datetime | None = None, source: str = METER_SOURCE
) -> list[metering.Usage]:
    """Record usage of every reserved server up to ``now``; returns what was new."""
    now = now or utcnow()
    recorded: list[metering.Usage] = []
    with session_scope(db) as s:
        rows = list(
            s.scalars(select(ServerReservation).where(ServerReservation.metered_until < now))
        )
        for row in rows:
            usages = _usages(row, now, source)
            if metering.record(s, usages, now=now):
                recorded += usages
            row.metered_until = now
    return recorded


def release(
    db,
    username: str,
    server_name: str,
    *,
    now: datetime | None = None,
    meter: bool = True,
    source: str = METER_SOURCE,
) -> Slot | None:
    """Record the last slice of a server's usage and free its slot.

    ``meter=False`` frees the slot without charging past ``metered_until`` (a
    server found gone after a hub crash: when it stopped is unknown).
    """
    now = now or utcnow()
    with session_scope(db) as s:
        row = s.scalar(
            select(ServerReservation).where(
                ServerReservation.username == username,
                ServerReservation.server_name == server_name,
            )
        )
        if row is None:
            return None
        if meter:
            metering.record(s, _usages(row, now, source), now=now)
        slot = Slot.of(row)
        s.delete(row)
    return slot


def reservations(db, tenant: str | None = None) -> list[Slot]:
    with session_scope(db) as s:
        q = select(ServerReservation).order_by(ServerReservation.id)
        if tenant is not None:
            q = q.where(ServerReservation.tenant == tenant)
        return [Slot.of(row) for row in s.scalars(q)]


def member_names(db, tenant: str) -> list[str]:
    """The usernames of a tenant's members (whose storage counts against its quota).

    Plain strings read in one transaction: safe to hand to a worker thread.
    """
    with session_scope(db) as s:
        return list(
            s.scalars(
                select(Membership.username)
                .join(Tenant, Membership.tenant_id == Tenant.id)
                .where(Tenant.slug == tenant)
                .order_by(Membership.username)
            )
        )


# -- notices --------------------------------------------------------------------


def add_notice(session: Session, tenant: str, key: str, now: datetime | None = None) -> bool:
    """Record a notice once; True when it is new (so its event is emitted once)."""
    row = {"tenant": tenant, "key": key, "created_at": now or utcnow()}
    table = QuotaNotice.__table__
    return insert_ignore(session, table, row, ["tenant", "key"], returning=table.c.id) == 1


def notice_time(session: Session, tenant: str, key: str) -> datetime | None:
    return session.scalar(
        select(QuotaNotice.created_at).where(QuotaNotice.tenant == tenant, QuotaNotice.key == key)
    )


def drop_notice(session: Session, tenant: str, key: str) -> None:
    session.execute(delete(QuotaNotice).where(QuotaNotice.tenant == tenant, QuotaNotice.key == key))
