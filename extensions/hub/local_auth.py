"""``fedhub-local``: username and password (argon2), lockout, TOTP, sign-up, and the
tier's security policy (docs/security-policy.md).

After the right password (and code), a login may still have steps to do before it
completes: change an expired password, enrol MFA when the tier requires it
(:mod:`fedhub.extensions.hub.login_policy`, pages in
:mod:`fedhub.extensions.hub.security_pages`). A recovery code works once in place of
the TOTP code. The tenant's IP allowlist is checked once the credentials are right.

The embedded default. Production deployments usually put an OIDC provider in
front instead (:mod:`fedhub.extensions.hub.oidc`); both share the tenant logic
of :class:`TenantAuthenticatorMixin`.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from functools import cached_property

from jupyterhub.auth import Authenticator
from tornado import web
from traitlets import Bool, Integer, default

from fedhub import events
from fedhub.audit.hub_hooks import AUDITED_LOGOUT
from fedhub.db.base import utcnow
from fedhub.errors import Forbidden
from fedhub.extensions.hub.login_policy import (
    LoginPending,
    PolicyLoginHandler,
    refuse_outside_allowlist,
)
from fedhub.extensions.hub.security_pages import SECURITY_HANDLERS
from fedhub.extensions.hub.signup_pages import (
    SignupHandler,
    SignupRequestsHandler,
    SignupVerifyHandler,
)
from fedhub.extensions.hub.tenant_auth import TenantAuthenticatorMixin, client_info
from fedhub.mail import Mailer, mask_email
from fedhub.tenancy import passwords
from fedhub.tenancy.models import LocalCredential, SignupStatus
from fedhub.tenancy.security import AccountSecurity
from fedhub.tenancy.store import lockout_state


class LocalTenantAuthenticator(TenantAuthenticatorMixin, Authenticator):
    """Local accounts of fedhub tenants, with lockout and optional TOTP."""

    lockout_threshold = Integer(
        5,
        config=True,
        help="""Failed logins in a row that lock an account. 0 disables lockout.

            c.LocalTenantAuthenticator.lockout_threshold = 5
        """,
    )
    lockout_seconds = Integer(
        15 * 60,
        config=True,
        help="""How long a locked account stays locked, in seconds.

            c.LocalTenantAuthenticator.lockout_seconds = 900
        """,
    )
    allow_signup = Bool(
        True,
        config=True,
        help="""Offer /hub/signup: by invitation, or with an email address in a
        domain that a tenant allows. Nobody can sign up otherwise. A domain
        sign-up follows the tenant's ``signup_policy``: by default the account
        works only after its owner follows a link sent to the address (through
        ``c.Mailer``; see docs/security.md).""",
    )
    signup_link_seconds = Integer(
        24 * 3600,
        config=True,
        help="""How long the link of a domain sign-up stays valid, in seconds.

            c.LocalTenantAuthenticator.signup_link_seconds = 24 * 3600
        """,
    )

    signup_resend_seconds = Integer(
        60,
        config=True,
        help="""Seconds before a new sign-up link may be sent to the same address
        (so the sign-up form cannot be used to flood someone's mailbox).

            c.LocalTenantAuthenticator.signup_resend_seconds = 60
        """,
    )

    @property
    def signup_link_validity(self) -> timedelta:
        return timedelta(seconds=self.signup_link_seconds)

    @cached_property
    def mailer(self) -> Mailer:
        """Sends sign-up links; configured by ``c.Mailer.*`` in the hub's config."""
        return Mailer(parent=self, log=self.log)

    @default("request_otp")
    def _default_request_otp(self):
        return True

    @default("otp_prompt")
    def _default_otp_prompt(self):
        return "One-time code or recovery code (only if you turned on two-factor login):"

    @default("login_service")
    def _default_login_service(self):
        return ""

    def get_handlers(self, app):
        # a route may carry the handler's keyword arguments as a third item (tornado's form)
        template_vars = getattr(self.parent, "template_vars", None)
        if template_vars is not None and self.allow_signup:  # login.html links to it
            template_vars.setdefault("fedhub_signup", True)
        handlers = [
            (pattern, PolicyLoginHandler if pattern == "/login" else handler, *kwargs)
            for pattern, handler, *kwargs in super().get_handlers(app)
        ]
        return handlers + [
            *SECURITY_HANDLERS,
            (r"/signup", SignupHandler),
            (r"/signup/verify", SignupVerifyHandler),
            (r"/signup/requests", SignupRequestsHandler),
            AUDITED_LOGOUT,
        ]

    async def authenticate(self, handler, data):
        username = self.normalize_username((data or {}).get("username", ""))
        password = (data or {}).get("password", "")
        otp = (data or {}).get("otp", "")
        info = client_info(handler)
        membership = self.store.user(username) if username else None
        tenant = membership.tenant if membership else None

        def fail(reason: str, action: str = "auth.login_failed"):
            events.emit(
                action,
                tenant=tenant,
                actor=username or None,
                target=username or None,
                result="failure",
                severity="warning",
                details={"reason": reason},
                **info,
            )
            return None

        if membership is None and password:
            pending = self.store.pending_signup(username) if username else None
            if pending is not None:
                await self._refuse_pending(pending, password, info)
        if membership is None or not password:
            # same answer and similar cost as a wrong password: no user enumeration
            await asyncio.to_thread(passwords.verify_password, _DUMMY_HASH, password or "x")
            return fail("unknown_user" if membership is None else "empty_password")

        # Two short transactions around the slow hash check: the hub's session is
        # shared by every request, so none may stay open across an await.
        with self.store.session() as s:
            cred = s.get(LocalCredential, username)
            if cred is None:
                return fail("no_local_password")
            stored_hash = cred.password_hash
            self._refuse_if_locked(cred, fail)
        ok = await asyncio.to_thread(passwords.verify_password, stored_hash, password)
        rehashed = None
        if ok and passwords.needs_rehash(stored_hash):
            rehashed = await asyncio.to_thread(passwords.hash_password, password)
        with self.store.session() as s:
            cred = s.get(LocalCredential, username, with_for_update=True)
            if cred is None or cred.password_hash != stored_hash:
                return fail("credentials_changed")  # changed while we checked: try again
            self._refuse_if_locked(cred, fail)
            if ok and cred.totp_enabled:
                ok = self._second_factor(s, cred, otp, tenant, info)
            if not ok:
                self._count_failure(cred, tenant, info)
                return fail("wrong_credentials")
            cred.failed_attempts = 0
            cred.locked_until = None
            if rehashed is not None:
                cred.password_hash = rehashed

        refuse_outside_allowlist(self, username, handler)
        model = self.tenant_auth_model(username, handler)  # refuses a suspended tenant
        steps = self.store.security.login_steps(username)
        if steps:
            events.emit(
                "auth.login_pending",
                tenant=tenant,
                actor=username,
                target=username,
                details={"steps": steps},
                **info,
            )
            raise LoginPending(username, steps)
        events.emit("auth.login", tenant=tenant, actor=username, target=username, **info)
        return model

    def _count_failure(self, cred: LocalCredential, tenant: str | None, info: dict) -> None:
        """One more wrong password; ``lockout_threshold`` of them in a row lock the account."""
        cred.failed_attempts += 1
        if self.lockout_threshold and cred.failed_attempts >= self.lockout_threshold:
            cred.locked_until = utcnow() + timedelta(seconds=self.lockout_seconds)
            cred.failed_attempts = 0
            events.emit(
                "auth.lockout",
                tenant=tenant,
                actor=cred.username,
                target=cred.username,
                result="failure",
                severity="error",
                details={"locked_seconds": self.lockout_seconds},
                **info,
            )

    async def confirm_password(self, handler, username: str, password: str) -> None:
        """The current password, asked again before a change on the security page: a wrong
        one counts towards the lockout like a failed login (and a locked account is refused),
        so a borrowed browser cannot be used to guess it."""
        member = self.store.user(username)
        tenant = member.tenant if member else None
        with self.store.session() as s:
            cred = s.get(LocalCredential, username)
            stored = cred.password_hash if cred is not None else None
            if cred is not None and lockout_state(cred):
                raise Forbidden("this account is locked after failed logins; try again later")
        ok = stored is not None and await asyncio.to_thread(
            passwords.verify_password, stored, password
        )
        if not ok:
            if stored is not None:
                with self.store.session() as s:
                    cred = s.get(LocalCredential, username, with_for_update=True)
                    self._count_failure(cred, tenant, client_info(handler))
            raise Forbidden("your current password is not right")

    def _second_factor(self, s, cred: LocalCredential, otp: str, tenant, info: dict) -> bool:
        """The TOTP code (not replayed), or one unused recovery code in its place."""
        username = cred.username
        counter = passwords.verify_totp(cred.totp_secret, otp, last_counter=cred.totp_last_counter)
        if counter is not None:
            cred.totp_last_counter = counter
            return True
        if AccountSecurity.redeem_recovery_code(s, username, otp):
            events.emit(
                "auth.recovery_code_used",
                tenant=tenant,
                actor=username,
                target=username,
                severity="warning",
                **info,
            )
            return True
        events.emit(
            "auth.totp_failed",
            tenant=tenant,
            actor=username,
            target=username,
            result="failure",
            severity="warning",
            details={"reason": "totp_missing" if not otp else "totp_wrong"},
            **info,
        )
        return False

    def _refuse_if_locked(self, cred: LocalCredential, fail) -> None:
        locked = lockout_state(cred)
        if locked:
            minutes = max(1, round((locked - utcnow()).total_seconds() / 60))
            fail("locked")
            raise web.HTTPError(
                403,
                f"This account is locked after {self.lockout_threshold} failed logins. "
                f"Try again in {minutes} minute(s), or ask an administrator to unlock it.",
            )

    async def _refuse_pending(self, pending, password: str, info: dict) -> None:
        """A sign-up that is not an account yet: with the right password, say why
        (the wrong one gets the usual answer, so nobody learns of the request)."""
        ok = await asyncio.to_thread(passwords.verify_password, pending.password_hash, password)
        if not ok:
            return
        if pending.status == SignupStatus.AWAITING_APPROVAL:
            reason = "awaiting_approval"
            message = (
                f"Your sign-up is waiting for an administrator of {pending.tenant_name} "
                "to approve it; you can log in once they have."
            )
        elif pending.expires_at is not None and pending.expires_at < utcnow():
            reason = "email_unverified"
            message = (
                f"Confirm your email address first: the link we sent to "
                f"{mask_email(pending.email)} has expired. Sign up again with the same "
                "address to get a new one."
            )
        else:
            reason = "email_unverified"
            message = (
                f"Confirm your email address first; we sent a link to "
                f"{mask_email(pending.email)}. No message? Sign up again with the same "
                "address to get a new link."
            )
        events.emit(
            "auth.login_refused",
            tenant=pending.tenant,
            actor=pending.username,
            target=pending.username,
            result="denied",
            severity="warning",
            details={"reason": reason},
            **info,
        )
        raise web.HTTPError(403, message)


_DUMMY_HASH = passwords.hash_password("fedhub-dummy-password")
