"""Purchases and licences (part of :class:`~fedhub.marketplace.store.MarketStore`): buying
exactly once per idempotency key, the buyer's charge and the publisher's payout line, monthly
renewals, refunds (a credit note once the invoice is finalized), a platform admin's revocation,
upgrading a licence, and the check (and download) at every use of an asset."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fedhub import metering
from fedhub.billing.invoices import get_invoice, issue_credit_note
from fedhub.billing.models import FINALIZED
from fedhub.billing.money import cents
from fedhub.billing.periods import Period, containing
from fedhub.db import tenant_lock
from fedhub.errors import Forbidden, InvalidRequest, NotFound
from fedhub.marketplace.common import KEY_RE, METER_KIND, SOURCE, Actor, parse_ref
from fedhub.marketplace.errors import (
    AlreadyLicensed,
    AssetNotFound,
    KeyReused,
    NotEntitled,
    NotForSale,
    RefundRefused,
)
from fedhub.marketplace.models import (
    Asset,
    Entitlement,
    EntitlementState,
    PayoutLine,
    Pricing,
    Purchase,
    State,
    Version,
)
from fedhub.marketplace.shapes import entitlement_json, purchase_json


class PurchaseMixin:
    """Purchase, renew, refund, revoke, upgrade; the entitlements and the check at each use."""

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
        if actor.tenant is None or not actor.can("marketplace:buy"):
            raise Forbidden(
                f"your role ({actor.role}) may not buy (marketplace:buy): a purchase commits "
                "your organisation's money, so its tenant admins buy"
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
                return purchase_json(done, asset, s.get(Version, done.version_id)), False
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
                return purchase_json(done, asset, s.get(Version, done.version_id)), False
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
            return purchase_json(purchase, asset, ver), True

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
        s.add(self._payout_line(s, purchase, asset, kind, gross, at))

    def _payout_line(
        self, s: Session, purchase: Purchase, asset: Asset, kind: str, gross: Decimal, at: datetime
    ) -> PayoutLine:
        """The publisher's share of ``gross`` (negative for a refund), in the month of ``at``,
        on the open statement that pays it (:mod:`.payouts`)."""
        share = self.settings.share
        return PayoutLine(
            tenant=purchase.publisher,
            period_start=containing(at).start,
            statement_id=self._statement_for(s, purchase.publisher, at).id,
            purchase_id=purchase.id,
            asset_slug=asset.slug,
            buyer=purchase.tenant,
            kind=kind,
            gross=gross,
            share_percent=share,
            amount=cents(gross * share / 100),
            created_at=at,
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
        if not actor.is_platform_admin and not actor.can("marketplace:buy"):
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
                # the publisher's share is taken back in this month (cents() rounds half away
                # from zero, so this is minus the sale's share)
                s.add(self._payout_line(s, purchase, asset, "refund", -purchase.amount, now))
            else:  # still on a draft (or not rated yet): the charge is reversed on it
                self._charge(
                    s, purchase, asset, ver, containing(purchase.created_at), purchase.created_at,
                    kind="refund",
                )  # fmt: skip
            s.flush()
            return purchase_json(purchase, asset, ver)

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
            return entitlement_json(ent, s.get(Asset, ent.asset_id), s.get(Version, ent.version_id))

    def upgrade(self, actor: Actor, slug: str) -> dict[str, Any]:
        """Move the tenant's (or the actor's seat's) licence to the newest approved version."""
        if actor.tenant is None or not actor.can("marketplace:buy"):
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
            return entitlement_json(ent, asset, newest)

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
            return [entitlement_json(e, a, v) for e, a, v in s.execute(q)]

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
