"""The marketplace's logic, no HTTP: publish, review, delist, search, buy, refund, use, rate.

:class:`MarketStore` is what the service's handlers and the tests call. Each method takes the
:class:`Actor` (who asks: name, tenant, fedhub role) and checks what that actor may do before
touching a row. Reads run in the actor's row-level-security scope (their tenant, or the
platform for platform admins); work that writes across tenants (a purchase writes the
buyer's purchase, entitlement and charge and the publisher's payout line; a review moves
the asset's rating) is one transaction of platform work, after the same checks.

Money is :class:`~decimal.Decimal` to the cent throughout: a sale of ``price`` charges the
buyer exactly ``price`` (a ``marketplace`` meter event, which billing turns into one invoice
line, :func:`fedhub.billing.rating.charge_lines`) and puts ``cents(price x share / 100)`` on
the publisher's payout statement for the month of the sale.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fedhub import metering
from fedhub.approvals.models import ApprovalRequest, RequestState
from fedhub.approvals.store import ApprovalStore
from fedhub.billing.invoices import get_invoice, issue_credit_note
from fedhub.billing.models import FINALIZED
from fedhub.billing.money import ZERO, cents
from fedhub.billing.periods import Period, containing
from fedhub.clock import get_clock
from fedhub.db import rls, session_scope, tenant_lock
from fedhub.errors import Conflict, Forbidden, InvalidRequest, NotFound
from fedhub.marketplace import checks, workflow
from fedhub.marketplace.errors import (
    AlreadyLicensed,
    AssetNotFound,
    KeyReused,
    NotEntitled,
    NotForSale,
    PublishingNotInTier,
    RefundRefused,
)
from fedhub.marketplace.fulltext import Query, search_ids
from fedhub.marketplace.models import (
    Asset,
    Entitlement,
    EntitlementState,
    PayoutLine,
    Pricing,
    Purchase,
    Review,
    State,
    Version,
)
from fedhub.marketplace.settings import MarketplaceSettings
from fedhub.tenancy import scopes
from fedhub.tenancy.models import Role
from fedhub.tenancy.store import TenantStore

log = logging.getLogger("fedhub.marketplace")

#: the meter kind of a marketplace charge (fedhub.limits.METER_KINDS)
METER_KIND = "marketplace"
SOURCE = "marketplace"
#: the approval kind of a submitted version (fedhub.approvals.kinds.marketplace_publish)
PUBLISH_KIND = "marketplace_publish"
REF_RE = re.compile(r"^market/(?P<slug>[a-z0-9-]{1,63})(?:@(?P<version>[0-9A-Za-z.+-]{1,32}))?$")
KEY_RE = re.compile(r"^[\x21-\x7e]{1,200}$")


@dataclass(frozen=True)
class Actor:
    """Who asks: a fedhub user (name, tenant, role); platform admins have no tenant."""

    name: str
    tenant: str | None
    role: Role | str | None

    @property
    def is_platform_admin(self) -> bool:
        return self.role == Role.PLATFORM_ADMIN

    def can(self, permission: str) -> bool:
        return self.role is not None and scopes.allows(self.role, permission)


def parse_ref(ref: str) -> tuple[str, str | None]:
    """``market/<slug>@<version>`` -> (slug, version); the version may be left out."""
    m = REF_RE.match(ref or "")
    if not m:
        raise InvalidRequest(f"not a marketplace reference: {ref!r} (market/<slug>@<version>)")
    return m.group("slug"), m.group("version")


class MarketStore:
    def __init__(
        self,
        db: str | None = None,
        tenants: TenantStore | None = None,
        settings: MarketplaceSettings | None = None,
    ):
        self.db = db
        self.tenants = tenants or TenantStore(db)
        self.settings = settings or MarketplaceSettings()
        self.approvals = ApprovalStore(self.tenants)

    # -- plumbing ----------------------------------------------------------------------

    @contextmanager
    def session(self, actor: Actor | None = None) -> Iterator[Session]:
        """A transaction in ``actor``'s scope (their tenant), or platform work (None)."""
        scope = (
            rls.platform() if actor is None or actor.tenant is None else rls.tenant(actor.tenant)
        )
        with scope, session_scope(self.db) as s:
            yield s

    def now(self) -> datetime:
        return get_clock().now()

    def _asset(self, s: Session, slug: str, actor: Actor | None) -> Asset:
        """The asset ``actor`` may see (listed, its own tenant's, or one it holds a licence
        for); anything else is answered as if it did not exist."""
        asset = s.scalar(select(Asset).where(Asset.slug == slug))
        if asset is None or not self._sees(s, asset, actor):
            raise AssetNotFound(f"no asset {slug!r}")
        return asset

    def _sees(self, s: Session, asset: Asset, actor: Actor | None) -> bool:
        if actor is None or actor.is_platform_admin or asset.state == State.LISTED:
            return True
        if asset.tenant == actor.tenant:
            return True
        held = s.scalar(
            select(Entitlement.id).where(
                Entitlement.asset_id == asset.id, Entitlement.tenant == actor.tenant
            )
        )
        return held is not None

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
            s.add(self._version(asset, actor, version, sha, filename, content, changelog, now))
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
    ) -> dict[str, Any]:
        """A new immutable version of the actor's tenant's asset, ``pending_review``."""
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
            s.add(ver)
            s.flush()
            request, after = self._file_review(s, actor, slug, version)
            out = _version_json(ver)
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
                "asset": _asset_row(asset),
                "version": _version_json(ver),
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
                {"asset": _asset_row(a), "version": _version_json(v), "source": _source(a, v)}
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
            return _asset_row(asset)

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
            return [_asset_row(rows[i]) for i in ids if i in rows], next_offset

    def own(self, actor: Actor) -> list[dict[str, Any]]:
        """The actor's tenant's assets, in every state (what a publisher manages)."""
        if actor.tenant is None:
            return []
        with self.session(actor) as s:
            q = select(Asset).where(Asset.tenant == actor.tenant).order_by(Asset.id)
            return [_asset_row(a) for a in s.scalars(q)]

    def asset(self, actor: Actor, slug: str) -> dict[str, Any]:
        with self.session(actor) as s:
            return self._asset_json(s, self._asset(s, slug, actor), actor, versions=True)

    def _asset_json(self, s: Session, asset: Asset, actor: Actor, versions: bool) -> dict:
        out = _asset_row(asset)
        if versions:
            q = select(Version).where(Version.asset_id == asset.id).order_by(Version.id)
            own = actor.is_platform_admin or asset.tenant == actor.tenant
            out["versions"] = [
                _version_json(v) for v in s.scalars(q) if own or v.state == State.LISTED
            ]
        return out

    # -- buying --------------------------------------------------------------------------

    def purchase(
        self,
        actor: Actor,
        slug: str,
        key: str,
        *,
        version: str | None = None,
        seat: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Buy ``slug`` for the actor's tenant, exactly once per ``key``.

        Returns the purchase and whether this call made it (False: a retry of the same key,
        answered with the first call's purchase). One transaction writes the purchase, the
        entitlement, the buyer's charge and the publisher's payout line, so a crash leaves
        all or nothing, and the unique (buyer tenant, key) makes a retry find what the first
        call wrote.
        """
        if actor.tenant is None or not actor.can("tenant:admin"):
            raise Forbidden(
                f"your role ({actor.role}) may not buy: a purchase commits your organisation's "
                "money, so its tenant admins buy"
            )
        if not isinstance(key, str) or not KEY_RE.match(key):
            raise InvalidRequest(
                "an Idempotency-Key header of 1-200 printable characters is required"
            )
        now = self.now()
        with self.session(None) as s:
            tenant_lock(s, actor.tenant)  # one purchase of a tenant at a time
            done = self._by_key(s, actor.tenant, key)
            asset = self._asset(s, slug, actor)
            if done is not None:
                if done.asset_id != asset.id:
                    raise KeyReused(f"the Idempotency-Key {key!r} was used for another purchase")
                return _purchase_json(done, asset, s.get(Version, done.version_id)), False
            if asset.state != State.LISTED:
                raise NotForSale(f"{slug} is {asset.state.replace('_', ' ')}: it cannot be bought")
            if asset.tenant == actor.tenant:
                raise NotForSale(f"{slug} is your own organisation's asset")
            ver = self._listed_version(s, asset, version)
            seat = (seat or actor.name) if asset.per_seat else None
            held = self._active(s, actor.tenant, asset.id, seat)
            if held is not None:
                raise AlreadyLicensed(
                    f"{actor.tenant} already holds a licence for {slug} (entitlement {held.id})"
                )
            purchase = Purchase(
                tenant=actor.tenant,
                username=actor.name,
                idempotency_key=key,
                asset_id=asset.id,
                version_id=ver.id,
                publisher=asset.tenant,
                amount=asset.price,
                currency=asset.currency,
                pricing=asset.pricing,
                seat=seat,
                created_at=now,
            )
            try:
                with s.begin_nested():
                    s.add(purchase)
            except IntegrityError:  # the same key, committed meanwhile by a concurrent retry
                done = self._by_key(s, actor.tenant, key)
                return _purchase_json(done, asset, s.get(Version, done.version_id)), False
            s.add(
                Entitlement(
                    tenant=actor.tenant,
                    username=seat,
                    asset_id=asset.id,
                    version_id=ver.id,
                    purchase_id=purchase.id,
                    created_at=now,
                )
            )
            self._charge(s, purchase, asset, ver, containing(now), now, kind="sale")
            s.flush()
            return _purchase_json(purchase, asset, ver), True

    @staticmethod
    def _by_key(s: Session, tenant: str, key: str) -> Purchase | None:
        return s.scalar(
            select(Purchase).where(Purchase.tenant == tenant, Purchase.idempotency_key == key)
        )

    @staticmethod
    def _active(s: Session, tenant: str, asset_id: int, seat: str | None) -> Entitlement | None:
        q = select(Entitlement).where(
            Entitlement.tenant == tenant,
            Entitlement.asset_id == asset_id,
            Entitlement.state == EntitlementState.ACTIVE,
        )
        q = q.where(
            Entitlement.username.is_(None) if seat is None else Entitlement.username == seat
        )
        return s.scalars(q).first()

    @staticmethod
    def _listed_version(s: Session, asset: Asset, version: str | None) -> Version:
        q = select(Version).where(Version.asset_id == asset.id, Version.state == State.LISTED)
        if version is not None:
            q = q.where(Version.version == version)
        ver = s.scalars(q.order_by(Version.id.desc())).first()
        if ver is None:
            what = f"{asset.slug}@{version}" if version else asset.slug
            raise NotForSale(f"{what} has no approved version to sell")
        return ver

    def _charge(
        self,
        s: Session,
        purchase: Purchase,
        asset: Asset,
        ver: Version,
        period: Period,
        at: datetime,
        *,
        kind: str,
    ) -> None:
        """The buyer's charge (a ``marketplace`` meter event) and the publisher's share."""
        gross = purchase.amount if kind != "refund" else -purchase.amount
        if gross == 0:
            return  # a free asset: the entitlement alone
        what = {"sale": "", "renewal": f", {period.name}", "refund": ", refunded"}[kind]
        key = f"{kind}:{purchase.id}:{period.name}"
        metering.record(
            s,
            [
                metering.Usage(
                    tenant=purchase.tenant,
                    kind=METER_KIND,
                    quantity=1.0,
                    start=at,
                    end=at,
                    source=SOURCE,
                    idempotency_key=key,
                    username=purchase.username,
                    attributes={
                        "amount": str(gross),
                        "key": key,
                        "description": (
                            f"Marketplace: {asset.name} {ver.version} "
                            f"({purchase.pricing.replace('_', '-')}{what})"
                        ),
                        "asset": asset.slug,
                        "purchase": purchase.id,
                    },
                )
            ],
            now=at,
        )
        share = self.settings.share
        s.add(
            PayoutLine(
                tenant=purchase.publisher,
                period_start=containing(at).start,
                purchase_id=purchase.id,
                asset_slug=asset.slug,
                buyer=purchase.tenant,
                kind=kind,
                gross=gross,
                share_percent=share,
                amount=cents(gross * share / 100),
                created_at=at,
            )
        )

    def renew_monthly(self, now: datetime | None = None) -> int:
        """Charge each active monthly licence for every month up to ``now`` not charged yet
        (each month once: the charge's idempotency key names it). Platform work."""
        now = now or self.now()
        made = 0
        with self.session(None) as s:
            rows = s.execute(
                select(Purchase, Asset, Version)
                .join(Entitlement, Entitlement.purchase_id == Purchase.id)
                .join(Asset, Asset.id == Purchase.asset_id)
                .join(Version, Version.id == Purchase.version_id)
                .where(
                    Purchase.pricing == Pricing.MONTHLY,
                    Purchase.state == "completed",
                    Entitlement.state == EntitlementState.ACTIVE,
                )
            ).all()
            for purchase, asset, ver in rows:
                period = containing(purchase.created_at).next()
                while period.start <= now:
                    charged = s.scalar(
                        select(PayoutLine.id).where(
                            PayoutLine.purchase_id == purchase.id,
                            PayoutLine.kind == "renewal",
                            PayoutLine.period_start == period.start,
                        )
                    )
                    if charged is None:
                        self._charge(s, purchase, asset, ver, period, period.start, kind="renewal")
                        made += 1
                    period = period.next()
        return made

    def refund(self, actor: Actor, purchase_id: int, reason: str = "") -> dict[str, Any]:
        """Within the refund window: the licence ends, the charge is reversed (a credit note
        if the invoice that carried it is finalized), the publisher's share taken back."""
        if actor.tenant is None and not actor.is_platform_admin:
            raise Forbidden("refunds are asked by the buyer's tenant admins")
        if not actor.is_platform_admin and not actor.can("tenant:admin"):
            raise Forbidden(f"your role ({actor.role}) may not ask for a refund")
        now = self.now()
        with self.session(None) as s:
            purchase = s.get(Purchase, purchase_id) if 0 < purchase_id < 2**63 else None
            if purchase is None or not (actor.is_platform_admin or purchase.tenant == actor.tenant):
                raise NotFound(f"no purchase {purchase_id}")
            if purchase.state != "completed":
                raise RefundRefused(f"purchase {purchase_id} is {purchase.state} already")
            window = timedelta(days=self.settings.refund_window_days)
            if now - purchase.created_at > window and not actor.is_platform_admin:
                raise RefundRefused(
                    f"purchase {purchase_id} was made more than "
                    f"{self.settings.refund_window_days} days ago: past the refund window"
                )
            asset = s.get(Asset, purchase.asset_id)
            ver = s.get(Version, purchase.version_id)
            purchase.state, purchase.refunded_at = "refunded", now
            for ent in s.scalars(select(Entitlement).where(Entitlement.purchase_id == purchase.id)):
                ent.state, ent.ended_at = EntitlementState.REFUNDED.value, now
            note = reason.strip() or f"Refund of marketplace purchase {purchase.id}"
            invoice = get_invoice(s, purchase.tenant, containing(purchase.created_at))
            if purchase.amount and invoice is not None and invoice.status == FINALIZED:
                credit = issue_credit_note(
                    s, invoice.id, purchase.amount, note[:500], now=now, actor=actor.name
                )
                purchase.credit_note = credit.number
                self._payout_reversal(s, purchase, asset, now)
            else:  # still on a draft (or not rated yet): the charge is reversed on it
                self._charge(
                    s, purchase, asset, ver, containing(purchase.created_at), purchase.created_at,
                    kind="refund",
                )  # fmt: skip
            s.flush()
            return _purchase_json(purchase, asset, ver)

    def _payout_reversal(self, s: Session, purchase: Purchase, asset: Asset, now: datetime) -> None:
        share = self.settings.share
        s.add(
            PayoutLine(
                tenant=purchase.publisher,
                period_start=containing(now).start,
                purchase_id=purchase.id,
                asset_slug=asset.slug,
                buyer=purchase.tenant,
                kind="refund",
                gross=-purchase.amount,
                share_percent=share,
                amount=-cents(purchase.amount * share / 100),
                created_at=now,
            )
        )

    def revoke(self, actor: Actor, entitlement_id: int, reason: str) -> dict[str, Any]:
        """A platform admin ends a licence (abuse, a licence breach); no money moves."""
        if not actor.is_platform_admin:
            raise Forbidden("only platform admins revoke licences")
        if not reason.strip():
            raise InvalidRequest("a revocation needs a reason")
        with self.session(None) as s:
            ent = s.get(Entitlement, entitlement_id)
            if ent is None:
                raise NotFound(f"no entitlement {entitlement_id}")
            ent.state, ent.ended_at = EntitlementState.REVOKED.value, self.now()
            s.flush()
            return _entitlement_json(
                ent, s.get(Asset, ent.asset_id), s.get(Version, ent.version_id)
            )

    def upgrade(self, actor: Actor, slug: str) -> dict[str, Any]:
        """Move the tenant's (or the actor's seat's) licence to the newest approved version."""
        if actor.tenant is None or not actor.can("tenant:admin"):
            raise Forbidden(f"your role ({actor.role}) may not change your organisation's licences")
        with self.session(None) as s:
            asset = self._asset(s, slug, actor)
            ent = self._active(s, actor.tenant, asset.id, None) or self._active(
                s, actor.tenant, asset.id, actor.name
            )
            if ent is None:
                raise NotEntitled(f"{actor.tenant} holds no licence for market/{slug}")
            newest = self._listed_version(s, asset, None)
            ent.version_id = newest.id
            s.flush()
            return _entitlement_json(ent, asset, newest)

    def entitlements(self, actor: Actor, tenant: str | None = None) -> list[dict[str, Any]]:
        """The caller's tenant's licences (platform admins: ``tenant``'s, or everyone's)."""
        tenant = tenant if actor.is_platform_admin else actor.tenant
        with self.session(actor) as s:
            q = (
                select(Entitlement, Asset, Version)
                .join(Asset, Asset.id == Entitlement.asset_id)
                .join(Version, Version.id == Entitlement.version_id)
                .order_by(Entitlement.id)
            )
            if tenant is not None:
                q = q.where(Entitlement.tenant == tenant)
            return [_entitlement_json(e, a, v) for e, a, v in s.execute(q)]

    def check_entitlement(self, tenant: str, user: str | None, ref: str) -> dict[str, Any]:
        """The active licence that lets ``user`` of ``tenant`` use ``ref``
        (``market/<slug>@<version>``), else :class:`NotEntitled` (403) naming the asset.

        Asked at every use (the experiments service before a run, ``install`` in a
        notebook); the publisher's own tenant may always use its assets.
        """
        slug, version = parse_ref(ref)
        with self.session(None) as s:
            asset = s.scalar(select(Asset).where(Asset.slug == slug))
            refusal = NotEntitled(
                f"{tenant} holds no active licence for {ref}: buy it in the marketplace "
                f"(/services/marketplace/api/v1/assets/{slug}/purchase)",
                details={"asset": slug, "version": version},
            )
            if asset is None:
                raise refusal
            if asset.tenant == tenant:
                ver = self._own_version(s, asset, version)
                return {"asset": slug, "version": ver.version, "sha256": ver.sha256, "own": True}
            q = (
                select(Entitlement, Version)
                .join(Version, Version.id == Entitlement.version_id)
                .where(
                    Entitlement.tenant == tenant,
                    Entitlement.asset_id == asset.id,
                    Entitlement.state == EntitlementState.ACTIVE,
                    or_(Entitlement.username.is_(None), Entitlement.username == user),
                )
            )
            for ent, ver in s.execute(q):
                if version is None or ver.version == version:
                    return {
                        "asset": slug,
                        "version": ver.version,
                        "sha256": ver.sha256,
                        "entitlement": ent.id,
                    }
            raise refusal

    @staticmethod
    def _own_version(s: Session, asset: Asset, version: str | None) -> Version:
        q = select(Version).where(Version.asset_id == asset.id)
        if version is not None:
            q = q.where(Version.version == version)
        ver = s.scalars(q.order_by(Version.id.desc())).first()
        if ver is None:
            raise AssetNotFound(f"no version {version} of {asset.slug}")
        return ver

    def content(self, tenant: str, user: str | None, ref: str) -> tuple[dict[str, Any], bytes]:
        """The licensed version's bytes (``install``), checked and counted as a download."""
        held = self.check_entitlement(tenant, user, ref)
        with self.session(None) as s:
            asset = s.scalar(select(Asset).where(Asset.slug == held["asset"]))
            ver = s.scalar(
                select(Version).where(
                    Version.asset_id == asset.id, Version.version == held["version"]
                )
            )
            asset.downloads += 1
            s.flush()
            return {**held, "filename": ver.filename, "asset_type": asset.asset_type}, ver.content

    # -- reviews -------------------------------------------------------------------------

    def add_review(self, actor: Actor, slug: str, stars: Any, text: Any = "") -> dict[str, Any]:
        """One review per user per asset, from a user of a tenant that holds a licence."""
        if actor.tenant is None:
            raise Forbidden("reviews come from the users of a tenant that bought the asset")
        if not isinstance(stars, int) or isinstance(stars, bool) or not 1 <= stars <= 5:
            raise InvalidRequest("stars is a whole number from 1 to 5")
        text = checks.text(text, "text", limit=5000, required=False)
        with self.session(None) as s:
            asset = self._asset(s, slug, actor)
            if asset.tenant == actor.tenant:
                raise Forbidden("a publisher does not review its own asset")
            bought = s.scalar(
                select(Entitlement.id).where(
                    Entitlement.tenant == actor.tenant, Entitlement.asset_id == asset.id
                )
            )
            if bought is None:
                raise Forbidden(f"only users of a tenant that bought {slug} may review it")
            row = Review(
                asset_id=asset.id,
                tenant=actor.tenant,
                username=actor.name,
                stars=stars,
                text=text,
                created_at=self.now(),
            )
            try:
                with s.begin_nested():
                    s.add(row)
            except IntegrityError:
                raise review_exists(slug) from None
            asset.rating_count += 1
            asset.rating_sum += stars
            asset.rating = round(asset.rating_sum / asset.rating_count, 4)
            s.flush()
            return _review_json(row)

    def answer_review(self, actor: Actor, slug: str, review_id: int, text: Any) -> dict[str, Any]:
        """The publisher's one answer to a review."""
        text = checks.text(text, "text", limit=5000)
        with self.session(None) as s:
            asset = self._asset(s, slug, actor)
            if asset.tenant != actor.tenant or not actor.can("marketplace:publish"):
                raise Forbidden("only the publisher's tenant admins answer reviews")
            row = s.get(Review, review_id) if 0 < review_id < 2**63 else None
            if row is None or row.asset_id != asset.id:
                raise NotFound(f"no review {review_id} of {slug}")
            if row.answer is not None:
                raise InvalidRequest("this review has its answer already (one answer each)")
            row.answer, row.answered_by, row.answered_at = text, actor.name, self.now()
            s.flush()
            return _review_json(row)

    def reviews(self, actor: Actor, slug: str) -> dict[str, Any]:
        with self.session(actor) as s:
            asset = self._asset(s, slug, actor)
            rows = s.scalars(
                select(Review).where(Review.asset_id == asset.id).order_by(Review.id.desc())
            )
            return {
                "asset": slug,
                "rating": round(asset.rating, 2),
                "count": asset.rating_count,
                "reviews": [_review_json(r) for r in rows],
            }

    # -- publishers' money ---------------------------------------------------------------

    def _publisher(self, actor: Actor, tenant: str | None) -> str:
        if actor.is_platform_admin:
            if not tenant:
                raise InvalidRequest("platform admins name a tenant: ?tenant=<slug>")
            return tenant
        if tenant and tenant != actor.tenant:
            raise NotFound(f"no tenant {tenant!r}")
        if not actor.can("marketplace:publish"):
            raise Forbidden(f"your role ({actor.role}) may not read sales and payouts")
        return actor.tenant

    def sales(self, actor: Actor, tenant: str | None = None) -> list[dict[str, Any]]:
        """Every payout line of the publisher (sales, renewals, refunds), newest first."""
        publisher = self._publisher(actor, tenant)
        with self.session(actor) as s:
            q = (
                select(PayoutLine)
                .where(PayoutLine.tenant == publisher)
                .order_by(PayoutLine.id.desc())
            )
            return [_payout_json(p) for p in s.scalars(q)]

    def payouts(self, actor: Actor, tenant: str | None = None) -> list[dict[str, Any]]:
        """The publisher's payout statement of each period: gross, share, lines."""
        lines = self.sales(actor, tenant)
        statements: dict[str, dict[str, Any]] = {}
        for line in reversed(lines):
            st = statements.setdefault(
                line["period"],
                {"period": line["period"], "tenant": line["tenant"], "gross": ZERO,
                 "amount": ZERO, "currency": "USD", "lines": []},
            )  # fmt: skip
            st["gross"] += Decimal(line["gross"])
            st["amount"] += Decimal(line["amount"])
            st["lines"].append(line)
        out = []
        for name in sorted(statements, reverse=True):
            st = statements[name]
            out.append({**st, "gross": str(st["gross"]), "amount": str(st["amount"])})
        return out


def review_exists(slug: str) -> Conflict:
    return Conflict(f"you have reviewed {slug} already (one review per user)")


# -- JSON shapes -------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _asset_row(a: Asset) -> dict[str, Any]:
    standard = a.licence in ("free", "academic", "commercial")
    return {
        "slug": a.slug,
        "name": a.name,
        "asset_type": a.asset_type,
        "category": a.category,
        "description": a.description,
        "tags": a.tags.split() if a.tags else [],
        "licence": a.licence if standard else "custom",
        "licence_text": None if standard else a.licence,
        "price": str(a.price),
        "pricing": a.pricing,
        "currency": a.currency,
        "per_seat": a.per_seat,
        "publisher": a.tenant,
        "state": a.state,
        "review_note": a.review_note,
        "rating": round(a.rating, 2),
        "rating_count": a.rating_count,
        "downloads": a.downloads,
        "created_at": _iso(a.created_at),
        "listed_at": _iso(a.listed_at),
    }


def _version_json(v: Version) -> dict[str, Any]:
    return {
        "version": v.version,
        "sha256": v.sha256,
        "filename": v.filename,
        "size": v.size,
        "changelog": v.changelog,
        "state": v.state,
        "review_note": v.review_note,
        "created_at": _iso(v.created_at),
    }


def _source(a: Asset, v: Version) -> str | None:
    """An algorithm's (or notebook's) text for the reviewer to read; None for binaries."""
    if a.asset_type in ("algorithm", "notebook"):
        return v.content.decode("utf-8", errors="replace")
    return None


def _purchase_json(p: Purchase, a: Asset, v: Version) -> dict[str, Any]:
    return {
        "id": p.id,
        "tenant": p.tenant,
        "username": p.username,
        "asset": a.slug,
        "version": v.version,
        "amount": str(p.amount),
        "currency": p.currency,
        "pricing": p.pricing,
        "seat": p.seat,
        "state": p.state,
        "credit_note": p.credit_note,
        "created_at": _iso(p.created_at),
        "reference": f"market/{a.slug}@{v.version}",
    }


def _entitlement_json(e: Entitlement, a: Asset, v: Version) -> dict[str, Any]:
    return {
        "id": e.id,
        "tenant": e.tenant,
        "username": e.username,
        "asset": a.slug,
        "asset_type": a.asset_type,
        "version": v.version,
        "purchase": e.purchase_id,
        "state": e.state,
        "created_at": _iso(e.created_at),
        "ended_at": _iso(e.ended_at),
        "reference": f"market/{a.slug}@{v.version}",
    }


def _review_json(r: Review) -> dict[str, Any]:
    return {
        "id": r.id,
        "username": r.username,
        "tenant": r.tenant,
        "stars": r.stars,
        "text": r.text,
        "answer": r.answer,
        "answered_at": _iso(r.answered_at),
        "created_at": _iso(r.created_at),
    }


def _payout_json(p: PayoutLine) -> dict[str, Any]:
    return {
        "id": p.id,
        "tenant": p.tenant,
        "period": p.period_start.strftime("%Y-%m"),
        "purchase": p.purchase_id,
        "asset": p.asset_slug,
        "buyer": p.buyer,
        "kind": p.kind,
        "gross": str(p.gross),
        "share_percent": str(p.share_percent),
        "amount": str(p.amount),
        "created_at": _iso(p.created_at),
    }
