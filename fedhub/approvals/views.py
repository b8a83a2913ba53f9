"""A request as its transaction read it (part of :mod:`fedhub.approvals.store`; re-exported
from :mod:`fedhub.approvals`): :class:`RequestView` with its comments (:class:`CommentView`),
safe to use after the session ends, and their JSON for the API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fedhub.approvals.models import ApprovalRequest, RequestState
from fedhub.approvals.registry import Kind


@dataclass(frozen=True)
class CommentView:
    author: str
    text: str
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"author": self.author, "text": self.text, "created_at": _iso(self.created_at)}


@dataclass(frozen=True)
class RequestView:
    """A request as read in its transaction (safe to use after it ends)."""

    id: int
    kind: str
    approver: str
    tenant: str | None
    requester: str
    requester_email: str | None
    payload: dict[str, Any]
    state: RequestState
    reason: str | None
    decided_by: str | None
    decided_at: datetime | None
    created_at: datetime
    summary: str
    comments: tuple[CommentView, ...] = ()

    @classmethod
    def of(cls, req: ApprovalRequest, kind: Kind, tenant: str | None) -> RequestView:
        return cls(
            id=req.id,
            kind=req.kind,
            approver=kind.approver,
            tenant=tenant,
            requester=req.requester,
            requester_email=req.requester_email,
            payload=dict(req.payload or {}),
            state=RequestState(req.state),
            reason=req.reason,
            decided_by=req.decided_by,
            decided_at=req.decided_at,
            created_at=req.created_at,
            summary=kind.describe(req),
            comments=tuple(CommentView(c.author, c.text, c.created_at) for c in req.comments),
        )

    def to_json(self, comments: bool = False) -> dict[str, Any]:
        body = {
            "id": self.id,
            "kind": self.kind,
            "approver": self.approver,
            "tenant": self.tenant,
            "requester": self.requester,
            "requester_email": self.requester_email,
            "payload": self.payload,
            "summary": self.summary,
            "state": str(self.state),
            "reason": self.reason,
            "decided_by": self.decided_by,
            "decided_at": _iso(self.decided_at),
            "created_at": _iso(self.created_at),
        }
        if comments:
            body["comments"] = [c.to_json() for c in self.comments]
        return body


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() + "Z" if value is not None else None
