"""Invitations: a tenant admin (or an operator) asks someone to join by email.

An invitation is a one-time token (only its SHA-256 is stored) for one address and
one role, valid a number of days (7 by default). The link that carries it is sent by
the caller (the hub's tenancy API emails it, ``fedhub user invite`` prints it): the
store never sends mail. Following it, the person picks a username and password on
the sign-up page and is a member (:meth:`ApplicantMixin._sign_up_by_invitation`).

Resending makes a new token and a new expiry, so the old link stops working; it is
refused (429) within ``RESEND_INTERVAL`` of the last link, so nobody can mail-bomb an
address through the hub. Revoking ends the invitation before it is used.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from fedhub import events
from fedhub.db.base import utcnow
from fedhub.errors import Conflict, InvalidRequest, NotFound
from fedhub.tenancy.checks import EMAIL_RE
from fedhub.tenancy.models import Invitation, Membership, Role, Tenant
from fedhub.tenancy.signup.outcomes import ResendTooSoon, token_hash

DEFAULT_VALIDITY = timedelta(days=7)
MAX_VALIDITY = timedelta(days=30)
RESEND_INTERVAL = timedelta(minutes=1)
#: the roles an invitation may give (a platform admin or a service account is never invited)
INVITABLE_ROLES = (Role.TENANT_ADMIN, Role.MEMBER, Role.ANALYST)


@dataclass(frozen=True)
class InvitationView:
    """An invitation as its tenant's admins see it (never its token)."""

    id: int
    tenant: str
    tenant_name: str
    email: str
    role: Role
    state: str  # pending, accepted, expired or revoked
    created_at: datetime | None
    created_by: str | None
    expires_at: datetime
    sent_at: datetime | None
    resent_count: int
    # the link's secret, set only right after invite/resend (for the email, never a log)
    token: str | None = field(default=None, repr=False)

    @classmethod
    def of(cls, inv: Invitation, token: str | None = None) -> InvitationView:
        return cls(
            id=inv.id,
            tenant=inv.tenant.slug,
            tenant_name=inv.tenant.name,
            email=inv.email,
            role=Role(inv.role),
            state=state_of(inv),
            created_at=inv.created_at,
            created_by=inv.created_by,
            expires_at=inv.expires_at,
            sent_at=inv.sent_at,
            resent_count=inv.resent_count or 0,
            token=token,
        )

    def to_json(self) -> dict:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() + "Z" if value else None

        return {
            "id": self.id,
            "email": self.email,
            "role": str(self.role),
            "state": self.state,
            "created_at": iso(self.created_at),
            "created_by": self.created_by,
            "expires_at": iso(self.expires_at),
            "sent_at": iso(self.sent_at),
            "resent_count": self.resent_count,
        }


def state_of(inv: Invitation, now: datetime | None = None) -> str:
    if inv.used_at is not None:
        return "accepted"
    if inv.revoked_at is not None:
        return "revoked"
    if inv.expires_at < (now or utcnow()):
        return "expired"
    return "pending"


def validity(days: object) -> timedelta:
    """How long an invitation stays valid, from a request's ``days`` (1 to 30)."""
    if days is None:
        return DEFAULT_VALIDITY
    limit = MAX_VALIDITY.days
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= limit:
        raise InvalidRequest(f"days must be a whole number from 1 to {limit} (got {days!r:.40})")
    return timedelta(days=days)


def invitable_role(role: object) -> Role:
    names = ", ".join(r.value for r in INVITABLE_ROLES)
    try:
        role = Role(role)
    except ValueError:
        raise InvalidRequest(f"unknown role {role!r:.40}: use one of {names}") from None
    if role not in INVITABLE_ROLES:
        raise InvalidRequest(f"an invitation cannot make a {role}: use one of {names}")
    return role


class InvitationMixin:
    """Inviting, listing, resending and revoking (part of :class:`TenantStore`)."""

    def invite(
        self,
        tenant: str,
        email: str,
        role: Role | str = Role.MEMBER,
        *,
        valid_for: timedelta = DEFAULT_VALIDITY,
        actor: str | None = None,
    ) -> InvitationView:
        """Create an invitation; the result carries its token (only the hash is stored).

        Refused (409) when the address is a member of the tenant already or has a
        pending invitation to it (resend that one instead)."""
        if not EMAIL_RE.match(email or "") or len(email) > 320:
            raise InvalidRequest(f"invalid email address {str(email)[:100]!r}")
        email = email.lower()
        role = invitable_role(role)
        if not timedelta(0) < valid_for <= MAX_VALIDITY:
            raise InvalidRequest(f"an invitation is valid 1 to {MAX_VALIDITY.days} days")
        token = secrets.token_urlsafe(24)
        now = utcnow()
        with self.session() as s:
            t = self._tenant(s, tenant)
            if s.scalar(
                select(Membership.id).where(Membership.tenant_id == t.id, Membership.email == email)
            ):
                raise Conflict(f"{email} is a member of {t.name} already")
            for other in s.scalars(
                select(Invitation).where(Invitation.tenant_id == t.id, Invitation.email == email)
            ):
                if state_of(other, now) == "pending":
                    raise Conflict(
                        f"{email} has a pending invitation to {t.name} already "
                        f"(id {other.id}): resend or revoke that one"
                    )
            inv = Invitation(
                tenant=t,
                email=email,
                role=role,
                token_hash=token_hash(token),
                created_at=now,
                expires_at=now + valid_for,
                sent_at=now,
                created_by=actor,
            )
            s.add(inv)
            s.flush()
            view = InvitationView.of(inv, token)
        events.emit(
            "user.invited",
            tenant=tenant,
            actor=actor,
            target=email,
            details={"role": str(role), "invitation": view.id, "days": valid_for.days},
        )
        return view

    def invitations(self, tenant: str) -> list[InvitationView]:
        """The tenant's invitations, newest first, in every state."""
        with self.session() as s:
            t = self._tenant(s, tenant)
            q = (
                select(Invitation)
                .options(selectinload(Invitation.tenant))
                .where(Invitation.tenant_id == t.id)
                .order_by(Invitation.id.desc())
            )
            return [InvitationView.of(inv) for inv in s.scalars(q)]

    def resend_invitation(
        self,
        tenant: str,
        invitation_id: int,
        *,
        valid_for: timedelta = DEFAULT_VALIDITY,
        actor: str | None = None,
        now: datetime | None = None,
    ) -> InvitationView:
        """A new token and expiry for a pending (or expired) invitation: the old link dies."""
        now = now or utcnow()
        with self.session() as s:
            inv = _invitation_of(s, tenant, invitation_id)
            state = state_of(inv, now)
            if state in ("accepted", "revoked"):
                raise Conflict(f"invitation {invitation_id} was {state}: invite again instead")
            if inv.sent_at is not None and inv.sent_at + RESEND_INTERVAL > now:
                wait = max(1, round((inv.sent_at + RESEND_INTERVAL - now).total_seconds()))
                raise ResendTooSoon(
                    f"invitation {invitation_id} was sent moments ago: resend it in {wait} "
                    "second(s) at the earliest"
                )
            token = secrets.token_urlsafe(24)
            inv.token_hash = token_hash(token)
            inv.expires_at = now + valid_for
            inv.sent_at = now
            inv.resent_count = (inv.resent_count or 0) + 1
            view = InvitationView.of(inv, token)
        events.emit(
            "user.invitation_resent",
            tenant=tenant,
            actor=actor,
            target=view.email,
            details={"invitation": view.id, "resent_count": view.resent_count},
        )
        return view

    def revoke_invitation(
        self, tenant: str, invitation_id: int, *, actor: str | None = None
    ) -> InvitationView:
        """End an invitation before it is used (revoking twice changes nothing)."""
        with self.session() as s:
            inv = _invitation_of(s, tenant, invitation_id)
            if inv.used_at is not None:
                raise Conflict(
                    f"invitation {invitation_id} was accepted already: remove the member instead"
                )
            already = inv.revoked_at is not None
            if not already:
                inv.revoked_at = utcnow()
                inv.revoked_by = actor
            view = InvitationView.of(inv)
        if not already:
            events.emit(
                "user.invitation_revoked",
                tenant=tenant,
                actor=actor,
                target=view.email,
                severity="notice",
                details={"invitation": view.id},
            )
        return view

    def invitation_for_token(self, token: str) -> InvitationView | None:
        """The pending invitation a link's token belongs to (for the sign-up page)."""
        if not token:
            return None
        with self.session() as s:
            inv = s.scalar(
                select(Invitation)
                .options(selectinload(Invitation.tenant))
                .where(Invitation.token_hash == token_hash(token))
            )
            if inv is None or state_of(inv) != "pending":
                return None
            return InvitationView.of(inv)


def _invitation_of(s: Session, tenant: str, invitation_id: int) -> Invitation:
    """The invitation ``invitation_id`` of ``tenant``: another tenant's is a 404."""
    inv = s.scalar(
        select(Invitation)
        .options(selectinload(Invitation.tenant))
        .join(Tenant, Invitation.tenant_id == Tenant.id)
        .where(Invitation.id == invitation_id, Tenant.slug == tenant)
    )
    if inv is None:
        raise NotFound(f"no invitation {invitation_id} in tenant {tenant!r}")
    return inv
