"""Browser sessions of the hub: one row per login, until it is ended or expires.

JupyterHub's login cookie names the *user* (every browser of a user carries the
same ``cookie_id``); what tells two browsers apart is the session id it gives
each login (the ``jupyterhub-session-id`` cookie, also stamped on the OAuth
tokens that session hands to services and servers). fedhub keeps a row per
session id, so that a user can see where they are logged in and end one login
without ending the others, and so that a tier's lifetimes
(``security.sessions``) can end a login that sat idle or lasted too long.

The hub writes these rows (``fedhub.extensions.hub.sessions``); this module is
only the table and its operations, on plain values, with times from
:mod:`fedhub.clock` so that tests can move them.
"""

from __future__ import annotations

import enum
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, ForeignKey, String, select, update
from sqlalchemy.orm import Mapped, mapped_column

from fedhub.db import session_scope
from fedhub.db.base import Base
from fedhub.tenancy.models import Tenant


class EndReason(enum.StrEnum):
    """Why a session ended (``end_reason``; the ``why`` of ``session.ended`` events)."""

    USER = "user"  # its user ended it (the sessions page or API)
    ADMIN = "admin"  # a tenant or platform admin ended it
    LOGOUT = "logout"  # its browser logged out
    REPLACED = "replaced"  # its browser logged in again
    IDLE = "idle"  # no request for the tier's idle_minutes
    ABSOLUTE = "absolute"  # the tier's absolute_hours since login passed


class HubSession(Base):
    """One browser login (``id`` is JupyterHub's session id)."""

    __tablename__ = "fedhub_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(String(255), index=True)
    tenant_id: Mapped[int | None] = mapped_column(
        ForeignKey("fedhub_tenants.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(1024))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    ended_by: Mapped[str | None] = mapped_column(String(255), default=None)
    end_reason: Mapped[str | None] = mapped_column(String(32), default=None)


@dataclass(frozen=True)
class SessionView:
    """A session as plain values (safe to keep after the transaction, or off the loop).

    ``tier`` and ``overrides`` are its tenant's, read in the same query, so that
    the hub can compute the session's lifetimes without a second read.
    """

    id: str
    username: str
    tenant: str | None
    created_at: datetime
    last_seen_at: datetime
    ip: str | None
    user_agent: str | None
    ended_at: datetime | None
    ended_by: str | None
    end_reason: str | None
    tier: str | None = None
    overrides: dict[str, Any] | None = None

    @property
    def active(self) -> bool:
        return self.ended_at is None

    def public(self) -> dict[str, Any]:
        """The JSON model of the API (times in ISO 8601 UTC)."""

        def iso(t: datetime | None) -> str | None:
            return t.isoformat() + "Z" if t else None

        return {
            "id": self.id,
            "user": self.username,
            "tenant": self.tenant,
            "created": iso(self.created_at),
            "last_seen": iso(self.last_seen_at),
            "ip": self.ip,
            "user_agent": self.user_agent,
            "ended_at": iso(self.ended_at),
            "ended_by": self.ended_by,
            "end_reason": self.end_reason,
        }


def expiry_reason(
    created_at: datetime,
    last_seen_at: datetime,
    now: datetime,
    *,
    idle_minutes: int,
    absolute_hours: int,
) -> EndReason | None:
    """Whether a live session has outlived its tier's lifetimes (0: no limit).

    ``last_seen_at`` is recorded at most once per :data:`TOUCH_EVERY`, so an
    idle limit is honoured to within that much.
    """
    if absolute_hours and now - created_at >= timedelta(hours=absolute_hours):
        return EndReason.ABSOLUTE
    if idle_minutes and now - last_seen_at >= timedelta(minutes=idle_minutes):
        return EndReason.IDLE
    return None


TOUCH_EVERY = timedelta(minutes=1)

_COLUMNS = (
    HubSession.id,
    HubSession.username,
    Tenant.slug,
    HubSession.created_at,
    HubSession.last_seen_at,
    HubSession.ip,
    HubSession.user_agent,
    HubSession.ended_at,
    HubSession.ended_by,
    HubSession.end_reason,
    Tenant.tier,
    Tenant.overrides,
)


def _select():
    return select(*_COLUMNS).outerjoin(Tenant, Tenant.id == HubSession.tenant_id)


class SessionBook:
    """The ``fedhub_sessions`` table (``db``: a URL or engine, as for :class:`TenantStore`)."""

    def __init__(self, db=None):
        self.db = db

    def start(
        self,
        session_id: str,
        username: str,
        *,
        tenant: str | None,
        now: datetime,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> None:
        """Record a new login (its tenant by slug; None for platform admins)."""
        with session_scope(self.db) as s:
            tenant_id = s.scalar(select(Tenant.id).where(Tenant.slug == tenant)) if tenant else None
            s.add(
                HubSession(
                    id=session_id,
                    username=username,
                    tenant_id=tenant_id,
                    created_at=now,
                    last_seen_at=now,
                    ip=_clip(ip, 64),
                    user_agent=_clip(user_agent, 1024),
                )
            )

    def get(self, session_id: str) -> SessionView | None:
        """One session with its tenant's tier: one read by primary key."""
        with session_scope(self.db) as s:
            row = s.execute(_select().where(HubSession.id == session_id)).first()
        return SessionView(*row) if row else None

    def touch(self, session_id: str, now: datetime, ip: str | None = None) -> None:
        """The session was used now (callers do this at most every :data:`TOUCH_EVERY`)."""
        with session_scope(self.db) as s:
            s.execute(
                update(HubSession)
                .where(HubSession.id == session_id, HubSession.ended_at.is_(None))
                .values(last_seen_at=now, ip=_clip(ip, 64))
            )

    def list(self, username: str, *, include_ended: bool = False) -> list[SessionView]:
        """``username``'s sessions, newest first."""
        stmt = _select().where(HubSession.username == username)
        if not include_ended:
            stmt = stmt.where(HubSession.ended_at.is_(None))
        with session_scope(self.db) as s:
            rows = s.execute(stmt.order_by(HubSession.created_at.desc(), HubSession.id)).all()
        return [SessionView(*row) for row in rows]

    def end(
        self,
        username: str,
        *,
        by: str,
        why: EndReason,
        now: datetime,
        only: AbstractSet[str] | None = None,
        keep: AbstractSet[str] = frozenset(),
    ) -> list[SessionView]:
        """End ``username``'s live sessions (``only`` those ids, if given; never ``keep``).

        Returns the sessions this call ended, as they were before: a session
        that was already ended (by another request meanwhile) is not returned,
        so each end is reported once.
        """
        stmt = select(HubSession.id).where(
            HubSession.username == username, HubSession.ended_at.is_(None)
        )
        if only is not None:
            stmt = stmt.where(HubSession.id.in_(sorted(only)))
        with session_scope(self.db) as s:
            ids = [i for i in s.scalars(stmt) if i not in keep]
            if not ids:
                return []
            before = [
                SessionView(*row) for row in s.execute(_select().where(HubSession.id.in_(ids)))
            ]
            s.execute(
                update(HubSession)
                .where(HubSession.id.in_(ids), HubSession.ended_at.is_(None))
                .values(ended_at=now, ended_by=_clip(by, 255), end_reason=why.value)
            )
        return before


def _clip(value: str | None, limit: int) -> str | None:
    return value[:limit] if value else value
