"""The base of fedhub's endpoints in the hub's REST API (``/hub/api/fedhub/...``).

They are JupyterHub API handlers (the hub's token and cookie authentication, its
scopes) that answer like fedhub's services: refusals are fedhub's typed errors
(:mod:`fedhub.errors`), every error body is ``{"error": {"code", "message"}}``
(:class:`fedhub.web.JSONErrors`), and the body of a write is a JSON object.

Every ``/api/fedhub/tenants/<slug>/...`` endpoint decides who may call it with
:meth:`FedhubAPIHandler.caller`: anyone outside the tenant is answered 404, as for a
tenant that does not exist, so an endpoint never tells another tenant what exists.
"""

from __future__ import annotations

import json

from jupyterhub import orm
from jupyterhub.apihandlers.base import APIHandler

from fedhub import events
from fedhub.addresses import client_ip
from fedhub.errors import Forbidden, InvalidRequest, NotFound
from fedhub.tenancy import scopes as fedhub_scopes
from fedhub.tenancy.models import Role
from fedhub.tenancy.store import UserInfo
from fedhub.web import JSONErrors

ADMIN_ROLES = (Role.TENANT_ADMIN, Role.PLATFORM_ADMIN)


class FedhubAPIHandler(JSONErrors, APIHandler):
    """A hub API handler with fedhub's error shape and the tenant store."""

    @property
    def store(self):
        return self.authenticator.store

    def body(self) -> dict:
        """The request's JSON object (400 for anything else)."""
        try:
            data = json.loads(self.request.body or b"{}")
        except (ValueError, RecursionError):
            raise InvalidRequest("request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise InvalidRequest("request body must be a JSON object")
        return data

    def signed_in(self) -> UserInfo:
        """The calling user's fedhub membership (403 for nobody, a hub service or a hub
        user fedhub does not know)."""
        user = self.current_user  # a hub User, a hub service (orm.Service) or nobody
        if user is None:
            raise Forbidden("authentication required")
        info = None if isinstance(user, orm.Service) else self.store.user(user.name)
        if info is None:
            raise Forbidden("only fedhub's users may call this endpoint")
        return info

    def caller(self, slug: str, permission: str) -> UserInfo:
        """The caller, if they may ``permission`` (``tenant:read`` or ``tenant:admin``) in
        ``slug``: 404 for anyone outside the tenant, 403 for a member who may only read or a
        token made with fewer scopes."""
        user = self.current_user
        if user is None:
            raise Forbidden("authentication required")
        info = None if isinstance(user, orm.Service) else self.store.user(user.name)
        if info is None or not (info.is_platform_admin or info.tenant == slug):
            raise NotFound(f"no tenant {slug!r}")
        if permission == "tenant:admin" and info.role not in ADMIN_ROLES:
            raise Forbidden(f"your role ({info.role}) may not change the tenant's settings")
        if not fedhub_scopes.granted(permission, self.expanded_scopes, slug):
            raise Forbidden(
                f"this token does not hold the scope custom:fedhub:{permission} for the tenant"
            )
        return info

    def platform_admin(self) -> UserInfo:
        """The caller, if a platform admin (403 for everyone else)."""
        info = self.signed_in()
        if not info.is_platform_admin:
            raise Forbidden("only a platform admin may do this")
        return info

    def audit(
        self,
        action: str,
        slug: str | None,
        info: UserInfo,
        details: dict,
        target: str | None = None,
    ) -> None:
        """One audit event for this request, with its source address and user agent."""
        events.emit(
            action,
            tenant=slug,
            actor=info.username,
            target=target or slug,
            details=details,
            source_ip=client_ip(self.request),
            user_agent=self.request.headers.get("User-Agent"),
        )
