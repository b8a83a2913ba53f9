"""Self-service onboarding: an organisation that asks to exist (docs/organisations.md).

A person gives an organisation name, their email, a username, a password and a tier.
Nothing exists until the address is proven: the request is one row of
:class:`Onboarding` (no tenant, no membership, no credential) with a single-use link
token, of which only the SHA-256 is stored. Following the link (and typing the password
chosen, as for sign-up, so a mail scanner that opens the link changes nothing):

- a **free** tier (``monthly_price`` 0) founds the tenant at once, with that person as its
  tenant admin (membership and password credential, in one transaction);
- a **paid** tier becomes an ``onboarding`` approval request (:mod:`fedhub.approvals`),
  which a platform admin approves (the kind's ``apply`` founds the tenant in the same
  transaction as the approval) or rejects with a reason the requester sees on the
  status page (``/hub/onboard/status?token=``, the same link).

The slug is derived from the name (lowercase ``[a-z0-9-]``, :data:`SLUG_RE`) and made
unique against tenants and other onboardings (``acme``, ``acme-2``, ...). The abuse
limits kept here: one pending onboarding per email address, usernames and addresses
already taken are refused (409); the per-address rate limit is the hub's
(:mod:`fedhub.extensions.hub.tenancy_api.onboarding`). Like the sign-up store, this
module never sends mail: it returns the token for the caller to put in a link.

The table has no tenant column: before approval there is no tenant, so it is a
platform table (:data:`fedhub.db.rls.PLATFORM_TABLES`), read and written only by the
hub's onboarding pages and the approval of its requests.
"""

from __future__ import annotations

import enum
import re
import secrets
import unicodedata
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import DateTime, Integer, String, delete, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from fedhub import events
from fedhub.db.base import Base, utcnow
from fedhub.errors import Conflict, Forbidden, InvalidRequest
from fedhub.tenancy import passwords, plans
from fedhub.tenancy.checks import (
    EMAIL_RE,
    SLUG_RE,
    bump_revision,
    validate_password,
    validate_username,
)
from fedhub.tenancy.models import (
    LocalCredential,
    Membership,
    Role,
    SignupRequest,
    Tenant,
    TenantStatus,
    _enum,
)
from fedhub.tenancy.signup.outcomes import LinkExpired, token_hash

KIND = "onboarding"  # the approval request kind of a paid-tier onboarding
DEFAULT_LINK_VALIDITY = timedelta(hours=24)
MAX_CONFIRM_ATTEMPTS = 5  # wrong passwords on the confirm page before the link dies
MAX_NAME_LENGTH = 100
SLUG_BASE_LENGTH = 40  # room for "-<n>" within the 63 characters of SLUG_RE


class OnboardingState(enum.StrEnum):
    AWAITING_EMAIL = "awaiting_email"
    AWAITING_APPROVAL = "awaiting_approval"
    ONBOARDED = "onboarded"
    REJECTED = "rejected"


PENDING = (OnboardingState.AWAITING_EMAIL, OnboardingState.AWAITING_APPROVAL)


class Onboarding(Base):
    """An organisation that asked to exist, until it does (or is refused)."""

    __tablename__ = "fedhub_onboardings"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation: Mapped[str] = mapped_column(String(255))
    slug: Mapped[str] = mapped_column(String(63), index=True)  # reserved while pending
    tier: Mapped[str] = mapped_column(String(63))
    email: Mapped[str] = mapped_column(String(320), index=True)
    username: Mapped[str] = mapped_column(String(255), index=True)
    # emptied once the tenant admin's credential holds it (or the request is refused)
    password_hash: Mapped[str] = mapped_column(String(255))
    state: Mapped[OnboardingState] = mapped_column(_enum(OnboardingState, "onboarding_state"))
    # the link's token: it confirms while awaiting_email, then shows the status
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    request_id: Mapped[int | None] = mapped_column(Integer, default=None)  # fedhub_requests.id
    reason: Mapped[str | None] = mapped_column(String(1000), default=None)  # of a rejection
    source_ip: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    verified_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)


# -- refusals ------------------------------------------------------------------------


class UnknownTier(InvalidRequest, code="unknown_tier"):
    """A tier that does not exist, or that is not offered for self-service."""


class OnboardingPending(Conflict, code="onboarding_pending"):
    """The address has an onboarding in progress already."""


# -- results -------------------------------------------------------------------------


@dataclass(frozen=True)
class OnboardingView:
    """Where an onboarding stands (for the pages, the API and the emails).
    ``token`` is set only when a link must be sent: a secret, never logged."""

    id: int
    organisation: str
    slug: str
    tier: str
    email: str
    username: str
    state: str
    paid: bool
    expires_at: datetime | None = None
    request_id: int | None = None
    reason: str | None = None
    token: str | None = field(default=None, repr=False)

    @classmethod
    def of(cls, row: Onboarding, paid: bool, token: str | None = None) -> OnboardingView:
        return cls(
            id=row.id,
            organisation=row.organisation,
            slug=row.slug,
            tier=row.tier,
            email=row.email,
            username=row.username,
            state=str(row.state),
            paid=paid,
            expires_at=row.expires_at,
            request_id=row.request_id,
            reason=row.reason,
            token=token,
        )

    def public(self) -> dict:
        """What the requester may see about their own onboarding (the API's answer)."""
        return {
            "organisation": self.organisation,
            "slug": self.slug,
            "tier": self.tier,
            "username": self.username,
            "state": self.state,
            "paid": self.paid,
            "reason": self.reason,
        }


# -- slugs ---------------------------------------------------------------------------


def derive_slug(name: str) -> str:
    """The slug a name suggests: ASCII lowercase letters, digits and single dashes."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    base = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return base[:SLUG_BASE_LENGTH].strip("-") or "org"


def unique_slug(s: Session, name: str, *, exclude: int | None = None) -> str:
    """``derive_slug(name)``, or with ``-2``, ``-3``, ... when a tenant has it or a pending
    onboarding reserved it."""
    base = derive_slug(name)
    pattern = f"{base}%"
    taken = set(s.scalars(select(Tenant.slug).where(Tenant.slug.like(pattern))))
    reserved = select(Onboarding.slug).where(
        Onboarding.slug.like(pattern), Onboarding.state.in_(PENDING)
    )
    if exclude is not None:
        reserved = reserved.where(Onboarding.id != exclude)
    taken |= set(s.scalars(reserved))
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    assert SLUG_RE.match(candidate), candidate
    return candidate


# -- asking --------------------------------------------------------------------------


def is_paid(store, tier: str) -> bool:
    return store.tiers.get(tier).monthly_price > 0


def check_tier(store, tier: str, offered: Collection[str] | None) -> str:
    names = [n for n in store.tiers.names() if not offered or n in offered]
    if tier not in names:
        raise UnknownTier(
            f"unknown tier {str(tier)[:63]!r}: choose one of {', '.join(names)}",
            details={"tiers": names},
        )
    return tier


def request_onboarding(
    store,
    *,
    organisation: str,
    email: str,
    username: str,
    password: str,
    tier: str,
    offered: Collection[str] | None = None,
    link_valid_for: timedelta = DEFAULT_LINK_VALIDITY,
    source_ip: str | None = None,
) -> OnboardingView:
    """Ask for an organisation: a pending onboarding and the token of its link."""
    organisation = " ".join(str(organisation or "").split())
    if not organisation or len(organisation) > MAX_NAME_LENGTH:
        raise InvalidRequest(f"organisation: give a name of 1 to {MAX_NAME_LENGTH} characters")
    email = str(email or "").strip().lower()
    if not EMAIL_RE.match(email) or len(email) > 320:
        raise InvalidRequest(f"email: invalid address {email[:100]!r}")
    validate_username(username)
    check_tier(store, tier, offered)
    validate_password(password)
    policy = store.tiers.effective(tier, {}).security.password
    passwords.check_password(policy, password, username, email)
    now = utcnow()
    token = secrets.token_urlsafe(32)
    with store.session() as s:
        # a link nobody followed in time holds no name, address or slug any more
        s.execute(
            delete(Onboarding).where(
                Onboarding.state == OnboardingState.AWAITING_EMAIL, Onboarding.expires_at < now
            )
        )
        if s.scalar(
            select(Onboarding.id).where(Onboarding.email == email, Onboarding.state.in_(PENDING))
        ):
            raise OnboardingPending(
                f"{email} has an onboarding in progress already: follow the link we sent "
                "(look in your spam folder too), or wait until it expires or is decided."
            )
        _check_free(s, username, email)
        row = Onboarding(
            organisation=organisation,
            slug=unique_slug(s, organisation),
            tier=tier,
            email=email,
            username=username,
            password_hash=passwords.hash_password(password),
            state=OnboardingState.AWAITING_EMAIL,
            token_hash=token_hash(token),
            expires_at=now + link_valid_for,
            source_ip=source_ip,
        )
        s.add(row)
        s.flush()
        view = OnboardingView.of(row, is_paid(store, tier), token=token)
    events.emit(
        "tenant.onboarding_requested",
        tenant=None,
        actor=username,
        target=view.slug,
        source_ip=source_ip,
        details={"organisation": organisation, "tier": tier, "paid": view.paid, "step": "email"},
    )
    return view


def cancel(store, onboarding_id: int) -> None:
    """Forget an onboarding whose link could not be sent (so the address is not blocked
    by a link nobody received)."""
    with store.session() as s:
        s.execute(
            delete(Onboarding).where(
                Onboarding.id == onboarding_id, Onboarding.state == OnboardingState.AWAITING_EMAIL
            )
        )


def _check_free(s: Session, username: str, email: str, exclude: int | None = None) -> None:
    """Refuse a username or an address that an account, a sign-up or another pending
    onboarding has (one message each: an account is not told apart from a request)."""
    others = select(Onboarding.id).where(Onboarding.state.in_(PENDING))
    if exclude is not None:
        others = others.where(Onboarding.id != exclude)
    if (
        s.scalar(select(Membership.id).where(Membership.username == username))
        or s.scalar(select(SignupRequest.id).where(SignupRequest.username == username))
        or s.scalar(others.where(Onboarding.username == username))
    ):
        raise Conflict(f"user {username!r} already exists: choose another username")
    if s.scalar(select(Membership.id).where(func.lower(Membership.email) == email)) or s.scalar(
        select(SignupRequest.id).where(SignupRequest.email == email)
    ):
        raise Conflict(
            f"{email} belongs to an account already: log in, or use another address "
            "for the new organisation"
        )


# -- following the link --------------------------------------------------------------


def by_token(store, token: str) -> OnboardingView | None:
    """The onboarding a link's token belongs to, in any state (the status page)."""
    if not token:
        return None
    with store.session() as s:
        row = s.scalar(select(Onboarding).where(Onboarding.token_hash == token_hash(token)))
        return None if row is None else OnboardingView.of(row, is_paid(store, row.tier))


#: ``ask(session, onboarding) -> (request id, run once committed)``: opens the approval
#: request of a paid tier's onboarding (:mod:`fedhub.approvals.kinds.onboarding`; tenancy
#: never imports approvals, so the caller passes it)
AskPlatform = Callable[[Session, Onboarding], tuple[int, Callable[[], None]]]


def verify(
    store,
    token: str,
    password: str,
    *,
    ask: AskPlatform | None = None,
    source_ip: str | None = None,
) -> OnboardingView:
    """Follow the link: a free tier's tenant exists now; a paid tier's is asked for."""
    _check_confirm_password(store, token, password)
    with store.session() as s:
        row = s.scalar(
            select(Onboarding).where(
                Onboarding.token_hash == token_hash(token),
                Onboarding.state == OnboardingState.AWAITING_EMAIL,
            )
        )
        if row is None:  # confirmed meanwhile by a concurrent request
            raise InvalidRequest("This link is not valid: it was used already.")
        row.verified_at = utcnow()
        paid = is_paid(store, row.tier)
        after = None
        if paid:
            if ask is None:
                raise Conflict("paid tiers cannot be asked for here: no approvals")
            row.state = OnboardingState.AWAITING_APPROVAL
            row.request_id, after = ask(s, row)
        else:
            found(s, row, actor=row.username)
        view = OnboardingView.of(row, paid)
    _emit_verified(view, source_ip)
    if after is not None:
        after()  # the request's own audit event and the approvers' mail
    return view


def _check_confirm_password(store, token: str, password: str) -> None:
    """Refuse a wrong, expired or spent link, or the wrong password (which counts
    against the link in its own transaction)."""
    with store.session() as s:
        row = s.scalar(
            select(Onboarding).where(
                Onboarding.token_hash == token_hash(token or ""),
                Onboarding.state == OnboardingState.AWAITING_EMAIL,
            )
        )
        if not token or row is None:
            raise InvalidRequest(
                "This link is not valid: it is incomplete or was used already. If you "
                "confirmed your address already, the status page of this link says what "
                "happens next."
            )
        if row.expires_at < utcnow():
            raise LinkExpired("This link has expired. Ask for the organisation again.")
        if passwords.verify_password(row.password_hash, password or ""):
            return
        row.failed_attempts += 1
        if row.failed_attempts >= MAX_CONFIRM_ATTEMPTS:
            row.expires_at = utcnow()  # the link dies; asking again sends a new one
        attempts, slug, username = row.failed_attempts, row.slug, row.username
    events.emit(
        "tenant.onboarding_confirm_failed",
        tenant=None,
        actor=None,
        target=slug,
        result="failure",
        severity="warning",
        details={"username": username, "attempts": attempts},
    )
    raise Forbidden(
        "That is not the password chosen for this organisation's administrator. Enter the "
        f"password you chose (after {MAX_CONFIRM_ATTEMPTS} wrong tries the link stops working)."
    )


def _emit_verified(view: OnboardingView, source_ip: str | None) -> None:
    if view.state == OnboardingState.ONBOARDED:
        emit_onboarded(view, actor=view.username, how="free_tier")
    else:
        events.emit(
            "tenant.onboarding_requested",
            tenant=None,
            actor=view.username,
            target=view.slug,
            source_ip=source_ip,
            details={"tier": view.tier, "paid": True, "step": "approval"},
        )


# -- founding the tenant -------------------------------------------------------------


def reject(row: Onboarding, reason: str | None) -> None:
    """A platform admin said no (in the transaction of the rejection): the reason is
    what the status page shows; the password hash is not kept."""
    row.state = OnboardingState.REJECTED
    row.reason = reason
    row.password_hash = ""
    row.decided_at = utcnow()


def found(s: Session, row: Onboarding, *, actor: str | None) -> Tenant:
    """The tenant, its admin's membership and password, in the caller's transaction.

    Someone may have taken the slug, the username or the address since the request (an
    operator's ``fedhub tenant create``, a sign-up): the slug is derived again, a taken
    username or address is a 409 (the approval stays pending)."""
    _check_free(s, row.username, row.email, exclude=row.id)
    if s.scalar(select(Tenant.id).where(Tenant.slug == row.slug)):
        row.slug = unique_slug(s, row.organisation, exclude=row.id)
    tenant = Tenant(
        slug=row.slug,
        name=row.organisation,
        tier=row.tier,
        status=TenantStatus.ACTIVE,
        allowed_email_domains=[],
        overrides={},
    )
    s.add(tenant)
    s.flush()
    plans.record_change(s, tenant.slug, tenant.tier, {}, actor=actor)
    s.add(
        Membership(
            username=row.username, tenant_id=tenant.id, role=Role.TENANT_ADMIN, email=row.email
        )
    )
    s.add(LocalCredential(username=row.username, password_hash=row.password_hash))
    row.password_hash = ""
    row.state = OnboardingState.ONBOARDED
    row.decided_at = utcnow()
    bump_revision(s)
    return tenant


def emit_onboarded(view: OnboardingView, *, actor: str | None, how: str) -> None:
    """The events of a new tenant: created (as ``fedhub tenant create`` says it), its
    admin, and that it came through onboarding."""
    slug = view.slug
    events.emit(
        "tenant.created", tenant=slug, actor=actor, target=slug, details={"tier": view.tier}
    )
    events.emit(
        "user.created",
        tenant=slug,
        actor=actor,
        target=view.username,
        details={"role": str(Role.TENANT_ADMIN)},
    )
    events.emit(
        "tenant.onboarded",
        tenant=slug,
        actor=actor,
        target=slug,
        details={"tier": view.tier, "admin": view.username, "how": how},
    )
