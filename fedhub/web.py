"""What every fedhub hub service shares: HubOAuth, the caller's tenant, JSON errors.

A service is a small tornado app (see ``jupyterhub/examples/service-whoami``):
handlers subclass :class:`APIHandler`, read ``self.caller`` (who is asking,
their tenant and fedhub role) and call ``self.scoped_tenant(requested)`` to get
the one tenant they may look at. Every error leaves as
``{"error": {"code": ..., "message": ...}}`` with a 4xx status; unexpected
errors are logged with a traceback and leave as a 500 without details.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import sys
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, NamedTuple
from urllib.parse import urlencode

from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import web
from traitlets import default

from fedhub import events, metering, ratelimit
from fedhub.addresses import client_ip
from fedhub.db import rls
from fedhub.errors import FedhubError, Forbidden, InvalidRequest, NotFound, TenantSuspended
from fedhub.openapi import OpenAPIDocument, build_spec, operation, render_html
from fedhub.tenancy import scopes as fedhub_scopes
from fedhub.tenancy.models import Role, TenantStatus
from fedhub.tenancy.store import TenantStore

log = logging.getLogger("fedhub.web")

# What a suspended tenant may still do, on GET only and only as its tenant admin:
# read invoices, credit notes and the budget (the billing service's "billing:read").
# Everything else from a suspended tenant's users is refused with 403 tenant_suspended.
SUSPENDED_TENANT_ADMIN_READS = frozenset({"billing:read"})


class Page(NamedTuple):
    """What a list request asked for: at most ``limit`` items after ``cursor``."""

    limit: int
    cursor: str | None


@dataclass(frozen=True)
class Caller:
    """Who is calling a service: a fedhub user, or a hub service with no tenant."""

    name: str
    kind: str  # "user" or "service"
    role: Role | None
    tenant: str | None
    tenant_status: TenantStatus | None = None
    #: the fedhub scopes of the caller's token, with their filters, as the hub reports them
    scopes: frozenset[str] = frozenset()

    @property
    def is_platform_admin(self) -> bool:
        return self.role == Role.PLATFORM_ADMIN

    @property
    def suspended(self) -> bool:
        """A user of a suspended tenant (platform admins belong to none)."""
        return self.tenant_status == TenantStatus.SUSPENDED and not self.is_platform_admin

    def can(self, permission: str) -> bool:
        """Both the caller's fedhub role (read from fedhub's tables) and their token's
        scopes allow ``permission`` here: a token made with fewer scopes does less."""
        return self.role_allows(permission) and self.token_allows(permission)

    def role_allows(self, permission: str) -> bool:
        return self.role is not None and fedhub_scopes.allows(self.role, permission)

    def token_allows(self, permission: str) -> bool:
        return fedhub_scopes.granted(permission, self.scopes, self.tenant)


class FedhubHubOAuth(HubOAuth):
    """HubOAuth that admits fedhub's scopes and re-asks the hub about a token every few seconds.

    A key made with only ``custom:fedhub:usage:read`` has no ``access:services``; it
    must still reach the service, which then lets it do what its scopes allow
    (:meth:`APIHandler.require`). A token with ``access:services`` and no fedhub
    scope gets in too, and is refused by ``require``.

    A deleted user's tokens die with the hub's user row; a service that cached
    the hub's answer for JupyterHub's default 300 s would keep accepting them
    (and map them onto whoever next gets the same name). Five seconds, like the
    mirror interval, bounds that to one interval for one hub request per token.
    """

    @default("cache_max_age")
    def _default_cache_max_age(self):
        return 5

    @default("access_scopes")
    def _default_access_scopes(self):
        return set(super()._default_scopes()) | set(fedhub_scopes.ALL_SCOPES)

    def check_scopes(self, required_scopes, user):
        """JupyterHub's check, plus fedhub's scopes whatever their filter: JupyterHub
        matches filters exactly, and a tenant's scopes are filtered to its group."""
        held = super().check_scopes(required_scopes, user)
        names = {s.partition("!")[0] for s in fedhub_scopes.fedhub_scopes(user["scopes"])}
        return held | (names & set(required_scopes))


class OAuthCallbackHandler(HubOAuthCallbackHandler):
    hub_auth_class = FedhubHubOAuth


class JSONErrors:
    """Errors as ``{"error": {"code", "message"}}``: fedhub's typed errors with their own
    status, code and headers (``Retry-After`` of a 429), tornado's ``HTTPError`` as
    ``http_<status>``, anything else as a bare 500 whose traceback only the log sees.

    Mixed into every fedhub API handler: the services' :class:`APIHandler` and the hub's
    own fedhub endpoints (``fedhub.extensions.hub.api``).
    """

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, FedhubError):
            body = exc.to_json()
        elif isinstance(exc, web.HTTPError):
            message = exc.log_message or self._reason
            if exc.args and exc.log_message:
                message = exc.log_message % exc.args
            body = {"error": {"code": f"http_{status_code}", "message": message}}
        else:
            body = {
                "error": {
                    "code": "internal_error",
                    "message": "internal error; the service logged it",
                }
            }
        for name, value in getattr(exc, "headers", {}).items():  # RateLimited: Retry-After
            self.set_header(name, value)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, FedhubError):
            if not self._finished:
                self.send_error(e.status, exc_info=sys.exc_info())
            return
        super()._handle_request_exception(e)


class APIHandler(JSONErrors, HubOAuthenticated, web.RequestHandler):
    """Base of every fedhub service API handler."""

    hub_auth_class = FedhubHubOAuth

    @property
    def store(self) -> TenantStore:
        return self.settings["fedhub_store"]

    def prepare(self):
        """Count the request as an API call of the caller's tenant, before the handler runs.

        Over a rate limit of its tier the request is refused with 429 (:mod:`fedhub.ratelimit`,
        the same count as the hub's and every other service's); else it is metered as one
        ``api_calls`` (:mod:`fedhub.metering`). Platform admins, hub services and anonymous
        requests belong to no tenant: not counted.
        """
        model = self.get_current_user()
        rls.enter(self.rls_scope(model))
        if not model or model.get("kind") != "user":
            return
        info = self._user_info(model["name"])
        if info is None or not info.tenant or info.is_platform_admin:
            return
        limiter = ratelimit.current()
        if limiter is not None:
            window = limiter.check(info.tenant, actor=info.username, request=self.request)
            for name, value in (window.headers() if window else {}).items():
                self.set_header(name, value)
        service = os.environ.get("JUPYTERHUB_SERVICE_NAME", "?")
        metering.count_api_call(service, info.tenant, info.username)

    def _user_info(self, name: str):
        """The caller's membership, looked up once per request across every tenant (the
        lookup that decides the tenant is platform work by nature)."""
        if getattr(self, "_fedhub_user_info_for", None) != name:
            with rls.platform():
                self._fedhub_user_info = self.store.user(name)
            self._fedhub_user_info_for = name
        return self._fedhub_user_info

    def rls_scope(self, model: dict | None) -> rls.Scope | None:
        """Whom this request's database work is for (:mod:`fedhub.db.rls`): a user's tenant;
        the platform for platform admins and hub services; nothing (no tenant rows) for
        anyone else."""
        if not model:
            return None
        if model.get("kind") == "service":
            return rls.Scope(None)
        info = self._user_info(model["name"])
        if info is None:
            return None
        if info.is_platform_admin:
            return rls.Scope(None)
        return rls.Scope(info.tenant) if info.tenant else None

    def check_xsrf_cookie(self):
        # Only a request that a token actually authenticated may skip the check.
        # An Authorization header alone proves nothing: a bogus one sent with a
        # session cookie must not turn the cookie into an XSRF-free credential.
        if getattr(self, "_token_authenticated", False):
            return
        return super().check_xsrf_cookie()

    def get_current_user(self):
        model = super().get_current_user()
        if (
            model
            and self.request.headers.get("Authorization")
            and not getattr(self, "_token_authenticated", False)
        ):
            # the client chose token authentication and its token failed: the
            # request is anonymous, whatever cookie came with it
            self._hub_auth_user_cache = None
            return None
        return model

    # -- who is calling ----------------------------------------------------------

    @property
    def caller(self) -> Caller:
        """Who is calling, read from fedhub's tables on every request (fail closed).

        A hub user without a fedhub membership is refused, whatever the hub
        thinks of them (its ``admin`` flag included): platform admins are the
        ``platform-admin`` memberships and nothing else. Users of a suspended
        tenant are refused too, except where :meth:`require` waives it.
        """
        if not hasattr(self, "_caller"):
            model = self.get_current_user()
            if not model:
                raise web.HTTPError(403)
            name = model["name"]
            if model.get("kind") == "service":
                self._caller = Caller(name=name, kind="service", role=None, tenant=None)
            else:
                info = self._user_info(name)
                if info is None:
                    self.deny("user_not_in_fedhub", f"{name} is not a member of any fedhub tenant")
                self._caller = Caller(
                    name=name,
                    kind="user",
                    role=info.role,
                    tenant=info.tenant,
                    tenant_status=info.tenant_status,
                    scopes=fedhub_scopes.fedhub_scopes(model.get("scopes", ())),
                )
        if self._caller.suspended and not getattr(self, "_suspension_waived", False):
            self.deny_suspended()
        return self._caller

    def require(self, permission: str) -> Caller:
        if permission in SUSPENDED_TENANT_ADMIN_READS and self.request.method in ("GET", "HEAD"):
            self._suspension_waived = True  # decided here, for tenant admins only
            if self.caller.suspended and self.caller.role != Role.TENANT_ADMIN:
                self._suspension_waived = False
                self.deny_suspended()
        caller = self.caller
        if not caller.role_allows(permission):
            self.deny("permission", f"your role ({caller.role}) does not allow {permission}")
        if not caller.token_allows(permission):
            self.deny(
                "scope",
                f"this token does not hold the scope {fedhub_scopes.scope(permission)} "
                f"for your organisation (its scopes decide, whatever your role allows)",
            )
        return caller

    def deny_suspended(self):
        tenant = self._caller.tenant
        self.deny(
            "tenant_suspended",
            f"your organisation {tenant!r} is suspended: fedhub services refuse its "
            "requests until a platform admin resumes it (its tenant admins can still "
            "read invoices)",
            error=TenantSuspended,
        )

    def scoped_tenant(self, requested: str | None = None) -> str | None:
        """The tenant this request may see: the caller's own, or any for platform admins.

        Asking for another tenant is answered as if it did not exist (404), so
        a tenant cannot even learn which other tenants exist.
        """
        caller = self.caller
        if caller.is_platform_admin:
            if requested:
                self.store.get_tenant(requested)  # 404 if unknown
            return requested
        if requested and requested != caller.tenant:
            self.deny("cross_tenant", f"no tenant {requested!r}", status=404)
        return caller.tenant

    def deny(
        self, reason: str, message: str, status: int = 403, error: type[FedhubError] | None = None
    ):
        events.emit(
            "authz.denied",
            tenant=getattr(self, "_caller", None) and self._caller.tenant,
            actor=self.current_user and self.current_user.get("name"),
            target=self.request.path,
            result="denied",
            severity="warning",
            details={"reason": reason, "method": self.request.method},
            source_ip=client_ip(self.request),
            user_agent=self.request.headers.get("User-Agent"),
        )
        if error is not None:
            raise error(message)
        raise (NotFound(message) if status == 404 else Forbidden(message))

    def emit(self, action: str, **kw: Any) -> dict:
        """An audit event for a state-changing call, with the caller and client filled in."""
        kw.setdefault("tenant", self.caller.tenant)
        kw.setdefault("actor", self.caller.name)
        return events.emit(
            action,
            source_ip=client_ip(self.request),
            user_agent=self.request.headers.get("User-Agent"),
            **kw,
        )

    # -- JSON in and out ---------------------------------------------------------

    def get_json_body(self) -> Any:
        try:
            return json.loads(self.request.body or b"null")
        except json.JSONDecodeError as e:
            raise InvalidRequest(
                f"request body is not valid JSON: {e.msg} at position {e.pos}"
            ) from None
        except (ValueError, RecursionError):
            # an integer of more than 4,300 digits, or nesting deeper than the parser allows
            raise InvalidRequest(
                "request body is not acceptable JSON (a number or nesting too large)"
            ) from None

    def page_args(self, default: int = 100, maximum: int = 500) -> Page:
        """``?limit=&cursor=`` of a list endpoint; the limit clamped to ``[1, maximum]``."""
        raw = self.get_query_argument("limit", None)
        try:
            limit = default if raw in (None, "") else int(raw)
        except ValueError:
            raise InvalidRequest(f"limit must be a whole number, not {raw!r}") from None
        cursor = self.get_query_argument("cursor", None) or None
        return Page(max(1, min(limit, maximum)), cursor)

    def write_page(self, key: str, items: list, next_cursor: str | None, **extra: Any) -> None:
        """A page as ``{key: items, "next": <URL of the next page or null>, ...extra}``."""
        next_url = None
        if next_cursor is not None:
            args = {k: self.get_query_argument(k) for k in self.request.query_arguments}
            args["cursor"] = next_cursor
            next_url = f"{self.request.path}?{urlencode(args)}"
        self.write_json({key: items, "next": next_url, "next_cursor": next_cursor, **extra})

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, default=str))


class NotFoundHandler(APIHandler):
    def prepare(self):
        raise NotFound(f"no such endpoint: {self.request.path}")


def cookie_secret() -> bytes:
    """The same secret in every replica of a service (derived from its hub token)."""
    explicit = os.environ.get("FEDHUB_SERVICE_COOKIE_SECRET")
    if explicit:
        return explicit.encode()
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    return hashlib.sha256(b"fedhub-service-cookie:" + token.encode()).digest()


def make_app(
    handlers: list[tuple], *, store: TenantStore | None = None, **settings: Any
) -> web.Application:
    """A service application at ``$JUPYTERHUB_SERVICE_PREFIX`` with HubOAuth wired in.

    ``handlers`` are ``(relative_path, Handler[, kwargs])`` tuples, relative to the prefix.
    """
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    handlers = [*handlers, *description_routes()]
    routes = [(url_path_join(prefix, "oauth_callback"), OAuthCallbackHandler)]
    for path, *rest in handlers:
        routes.append((url_path_join(prefix, path), *rest))
    return web.Application(
        routes,
        cookie_secret=cookie_secret(),
        default_handler_class=NotFoundHandler,
        fedhub_store=store or TenantStore(),
        fedhub_openapi=service_description(handlers, prefix),
        xsrf_cookies=False,
        **settings,
    )


class OpenAPIHandler(APIHandler):
    """The service's description. No token needed: it is the same for every deployment
    and names no tenant, user or record (docs/api.md), so clients can read it first."""

    @operation(
        "This service's OpenAPI 3.1 description", responses={200: OpenAPIDocument}, public=True
    )
    def get(self):
        self.set_header("Content-Type", "application/json")
        self.finish(self.settings["fedhub_openapi"]["json"])


class APIDocsHandler(APIHandler):
    @operation(
        "This service's API description as an HTML page",
        responses={200: {"text/html": None}},
        public=True,
    )
    def get(self):
        """Rendered on the server from the same document: no script, nothing fetched."""
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(self.settings["fedhub_openapi"]["html"])


def description_routes() -> list[tuple]:
    """Where every service serves its OpenAPI description (relative to its prefix)."""
    return [("api/v1/openapi.json", OpenAPIHandler), ("api/v1/docs", APIDocsHandler)]


def service_description(handlers: list[tuple], prefix: str) -> dict[str, str]:
    """The service's OpenAPI document (JSON text) and its page, built once at start.

    The description is the docstring of the module of the service's first handler.
    """
    name = os.environ.get("JUPYTERHUB_SERVICE_NAME", "fedhub")
    about = inspect.getdoc(sys.modules[handlers[0][1].__module__]) or ""
    spec = build_spec(f"fedhub {name} service", version("fedhub"), handlers, description=about)
    spec["servers"] = [{"url": prefix.rstrip("/") or "/"}]
    return {"json": json.dumps(spec), "html": render_html(spec)}
