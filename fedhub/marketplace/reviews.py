"""Reviews and publishers' sales (part of :class:`~fedhub.marketplace.store.MarketStore`):
one review per user of a tenant that bought the asset and the publisher's one answer; the
publisher's sales (its payout lines; the statements that pay them are :mod:`.payouts`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from fedhub.errors import Conflict, Forbidden, InvalidRequest, NotFound
from fedhub.marketplace import checks
from fedhub.marketplace.common import Actor
from fedhub.marketplace.models import Entitlement, PayoutLine, Review
from fedhub.marketplace.shapes import payout_json, review_json


class ReviewMixin:
    """Add, answer and read reviews; a publisher's sales and payout statements."""

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
            return review_json(row)

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
            return review_json(row)

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
                "reviews": [review_json(r) for r in rows],
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
            return [payout_json(p) for p in s.scalars(q)]


def review_exists(slug: str) -> Conflict:
    return Conflict(f"you have reviewed {slug} already (one review per user)")
