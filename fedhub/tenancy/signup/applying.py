"""The applicant's side of sign-up: asking to join (by invitation or by email
domain) and following the emailed link."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, selectinload

from fedhub.db.base import utcnow
from fedhub.errors import Forbidden, InvalidRequest
from fedhub.tenancy import passwords
from fedhub.tenancy.checks import EMAIL_RE, validate_password, validate_username
from fedhub.tenancy.models import Invitation, SignupPolicy, SignupRequest, SignupStatus, Tenant
from fedhub.tenancy.signup.invitations import state_of
from fedhub.tenancy.signup.outcomes import (
    ACTIVE,
    DEFAULT_LINK_VALIDITY,
    MAX_CONFIRM_ATTEMPTS,
    LinkExpired,
    MembershipMixin,
    PendingSignup,
    ResendTooSoon,
    SignupClosed,
    SignupResult,
    check_open,
    emit,
    emit_signed_up,
    tell_listeners,
    token_hash,
)


class ApplicantMixin(MembershipMixin):
    """Signing up and confirming the address, as the hub's sign-up pages call them."""

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
            if inv is None or state_of(inv) != "pending":
                raise InvalidRequest(
                    "this invitation is not valid (wrong, used, revoked, replaced by a newer "
                    "link, or expired): ask the person who invited you for a new one"
                )
            if inv.email != email:
                raise InvalidRequest("this invitation was sent to another email address")
            tenant = s.get(Tenant, inv.tenant_id)
            check_open(tenant)
            self._check_tier_password(tenant, username, email, password)
            self._check_username_free(s, username, email)
            inv.used_at = utcnow()
            role = inv.role
            # an invitation proves the address: a request it supersedes goes
            s.execute(delete(SignupRequest).where(SignupRequest.email == email))
            self._make_member(s, tenant, username, email, passwords.hash_password(password), role)
            result = SignupResult(username, email, tenant.slug, tenant.name, ACTIVE)
        emit_signed_up(result, "invitation", role)
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
            check_open(tenant)
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
            self._check_tier_password(tenant, username, email, password)
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
        details = {"by": "email_domain", "policy": str(policy), "resent": resent}
        emit("user.signup_requested", result, username, details=details)
        return result

    def _check_tier_password(self, tenant: Tenant, username: str, email: str, password: str):
        """The password must keep the tenant's tier's policy (docs/security-policy.md)."""
        policy = self.effective_tier(tenant).security.password
        passwords.check_password(policy, password, username, email)

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
        self._check_confirm_password(token, password)
        with self.session() as s:
            req = _by_token(s, token)
            if req is None:  # spent meanwhile by a concurrent confirm
                raise InvalidRequest("This link is not valid: it was used already.")
            tenant = req.tenant
            check_open(tenant)
            if tenant.signup_policy == SignupPolicy.INVITATION_ONLY:
                raise SignupClosed(
                    f"{tenant.name} now accepts new members by invitation only: ask one of its "
                    "administrators to invite you."
                )
            username, email = req.username, req.email
            req.token_hash = None
            req.verified_at = utcnow()
            after = []
            if tenant.signup_policy == SignupPolicy.ADMIN_APPROVAL:
                req.status = SignupStatus.AWAITING_APPROVAL
                status = SignupStatus.AWAITING_APPROVAL.value
                s.flush()
                after = tell_listeners(self, s, "awaiting_approval", PendingSignup.of(req))
            else:
                self._make_member(s, tenant, username, email, req.password_hash)
                s.delete(req)
                status = ACTIVE
            result = SignupResult(username, email, tenant.slug, tenant.name, status)
        next_step = "active" if result.active else "approval"
        emit("user.signup_verified", result, username, details={"next": next_step})
        if result.active:
            emit_signed_up(result, "email_domain")
        for fn in after:
            fn()
        return result

    def _check_confirm_password(self, token: str, password: str) -> None:
        """Refuse a link that is wrong, expired, or confirmed with the wrong password.

        A wrong password counts against the link, in its own transaction (the
        count must stick although the confirm is refused)."""
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
            if passwords.verify_password(req.password_hash, password or ""):
                return
            req.failed_attempts += 1
            if req.failed_attempts >= MAX_CONFIRM_ATTEMPTS:
                req.token_hash = None  # the link dies; signing up again sends a new one
            pending, attempts = PendingSignup.of(req), req.failed_attempts
        emit(
            "user.signup_confirm_failed",
            pending,
            None,
            result="failure",
            severity="warning",
            details={"reason": "wrong_password", "attempts": attempts},
        )
        raise Forbidden(
            "That is not the password chosen for this sign-up. Enter the password you "
            f"chose when you signed up (after {MAX_CONFIRM_ATTEMPTS} wrong tries the link "
            "stops working)."
        )


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
