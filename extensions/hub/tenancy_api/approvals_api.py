"""Approval requests in the hub's REST API (docs/organisations.md, "Approval requests").

    GET  /hub/api/fedhub/requests?state=&kind=&tenant=   what the caller may see: platform
                                                        admins all, a tenant admin their
                                                        tenant's, anyone else their own
    POST /hub/api/fedhub/requests                       {kind, tenant?, payload} -> 201
    GET  /hub/api/fedhub/requests/<id>                  with its comments
    POST /hub/api/fedhub/requests/<id>/approve          {reason?}: the kind's approvers
    POST /hub/api/fedhub/requests/<id>/reject           {reason}: the kind's approvers
    POST /hub/api/fedhub/requests/<id>/withdraw         the requester
    POST /hub/api/fedhub/requests/<id>/comments         {text}: anyone who sees it -> 201

A request the caller may not see is a 404 (another tenant's, or a colleague's when the
caller is not their tenant admin); one they see but may not decide, a 403. The work is
:class:`fedhub.approvals.ApprovalStore`'s, the same the CLI (``fedhub requests``) calls.
Each handler's database work runs in the caller's row-level-security scope: a platform
admin's as platform work, anyone else's in their tenant. Mail goes out from a thread
(the authenticator's ``c.Mailer``), never on the event loop.
"""

from __future__ import annotations

from contextlib import contextmanager

from fedhub import approvals
from fedhub.addresses import client_ip
from fedhub.approvals import ApprovalStore, RequestView
from fedhub.db import rls
from fedhub.errors import Forbidden, InvalidRequest
from fedhub.extensions.hub.api import FedhubAPIHandler
from fedhub.mail import Mailer
from fedhub.tenancy import scopes as fedhub_scopes
from fedhub.tenancy.models import Role
from fedhub.tenancy.store import UserInfo

REQUESTS = r"/api/fedhub/requests"
ONE = REQUESTS + r"/(\d{1,12})"


class _RequestsAPI(FedhubAPIHandler):
    @property
    def requests(self) -> ApprovalStore:
        return ApprovalStore(self.store)

    def who(self) -> UserInfo:
        """The signed-in caller, with a token that carries ``tenant:read`` for their
        tenant (platform admins: ``tenants:manage``); 403 otherwise."""
        info = self.signed_in()
        if not info.is_platform_admin:
            if not info.tenant:
                raise Forbidden("only members of a tenant may use requests")
            self.caller(info.tenant, "tenant:read")
        elif not fedhub_scopes.granted("tenants:manage", self.expanded_scopes, None):
            raise Forbidden("this token does not hold the scope custom:fedhub:tenants:manage")
        return info

    def may_decide(self, info: UserInfo) -> None:
        """A tenant admin's token must carry ``tenant:admin`` to decide (whether they may
        decide this request at all, the store says: 404 unseen, 403 not theirs)."""
        if info.role == Role.TENANT_ADMIN and not fedhub_scopes.granted(
            "tenant:admin", self.expanded_scopes, info.tenant
        ):
            raise Forbidden("this token does not hold the scope custom:fedhub:tenant:admin")

    @contextmanager
    def scope(self, info: UserInfo):
        """The caller's row-level-security scope for the store's transactions."""
        with rls.platform() if info.is_platform_admin else rls.tenant(info.tenant):
            yield

    def origin(self) -> dict:
        return {
            "source_ip": client_ip(self.request),
            "user_agent": self.request.headers.get("User-Agent"),
        }

    def answer(self, view: RequestView, status: int = 200, comments: bool = True) -> None:
        self.set_status(status)
        self.set_header("Cache-Control", "no-store")
        self.finish(view.to_json(comments=comments))

    def fields(self, allowed: tuple[str, ...]) -> dict:
        body = self.body()
        unknown = sorted(set(body) - set(allowed))
        if unknown:
            raise InvalidRequest(
                f"unknown field(s) {', '.join(unknown)}; expected {', '.join(allowed) or 'none'}"
            )
        return body


class RequestsHandler(_RequestsAPI):
    def get(self):
        info = self.who()
        args = {k: self.get_argument(k, None) for k in ("state", "kind", "tenant")}
        with self.scope(info):
            views = self.requests.list(info, **args)
        self.set_header("Cache-Control", "no-store")
        self.finish({"requests": [v.to_json() for v in views]})

    def post(self):
        info = self.who()
        body = self.fields(("kind", "tenant", "payload"))
        kind = approvals.get_kind(body.get("kind"))
        if not kind.api:
            raise InvalidRequest(f"{kind.name} requests are not made through this API")
        tenant = body.get("tenant") or info.tenant
        if not isinstance(tenant, str):
            raise InvalidRequest("tenant must be a tenant's slug")
        if not info.is_platform_admin and tenant != info.tenant:
            self.caller(tenant, "tenant:read")  # another tenant: 404, as if it did not exist
        payload = body.get("payload", {})
        with self.scope(info):
            view = self.requests.create(
                kind.name, tenant=tenant, payload=payload, by=info, origin=self.origin()
            )
        self.answer(view, 201)


class RequestHandler(_RequestsAPI):
    def get(self, request_id: str):
        info = self.who()
        with self.scope(info):
            view = self.requests.get(int(request_id), info)
        self.answer(view)


class DecisionHandler(_RequestsAPI):
    def post(self, request_id: str, action: str):
        allowed = () if action == "withdraw" else ("reason",)
        body = self.fields(allowed)
        info = self.who()
        if action != "withdraw":
            self.may_decide(info)
        method = getattr(self.requests, action)
        kwargs = {"origin": self.origin()}
        if action != "withdraw":
            kwargs["reason"] = body.get("reason")
        with self.scope(info):
            view = method(int(request_id), info, **kwargs)
        self.answer(view)


class CommentsHandler(_RequestsAPI):
    def post(self, request_id: str):
        body = self.fields(("text",))
        info = self.who()
        with self.scope(info):
            view = self.requests.comment(
                int(request_id), body.get("text"), info, origin=self.origin()
            )
        self.answer(view, 201)


def handlers(authenticator) -> list[tuple]:
    """The request routes; every kind is loaded (so sign-ups waiting for an admin get
    their ``join_tenant`` request) and the stores send mail with the hub's mailer."""
    approvals.load_kinds()
    mailer = getattr(authenticator, "mailer", None) or Mailer(parent=authenticator)
    approvals.use_mailer(mailer, background=True)
    return [
        (REQUESTS, RequestsHandler),
        (ONE, RequestHandler),
        (ONE + r"/(approve|reject|withdraw)", DecisionHandler),
        (ONE + r"/comments", CommentsHandler),
    ]
