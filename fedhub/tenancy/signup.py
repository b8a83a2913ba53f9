"""Invitations and self-service sign-up (part of :class:`TenantStore`).

Nobody joins a tenant on their own: a sign-up needs an invitation (a one-time
code whose SHA-256 alone is stored) or an email address in a domain the tenant
allows. The tenant's ``max_users`` applies either way.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select

from fedhub import events
from fedhub.db.base import utcnow
from fedhub.errors import Conflict, InvalidRequest
from fedhub.tenancy import passwords
from fedhub.tenancy.checks import EMAIL_RE, bump_revision, validate_password, validate_username
from fedhub.tenancy.models import Invitation, LocalCredential, Membership, Role, Tenant


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SignupMixin:
    """The invitation and sign-up methods of :class:`fedhub.tenancy.store.TenantStore`."""

    def invite(
        self,
        tenant: str,
        email: str,
        role: Role | str = Role.MEMBER,
        *,
        valid_for: timedelta = timedelta(days=7),
        actor: str | None = None,
    ) -> str:
        """Create an invitation and return its token (only its hash is stored)."""
        if not EMAIL_RE.match(email or ""):
            raise InvalidRequest(f"invalid email address {email!r}")
        token = secrets.token_urlsafe(24)
        with self.session() as s:
            t = self._tenant(s, tenant)
            s.add(
                Invitation(
                    tenant_id=t.id,
                    email=email.lower(),
                    role=Role(role),
                    token_hash=token_hash(token),
                    expires_at=utcnow() + valid_for,
                    created_by=actor,
                )
            )
        events.emit(
            "user.invited",
            tenant=tenant,
            actor=actor,
            target=email.lower(),
            details={"role": str(Role(role))},
        )
        return token

    def sign_up(
        self, username: str, email: str, password: str, *, invitation: str | None = None
    ) -> Membership:
        """Self-service sign-up: by invitation, or by the tenant's allowed email domain."""
        validate_username(username)
        validate_password(password)
        match = EMAIL_RE.match(email or "")
        if not match:
            raise InvalidRequest(f"invalid email address {email!r}")
        email = email.lower()
        domain = match.group(1).lower()
        with self.session() as s:
            if invitation:
                inv = s.scalar(
                    select(Invitation).where(Invitation.token_hash == token_hash(invitation))
                )
                if inv is None or inv.used_at is not None or inv.expires_at < utcnow():
                    raise InvalidRequest("this invitation is not valid (wrong, used or expired)")
                if inv.email != email:
                    raise InvalidRequest("this invitation was sent to another email address")
                tenant = s.get(Tenant, inv.tenant_id)
                role = inv.role
                inv.used_at = utcnow()
            else:
                candidates = [
                    t
                    for t in s.scalars(select(Tenant))
                    if domain in (t.allowed_email_domains or [])
                ]
                if not candidates:
                    raise InvalidRequest(
                        "sign-up needs an invitation, or an email address in a domain a tenant allows"
                    )
                tenant = candidates[0]
                role = Role.MEMBER
            if not tenant.active:
                raise InvalidRequest(
                    f"organisation {tenant.name!r} is suspended; sign-up is closed"
                )
            if s.scalar(select(Membership).where(Membership.username == username)):
                raise Conflict(f"user {username!r} already exists")
            self._check_user_quota(s, tenant)
            m = Membership(username=username, tenant_id=tenant.id, role=role, email=email)
            s.add(m)
            s.add(
                LocalCredential(username=username, password_hash=passwords.hash_password(password))
            )
            bump_revision(s)
            slug = tenant.slug
        events.emit(
            "user.signed_up",
            tenant=slug,
            actor=username,
            target=username,
            details={"role": str(role), "by": "invitation" if invitation else "email_domain"},
        )
        return m
