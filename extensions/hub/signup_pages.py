"""The hub's sign-up pages: ``/hub/signup``, ``/hub/signup/verify`` and, for tenant
admins, ``/hub/signup/requests``. An emailed invitation's link is
``/hub/signup?invitation=<code>`` (:func:`invitation_link`): the form comes filled in.

A domain sign-up is a request until its address is proven
(:mod:`fedhub.tenancy.signup`): the sign-up page sends the link through the
authenticator's :class:`fedhub.mail.Mailer`, and the verify page shows what the
link confirms and confirms it when the password chosen at sign-up is entered
(a POST). A GET never changes anything, so mail scanners that open every link in
a message do not spend it; and the password means that someone who replaced a
request with their own credentials cannot have the mailbox's owner confirm it.

The link points at ``JupyterHub.public_url`` (else the hub's ``bind_url``),
never at the ``Host`` header of the sign-up request: a forged header would
otherwise send the owner of the address to an attacker's site with the token.
"""

from __future__ import annotations

import html
from datetime import timedelta
from urllib.parse import urlencode, urljoin, urlparse

from jupyterhub.handlers import BaseHandler
from tornado import web

from fedhub.db.base import utcnow
from fedhub.errors import FedhubError
from fedhub.mail import MailError, mask_email
from fedhub.tenancy.models import Role, SignupStatus
from fedhub.tenancy.signup import SignupResult

VERIFY_PATH = "signup/verify"


class _SignupPage(BaseHandler):
    template_file = "signup.html"

    async def prepare(self):
        await super().prepare()
        if not getattr(self.authenticator, "allow_signup", False):
            raise web.HTTPError(404)

    async def _render(self, **ns) -> str:
        return await self.render_template(self.template_file, **ns)  # extensions/hub/pages.py


class SignupHandler(_SignupPage):
    """/hub/signup: an account by invitation, or a request by allowed email domain."""

    async def get(self):
        # the link of an emailed invitation (tenancy_api/members_api.py) lands here with
        # its code: the form comes filled in with the code and the invited address
        code = self.get_argument("invitation", "")
        invited = self.authenticator.store.invitation_for_token(code) if code else None
        error = None
        if code and invited is None:
            self.set_status(400)
            error = (
                "This invitation is not valid: it was used, revoked, replaced by a newer "
                "link, or it expired. Ask the person who invited you to send it again."
            )
        self.finish(
            await self._render(
                invitation=code if invited else "",
                invited=invited,
                email=invited.email if invited else "",
                error=error,
                status=None,
            )
        )

    async def post(self):
        form = {
            k: self.get_body_argument(k, "").strip() for k in ("username", "email", "invitation")
        }
        password = self.get_body_argument("password", "")
        auth = self.authenticator
        try:
            result = auth.store.sign_up(
                auth.normalize_username(form["username"]),
                form["email"],
                password,
                invitation=form["invitation"] or None,
                link_valid_for=auth.signup_link_validity,
                resend_after=timedelta(seconds=auth.signup_resend_seconds),
            )
        except FedhubError as e:
            self.set_status(e.status)
            code = form["invitation"]
            invited = auth.store.invitation_for_token(code) if code else None
            self.finish(await self._render(error=e.message, status=None, invited=invited, **form))
            return
        if result.token:
            try:
                await self._send_link(result)
            except MailError as e:
                self.log.error("Sign-up link for %s not sent: %s", result.username, e)
                self.set_status(503)
                self.finish(
                    await self._render(
                        error="We could not send the confirmation email just now. "
                        "Try again in a few minutes (the same form sends a new link).",
                        status=None,
                        **form,
                    )
                )
                return
        self.finish(
            await self._render(
                error=None,
                status=result.status,
                masked_email=mask_email(result.email),
                tenant_name=result.tenant_name,
                link_hours=_hours(auth.signup_link_validity.total_seconds()),
                **{**form, "username": result.username},
            )
        )

    async def _send_link(self, result: SignupResult) -> None:
        auth = self.authenticator
        link = verify_link(self, result.token)
        hours = _hours(auth.signup_link_validity.total_seconds())
        text = (
            f"Hello {result.username},\n\n"
            f"Someone (we hope you) asked for a fedhub account in {result.tenant_name} "
            f"with this email address. To confirm it, open this link within {hours}:\n\n"
            f"{link}\n\n"
            "If it was not you, ignore this message: no account is made without the link.\n"
        )
        body = (
            f"<p>Hello {html.escape(result.username)},</p>"
            f"<p>Someone (we hope you) asked for a fedhub account in "
            f"{html.escape(result.tenant_name)} with this email address. "
            f"To confirm it, open this link within {hours}:</p>"
            f'<p><a href="{html.escape(link)}">Confirm my email address</a></p>'
            "<p>If it was not you, ignore this message: no account is made without the link.</p>"
        )
        mailer = auth.mailer
        await mailer.send_async(result.email, "Confirm your email address for fedhub", text, body)
        if mailer.uses_outbox:
            # the embedded default has no mail: the operator passes the link on
            self.log.info(
                "No SMTP server configured: sign-up link for %s <%s>: %s",
                result.username,
                result.email,
                link,
            )


class SignupVerifyHandler(_SignupPage):
    """/hub/signup/verify?token=...: show what the link confirms; POST confirms it."""

    template_file = "signup_verify.html"

    async def get(self):
        token = self.get_argument("token", "")
        pending = self.authenticator.store.signup_for_token(token)
        if pending is None:
            return await self._fail(
                400,
                "This link is not valid: it is incomplete, it was used already, or a newer "
                "link replaced it. Log in if you confirmed your address already; otherwise "
                "sign up again to get a new link.",
            )
        if pending.expires_at is not None and pending.expires_at < utcnow():
            return await self._fail(410, "This link has expired. Sign up again to get a new one.")
        await self._confirm_form(token, pending)

    async def _confirm_form(self, token: str, pending, error: str | None = None):
        self.finish(
            await self._render(
                error=None,
                form_error=error,
                confirmed=None,
                token=token,
                username=pending.username,
                masked_email=mask_email(pending.email),
                tenant_name=pending.tenant_name,
            )
        )

    async def post(self):
        token = self.get_body_argument("token", "")
        password = self.get_body_argument("password", "")
        store = self.authenticator.store
        try:
            result = store.verify_signup(token, password)
        except FedhubError as e:
            pending = store.signup_for_token(token) if e.status == 403 else None
            if pending is None:
                return await self._fail(e.status, e.message)
            # a wrong password: the same form again, with the message
            self.set_status(e.status)
            return await self._confirm_form(token, pending, error=e.message)
        self.log.info(
            "Sign-up of %s in %s verified (%s)", result.username, result.tenant, result.status
        )
        self.finish(
            await self._render(
                error=None,
                confirmed=result.status,
                username=result.username,
                tenant_name=result.tenant_name,
                awaiting_approval=result.status == SignupStatus.AWAITING_APPROVAL.value,
            )
        )

    async def _fail(self, status: int, message: str):
        self.set_status(status)
        self.finish(await self._render(error=message, confirmed=None))


class SignupRequestsHandler(_SignupPage):
    """/hub/signup/requests: a tenant admin reviews their tenant's pending sign-ups
    (a platform admin sees every tenant's). The CLI equivalent is ``fedhub user
    signups|approve|reject``."""

    template_file = "signup_requests.html"

    def _reviewer_scope(self) -> str | None:
        """The tenant whose requests the caller may review (None: all, for platform admins)."""
        info = self.authenticator.store.user(self.current_user.name)
        if info is not None and info.is_platform_admin:
            return None
        if info is None or info.role != Role.TENANT_ADMIN or not info.tenant:
            raise web.HTTPError(403, "Only a tenant administrator can review sign-up requests.")
        return info.tenant

    @web.authenticated
    async def get(self):
        await self._page(self._reviewer_scope())

    @web.authenticated
    async def post(self):
        tenant = self._reviewer_scope()
        username = self.get_body_argument("username", "")
        action = self.get_body_argument("action", "")
        store = self.authenticator.store
        actor = self.current_user.name
        try:
            if action == "approve":
                result = store.approve_signup(username, tenant=tenant, actor=actor)
                notice = f"{username} is now a member of {result.tenant_name}."
                try:
                    await self.authenticator.mailer.send_async(
                        result.email,
                        "Your fedhub account is ready",
                        f"Hello {username},\n\nAn administrator of {result.tenant_name} "
                        "approved your sign-up: you can log in to fedhub now.\n",
                    )
                except MailError as e:
                    self.log.warning("Approval notice to %s not sent: %s", username, e)
                    notice += " (We could not email them: tell them yourself.)"
            elif action == "reject":
                store.reject_signup(username, tenant=tenant, actor=actor)
                notice = f"The request of {username} is rejected."
            else:
                raise web.HTTPError(400, "action must be approve or reject")
        except FedhubError as e:
            self.set_status(e.status)
            return await self._page(tenant, error=e.message)
        await self._page(tenant, notice=notice)

    async def _page(self, tenant: str | None, error: str | None = None, notice: str | None = None):
        requests = self.authenticator.store.signup_requests(tenant)
        self.finish(
            await self._render(
                requests=requests,
                tenant=tenant,
                error=error,
                notice=notice,
                awaiting_approval=SignupStatus.AWAITING_APPROVAL,
            )
        )


def verify_link(handler: BaseHandler, token: str) -> str:
    """The absolute URL of the verify page for ``token``."""
    return _hub_url(handler, VERIFY_PATH) + "?" + urlencode({"token": token})


def invitation_link(handler: BaseHandler, token: str) -> str:
    """The absolute URL of the sign-up page with an invitation's code filled in."""
    return _hub_url(handler, "signup") + "?" + urlencode({"invitation": token})


def _hub_url(handler: BaseHandler, page: str) -> str:
    base = _public_base(handler.app)
    if base is None:
        # no public_url and a wildcard bind address: the request's host is all we have
        base = f"{handler.request.protocol}://{handler.request.host}/"
        handler.log.warning(
            "Emailed links use the request's Host header (%s): set c.JupyterHub.public_url",
            handler.request.host,
        )
    return urljoin(base, handler.hub.base_url + page)


def _public_base(app) -> str | None:
    if app is None:
        return None
    for url in (getattr(app, "public_url", ""), getattr(app, "bind_url", "")):
        parsed = urlparse(url or "")
        if parsed.scheme in ("http", "https") and parsed.hostname not in (
            None,
            "",
            "0.0.0.0",
            "::",
        ):
            return url
    return None


def _hours(seconds: float) -> str:
    hours = seconds / 3600
    if hours >= 1:
        n = round(hours)
        return f"{n} hour{'s' if n != 1 else ''}"
    n = max(1, round(seconds / 60))
    return f"{n} minute{'s' if n != 1 else ''}"
