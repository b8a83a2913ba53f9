"""``marketplace_publish``: a publisher's new asset or version waits for a platform admin.

The marketplace files it (``api=False``: nobody asks for it through ``POST
/api/fedhub/requests``) when a version is submitted, in the same transaction as the
version. Approving lists the version (and the asset with its first approval); rejecting
needs a reason, which the publisher sees as the version's review note. The state machine
itself is :func:`fedhub.marketplace.workflow.decide` (docs/marketplace.md).
"""

from __future__ import annotations

from fedhub.approvals.models import ApprovalRequest
from fedhub.approvals.registry import Context, Kind, register
from fedhub.clock import get_clock
from fedhub.marketplace.workflow import APPROVE, REJECT, decide
from fedhub.marketplace.workflow import validate as validate_payload


def validate(payload: dict, ctx: Context) -> dict:
    return validate_payload(payload, ctx)


def _deciding(decision: str):
    def hook(session, request: ApprovalRequest, actor: str | None):
        payload = request.payload
        decide(
            session,
            payload["asset"],
            payload["version"],
            decision,
            actor=actor or "cli",
            note=request.reason or "",
            now=get_clock().now(),
        )

    return hook


def summary(request: ApprovalRequest) -> str:
    p = request.payload or {}
    return f"publish {p.get('asset', '?')}@{p.get('version', '?')} to the marketplace"


MARKETPLACE_PUBLISH = register(
    Kind(
        "marketplace_publish",
        approver="platform",
        validate=validate,
        apply=_deciding(APPROVE),
        on_reject=_deciding(REJECT),
        api=False,
        summary=summary,
    )
)
