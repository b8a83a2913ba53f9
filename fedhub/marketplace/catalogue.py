"""The catalogue (part of :class:`~fedhub.marketplace.store.MarketStore`): publishing an
asset and its versions, the platform admins' review of each version (:mod:`.workflow`),
delisting, and reading it (search in :mod:`.fulltext`, a publisher's own assets, one asset)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fedhub.approvals.models import ApprovalRequest, RequestState
from fedhub.db import rls
from fedhub.errors import Conflict, Forbidden, InvalidRequest
from fedhub.marketplace import checks, workflow
from fedhub.marketplace.common import PUBLISH_KIND, Actor
from fedhub.marketplace.errors import PublishingNotInTier
from fedhub.marketplace.fulltext import Query, search_ids
from fedhub.marketplace.models import Asset, State, Version
from fedhub.marketplace.shapes import asset_row, source_text, version_json


class CatalogueMixin:
    """Publish, add a version, review, list what waits, delist; search and read assets."""

    # -- publishing ----------------------------------------------------------------------

    def _may_publish(self, actor: Actor) -> None:
        if actor.tenant is None or not actor.can("marketplace:publish"):
            raise Forbidden(f"your role ({actor.role}) may not publish to the marketplace")
        tenant = self.tenants.get_tenant(actor.tenant)
        if not self.tenants.effective_tier(tenant).features.marketplace_publishing:
            raise PublishingNotInTier(
                f"the {tenant.tier} tier of {actor.tenant} does not include marketplace "
                "publishing (features.marketplace_publishing); a tenant admin can ask for a "
                "tier that does"
            )

    def publish(
        self,
        actor: Actor,
        spec: dict[str, Any],
        *,
        content: bytes,
        filename: str,
        version: str = "1.0.0",
        changelog: str = "",
    ) -> dict[str, Any]:
        """A new asset with its first version, both ``pending_review``."""
        self._may_publish(actor)
        if not isinstance(spec, dict):
            raise InvalidRequest("the asset is a JSON object")
        name = checks.text(spec.get("name"), "name", limit=200)
        kind = checks.asset_type(spec.get("asset_type"))
        slug = checks.slug(spec.get("slug") or checks.slugify(name))
        filename = checks.text(filename, "filename", limit=255)
        version = checks.version(version)
        sha = checks.content(kind, filename, content, self.settings.max_version_bytes)
        data_schema = checks.schema(kind, filename, content, spec)
        price = checks.price(spec.get("price"))
        now = self.now()
        asset = Asset(
            tenant=actor.tenant,
            slug=slug,
            name=name,
            asset_type=kind,
            category=checks.text(spec.get("category") or "general", "category", limit=63),
            description=checks.text(
                spec.get("description"), "description", limit=50_000, required=False
            ),
            tags=checks.tags(spec.get("tags")),
            licence=checks.licence(spec.get("licence", spec.get("license_type"))),
            price=price,
            price_cents=int(price * 100),
            pricing=checks.pricing(spec.get("pricing")),
            per_seat=bool(spec.get("per_seat", False)),
            created_by=actor.name,
            created_at=now,
        )
        with self.session(actor) as s:
            if s.scalar(select(Asset.id).where(Asset.slug == slug)) is not None:
                raise InvalidRequest(f"the slug {slug!r} is taken; choose another")
            s.add(asset)
            s.flush()
            ver = self._version(asset, actor, version, sha, filename, content, changelog, now)
            ver.data_schema = data_schema
            s.add(ver)
            s.flush()
            request, after = self._file_review(s, actor, slug, version)
            out = self._asset_json(s, asset, actor, versions=True)
        after()
        return {**out, "review_request": request}

    @staticmethod
    def _version(asset, actor, version, sha, filename, content, changelog, now) -> Version:
        return Version(
            asset_id=asset.id,
            version=version,
            sha256=sha,
            filename=filename,
            size=len(content),
            content=content,
            changelog=checks.text(changelog, "changelog", limit=20_000, required=False),
            created_by=actor.name,
            created_at=now,
        )

    def add_version(
        self,
        actor: Actor,
        slug: str,
        *,
        version: str,
        content: bytes,
        filename: str,
        changelog: str = "",
        label_column: str | None = None,
        partition: Any = None,
    ) -> dict[str, Any]:
        """A new immutable version of the actor's tenant's asset, ``pending_review`` (a
        dataset's may name its ``label_column`` and default ``partition``)."""
        self._may_publish(actor)
        version = checks.version(version)
        with self.session(actor) as s:
            asset = self._asset(s, slug, actor)
            if asset.tenant != actor.tenant:
                raise Forbidden(f"{slug} is published by another tenant")
            sha = checks.content(
                asset.asset_type, filename, content, self.settings.max_version_bytes
            )
            taken = s.scalar(
                select(Version.id).where(Version.asset_id == asset.id, Version.version == version)
            )
            if taken is not None:
                raise InvalidRequest(f"{slug}@{version} exists; versions are immutable")
            ver = self._version(
                asset, actor, version, sha, filename, content, changelog, self.now()
            )
            ver.data_schema = checks.schema(
                asset.asset_type, filename, content,
                {"label_column": label_column, "partition": partition},
            )  # fmt: skip
            s.add(ver)
            s.flush()
            request, after = self._file_review(s, actor, slug, version)
            out = version_json(ver)
        after()
        return {**out, "review_request": request}

    def _file_review(self, s: Session, actor: Actor, slug: str, version: str):
        """The ``marketplace_publish`` request for a new version, in the same transaction."""
        view, after = self.approvals.create_in(
            s,
            PUBLISH_KIND,
            tenant=actor.tenant,
            payload={"asset": slug, "version": version},
            requester=actor.name,
        )
        return view.id, after

    def review(
        self, actor: Actor, slug: str, version: str, decision: str, note: str = ""
    ) -> dict[str, Any]:
        """A platform admin approves or rejects a pending version (:mod:`.workflow`)."""
        if not actor.is_platform_admin:
            raise Forbidden("only platform admins review marketplace submissions")
        if decision not in (workflow.APPROVE, workflow.REJECT):
            raise InvalidRequest("decision must be 'approve' or 'reject'")
        with self.session(None) as s:
            workflow.pending_version(s, slug, version)  # 404 for an unknown one
            request_id = self._pending_request(s, slug, version)
        with rls.platform():
            by = self.tenants.user(actor.name)
            approve = decision == workflow.APPROVE
            decide = self.approvals.approve if approve else self.approvals.reject
            decide(request_id, by, reason=note or None, actor=actor.name)
        with self.session(None) as s:
            asset, ver = workflow.pending_version(s, slug, version)
            return {
                "asset": asset_row(asset),
                "version": version_json(ver),
                "request": request_id,
            }

    @staticmethod
    def _pending_request(s: Session, slug: str, version: str) -> int:
        q = select(ApprovalRequest).where(
            ApprovalRequest.kind == PUBLISH_KIND, ApprovalRequest.state == RequestState.PENDING
        )
        for req in s.scalars(q.order_by(ApprovalRequest.id)):
            if req.payload.get("asset") == slug and req.payload.get("version") == version:
                return req.id
        raise Conflict(f"{slug}@{version} is not pending review")

    def pending(self, actor: Actor) -> list[dict[str, Any]]:
        """What waits for review, with the source to read (algorithms are Python)."""
        if not actor.is_platform_admin:
            raise Forbidden("only platform admins review marketplace submissions")
        with self.session(None) as s:
            rows = s.execute(
                select(Asset, Version)
                .join(Version, Version.asset_id == Asset.id)
                .where(Version.state == State.PENDING_REVIEW)
                .order_by(Version.created_at, Version.id)
            ).all()
            return [
                {"asset": asset_row(a), "version": version_json(v), "source": source_text(a, v)}
                for a, v in rows
            ]

    def delist(self, actor: Actor, slug: str, note: str = "") -> dict[str, Any]:
        """No new sales; licences already sold keep working."""
        with self.session(actor) as s:
            asset = self._asset(s, slug, actor)
            if not actor.is_platform_admin and not (
                asset.tenant == actor.tenant and actor.can("marketplace:publish")
            ):
                raise Forbidden("only the publisher's tenant admins or a platform admin delist")
            asset.state = State.DELISTED.value
            asset.review_note = note or asset.review_note
            s.flush()
            return asset_row(asset)

    # -- reading -------------------------------------------------------------------------

    def search(self, actor: Actor, q: Query) -> tuple[list[dict[str, Any]], int | None]:
        """One page of search results and the next page's offset (see :mod:`.fulltext`)."""
        with self.session(None) as s:  # ids only, with the visibility filter: uses the index
            ids, next_offset = search_ids(
                s, q, tenant=actor.tenant, platform_admin=actor.is_platform_admin
            )
        if not ids:
            return [], next_offset
        with self.session(actor) as s:  # the rows, in the caller's scope (RLS on PostgreSQL)
            rows = {a.id: a for a in s.scalars(select(Asset).where(Asset.id.in_(ids)))}
            return [asset_row(rows[i]) for i in ids if i in rows], next_offset

    def own(self, actor: Actor) -> list[dict[str, Any]]:
        """The actor's tenant's assets, in every state (what a publisher manages)."""
        if actor.tenant is None:
            return []
        with self.session(actor) as s:
            q = select(Asset).where(Asset.tenant == actor.tenant).order_by(Asset.id)
            return [asset_row(a) for a in s.scalars(q)]

    def asset(self, actor: Actor, slug: str) -> dict[str, Any]:
        with self.session(actor) as s:
            return self._asset_json(s, self._asset(s, slug, actor), actor, versions=True)

    def _asset_json(self, s: Session, asset: Asset, actor: Actor, versions: bool) -> dict:
        out = asset_row(asset)
        if versions:
            q = select(Version).where(Version.asset_id == asset.id).order_by(Version.id)
            own = actor.is_platform_admin or asset.tenant == actor.tenant
            out["versions"] = [
                version_json(v) for v in s.scalars(q) if own or v.state == State.LISTED
            ]
        return out
