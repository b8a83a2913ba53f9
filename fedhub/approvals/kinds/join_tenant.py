"""``join_tenant``: someone who signed up with an address in a tenant's domains, under
its ``admin_approval`` policy, waits for a tenant admin.

The sign-up (:class:`~fedhub.tenancy.models.SignupRequest`) and this request are one
thing seen twice: when the sign-up starts waiting (its link followed) the request is
created in the same transaction; approving or rejecting either one decides both, also in
one transaction (here through the kind's apply/on_reject; on the sign-up review page
through the listener below). Nobody asks for one through the API.
"""

from __future__ import annotations

from sqlalchemy import select

from fedhub.approvals.models import ApprovalRequest, RequestState
from fedhub.approvals.registry import Context, Kind, current_store, register
from fedhub.tenancy.models import Tenant
from fedhub.tenancy.signup import outcomes


def validate(payload: dict, ctx: Context) -> dict:
    return {"username": payload["username"], "email": payload["email"]}


def apply(session, request: ApprovalRequest, actor: str | None):
    tenants = current_store().tenants
    result = tenants.approve_signup_in(
        session, request.payload["username"], tenant=request.tenant.slug
    )
    return lambda: tenants.emit_signup_approved(result, actor)


def on_reject(session, request: ApprovalRequest, actor: str | None):
    tenants = current_store().tenants
    pending = tenants.reject_signup_in(
        session, request.payload["username"], tenant=request.tenant.slug
    )
    reason = request.reason
    return lambda: tenants.emit_signup_rejected(pending, reason, actor)


def summary(request: ApprovalRequest) -> str:
    p = request.payload or {}
    return f"{p.get('username')} <{p.get('email')}> asks to join"


JOIN_TENANT = register(
    Kind(
        "join_tenant",
        approver="tenant",
        validate=validate,
        apply=apply,
        on_reject=on_reject,
        api=False,
        summary=summary,
    )
)


def on_signup(tenants, s, event: str, pending, *, actor=None, reason=None):
    """The sign-up's side: a request beside each sign-up waiting for an admin."""
    from fedhub.approvals.store import ApprovalStore

    store = ApprovalStore(tenants)
    if event == "awaiting_approval":
        _, after = store.create_in(
            s,
            "join_tenant",
            tenant=pending.tenant,
            payload={"username": pending.username, "email": pending.email},
            requester=pending.username,
            requester_email=pending.email,
        )
        return after
    req = s.scalar(
        select(ApprovalRequest)
        .join(Tenant, ApprovalRequest.tenant_id == Tenant.id)
        .where(
            ApprovalRequest.kind == "join_tenant",
            ApprovalRequest.state == RequestState.PENDING,
            ApprovalRequest.requester == pending.username,
            Tenant.slug == pending.tenant,
        )
    )
    if req is None:
        return None
    state = RequestState.APPROVED if event == "approved" else RequestState.REJECTED
    return store.mark_decided_in(s, req, state, actor, reason)


outcomes.listen(on_signup)
