"""Approval requests: one mechanism for everything someone must approve (docs/organisations.md).

A request has a *kind*, a tenant (or none yet: an onboarding), a requester, a JSON
payload and a state::

    pending --approve--> approved     (the kind's apply runs in the same transaction)
            --reject---> rejected     (a reason is required; the requester is shown it)
            --withdraw-> withdrawn    (the requester only)

Every transition is an audit event (``request.created|approved|rejected|withdrawn|
commented``, tenant = the request's tenant) and, on creation and decision, an email (the
approvers; the requester, with the reason).

Adding a kind
-------------
Write one module in ``fedhub/approvals/kinds/`` (``load_kinds()`` imports every module
there, in the hub and the CLI alike) that registers it::

    from fedhub.approvals import Context, Kind, current_store, register

    def validate(payload: dict, ctx: Context) -> dict:
        # ctx.tenants (TenantStore), ctx.session (the open transaction), ctx.tenant
        # (Tenant row or None), ctx.requester (UserInfo, or None for someone without an
        # account). Return the payload to store; raise InvalidRequest (400), Forbidden
        # (403, not theirs to ask) or Conflict (409, one pending already) to refuse.
        return {"servers": int(payload["servers"])}

    def apply(session, request, actor):
        # make the change in `session` (the transaction that marks the request
        # approved); raising refuses the approval: the request stays pending (409).
        # current_store().tenants is the TenantStore. May return a function to run
        # once committed (audit events of the change).
        ...

    register(Kind("team_quota", approver="tenant", validate=validate, apply=apply,
                  summary=lambda r: f"team {r.payload['team']}: {r.payload}"))

``approver="platform"``: platform admins decide; ``"tenant"``: the request's tenant's
admins (and platform admins). ``api=False``: nobody asks through ``POST
/api/fedhub/requests`` (your own code calls :meth:`ApprovalStore.create`, e.g. with
``requester=<email>`` for someone without an account); ``needs_tenant=False``: the
request may have no tenant (an onboarding; its apply sets ``request.tenant_id`` once the
tenant exists, and the decision's audit event then names it). ``on_reject`` runs like
apply on a rejection.

Using the store
---------------
::

    store = ApprovalStore(tenant_store)            # mailer: the process's (use_mailer)
    view = store.create("tier_change", tenant="acme", payload={"tier": "enterprise"}, by=user)
    store.approve(view.id, by=platform_admin, reason="welcome")
    store.list(by=user, state="pending")           # what `user` may see

``by`` is the caller's :class:`~fedhub.tenancy.store.UserInfo` (``None``: the operator
at the CLI): someone who may not see a request gets a 404, someone who may see but not
decide it a 403. Kinds here: ``tier_change`` and ``join_tenant``.

Row-level security: ``fedhub_requests`` is tenant-owned by ``tenant_id``, so a request
without a tenant is visible to platform work only; the hub's handlers run in the
caller's scope (``rls.tenant`` / ``rls.platform``).
"""

from fedhub.approvals.models import ApprovalRequest, RequestComment, RequestState
from fedhub.approvals.registry import (
    Context,
    Kind,
    current_store,
    get_kind,
    kinds,
    load_kinds,
    register,
)
from fedhub.approvals.store import ApprovalStore, RequestView, use_mailer

__all__ = [
    "ApprovalRequest",
    "ApprovalStore",
    "Context",
    "Kind",
    "RequestComment",
    "RequestState",
    "RequestView",
    "current_store",
    "get_kind",
    "kinds",
    "load_kinds",
    "register",
    "use_mailer",
]
