"""The tier's security policy at login: IP allowlists, and logins that must finish a step.

Two checks every fedhub login passes after the credentials are right:

- the tenant's IP allowlist (:func:`refuse_outside_allowlist`, for the local and the
  OIDC authenticator): a refusal says which tenant and which address, and is audited;
- the steps the tier asks for (:func:`fedhub.tenancy.passwords.login_steps`: an expired
  password, MFA not enrolled yet). The local authenticator then raises
  :class:`LoginPending` instead of returning a user; :class:`PolicyLoginHandler` (the
  hub's ``/login``) turns it into a short-lived signed cookie naming the user and a
  redirect to ``/hub/fedhub/login/continue``, which completes the login
  (:func:`finish_login`) once every step is done. Nothing is logged in before that: no
  hub cookie, no token.
"""

from __future__ import annotations

import json
import time

from jupyterhub.handlers.login import LoginHandler
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.httputil import url_concat

from fedhub import events
from fedhub.errors import FedhubError
from fedhub.extensions.hub.branding_api import BrandedLoginMixin
from fedhub.extensions.hub.tenant_auth import client_info

PENDING_COOKIE = "fedhub-login-pending"
#: How long a correct password holds a login open for its remaining steps.
PENDING_MINUTES = 15
CONTINUE_PATH = "fedhub/login/continue"


class LoginPending(web.HTTPError):
    """The password was right, but the tier asks for more before the login completes.

    A 403 with a message wherever it is not caught: only :class:`PolicyLoginHandler`
    knows how to continue.
    """

    def __init__(self, username: str, steps: list[str]):
        super().__init__(403, "finish setting up your account to log in: " + ", ".join(steps))
        self.username = username
        self.steps = steps


def refuse_outside_allowlist(authenticator, username: str, handler) -> None:
    """Refuse (403, audited) a login to a tenant from outside its allowlisted networks."""
    store = authenticator.store
    try:
        store.security.check_login_address(username, client_info(handler).get("source_ip"))
    except FedhubError as e:
        authenticator._refuse_login(store.user(username), handler, e.code, e.message)


def set_pending(handler, username: str) -> None:
    handler.set_secure_cookie(
        PENDING_COOKIE,
        json.dumps({"user": username}),
        expires_days=None,  # a browser-session cookie; the signature's age is checked
        path=handler.hub.base_url,
        httponly=True,
        secure=handler.request.protocol == "https",
        samesite="Lax",
    )


def pending_user(handler) -> str | None:
    """The user whose password was right within the last :data:`PENDING_MINUTES`."""
    raw = handler.get_secure_cookie(PENDING_COOKIE, max_age_days=PENDING_MINUTES / (24 * 60))
    if not raw:
        return None
    try:
        return json.loads(raw)["user"]
    except (ValueError, KeyError, TypeError):
        return None


async def finish_login(handler, username: str):
    """Log ``username`` in (the hub's cookie) once every step is done; returns the user."""
    auth = handler.authenticator
    refuse_outside_allowlist(auth, username, handler)
    model = auth.tenant_auth_model(username, handler)  # refuses suspended tenants
    if model is None:
        raise web.HTTPError(403, f"{username} is no longer a member of fedhub")
    user = await handler.auth_to_user(model)
    handler.set_login_cookie(user)
    user._auth_refreshed = time.monotonic()
    handler.clear_cookie(PENDING_COOKIE, path=handler.hub.base_url)
    member = auth.store.user(username)
    events.emit(
        "auth.login",
        tenant=member.tenant if member else None,
        actor=username,
        target=username,
        details={"after": "security_steps"},
        **client_info(handler),
    )
    return user


class PolicyLoginHandler(BrandedLoginMixin, LoginHandler):
    """JupyterHub's login form; a login with steps left continues on the security page.
    ``/hub/login?tenant=<slug>`` shows that tenant's name and logo (branding_api.py)."""

    async def post(self):
        try:
            await super().post()
        except LoginPending as pending:
            set_pending(self, pending.username)
            url = url_path_join(self.hub.base_url, CONTINUE_PATH)
            next_url = self.get_argument("next", "")
            self.redirect(url_concat(url, {"next": next_url}) if next_url else url)
