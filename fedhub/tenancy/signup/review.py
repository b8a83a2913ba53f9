"""The tenant admin's side of sign-up: the sign-up policy and the requests that wait
for an admin's approval (invitations are in :mod:`.invitations`)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from fedhub import events
from fedhub.db.base import utcnow
from fedhub.errors import InvalidRequest, NotFound
from fedhub.tenancy.checks import bump_revision
from fedhub.tenancy.models import (
    SignupPolicy,
    SignupRequest,
    SignupStatus,
    Tenant,
)
from fedhub.tenancy.signup.outcomes import (
    ACTIVE,
    MembershipMixin,
    PendingSignup,
    SignupResult,
    check_open,
    emit,
    emit_signed_up,
    tell_listeners,
)


class ReviewMixin(MembershipMixin):
    """The policy and pending requests, for tenant admins and the CLI."""

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

    def pending_signup(self, username: str) -> PendingSignup | None:
        """The sign-up request of ``username``, if it has one (and no account yet)."""
        with self.session() as s:
            req = s.scalar(_request_by_username(username))
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

    def reject_signup(
        self,
        username: str,
        reason: str | None = None,
        *,
        tenant: str | None = None,
        actor: str | None = None,
    ) -> PendingSignup:
        """Drop a sign-up request (either state); the address may ask again."""
        with self.session() as s:
            pending = self.reject_signup_in(s, username, tenant=tenant)
            after = tell_listeners(self, s, "rejected", pending, actor=actor, reason=reason)
        self.emit_signup_rejected(pending, reason, actor)
        for fn in after:
            fn()
        return pending

    def reject_signup_in(
        self, s: Session, username: str, *, tenant: str | None = None
    ) -> PendingSignup:
        """:meth:`reject_signup` in an open transaction (no event: the caller emits
        :meth:`emit_signup_rejected` once it has committed)."""
        req = _request_of(s, username, tenant)
        pending = PendingSignup.of(req)
        s.delete(req)
        return pending

    @staticmethod
    def emit_signup_rejected(pending: PendingSignup, reason: str | None, actor: str | None):
        details = {"reason": reason} if reason else None
        emit("user.signup_rejected", pending, actor, severity="notice", details=details)

    def approve_signup(
        self, username: str, *, tenant: str | None = None, actor: str | None = None
    ) -> SignupResult:
        """A tenant admin lets a verified request in: it becomes a member."""
        with self.session() as s:
            pending = PendingSignup.of(_request_of(s, username, tenant))
            result = self.approve_signup_in(s, username, tenant=tenant)
            after = tell_listeners(self, s, "approved", pending, actor=actor)
        self.emit_signup_approved(result, actor)
        for fn in after:
            fn()
        return result

    def approve_signup_in(
        self, s: Session, username: str, *, tenant: str | None = None
    ) -> SignupResult:
        """:meth:`approve_signup` in an open transaction (no event: the caller emits
        :meth:`emit_signup_approved` once it has committed)."""
        req = _request_of(s, username, tenant)
        if req.status != SignupStatus.AWAITING_APPROVAL:
            raise InvalidRequest(
                f"{username} has not confirmed their email address yet: they must follow "
                "the link sent to them before their request can be approved"
            )
        t = req.tenant
        check_open(t)
        self._make_member(s, t, req.username, req.email, req.password_hash)
        s.delete(req)
        return SignupResult(req.username, req.email, t.slug, t.name, ACTIVE)

    @staticmethod
    def emit_signup_approved(result: SignupResult, actor: str | None) -> None:
        emit("user.signup_approved", result, actor)
        emit_signed_up(result, "email_domain")


def _request_by_username(username: str):
    return (
        select(SignupRequest)
        .options(selectinload(SignupRequest.tenant))
        .where(SignupRequest.username == username)
    )


def _request_of(s: Session, username: str, tenant: str | None) -> SignupRequest:
    """The request of ``username`` as a (tenant) admin may see it: another tenant's is a 404."""
    req = s.scalar(_request_by_username(username))
    if req is None or (tenant is not None and req.tenant.slug != tenant):
        raise NotFound(f"no sign-up request from {username!r}")
    return req
