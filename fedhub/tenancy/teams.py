"""Teams inside a tenant: members, a lead, and quotas carved out of the tenant's limits.

A team is a name (``[a-z0-9-]{1,20}``) in one tenant, with an optional lead and optional
quotas (docs/organisations.md, "Teams and team quotas"). A user is in at most one team
(``fedhub_team_members.username`` is unique), so a server, a compute hour or an
experiment counts against, and is charged to, exactly one team.

Team quotas are carved out of the tenant's tier limits (:data:`QUOTA_KEYS`): each quota
is at most the tenant's limit and the quotas of one key over all the tenant's teams add
up to at most that limit (:func:`check_quotas`, a 400 naming the key otherwise). They are
enforced where the tenant's limits are, in the same transaction: server slots and compute
hours by :func:`fedhub.quotas.reserve`, concurrent experiments by the experiments
service (``services/experiments/quota.py``). A tier lowered later does not rewrite the
quotas: a team then runs into the tenant's own limit first, which is still enforced.

The hub mirrors each team as the JupyterHub group ``team-<tenant>-<name>``
(``extensions/hub/mirror.py``); :func:`fedhub.tenancy.team_folders` keeps its shared
folder. Functions take a session (run them inside ``rls.tenant(slug)``) and return plain
values; every change bumps the tenancy revision, which the hub's mirror watches.
What a team used (compute hours, experiments) is :mod:`fedhub.tenancy.team_usage`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    delete,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from fedhub.db import tenant_lock
from fedhub.db.base import Base, utcnow
from fedhub.errors import Conflict, InvalidRequest, NotFound
from fedhub.tenancy.checks import bump_revision
from fedhub.tenancy.models import Membership, Role, Tenant

# re-exported: the spawn quota and the console read them as teams.X
from fedhub.tenancy.team_usage import (  # noqa: F401
    ACTIVE_EXPERIMENTS,
    compute_hours_used,
    concurrent_experiments,
    experiments_this_month,
)
from fedhub.tiers import TierCatalog

NAME_RE = re.compile(r"[a-z0-9-]{1,20}")
GROUP_PREFIX = "team-"
#: a team quota -> the tenant's tier key it is carved out of
QUOTA_KEYS: dict[str, str] = {
    "servers": "max_servers_per_tenant",
    "compute_hours": "compute_hours_per_month",
    "experiments": "max_concurrent_experiments",
}
#: quotas counted in whole units (compute hours may be fractional)
WHOLE = frozenset({"servers", "experiments"})
#: who may not be in a team: nobody's usage to count
NOT_IN_TEAMS = (Role.SERVICE_ACCOUNT, Role.PLATFORM_ADMIN)


class Team(Base):
    __tablename__ = "fedhub_teams"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_team_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("fedhub_tenants.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(20))
    lead: Mapped[str | None] = mapped_column(String(255))
    quotas: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(255))


class TeamMember(Base):
    """A user in a team, gone with the team. At most one team per user (checked under
    the tenant's lock when a user joins).

    No foreign key to the membership: a row counts only while its user is a member of
    the team's tenant and was one when added (every read joins the membership and
    compares the times), so a removed user's row, or a name given to someone new,
    counts for nothing."""

    __tablename__ = "fedhub_team_members"
    __table_args__ = (UniqueConstraint("team_id", "username", name="uq_team_member"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("fedhub_teams.id", ondelete="CASCADE"), index=True
    )
    username: Mapped[str] = mapped_column(String(255), index=True)
    added_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


@dataclass(frozen=True)
class TeamView:
    """A team as plain values (safe outside its session)."""

    tenant: str
    name: str
    lead: str | None
    quotas: dict[str, float]
    members: list[str] = field(default_factory=list)
    created_at: datetime | None = None

    @property
    def group(self) -> str:
        return group_name(self.tenant, self.name)

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "name": self.name,
            "group": self.group,
            "lead": self.lead,
            "quotas": self.quotas,
            "members": self.members,
            "created_at": self.created_at.isoformat() + "Z" if self.created_at else None,
        }


def group_name(slug: str, name: str) -> str:
    """The team's JupyterHub group."""
    return f"{GROUP_PREFIX}{slug}-{name}"


def validate_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidRequest(
            f"invalid team name {str(name)[:40]!r}: use 1-20 lowercase letters, digits and '-'",
            details={"key": "name"},
        )
    return name


# -- reading ------------------------------------------------------------------------


def _tenant(s: Session, slug: str) -> Tenant:
    tenant = s.scalar(select(Tenant).where(Tenant.slug == slug))
    if tenant is None:
        raise NotFound(f"no tenant {slug!r}")
    return tenant


def _team(s: Session, tenant: Tenant, name: str) -> Team:
    team = s.scalar(select(Team).where(Team.tenant_id == tenant.id, Team.name == name))
    if team is None:
        raise NotFound(f"no team {name!r} in {tenant.slug}")
    return team


def _current():
    """TeamMember joined to its team and the member's membership in the team's tenant."""
    return (
        select(TeamMember.username)
        .join(Team, TeamMember.team_id == Team.id)
        .join(
            Membership,
            (Membership.username == TeamMember.username)
            & (Membership.tenant_id == Team.tenant_id)
            & (Membership.created_at <= TeamMember.added_at),
        )
    )


def _members(s: Session, team_id: int) -> list[str]:
    return list(
        s.scalars(_current().where(TeamMember.team_id == team_id).order_by(TeamMember.username))
    )


def _view(s: Session, slug: str, team: Team) -> TeamView:
    members = _members(s, team.id)
    lead = team.lead if team.lead in members else None  # a lead removed from the tenant: none
    return TeamView(slug, team.name, lead, dict(team.quotas or {}), members, team.created_at)


def list_teams(s: Session, slug: str) -> list[TeamView]:
    tenant = _tenant(s, slug)
    teams = s.scalars(select(Team).where(Team.tenant_id == tenant.id).order_by(Team.name))
    return [_view(s, slug, t) for t in teams]


def get_team(s: Session, slug: str, name: str) -> TeamView:
    tenant = _tenant(s, slug)
    return _view(s, slug, _team(s, tenant, name))


def all_teams(s: Session) -> list[TeamView]:
    """Every tenant's teams with their members (the hub's mirror; platform scope)."""
    rows = s.execute(
        select(Team, Tenant.slug).join(Tenant, Team.tenant_id == Tenant.id).order_by(Team.id)
    ).all()
    return [_view(s, slug, team) for team, slug in rows]


def team_of(s: Session, username: str) -> TeamView | None:
    """The team ``username`` is in (None: in no team)."""
    row = s.execute(
        _current()
        .add_columns(Team, Tenant.slug)
        .join(Tenant, Team.tenant_id == Tenant.id)
        .where(TeamMember.username == username)
    ).one_or_none()
    return None if row is None else _view(s, row[2], row[1])


def teams_by_user(s: Session, slug: str) -> dict[str, str]:
    """username -> team name for every team member of ``slug`` (members lists, invoices)."""
    return dict(
        s.execute(
            _current()
            .add_columns(Team.name)
            .join(Tenant, Team.tenant_id == Tenant.id)
            .where(Tenant.slug == slug)
        ).all()
    )


# -- quotas -------------------------------------------------------------------------


def _quota_value(key: str, value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidRequest(f"team quota {key} must be a number", details={"key": key})
    if value < 0:
        raise InvalidRequest(f"team quota {key} must be 0 or more", details={"key": key})
    if key in WHOLE:
        if value != int(value):
            raise InvalidRequest(f"team quota {key} must be a whole number", details={"key": key})
        return int(value)
    return float(value)


def check_quotas(
    s: Session,
    tenant: Tenant,
    catalog: TierCatalog,
    quotas: Any,
    *,
    team_id: int | None = None,
) -> dict[str, float]:
    """``quotas`` cleaned, if carved out of the tenant's limits; else a 400 naming the key.

    Each quota is at most the tenant's tier limit (with its overrides), and the quotas of
    a key over all the tenant's teams (``team_id``'s own, being replaced, left out) add
    up to at most that limit.
    """
    if not isinstance(quotas, dict):
        raise InvalidRequest("quotas must be a JSON object", details={"key": "quotas"})
    unknown = sorted(set(quotas) - set(QUOTA_KEYS))
    if unknown:
        raise InvalidRequest(
            f"unknown team quota {unknown[0]!r}; a team may have {', '.join(QUOTA_KEYS)}",
            details={"key": unknown[0]},
        )
    tier = catalog.effective(tenant.tier, tenant.overrides)
    others = [
        t.quotas or {}
        for t in s.scalars(select(Team).where(Team.tenant_id == tenant.id))
        if t.id != team_id
    ]
    clean: dict[str, float] = {}
    for key, value in quotas.items():
        if value is None:
            continue  # no quota for this key: the tenant's limits alone apply
        value = _quota_value(key, value)
        limit_key = QUOTA_KEYS[key]
        allowed = getattr(tier, limit_key)
        if value > allowed:
            raise InvalidRequest(
                f"team quota {key} = {value:g} is more than the organisation's "
                f"{limit_key} ({allowed:g}, {tier.display_name} tier)",
                details={"key": key, "limit": limit_key, "allowed": allowed, "requested": value},
            )
        carved = sum(q.get(key) or 0 for q in others)
        if carved + value > allowed:
            raise InvalidRequest(
                f"team quota {key} = {value:g}: the organisation's other teams already have "
                f"{carved:g} of its {limit_key} ({allowed:g}), so at most "
                f"{max(allowed - carved, 0):g} is left for this team",
                details={
                    "key": key,
                    "limit": limit_key,
                    "allowed": allowed,
                    "carved": carved,
                    "requested": value,
                },
            )
        clean[key] = value
    return clean


# -- changing -----------------------------------------------------------------------


def _member_of(s: Session, tenant: Tenant, username: Any, what: str) -> Membership:
    if not isinstance(username, str) or not username:
        raise InvalidRequest(f"{what} must be a username", details={"key": what})
    m = s.scalar(
        select(Membership).where(Membership.username == username, Membership.tenant_id == tenant.id)
    )
    if m is None:
        raise InvalidRequest(
            f"{username!r} is not a member of {tenant.slug}", details={"key": what}
        )
    if m.role in NOT_IN_TEAMS:
        raise InvalidRequest(f"a {m.role} cannot be in a team", details={"key": what})
    return m


def _join(s: Session, team: Team, username: str) -> None:
    """Put ``username`` in ``team`` (409 when in another team: one team per user)."""
    current = s.execute(
        _current()
        .add_columns(Team.id, Team.name)
        .where(TeamMember.username == username, Team.tenant_id == team.tenant_id)
    ).one_or_none()
    if current is not None and current.id != team.id:
        raise Conflict(
            f"{username} is in team {current.name}: a user is in at most one team; "
            f"remove them from {current.name} first"
        )
    if current is None:
        # a stale row of this name in this team (removed from the tenant, or before the
        # name was given again) makes way for the new one
        s.execute(
            delete(TeamMember).where(TeamMember.team_id == team.id, TeamMember.username == username)
        )
        s.add(TeamMember(team_id=team.id, username=username, added_at=utcnow()))


def create_team(
    s: Session,
    slug: str,
    name: Any,
    catalog: TierCatalog,
    *,
    lead: str | None = None,
    quotas: Any = None,
    actor: str | None = None,
) -> TeamView:
    """A new team (the lead, when given, becomes its first member)."""
    name = validate_name(name)
    tenant_lock(s, slug)  # carving reads the other teams' quotas: one writer per tenant
    tenant = _tenant(s, slug)
    if s.scalar(select(Team.id).where(Team.tenant_id == tenant.id, Team.name == name)):
        raise Conflict(f"{slug} already has a team {name!r}")
    clean = check_quotas(s, tenant, catalog, quotas or {})
    if lead is not None:
        _member_of(s, tenant, lead, "lead")
    team = Team(
        tenant_id=tenant.id,
        name=name,
        lead=lead,
        quotas=clean,
        created_at=utcnow(),
        created_by=actor,
    )
    s.add(team)
    s.flush()
    if lead is not None:
        _join(s, team, lead)
    bump_revision(s)
    s.flush()
    return _view(s, slug, team)


_UNSET: Any = object()


def update_team(
    s: Session,
    slug: str,
    name: str,
    catalog: TierCatalog,
    *,
    lead: Any = _UNSET,
    quotas: Any = _UNSET,
) -> TeamView:
    """Change the lead (a member of the tenant, who joins the team; None: no lead) or the
    quotas (merged: a key given sets it, a key given as null removes it)."""
    tenant_lock(s, slug)
    tenant = _tenant(s, slug)
    team = _team(s, tenant, name)
    if quotas is not _UNSET:
        if not isinstance(quotas, dict):
            raise InvalidRequest("quotas must be a JSON object", details={"key": "quotas"})
        merged = {**(team.quotas or {}), **quotas}
        team.quotas = check_quotas(s, tenant, catalog, merged, team_id=team.id)
    if lead is not _UNSET:
        if lead is not None:
            _member_of(s, tenant, lead, "lead")
            _join(s, team, lead)
        team.lead = lead
    bump_revision(s)
    s.flush()
    return _view(s, slug, team)


def set_quota(s: Session, slug: str, name: str, catalog: TierCatalog, quotas: dict) -> TeamView:
    """Set some quotas of a team, still carved (the ``team_quota`` request's apply)."""
    return update_team(s, slug, name, catalog, quotas=quotas)


def delete_team(s: Session, slug: str, name: str) -> TeamView:
    """Remove a team (its members stay in the tenant); returns what it was."""
    tenant = _tenant(s, slug)
    team = _team(s, tenant, name)
    view = _view(s, slug, team)
    s.delete(team)
    bump_revision(s)
    s.flush()
    return view


def add_member(s: Session, slug: str, name: str, username: str) -> TeamView:
    tenant_lock(s, slug)  # one team per user: no two joins racing
    tenant = _tenant(s, slug)
    team = _team(s, tenant, name)
    _member_of(s, tenant, username, "username")
    _join(s, team, username)
    bump_revision(s)
    s.flush()
    return _view(s, slug, team)


def remove_member(s: Session, slug: str, name: str, username: str) -> TeamView:
    """Take ``username`` out of the team (404 when not in it); a lead stops being lead."""
    tenant = _tenant(s, slug)
    team = _team(s, tenant, name)
    if username not in _members(s, team.id):
        raise NotFound(f"{username!r} is not in team {name}")
    s.execute(
        delete(TeamMember).where(TeamMember.team_id == team.id, TeamMember.username == username)
    )
    if team.lead == username:
        team.lead = None
    bump_revision(s)
    s.flush()
    return _view(s, slug, team)
