"""What the applicant's and the admin's sides of sign-up share: the results they
return, the refusals only sign-up makes, and the step that turns a sign-up into
a member."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fedhub import events
from fedhub.errors import Conflict, FedhubError, Forbidden
from fedhub.tenancy.checks import bump_revision
from fedhub.tenancy.models import (
    LocalCredential,
    Membership,
    Role,
    SignupRequest,
    SignupStatus,
    Tenant,
)

ACTIVE = "active"  # SignupResult.status of a sign-up that made an account
DEFAULT_LINK_VALIDITY = timedelta(hours=24)
MAX_CONFIRM_ATTEMPTS = 5  # wrong passwords on the confirm page before the link dies


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class LinkExpired(FedhubError, code="link_expired", status=410):
    """A verification link followed after its expiry."""


class ResendTooSoon(FedhubError, code="too_soon", status=429):
    """A new link asked for too soon after the last one (no mail bombing through us)."""


class SignupClosed(Forbidden, code="signup_closed"):
    """The tenant does not take sign-ups this way (its policy, or it is suspended)."""


@dataclass(frozen=True)
class SignupResult:
    """Where a sign-up stands. ``token`` is set only when a link must be sent
    (it is a secret: put it in the link, never in a log)."""

    username: str
    email: str
    tenant: str
    tenant_name: str
    status: str  # "active", or a SignupStatus value
    token: str | None = field(default=None, repr=False)
    resent: bool = False

    @property
    def active(self) -> bool:
        return self.status == ACTIVE


@dataclass(frozen=True)
class PendingSignup:
    """A read-only view of a sign-up request (for the login page, the CLI)."""

    username: str
    email: str
    tenant: str
    tenant_name: str
    status: SignupStatus
    password_hash: str = field(repr=False)
    created_at: datetime
    expires_at: datetime | None

    @classmethod
    def of(cls, req: SignupRequest) -> PendingSignup:
        return cls(
            username=req.username,
            email=req.email,
            tenant=req.tenant.slug,
            tenant_name=req.tenant.name,
            status=req.status,
            password_hash=req.password_hash,
            created_at=req.created_at,
            expires_at=req.expires_at,
        )


#: What a listener is told: ``listener(store, session, event, pending, actor=..., reason=...)``
#: with ``event`` one of "awaiting_approval", "approved", "rejected", inside the
#: transaction that makes the change; it may return a function to run once that
#: transaction has committed. fedhub.approvals listens, to keep a ``join_tenant`` request
#: beside each sign-up that waits for an admin (tenancy never imports it).
SignupListener = Callable[..., Callable[[], None] | None]
LISTENERS: list[SignupListener] = []


def listen(listener: SignupListener) -> None:
    """Tell ``listener`` about every sign-up that starts or stops waiting for an admin."""
    if listener not in LISTENERS:
        LISTENERS.append(listener)


def tell_listeners(
    store: Any,
    s: Session,
    event: str,
    pending: PendingSignup,
    *,
    actor: str | None = None,
    reason: str | None = None,
) -> list[Callable[[], None]]:
    """Run the listeners in the transaction; returns what each wants run after commit."""
    after = [
        listener(store, s, event, pending, actor=actor, reason=reason) for listener in LISTENERS
    ]
    return [fn for fn in after if fn is not None]


def emit(
    action: str, applicant: SignupResult | PendingSignup, actor: str | None, **fields: Any
) -> None:
    """Every sign-up event is about the applicant: their tenant, their username as target."""
    events.emit(action, tenant=applicant.tenant, actor=actor, target=applicant.username, **fields)


def emit_signed_up(result: SignupResult, by: str, role: Role = Role.MEMBER) -> None:
    """The one event that says an account exists now (by invitation or by email domain)."""
    emit("user.signed_up", result, result.username, details={"role": str(role), "by": by})


def check_open(tenant: Tenant) -> None:
    if not tenant.active:
        raise SignupClosed(f"organisation {tenant.name!r} is suspended; sign-up is closed")


class MembershipMixin:
    """Making a member out of a sign-up, with the checks every route to it shares."""

    def _check_username_free(self, s: Session, username: str, email: str) -> None:
        taken = s.scalar(select(Membership.id).where(Membership.username == username))
        held = s.scalar(
            select(SignupRequest.id).where(
                SignupRequest.username == username, SignupRequest.email != email
            )
        )
        if taken or held:  # one message: a request is not told apart from an account
            raise Conflict(f"user {username!r} already exists")

    def _make_member(
        self,
        s: Session,
        tenant: Tenant,
        username: str,
        email: str,
        password_hash: str,
        role: Role = Role.MEMBER,
    ) -> None:
        """An account and its local credential; a sign-up's role is member unless an
        invitation names another."""
        if s.scalar(select(Membership.id).where(Membership.username == username)):
            raise Conflict(f"user {username!r} already exists")
        self._check_user_quota(s, tenant)
        s.add(Membership(username=username, tenant_id=tenant.id, role=role, email=email))
        s.add(LocalCredential(username=username, password_hash=password_hash))
        bump_revision(s)
