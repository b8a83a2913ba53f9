"""``fedhub-local``: username and password (argon2), lockout, optional TOTP, sign-up.

The embedded default. Production deployments usually put an OIDC provider in
front instead (:mod:`fedhub.extensions.hub.oidc`); both share the tenant logic
of :class:`TenantAuthenticatorMixin`.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from jupyterhub.auth import Authenticator
from jupyterhub.handlers import BaseHandler
from tornado import web
from traitlets import Bool, Integer, default

from fedhub import events
from fedhub.audit.hub_hooks import AUDITED_LOGOUT
from fedhub.db.base import utcnow
from fedhub.errors import FedhubError
from fedhub.extensions.hub.tenant_auth import TenantAuthenticatorMixin, client_info
from fedhub.tenancy import passwords
from fedhub.tenancy.models import LocalCredential
from fedhub.tenancy.store import lockout_state

TEMPLATES = Path(__file__).resolve().parent / "templates"


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
        domain that a tenant allows. Nobody can sign up otherwise.""",
    )

    @default("request_otp")
    def _default_request_otp(self):
        return True

    @default("otp_prompt")
    def _default_otp_prompt(self):
        return "One-time code (only if you turned on two-factor login):"

    @default("login_service")
    def _default_login_service(self):
        return ""

    def get_handlers(self, app):
        return super().get_handlers(app) + [(r"/signup", SignupHandler), AUDITED_LOGOUT]

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

        if membership is None or not password:
            # same answer and similar cost as a wrong password: no user enumeration
            await asyncio.to_thread(passwords.verify_password, _DUMMY_HASH, password or "x")
            return fail("unknown_user" if membership is None else "empty_password")

        with self.store.session() as s:
            cred = s.get(LocalCredential, username, with_for_update=True)
            if cred is None:
                return fail("no_local_password")
            locked = lockout_state(cred)
            if locked:
                minutes = max(1, round((locked - utcnow()).total_seconds() / 60))
                fail("locked")
                raise web.HTTPError(
                    403,
                    f"This account is locked after {self.lockout_threshold} failed logins. "
                    f"Try again in {minutes} minute(s), or ask an administrator to unlock it.",
                )
            ok = await asyncio.to_thread(passwords.verify_password, cred.password_hash, password)
            if ok and cred.totp_enabled:
                counter = passwords.verify_totp(
                    cred.totp_secret, otp, last_counter=cred.totp_last_counter
                )
                if counter is None:
                    ok = False
                    reason = "totp_missing" if not otp else "totp_wrong"
                    events.emit(
                        "auth.totp_failed",
                        tenant=tenant,
                        actor=username,
                        target=username,
                        result="failure",
                        severity="warning",
                        details={"reason": reason},
                        **info,
                    )
                else:
                    cred.totp_last_counter = counter
            if not ok:
                cred.failed_attempts += 1
                if self.lockout_threshold and cred.failed_attempts >= self.lockout_threshold:
                    cred.locked_until = utcnow() + timedelta(seconds=self.lockout_seconds)
                    cred.failed_attempts = 0
                    events.emit(
                        "auth.lockout",
                        tenant=tenant,
                        actor=username,
                        target=username,
                        result="failure",
                        severity="error",
                        details={"locked_seconds": self.lockout_seconds},
                        **info,
                    )
                return fail("wrong_credentials")
            cred.failed_attempts = 0
            cred.locked_until = None
            if passwords.needs_rehash(cred.password_hash):
                cred.password_hash = passwords.hash_password(password)

        model = self.tenant_auth_model(username, handler)
        events.emit("auth.login", tenant=tenant, actor=username, target=username, **info)
        return model


_DUMMY_HASH = passwords.hash_password("fedhub-dummy-password")


class SignupHandler(BaseHandler):
    """/hub/signup: create an account by invitation or allowed email domain."""

    async def _render(self, **ns):
        # JupyterHub's Jinja environment is async; extend its page.html
        env = self.settings["jinja2_env"]
        template = env.from_string((TEMPLATES / "signup.html").read_text())
        return await template.render_async(**self.template_namespace, **ns)

    async def get(self):
        if not self.authenticator.allow_signup:
            raise web.HTTPError(404)
        self.finish(
            await self._render(
                invitation=self.get_argument("invitation", ""), error=None, done=False
            )
        )

    async def post(self):
        if not self.authenticator.allow_signup:
            raise web.HTTPError(404)
        form = {
            k: self.get_body_argument(k, "").strip() for k in ("username", "email", "invitation")
        }
        password = self.get_body_argument("password", "")
        try:
            self.authenticator.store.sign_up(
                self.authenticator.normalize_username(form["username"]),
                form["email"],
                password,
                invitation=form["invitation"] or None,
            )
        except FedhubError as e:
            self.set_status(e.status)
            self.finish(await self._render(error=e.message, done=False, **form))
            return
        self.finish(await self._render(error=None, done=True, **form))
