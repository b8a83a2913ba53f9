"""The hub's security pages: ``/hub/fedhub/security`` and ``/hub/fedhub/login/continue``.

``/hub/fedhub/security`` is a logged-in user's own page: change the password, set up
(or replace) the authenticator app, get new recovery codes. Each asks for the current
password, so an unattended browser is not enough to take the account over.

``/hub/fedhub/login/continue`` is where a login with steps left lands
(:mod:`fedhub.extensions.hub.login_policy`): the user named by the signed pending
cookie changes an expired password and/or enrols MFA, and the login completes after
the last step. The pending cookie stands for the password just given, so these steps
do not ask for it again.

Enrolment shows the ``otpauth://`` URI as a QR code (inline SVG made here with segno:
no script, no image service sees the secret) and as text; the secret becomes the
account's only once a code from it is entered. Recovery codes are shown once.
"""

from __future__ import annotations

import asyncio

import segno
from jupyterhub.handlers import BaseHandler
from tornado import web

from fedhub.errors import FedhubError, Forbidden, InvalidRequest
from fedhub.extensions.hub.login_policy import CONTINUE_PATH, finish_login, pending_user
from fedhub.extensions.hub.security_api import ALLOWLIST_API_PATTERN, AllowlistAPIHandler
from fedhub.tenancy import passwords
from fedhub.tenancy.models import LocalCredential
from fedhub.tiers import PasswordPolicy

SECURITY_PATH = "fedhub/security"


def qr_svg(uri: str) -> str:
    """The QR code of ``uri`` as an inline ``<svg>`` element."""
    return segno.make(uri, error="m").svg_inline(scale=4, border=2)


def describe(policy: PasswordPolicy) -> list[str]:
    """The password rules in the words the refusals use."""
    names = ", ".join(name for name, _ in passwords.CHARACTER_CLASSES)
    rules = [f"at least {policy.min_length} characters"]
    if policy.character_classes > 1:
        rules.append(f"{policy.character_classes} of: {names}")
    rules.append("must not contain your user name or email")
    if policy.history:
        rules.append(f"must not be one of your last {policy.history} passwords")
    if policy.max_age_days:
        rules.append(f"changed every {policy.max_age_days} days")
    return rules


class _SecurityPage(BaseHandler):
    """What both pages share: the template, the store, the password and MFA steps."""

    @property
    def security(self):
        return self.authenticator.store.security

    async def render_page(self, username: str, **ns) -> None:
        store = self.authenticator.store
        with store.session() as s:
            cred = s.get(LocalCredential, username)
            local, mfa = cred is not None, bool(cred and cred.totp_enabled)
        policy = self.security.policy_of(username)
        defaults = {"error": None, "notice": None, "enrolment": None, "codes": None}
        html = await self.render_template(
            "security.html",
            **{**defaults, **ns},
            subject=username,
            local=local,
            mfa_enabled=mfa,
            mfa_required=policy.mfa_required,
            recovery_left=self.security.unused_recovery_codes(username) if mfa else 0,
            rules=describe(policy.password),
        )
        self.finish(html)

    async def change_password(self, username: str) -> None:
        new = self.get_body_argument("new_password", "")
        if new != self.get_body_argument("repeat_password", ""):
            raise InvalidRequest("the two new passwords differ")
        context = self.security.password_context(username)
        new_hash = await asyncio.to_thread(context.check_and_hash, new)
        self.security.store_password(username, new_hash)

    def enrolment(self, username: str) -> dict:
        """The enrolment in progress (or a new one): its QR code and secret."""
        secret = self.security.pending_secret(username) or self.security.start_enrolment(username)
        return {"secret": secret, "qr": qr_svg(passwords.totp_uri(secret, username))}

    def confirm_enrolment(self, username: str) -> list[str]:
        return self.security.confirm_enrolment(username, self.get_body_argument("code", ""))


class AccountSecurityHandler(_SecurityPage):
    """/hub/fedhub/security: a user's own password, authenticator app and recovery codes."""

    @web.authenticated
    async def get(self):
        await self.render_page(self.current_user.name)

    @web.authenticated
    async def post(self):
        username = self.current_user.name
        action = self.get_body_argument("action", "")
        try:
            if action == "confirm_mfa":
                codes = self.confirm_enrolment(username)
                return await self.render_page(username, codes=codes, notice="MFA is on.")
            await self._check_current_password(username)
            if action == "password":
                await self.change_password(username)
                return await self.render_page(username, notice="Your password is changed.")
            if action == "enrol_mfa":
                self.security.start_enrolment(username)
                return await self.render_page(username, enrolment=self.enrolment(username))
            if action == "recovery_codes":
                codes = self.security.regenerate_recovery_codes(username)
                return await self.render_page(username, codes=codes)
            raise InvalidRequest(f"unknown action {action!r}")
        except FedhubError as e:
            self.set_status(e.status)
            in_progress = action == "confirm_mfa" and self.security.pending_secret(username)
            enrolment = self.enrolment(username) if in_progress else None
            await self.render_page(username, error=e.message, enrolment=enrolment)

    async def _check_current_password(self, username: str) -> None:
        given = self.get_body_argument("current_password", "")
        confirm = getattr(self.authenticator, "confirm_password", None)
        if confirm is None:  # single sign-on: no password here to change or confirm
            raise Forbidden("your password is managed by your identity provider")
        await confirm(self, username, given)


class PendingLoginHandler(_SecurityPage):
    """/hub/fedhub/login/continue: the steps a login has left, then the login itself."""

    def _username(self) -> str:
        username = pending_user(self)
        if username is None or self.authenticator.store.user(username) is None:
            raise web.HTTPError(403, "This login has expired: log in again.")
        return username

    async def get(self):
        await self._next_step(self._username())

    async def post(self):
        username = self._username()
        action = self.get_body_argument("action", "")
        try:
            if action == "password":
                await self.change_password(username)
            elif action == "confirm_mfa":
                codes = self.confirm_enrolment(username)
                return await self._next_step(username, codes=codes)
            else:
                raise InvalidRequest(f"unknown action {action!r}")
        except FedhubError as e:
            self.set_status(e.status)
            return await self._next_step(username, error=e.message)
        await self._next_step(username, notice="Your password is changed.")

    async def _next_step(self, username: str, codes: list[str] | None = None, **ns) -> None:
        """Show the first step left; with none left, log in (showing new recovery codes
        first, once, with a link onwards)."""
        steps = self.security.login_steps(username)
        if not steps:
            user = await finish_login(self, username)
            next_url = self.get_next_url(user)
            if codes:
                return await self.render_page(username, codes=codes, next_url=next_url, **ns)
            return self.redirect(next_url)
        enrolment = None
        if steps[0] == passwords.ENROL_MFA:
            enrolment = self.enrolment(username)
        await self.render_page(
            username, pending=True, step=steps[0], enrolment=enrolment, codes=codes, **ns
        )


#: What the authenticators add to the hub's handlers (under the hub's base URL).
SECURITY_HANDLERS = [
    (f"/{SECURITY_PATH}", AccountSecurityHandler),
    (f"/{CONTINUE_PATH}", PendingLoginHandler),
    (ALLOWLIST_API_PATTERN, AllowlistAPIHandler),
]
