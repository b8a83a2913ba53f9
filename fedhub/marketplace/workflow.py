"""The review of what a publisher submits: the ``marketplace_publish`` approval kind.

A new asset and every new version start ``pending_review``, and the marketplace files a
``marketplace_publish`` request (:mod:`fedhub.approvals`, payload ``{"asset", "version"}``)
in the same transaction. A platform admin approves or rejects it, through the
marketplace's review endpoint or the approvals API (``/hub/api/fedhub/requests/<id>/
approve``), with a note (required to reject). The kind
(:mod:`fedhub.approvals.kinds.marketplace_publish`) applies the decision with
:func:`decide`, in the transaction that marks the request decided::

    pending_review --approve--> listed      (the asset is listed with its first approval)
    pending_review --reject---> rejected    (an asset with no listed version: rejected too)
    listed --delist (publisher or platform)--> delisted   (asset only; licences keep working)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fedhub.errors import Conflict, InvalidRequest
from fedhub.marketplace.errors import AssetNotFound
from fedhub.marketplace.models import Asset, State, Version

APPROVE, REJECT = "approve", "reject"


def validate(payload: dict, ctx: Any = None) -> dict:
    if not isinstance(payload, dict) or not isinstance(payload.get("asset"), str):
        raise InvalidRequest('a marketplace_publish request names {"asset": slug, "version": v}')
    if not isinstance(payload.get("version"), str):
        raise InvalidRequest("a marketplace_publish request names the version")
    return {"asset": payload["asset"], "version": payload["version"]}


def pending_version(session: Session, slug: str, version: str) -> tuple[Asset, Version]:
    row = session.execute(
        select(Asset, Version)
        .join(Version, Version.asset_id == Asset.id)
        .where(Asset.slug == slug, Version.version == version)
    ).first()
    if row is None:
        raise AssetNotFound(f"no asset version {slug}@{version}")
    return row[0], row[1]


def decide(
    session: Session,
    slug: str,
    version: str,
    decision: str,
    *,
    actor: str,
    note: str = "",
    now: datetime,
) -> tuple[Asset, Version]:
    """Approve or reject one pending version (in the caller's transaction)."""
    if decision not in (APPROVE, REJECT):
        raise InvalidRequest("decision must be 'approve' or 'reject'")
    if decision == REJECT and not (note or "").strip():
        raise InvalidRequest("a rejection needs a note for the publisher")
    asset, ver = pending_version(session, slug, version)
    if ver.state != State.PENDING_REVIEW:
        raise Conflict(f"{slug}@{version} is {ver.state}, not pending review")
    ver.reviewed_by, ver.reviewed_at, ver.review_note = actor, now, note or None
    if decision == APPROVE:
        ver.state = State.LISTED.value
        if asset.state in (State.PENDING_REVIEW, State.REJECTED):
            asset.state = State.LISTED.value
            asset.listed_at = now
        asset.review_note = note or None
    else:
        ver.state = State.REJECTED.value
        listed = session.scalar(
            select(Version.id).where(Version.asset_id == asset.id, Version.state == State.LISTED)
        )
        if listed is None and asset.state == State.PENDING_REVIEW:
            asset.state = State.REJECTED.value
            asset.review_note = note
    session.flush()
    return asset, ver
