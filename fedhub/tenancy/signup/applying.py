"""Invitations and self-service sign-up (part of :class:`TenantStore`).

Nobody joins a tenant on their own: a sign-up needs an invitation (a one-time
code whose SHA-256 alone is stored) or an email address in a domain the tenant
allows. The tenant's ``max_users`` applies either way.

An email address proves nothing until its owner answers, so a domain sign-up is
only a :class:`SignupRequest` (no membership, no credential: login, the hub and
the services do not know the user). What makes it an account is the tenant's
``signup_policy``:

- ``verify_email``: following the link sent to the address (a single-use token,
  valid ``link_valid_for``; only its SHA-256 is stored);
- ``admin_approval``: the link, then a tenant admin's approval;
- ``invitation_only``: nothing; domain sign-up is refused.

The store never sends mail: :meth:`SignupMixin.sign_up` returns the token for
the caller (the hub's sign-up page) to put in a link and send.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, selectinload

from fedhub import events
from fedhub.db.base import utcnow
from fedhub.errors import Conflict, FedhubError, Forbidden, InvalidRequest, NotFound
from fedhub.tenancy import passwords
from fedhub.tenancy.checks import EMAIL_RE, bump_revision, validate_password, validate_username
from fedhub.tenancy.models import (
    Invitation,
    LocalCredential,
    Membership,
    Role,
    SignupPolicy,
    SignupRequest,
    SignupStatus,
    Tenant,
)

ACTIVE = "active"  # SignupResult.status of a sign-up that made an account
DEFAULT_LINK_VALIDITY = timedelta(hours=24)
MAX_CONFIRM_ATTEMPTS = 5  # wrong passwords on the confirm page before the link dies


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class LinkExpired(FedhubError):
    """A verification link followed after its expiry."""

    code = "link_expired"
    status = 410


class ResendTooSoon(FedhubError):
    """A new link asked for too soon after the last one (no mail bombing through us)."""

    code = "too_soon"
    status = 429


class SignupClosed(Forbidden):
    """The tenant does not take sign-ups this way (its policy, or it is suspended)."""

    code = "signup_closed"


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

    # -- policy ------------------------------------------------------------

    def set_signup_policy(
        self, slug: str, policy: SignupPolicy | str, *, actor: str | None = None
    ) -> SignupPolicy:
        """Set how people with an address in the tenant's domains may join it."""
        try:
            policy = SignupPolicy(policy)
        except ValueError:
            choices = ", ".join(p.value for p in SignupPolicy)
            raise InvalidRequest(
                f"unknown sign-up policy {policy!r}: use one of {choices}"
            ) from None
        with self.session() as s:
            tenant = self._tenant(s, slug)
            old = tenant.signup_policy
            tenant.signup_policy = policy
            bump_revision(s)
        if old != policy:
            events.emit(
                "tenant.updated",
                tenant=slug,
                actor=actor,
                target=slug,
                details={"signup_policy": [str(old), str(policy)]},
            )
        return policy

    # -- signing up --------------------------------------------------------

    def sign_up(
        self,
        username: str,
        email: str,
        password: str,
        *,
        invitation: str | None = None,
        link_valid_for: timedelta = DEFAULT_LINK_VALIDITY,
        resend_after: timedelta = timedelta(0),
    ) -> SignupResult:
        """Self-service sign-up: by invitation (an account now), or by the
        tenant's allowed email domain (a request that waits for the link).

        Asking again for the same address replaces the request and its link, but
        not sooner than ``resend_after`` since the last link was sent."""
        validate_username(username)
        validate_password(password)
        match = EMAIL_RE.match(email or "")
        if not match or len(email) > 320:
            raise InvalidRequest(f"invalid email address {email[:100]!r}")
        email = email.lower()
        if invitation:
            return self._sign_up_by_invitation(username, email, password, invitation)
        return self._request_sign_up(
            username, email, match.group(1).lower(), password, link_valid_for, resend_after
        )

    def _sign_up_by_invitation(
        self, username: str, email: str, password: str, invitation: str
    ) -> SignupResult:
        with self.session() as s:
            inv = s.scalar(
                select(Invitation).where(Invitation.token_hash == token_hash(invitation))
            )
            if inv is None or inv.used_at is not None or inv.expires_at < utcnow():
                raise InvalidRequest("this invitation is not valid (wrong, used or expired)")
            if inv.email != email:
                raise InvalidRequest("this invitation was sent to another email address")
            tenant = s.get(Tenant, inv.tenant_id)
            _check_open(tenant)
            self._check_username_free(s, username, email)
            inv.used_at = utcnow()
            role = inv.role
            # an invitation proves the address: a request it supersedes goes
            s.execute(delete(SignupRequest).where(SignupRequest.email == email))
            self._make_member(s, tenant, username, email, passwords.hash_password(password), role)
            result = SignupResult(username, email, tenant.slug, tenant.name, ACTIVE)
        events.emit(
            "user.signed_up",
            tenant=result.tenant,
            actor=username,
            target=username,
            details={"role": str(role), "by": "invitation"},
        )
        return result

    def _request_sign_up(
        self,
        username: str,
        email: str,
        domain: str,
        password: str,
        valid_for: timedelta,
        resend_after: timedelta,
    ) -> SignupResult:
        now = utcnow()
        with self.session() as s:
            _purge_expired(s, now)
            candidates = [
                t
                for t in s.scalars(select(Tenant).order_by(Tenant.id))
                if domain in (t.allowed_email_domains or [])
            ]
            if not candidates:
                raise InvalidRequest(
                    "sign-up needs an invitation, or an email address in a domain a tenant allows"
                )
            tenant = candidates[0]
            _check_open(tenant)
            if tenant.signup_policy == SignupPolicy.INVITATION_ONLY:
                raise SignupClosed(
                    f"{tenant.name} accepts new members by invitation only: ask one of its "
                    "administrators to invite you, then use the code from the invitation."
                )
            req = s.scalar(select(SignupRequest).where(SignupRequest.email == email))
            if req is not None and req.status == SignupStatus.AWAITING_APPROVAL:
                # the address is proven already: nobody may change the request now
                return SignupResult(req.username, email, tenant.slug, tenant.name, req.status.value)
            if req is not None and req.sent_at and req.sent_at + resend_after > now:
                wait = max(1, round((req.sent_at + resend_after - now).total_seconds()))
                raise ResendTooSoon(
                    f"We sent a link to {email} moments ago: look for it (and in your spam "
                    f"folder), or ask for a new one in {wait} second(s)."
                )
            self._check_username_free(s, username, email)
            self._check_user_quota(s, tenant)
            token = secrets.token_urlsafe(32)
            resent = req is not None
            if req is None:
                req = SignupRequest(email=email)
                s.add(req)
            req.tenant_id = tenant.id
            req.username = username
            req.password_hash = passwords.hash_password(password)
            req.status = SignupStatus.AWAITING_EMAIL
            req.token_hash = token_hash(token)
            req.expires_at = now + valid_for
            req.sent_at = now
            req.failed_attempts = 0
            req.verified_at = None
            result = SignupResult(
                username,
                email,
                tenant.slug,
                tenant.name,
                SignupStatus.AWAITING_EMAIL.value,
                token=token,
                resent=resent,
            )
            policy = tenant.signup_policy
        events.emit(
            "user.signup_requested",
            tenant=result.tenant,
            actor=username,
            target=username,
            details={"by": "email_domain", "policy": str(policy), "resent": resent},
        )
        return result

    def signup_for_token(self, token: str) -> PendingSignup | None:
        """The request a link's token belongs to, if the link can still be used."""
        if not token:
            return None
        with self.session() as s:
            req = _by_token(s, token)
            return PendingSignup.of(req) if req is not None else None

    def verify_signup(self, token: str, password: str) -> SignupResult:
        """Follow a verification link: the address is proven (once; before expiry).

        The password chosen at sign-up is asked too: whoever replaced someone's
        request with their own credentials (same address, their password) cannot
        have the owner of the mailbox confirm an account the replacer controls.
        """
        wrong: tuple | None = None
        with self.session() as s:
            req = _by_token(s, token) if token else None
            if req is None:
                raise InvalidRequest(
                    "This link is not valid: it is incomplete, it was used already, or a newer "
                    "link replaced it. Log in if you confirmed your address already; otherwise "
                    "sign up again to get a new link."
                )
            if req.expires_at is not None and req.expires_at < utcnow():
                raise LinkExpired("This link has expired. Sign up again to get a new one.")
            if not passwords.verify_password(req.password_hash, password or ""):
                req.failed_attempts += 1
                if req.failed_attempts >= MAX_CONFIRM_ATTEMPTS:
                    req.token_hash = None  # the link dies; signing up again sends a new one
                wrong = (req.tenant.slug, req.username, req.failed_attempts)
        if wrong:
            events.emit(
                "user.signup_confirm_failed",
                tenant=wrong[0],
                actor=None,
                target=wrong[1],
                result="failure",
                severity="warning",
                details={"reason": "wrong_password", "attempts": wrong[2]},
            )
            raise Forbidden(
                "That is not the password chosen for this sign-up. Enter the password you "
                f"chose when you signed up (after {MAX_CONFIRM_ATTEMPTS} wrong tries the link "
                "stops working)."
            )
        with self.session() as s:
            req = _by_token(s, token)
            if req is None:  # spent meanwhile by a concurrent confirm
                raise InvalidRequest("This link is not valid: it was used already.")
            tenant = req.tenant
            _check_open(tenant)
            if tenant.signup_policy == SignupPolicy.INVITATION_ONLY:
                raise SignupClosed(
                    f"{tenant.name} now accepts new members by invitation only: ask one of its "
                    "administrators to invite you."
                )
            username, email = req.username, req.email
            req.token_hash = None
            req.verified_at = utcnow()
            if tenant.signup_policy == SignupPolicy.ADMIN_APPROVAL:
                req.status = SignupStatus.AWAITING_APPROVAL
                status = SignupStatus.AWAITING_APPROVAL.value
            else:
                self._make_member(s, tenant, username, email, req.password_hash, Role.MEMBER)
                s.delete(req)
                status = ACTIVE
            result = SignupResult(username, email, tenant.slug, tenant.name, status)
        events.emit(
            "user.signup_verified",
            tenant=result.tenant,
            actor=username,
            target=username,
            details={"next": "approval" if status != ACTIVE else "active"},
        )
        if result.active:
            self._emit_signed_up(result, "email_domain")
        return result

    # -- admins: pending requests ------------------------------------------

    def pending_signup(self, username: str) -> PendingSignup | None:
        """The sign-up request of ``username``, if it has one (and no account yet)."""
        with self.session() as s:
            req = s.scalar(
                select(SignupRequest)
                .options(selectinload(SignupRequest.tenant))
                .where(SignupRequest.username == username)
            )
            return PendingSignup.of(req) if req is not None else None

    def signup_requests(self, tenant: str | None = None) -> list[PendingSignup]:
        """Pending sign-ups (of one tenant), oldest first; expired links left out."""
        with self.session() as s:
            q = (
                select(SignupRequest)
                .join(SignupRequest.tenant)
                .options(selectinload(SignupRequest.tenant))
                .order_by(SignupRequest.created_at)
            )
            if tenant is not None:
                q = q.where(Tenant.slug == tenant)
            now = utcnow()
            return [
                PendingSignup.of(r)
                for r in s.scalars(q)
                if r.status == SignupStatus.AWAITING_APPROVAL or (r.expires_at or now) >= now
            ]

    def approve_signup(
        self, username: str, *, tenant: str | None = None, actor: str | None = None
    ) -> SignupResult:
        """A tenant admin lets a verified request in: it becomes a member."""
        with self.session() as s:
            req = self._request_of(s, username, tenant)
            if req.status != SignupStatus.AWAITING_APPROVAL:
                raise InvalidRequest(
                    f"{username} has not confirmed their email address yet: they must follow "
                    "the link sent to them before their request can be approved"
                )
            t = req.tenant
            _check_open(t)
            self._make_member(s, t, req.username, req.email, req.password_hash, Role.MEMBER)
            s.delete(req)
            result = SignupResult(req.username, req.email, t.slug, t.name, ACTIVE)
        events.emit("user.signup_approved", tenant=result.tenant, actor=actor, target=username)
        self._emit_signed_up(result, "email_domain")
        return result

    def reject_signup(
        self,
        username: str,
        *,
        tenant: str | None = None,
        reason: str | None = None,
        actor: str | None = None,
    ) -> PendingSignup:
        """Drop a sign-up request (either state); the address may ask again."""
        with self.session() as s:
            req = self._request_of(s, username, tenant)
            pending = PendingSignup.of(req)
            s.delete(req)
        events.emit(
            "user.signup_rejected",
            tenant=pending.tenant,
            actor=actor,
            target=username,
            severity="notice",
            details={"reason": reason} if reason else None,
        )
        return pending

    # -- helpers -----------------------------------------------------------

    def _request_of(self, s: Session, username: str, tenant: str | None) -> SignupRequest:
        req = s.scalar(
            select(SignupRequest)
            .options(selectinload(SignupRequest.tenant))
            .where(SignupRequest.username == username)
        )
        if req is None or (tenant is not None and req.tenant.slug != tenant):
            raise NotFound(f"no sign-up request from {username!r}")
        return req

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
        role: Role,
    ) -> None:
        if s.scalar(select(Membership.id).where(Membership.username == username)):
            raise Conflict(f"user {username!r} already exists")
        self._check_user_quota(s, tenant)
        s.add(Membership(username=username, tenant_id=tenant.id, role=role, email=email))
        s.add(LocalCredential(username=username, password_hash=password_hash))
        bump_revision(s)

    def _emit_signed_up(self, result: SignupResult, by: str) -> None:
        events.emit(
            "user.signed_up",
            tenant=result.tenant,
            actor=result.username,
            target=result.username,
            details={"role": str(Role.MEMBER), "by": by},
        )


def _check_open(tenant: Tenant) -> None:
    if not tenant.active:
        raise SignupClosed(f"organisation {tenant.name!r} is suspended; sign-up is closed")


def _by_token(s: Session, token: str) -> SignupRequest | None:
    return s.scalar(
        select(SignupRequest)
        .options(selectinload(SignupRequest.tenant))
        .where(
            SignupRequest.token_hash == token_hash(token),
            SignupRequest.status == SignupStatus.AWAITING_EMAIL,
        )
    )


def _purge_expired(s: Session, now: datetime) -> None:
    """Requests whose link expired hold no username or address any more."""
    s.execute(
        delete(SignupRequest).where(
            SignupRequest.status == SignupStatus.AWAITING_EMAIL,
            SignupRequest.expires_at < now,
        )
    )
