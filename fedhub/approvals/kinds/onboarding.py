"""``onboarding``: a new organisation on a paid tier waits for a platform admin.

The onboarding (:class:`fedhub.tenancy.onboarding.Onboarding`) and this request are one
thing seen twice: the request is created in the transaction that records the confirmed
email address (:func:`ask`); approving it founds the tenant and its admin in the
transaction of the approval (a username or address taken meanwhile is a 409 and the
request stays pending); rejecting it records the reason the requester's status page
shows. The requester has no account: ``requester`` and ``requester_email`` are their
address, so the decision's mail reaches them. Nobody asks for one through the API.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from fedhub.approvals.models import ApprovalRequest
from fedhub.approvals.registry import Context, Kind, register
from fedhub.errors import Conflict, InvalidRequest
from fedhub.tenancy import onboarding
from fedhub.tenancy.onboarding import Onboarding, OnboardingState, OnboardingView
from fedhub.tenancy.store import TenantStore


def validate(payload: dict, ctx: Context) -> dict:
    row = ctx.session.get(Onboarding, payload.get("onboarding"))
    if row is None or row.state != OnboardingState.AWAITING_APPROVAL:
        raise InvalidRequest("an onboarding request names an onboarding waiting for approval")
    return {
        "onboarding": row.id,
        "organisation": row.organisation,
        "slug": row.slug,
        "tier": row.tier,
        "username": row.username,
        "email": row.email,
    }


def _pending(session: Session, request: ApprovalRequest) -> Onboarding:
    row = session.get(Onboarding, request.payload["onboarding"])
    if row is None or row.state != OnboardingState.AWAITING_APPROVAL:
        raise Conflict(f"the onboarding of request {request.id} is no longer waiting")
    return row


def apply(session: Session, request: ApprovalRequest, actor: str | None):
    row = _pending(session, request)
    tenant = onboarding.found(session, row, actor=actor)
    request.tenant_id = tenant.id  # the decision's audit event names the new tenant
    request.payload = {**request.payload, "slug": tenant.slug}  # derived again if taken
    view = OnboardingView.of(row, paid=True)
    return lambda: onboarding.emit_onboarded(view, actor=actor, how="approval")


def on_reject(session: Session, request: ApprovalRequest, actor: str | None):
    onboarding.reject(_pending(session, request), request.reason)
    return None


def summary(request: ApprovalRequest) -> str:
    p = request.payload or {}
    return (
        f"a new organisation {p.get('organisation')!r} ({p.get('slug')}) on the "
        f"{p.get('tier')} tier, administered by {p.get('username')} <{p.get('email')}>"
    )


ONBOARDING = register(
    Kind(
        onboarding.KIND,
        approver="platform",
        validate=validate,
        apply=apply,
        on_reject=on_reject,
        api=False,
        needs_tenant=False,
        summary=summary,
    )
)


def asker(tenants: TenantStore) -> onboarding.AskPlatform:
    """What opens the request of a paid tier's confirmed onboarding, in the transaction
    that records the confirmation (:func:`fedhub.tenancy.onboarding.verify`'s ``ask``)."""
    from fedhub.approvals.store import ApprovalStore

    store = ApprovalStore(tenants)

    def ask(session: Session, row: Onboarding) -> tuple[int, Callable[[], None]]:
        view, after = store.create_in(
            session,
            onboarding.KIND,
            tenant=None,
            payload={"onboarding": row.id},
            requester=row.email,
            requester_email=row.email,
            origin={"source_ip": row.source_ip} if row.source_ip else None,
        )
        return view.id, after

    return ask
