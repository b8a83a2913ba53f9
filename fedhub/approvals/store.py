"""Approval requests: create, list, show, approve, reject, withdraw, comment.

The API (``/hub/api/fedhub/requests``) and the CLI (``fedhub requests``) call these
methods; a caller passes ``by`` (the :class:`UserInfo` of the person asking) and the
store decides what they may see and do. ``by=None`` is the operator at the CLI, who may
do everything. Each transition is one transaction; after it commits, an audit event
(``request.<transition>``) and the emails (the approvers on creation, the requester on a
decision) go out. Someone who may not see a request is told it does not exist (404).
What a read returns (:class:`RequestView`, :class:`CommentView`) is :mod:`.views`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from fedhub import events
from fedhub.approvals.models import MAX_TEXT, ApprovalRequest, RequestComment, RequestState
from fedhub.approvals.registry import Context, Kind, _running, get_kind, load_kinds
from fedhub.approvals.views import RequestView
from fedhub.db import rls
from fedhub.db.base import utcnow
from fedhub.errors import Conflict, FedhubError, Forbidden, InvalidRequest, NotFound
from fedhub.mail import Mailer, MailError
from fedhub.tenancy.models import Membership, Role, Tenant
from fedhub.tenancy.store import TenantStore, UserInfo

log = logging.getLogger("fedhub.approvals")

#: the transitions, as the API's verbs and the audit events' suffixes
APPROVE, REJECT, WITHDRAW = "approve", "reject", "withdraw"
_FINAL = {
    APPROVE: RequestState.APPROVED,
    REJECT: RequestState.REJECTED,
    WITHDRAW: RequestState.WITHDRAWN,
}


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    text: str


# -- where mail goes -------------------------------------------------------------

_default_mailer: Mailer | None = None
_default_background = False


def use_mailer(mailer: Mailer | None, *, background: bool = False) -> None:
    """The mailer of stores made without one in this process (the hub sets its own,
    ``background=True``: messages are sent from a thread, never on the event loop)."""
    global _default_mailer, _default_background
    _default_mailer, _default_background = mailer, background


class ApprovalStore:
    """Approval requests in fedhub's database, next to the tenants they concern."""

    def __init__(
        self,
        tenants: TenantStore,
        mailer: Mailer | None = None,
        *,
        background_mail: bool | None = None,
    ):
        self.tenants = tenants
        self.mailer = mailer if mailer is not None else _default_mailer
        self.background_mail = (
            background_mail if background_mail is not None else _default_background
        )
        load_kinds()

    # -- creating --------------------------------------------------------------

    def create(
        self,
        kind: str,
        *,
        tenant: str | None,
        payload: dict[str, Any],
        by: UserInfo | None = None,
        requester: str | None = None,
        requester_email: str | None = None,
        origin: dict[str, Any] | None = None,
    ) -> RequestView:
        """A new pending request of ``kind`` (validated by the kind), asked by ``by`` (a
        user) or ``requester`` (someone with no account yet: their email address)."""
        with self.tenants.session() as s:
            view, after = self.create_in(
                s,
                kind,
                tenant=tenant,
                payload=payload,
                by=by,
                requester=requester,
                requester_email=requester_email,
                origin=origin,
            )
        after()
        return view

    def create_in(
        self,
        s: Session,
        kind: str,
        *,
        tenant: str | None,
        payload: dict[str, Any],
        by: UserInfo | None = None,
        requester: str | None = None,
        requester_email: str | None = None,
        origin: dict[str, Any] | None = None,
    ) -> tuple[RequestView, Callable[[], None]]:
        """:meth:`create` in an open transaction; run the returned function once committed."""
        k = get_kind(kind)
        if not isinstance(payload, dict):
            raise InvalidRequest("payload must be a JSON object")
        t = None
        if tenant is not None:
            t = s.scalar(select(Tenant).where(Tenant.slug == tenant))
            if t is None:
                raise NotFound(f"no tenant {tenant!r}")
        elif k.needs_tenant:
            raise InvalidRequest(f"a {kind} request names its tenant")
        name = by.username if by is not None else requester
        if not name:
            raise InvalidRequest("a request needs a requester")
        clean = k.validate(dict(payload), Context(self.tenants, s, t, by))
        req = ApprovalRequest(
            kind=k.name,
            tenant_id=t.id if t is not None else None,
            requester=name,
            requester_email=(by.email if by is not None else None) or requester_email,
            payload=clean,
            state=RequestState.PENDING,
        )
        s.add(req)
        try:
            s.flush()
        except IntegrityError:  # a unique index of the kind's (one pending tier change)
            raise Conflict(f"a {kind} request like this one is pending already") from None
        view = RequestView.of(req, k, tenant)

        def after() -> None:
            self._audit("request.created", view, name, origin, {"payload": view.payload})
            self._deliver(self._to_approvers(view))

        return view, after

    # -- reading ---------------------------------------------------------------

    def get(self, request_id: int, by: UserInfo | None = None) -> RequestView:
        """One request with its comments (404 if ``by`` may not see it)."""
        with self.tenants.session() as s:
            req = self._load(s, request_id, by)
            return self._view(s, req)

    def list(
        self,
        by: UserInfo | None = None,
        *,
        state: str | None = None,
        kind: str | None = None,
        tenant: str | None = None,
    ) -> list[RequestView]:
        """The requests ``by`` may see (platform admins: all; a tenant admin: their
        tenant's and their own; anyone else: their own), newest first."""
        q = select(ApprovalRequest).options(selectinload(ApprovalRequest.comments))
        if state:
            try:
                q = q.where(ApprovalRequest.state == RequestState(state))
            except ValueError:
                states = ", ".join(s.value for s in RequestState)
                raise InvalidRequest(f"unknown state {state!r}: use one of {states}") from None
        if kind:
            q = q.where(ApprovalRequest.kind == get_kind(kind).name)
        with self.tenants.session() as s:
            if tenant:
                t = s.scalar(select(Tenant).where(Tenant.slug == tenant))
                if t is None or not (by is None or by.is_platform_admin or by.tenant == tenant):
                    raise NotFound(f"no tenant {tenant!r}")
                q = q.where(ApprovalRequest.tenant_id == t.id)
            visible = self._visible_clause(s, by)
            if visible is not None:
                q = q.where(visible)
            q = q.order_by(ApprovalRequest.id.desc())
            return [self._view(s, req) for req in s.scalars(q)]

    # -- deciding --------------------------------------------------------------

    def approve(self, request_id: int, by: UserInfo | None = None, *, reason: str | None = None,
                actor: str | None = None, origin: dict[str, Any] | None = None) -> RequestView:  # fmt: skip
        """Approve and apply, in one transaction: if the change cannot be made the
        request stays pending and the refusal is a 409 (:class:`Conflict`)."""
        return self._decide(request_id, APPROVE, by, reason, actor, origin)

    def reject(self, request_id: int, by: UserInfo | None = None, *, reason: str | None = None,
               actor: str | None = None, origin: dict[str, Any] | None = None) -> RequestView:  # fmt: skip
        """Reject, with the reason the requester is shown (required)."""
        return self._decide(request_id, REJECT, by, reason, actor, origin)

    def withdraw(self, request_id: int, by: UserInfo | None = None, *, actor: str | None = None,
                 origin: dict[str, Any] | None = None) -> RequestView:  # fmt: skip
        """The requester takes their request back."""
        return self._decide(request_id, WITHDRAW, by, None, actor, origin)

    def comment(
        self,
        request_id: int,
        text: str,
        by: UserInfo | None = None,
        *,
        actor: str | None = None,
        origin: dict[str, Any] | None = None,
    ) -> RequestView:
        """Add a comment (anyone who may see the request)."""
        text = _text(text, "text", required=True)
        author = actor or (by.username if by else "cli")
        with self.tenants.session() as s:
            req = self._load(s, request_id, by)
            req.comments.append(RequestComment(author=author, text=text, created_at=utcnow()))
            s.flush()
            view = self._view(s, req)
        self._audit("request.commented", view, author, origin, {"text": text[:200]})
        return view

    def _decide(
        self,
        request_id: int,
        action: str,
        by: UserInfo | None,
        reason: str | None,
        actor: str | None,
        origin: dict[str, Any] | None,
    ) -> RequestView:
        reason = _text(reason, "reason", required=action == REJECT)
        actor = actor or (by.username if by else "cli")
        after: list[Callable[[], None] | None] = []
        with self.tenants.session() as s:
            req = self._load(s, request_id, by, lock=True)
            kind = get_kind(req.kind)
            slug = req.tenant.slug if req.tenant else None
            self._check_may(action, kind, req, slug, by)
            if req.state != RequestState.PENDING:
                raise Conflict(f"request {request_id} is {req.state} already")
            req.state = _FINAL[action]
            req.reason = reason
            req.decided_by = actor
            req.decided_at = utcnow()
            hook = {APPROVE: kind.apply, REJECT: kind.on_reject}.get(action)
            if hook is not None:
                token = _running.set(self)
                try:
                    after.append(hook(s, req, actor))
                except Conflict:
                    raise
                except FedhubError as e:
                    raise Conflict(
                        f"request {request_id} cannot be {_FINAL[action]}: {e.message}",
                        details=e.details,
                    ) from None
                finally:
                    _running.reset(token)
            s.flush()
            view = self._view(s, req)
        for fn in after:
            if fn is not None:
                fn()
        details = {"kind": view.kind, "payload": view.payload}
        if reason:
            details["reason"] = reason
        self._audit(f"request.{_FINAL[action]}", view, actor, origin, details)
        if action != WITHDRAW:
            self._deliver(self._to_requester(view))
        return view

    def mark_decided_in(
        self, s: Session, req: ApprovalRequest, state: RequestState, actor: str | None,
        reason: str | None = None,
    ) -> Callable[[], None]:  # fmt: skip
        """Record a decision made elsewhere (the sign-up review page decided the sign-up a
        ``join_tenant`` request stands for): no apply, no mail; the audit event once committed."""
        req.state, req.reason = state, reason
        req.decided_by, req.decided_at = actor, utcnow()
        s.flush()
        view = self._view(s, req)
        details = {"kind": view.kind, "payload": view.payload, "decided_through": "signup"}
        return lambda: self._audit(f"request.{state}", view, actor, None, details)

    # -- who may do what --------------------------------------------------------

    @staticmethod
    def _visible_clause(s: Session, by: UserInfo | None):
        if by is None or by.is_platform_admin:
            return None
        own_tenant = select(Tenant.id).where(Tenant.slug == by.tenant).scalar_subquery()
        mine = and_(
            ApprovalRequest.requester == by.username, ApprovalRequest.tenant_id == own_tenant
        )
        if by.role == Role.TENANT_ADMIN:
            return or_(mine, ApprovalRequest.tenant_id == own_tenant)
        return mine

    def _load(
        self, s: Session, request_id: int, by: UserInfo | None, lock: bool = False
    ) -> ApprovalRequest:
        q = (
            select(ApprovalRequest)
            .options(selectinload(ApprovalRequest.comments), selectinload(ApprovalRequest.tenant))
            .where(ApprovalRequest.id == request_id)
        )
        visible = self._visible_clause(s, by)
        if visible is not None:
            q = q.where(visible)
        if lock:
            q = q.with_for_update(of=ApprovalRequest)
        req = s.scalar(q)
        if req is None:
            raise NotFound(f"no request {request_id}")
        return req

    @staticmethod
    def _check_may(action: str, kind: Kind, req: ApprovalRequest, slug: str | None,
                   by: UserInfo | None) -> None:  # fmt: skip
        if by is None:
            return  # the operator at the CLI
        if action == WITHDRAW:
            if req.requester != by.username:
                raise Forbidden("only the person who asked may withdraw a request")
            return
        if by.is_platform_admin:
            return
        if not (kind.approver == "tenant" and by.role == Role.TENANT_ADMIN and by.tenant == slug):
            who = "a platform admin" if kind.approver == "platform" else "a tenant admin"
            raise Forbidden(f"only {who} may decide a {kind.name} request")
        if req.requester == by.username:
            raise Forbidden("you may not decide your own request")

    def _view(self, s: Session, req: ApprovalRequest) -> RequestView:
        slug = None
        if req.tenant_id is not None:
            slug = s.scalar(select(Tenant.slug).where(Tenant.id == req.tenant_id))
        return RequestView.of(req, get_kind(req.kind), slug)

    # -- audit and mail ---------------------------------------------------------

    @staticmethod
    def _audit(action: str, view: RequestView, actor: str | None, origin: dict[str, Any] | None,
               details: dict[str, Any]) -> None:  # fmt: skip
        events.emit(
            action,
            tenant=view.tenant,
            actor=actor,
            target=f"request:{view.id}",
            severity="notice" if action != "request.commented" else "info",
            details={"kind": view.kind, "state": str(view.state), **details},
            **(origin or {}),
        )

    def _approver_addresses(self, view: RequestView) -> list[str]:
        """The approvers' addresses, read as platform work (platform admins have no tenant)."""
        q = select(Membership.email).where(Membership.email.is_not(None))
        if view.approver == "platform" or view.tenant is None:
            q = q.where(Membership.role == Role.PLATFORM_ADMIN)
        else:
            tenant_id = select(Tenant.id).where(Tenant.slug == view.tenant).scalar_subquery()
            q = q.where(Membership.role == Role.TENANT_ADMIN, Membership.tenant_id == tenant_id)
        with rls.platform(), self.tenants.session() as s:
            return sorted(set(s.scalars(q)))

    def _to_approvers(self, view: RequestView) -> list[Mail]:
        where = view.tenant or "a new organisation"
        subject = f"fedhub: request #{view.id} ({view.kind}) waits for your decision"
        text = (
            f"{view.requester} asks: {view.summary} ({where}).\n\n"
            f"Approve or reject it in your console, or with\n"
            f"  fedhub requests approve {view.id}\n"
            f"  fedhub requests reject {view.id} --reason '...'\n"
        )
        return [Mail(to, subject, text) for to in self._approver_addresses(view)]

    @staticmethod
    def _to_requester(view: RequestView) -> list[Mail]:
        if not view.requester_email:
            return []
        subject = f"fedhub: your request #{view.id} is {view.state}"
        text = f"Hello {view.requester},\n\nYour request ({view.summary}) was {view.state}"
        text += f" by {view.decided_by}.\n" if view.decided_by else ".\n"
        if view.reason:
            text += f"\nReason: {view.reason}\n"
        return [Mail(view.requester_email, subject, text)]

    def _deliver(self, mails: list[Mail]) -> None:
        if not mails:
            return
        if self.mailer is None:
            log.info("no mailer configured: %d approval notice(s) not sent", len(mails))
            return
        if self.background_mail:
            threading.Thread(target=self._send, args=(mails,), daemon=True).start()
        else:
            self._send(mails)

    def _send(self, mails: list[Mail]) -> None:
        for mail in mails:
            try:
                self.mailer.send(mail.to, mail.subject, mail.text)
            except MailError as e:
                log.warning("approval notice %r not sent: %s", mail.subject, e)


def _text(value: Any, name: str, *, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise InvalidRequest(f"{name} is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{name} must be a non-empty string")
    if len(value) > MAX_TEXT:
        raise InvalidRequest(f"{name} is longer than {MAX_TEXT} characters")
    return value.strip()
