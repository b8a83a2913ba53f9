"""Audit events only the hub can see, taken from its request log.

JupyterHub has no hook for token creation or revocation, and logout has no
authenticator hook that sees the user; every request does go through the
tornado ``log_function`` after it finished, with its handler (the caller, the
status). :func:`log_request` keeps JupyterHub's own logging and adds:

- (``auth.logout`` comes from :class:`AuditedLogoutHandler`, which an
  authenticator adds in ``get_handlers``: by the time the request is logged the
  hub has forgotten who logged out);
- ``token.created`` / ``token.revoked`` (``POST``/``DELETE`` on
  ``/hub/api/users/<name>/tokens[/<id>]`` that succeeded);
- ``hub.api_call`` for every other state-changing hub API call that succeeded
  (group and user changes through the REST API, server starts and stops);
- ``authz.denied`` for hub API calls refused with 403.

Installed at hub start by the fedhub authenticators
(``TenantAuthenticatorMixin.audit_hub_requests``, on by default).
"""

from __future__ import annotations

import logging
import re

from jupyterhub.handlers.login import LogoutHandler
from jupyterhub.log import log_request as hub_log_request

from fedhub import events
from fedhub.addresses import client_ip

log = logging.getLogger("fedhub.audit.hub")

TOKENS_RE = re.compile(r"/api/users/([^/]+)/tokens(?:/([^/]+))?/?$")
# frequent machine-to-machine calls that change nothing a person did
QUIET_RE = re.compile(r"/api/(users/[^/]+/activity|oauth2/|authorizations/)")
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def log_request(handler) -> None:
    hub_log_request(handler)
    try:
        _audit(handler)
    except Exception:
        # auditing must never break the hub; the failure itself is logged
        log.exception("fedhub audit hook failed for %s", handler.request.path)


def _caller(handler) -> str | None:
    user = getattr(handler, "_jupyterhub_user", None)
    return getattr(user, "name", None)


def _tenant_of(handler, username: str | None) -> str | None:
    store = getattr(getattr(handler, "authenticator", None), "store", None)
    if store is None or not username:
        return None
    info = store.user(username)
    return info.tenant if info else None


class AuditedLogoutHandler(LogoutHandler):
    """JupyterHub's logout, recording ``auth.logout`` while the user is still known."""

    async def handle_logout(self):
        user = self.current_user
        if user is not None:
            events.emit(
                "auth.logout",
                tenant=_tenant_of(self, user.name),
                actor=user.name,
                target=user.name,
                source_ip=client_ip(self.request),
                user_agent=self.request.headers.get("User-Agent"),
            )
        await super().handle_logout()


# an authenticator adds this to ``get_handlers`` (before the hub's own /logout)
AUDITED_LOGOUT = (r"/logout", AuditedLogoutHandler)


def _audit(handler) -> None:
    request = handler.request
    status = handler.get_status()
    path = request.path
    info = {"source_ip": client_ip(request), "user_agent": request.headers.get("User-Agent")}
    if isinstance(handler, LogoutHandler):
        return  # AuditedLogoutHandler records it (the hub forgets the user before this)
    if "/api/" not in path:
        return
    if status == 403:
        actor = _caller(handler)
        events.emit(
            "authz.denied",
            tenant=_tenant_of(handler, actor),
            actor=actor,
            target=path,
            result="denied",
            severity="warning",
            details={"reason": "hub_scope", "method": request.method, "status": status},
            **info,
        )
        return
    if request.method not in MUTATING or status >= 400 or QUIET_RE.search(path):
        return
    actor = _caller(handler)
    m = TOKENS_RE.search(path)
    if m and request.method == "POST":
        owner = m.group(1)
        events.emit(
            "token.created", tenant=_tenant_of(handler, owner), actor=actor, target=owner, **info
        )
    elif m and request.method == "DELETE" and m.group(2):
        owner = m.group(1)
        events.emit(
            "token.revoked",
            tenant=_tenant_of(handler, owner),
            actor=actor,
            target=owner,
            details={"token_id": m.group(2)},
            **info,
        )
    else:
        events.emit(
            "hub.api_call",
            tenant=_tenant_of(handler, actor),
            actor=actor,
            target=path,
            details={"method": request.method, "status": status},
            **info,
        )
