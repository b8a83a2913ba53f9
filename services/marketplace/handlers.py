"""The marketplace service: publish, review, search, buy, use and rate algorithms, models,
datasets and notebooks, at ``/services/marketplace/api/v1/``.

Who may do what: every fedhub user searches and reads listed assets (and their own
tenant's pending ones); tenant admins of a tier with ``features.marketplace_publishing``
publish (``marketplace:publish``) and read their sales and payouts; tenant admins buy
(``marketplace:buy``: a purchase commits the organisation's money) with an
``Idempotency-Key``; users of a tenant that bought an asset review it; platform admins
review submissions. Another tenant's pending assets, purchases, licences, sales and
payouts answer 404. The logic is :class:`fedhub.marketplace.store.MarketStore`.
"""

from __future__ import annotations

import base64
import binascii
from decimal import Decimal, InvalidOperation
from typing import Any

from markdown_it import MarkdownIt

from fedhub.errors import InvalidRequest
from fedhub.jobs import run_blocking
from fedhub.marketplace.fulltext import Query
from fedhub.marketplace.store import Actor, MarketStore
from fedhub.openapi import operation
from fedhub.web import APIHandler

from . import api_models as api

#: Markdown without raw HTML; links to javascript:, vbscript:, file: and data: are dropped
_MARKDOWN = MarkdownIt("js-default")


def render_markdown(text: str) -> str:
    return _MARKDOWN.render(text or "")


class MarketHandler(APIHandler):
    @property
    def market(self) -> MarketStore:
        return self.settings["fedhub_market"]

    @property
    def actor(self) -> Actor:
        c = self.caller
        return Actor(c.name, c.tenant, c.role)

    async def run(self, fn, *args, **kwargs):
        return await run_blocking(fn, *args, **kwargs)

    def body(self) -> dict[str, Any]:
        data = self.get_json_body()
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise InvalidRequest("the request body is a JSON object")
        return data

    @staticmethod
    def content(data: dict[str, Any]) -> bytes:
        text, b64 = data.get("content"), data.get("content_base64")
        if (text is None) == (b64 is None):
            raise InvalidRequest("give the file as content (text) or content_base64, not both")
        if text is not None:
            if not isinstance(text, str):
                raise InvalidRequest("content is the file's text")
            return text.encode("utf-8")
        try:
            return base64.b64decode(b64 if isinstance(b64, str) else "", validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("content_base64 is not base64") from None

    def decimal_arg(self, name: str) -> Decimal | None:
        raw = self.get_query_argument(name, None)
        if raw in (None, ""):
            return None
        try:
            value = Decimal(raw)
        except (InvalidOperation, ValueError):
            raise InvalidRequest(f"{name} must be a decimal number, not {raw[:40]!r}") from None
        if not value.is_finite() or value < 0 or value > 10**9:
            raise InvalidRequest(f"{name} must be between 0 and 1000000000")
        return value

    def int_arg(self, name: str, default: int) -> int:
        raw = self.get_query_argument(name, None)
        try:
            return default if raw in (None, "") else int(raw)
        except ValueError:
            raise InvalidRequest(f"{name} must be a whole number, not {raw[:40]!r}") from None


class SearchHandler(MarketHandler):
    @operation("Search listed assets", query=api.SearchQuery, responses={200: api.SearchPage})
    async def get(self):
        """Full text over name, description and tags, with filters, a sort and pages; the
        caller's own tenant's pending assets are found too."""
        self.require("tenant:read")
        rating = self.decimal_arg("min_rating")
        q = Query(
            text=self.get_query_argument("q", "") or "",
            asset_type=self.get_query_argument("type", None) or None,
            category=self.get_query_argument("category", None) or None,
            licence=self.get_query_argument("licence", None) or None,
            min_price=self.decimal_arg("min_price"),
            max_price=self.decimal_arg("max_price"),
            min_rating=float(rating) if rating is not None else None,
            sort=self.get_query_argument("sort", None) or "relevance",
            limit=self.int_arg("limit", 20),
            offset=self.int_arg("offset", 0),
        )
        assets, next_offset = await self.run(self.market.search, self.actor, q)
        self.write_json({"assets": assets, "next_offset": next_offset})


class AssetsHandler(MarketHandler):
    @operation(
        "Your tenant's assets (platform admins: ?state=pending_review, the review queue)",
        query=api.AssetsQuery,
        responses={200: api.AssetList},
    )
    async def get(self):
        self.require("tenant:read")
        if self.get_query_argument("state", None) == "pending_review":
            self.write_json(
                {"assets": [], "pending": await self.run(self.market.pending, self.actor)}
            )
            return
        self.write_json({"assets": await self.run(self.market.own, self.actor), "pending": []})

    @operation(
        "Publish a new asset (pending review)", body=api.NewAsset, responses={201: api.Asset}
    )
    async def post(self):
        self.require("marketplace:publish")
        data = self.body()
        content = self.content(data)
        asset = await self.run(
            self.market.publish,
            self.actor,
            data,
            content=content,
            filename=data.get("filename"),
            version=data.get("version") or "1.0.0",
            changelog=data.get("changelog") or "",
        )
        self.emit("marketplace.published", target=f"market/{asset['slug']}",
                  details={"version": asset["versions"][0]["version"]})  # fmt: skip
        self.write_json(asset, status=201)


class AssetHandler(MarketHandler):
    @operation("An asset: its card, versions and rating", responses={200: api.Asset})
    async def get(self, slug: str):
        self.require("tenant:read")
        asset = await self.run(self.market.asset, self.actor, slug)
        asset["description_html"] = render_markdown(asset["description"])
        self.write_json(asset)


class VersionsHandler(MarketHandler):
    @operation(
        "Submit a new immutable version (pending review)",
        body=api.NewVersion,
        responses={201: api.Version},
    )
    async def post(self, slug: str):
        self.require("marketplace:publish")
        data = self.body()
        content = self.content(data)
        ver = await self.run(
            self.market.add_version,
            self.actor,
            slug,
            version=data.get("version"),
            content=content,
            filename=data.get("filename"),
            changelog=data.get("changelog") or "",
            label_column=data.get("label_column"),
            partition=data.get("partition"),
        )
        self.emit("marketplace.version_submitted", target=f"market/{slug}@{ver['version']}")
        self.write_json(ver, status=201)


class ReviewHandler(MarketHandler):
    @operation(
        "Approve or reject a pending version (platform admins)",
        body=api.ReviewDecision,
        responses={200: api.Reviewed},
    )
    async def post(self, slug: str):
        self.require("tenant:read")
        data = self.body()
        version, decision = data.get("version"), data.get("decision")
        if not isinstance(version, str) or not isinstance(decision, str):
            raise InvalidRequest('the body is {"version": ..., "decision": "approve"|"reject"}')
        note = data.get("note") or ""
        if not isinstance(note, str):
            raise InvalidRequest("note is a string")
        out = await self.run(self.market.review, self.actor, slug, version, decision, note)
        self.write_json(out)


class DelistHandler(MarketHandler):
    @operation(
        "Delist an asset (licences keep working)", body=api.Delist, responses={200: api.AssetRow}
    )
    async def post(self, slug: str):
        self.require("tenant:read")
        note = self.body().get("note") or ""
        if not isinstance(note, str):
            raise InvalidRequest("note is a string")
        out = await self.run(self.market.delist, self.actor, slug, note)
        self.emit("marketplace.delisted", target=f"market/{slug}")
        self.write_json(out)


class PurchaseHandler(MarketHandler):
    @operation(
        "Buy an asset, exactly once per Idempotency-Key header",
        body=api.PurchaseRequest,
        responses={200: api.Purchase, 201: api.Purchase},
    )
    async def post(self, slug: str):
        """201 with a new purchase; 200 with the same purchase when the key was used
        before (a retry). Tenant admins buy: a purchase commits the tenant's money."""
        self.require("marketplace:buy")
        data = self.body()
        version, seat = data.get("version"), data.get("seat")
        if not all(v is None or isinstance(v, str) for v in (version, seat)):
            raise InvalidRequest("version and seat are strings")
        key = self.request.headers.get("Idempotency-Key", "")
        purchase, created = await self.run(
            self.market.purchase, self.actor, slug, key, version=version, seat=seat
        )
        if created:
            self.emit("marketplace.purchased", target=f"market/{slug}@{purchase['version']}",
                      details={"purchase": purchase["id"], "amount": purchase["amount"]})  # fmt: skip
        self.write_json(purchase, status=201 if created else 200)


class RefundHandler(MarketHandler):
    @operation(
        "Refund a purchase within the window", body=api.Refund, responses={200: api.Purchase}
    )
    async def post(self, purchase_id: str):
        self.require("marketplace:buy")
        reason = self.body().get("reason") or ""
        if not isinstance(reason, str):
            raise InvalidRequest("reason is a string")
        out = await self.run(self.market.refund, self.actor, int(purchase_id), reason)
        self.emit("marketplace.refunded", target=f"market/{out['asset']}",
                  details={"purchase": out["id"], "amount": out["amount"]})  # fmt: skip
        self.write_json(out)


class RevokeHandler(MarketHandler):
    @operation(
        "End a licence (platform admins; no money moves)", body=api.Revoke,
        responses={200: api.Entitlement},
    )  # fmt: skip
    async def post(self, entitlement_id: str):
        self.require("tenant:read")
        reason = self.body().get("reason")
        if not isinstance(reason, str):
            raise InvalidRequest("a revocation needs a reason")
        out = await self.run(self.market.revoke, self.actor, int(entitlement_id), reason)
        self.emit("marketplace.revoked", tenant=out["tenant"], target=out["reference"],
                  details={"entitlement": out["id"], "reason": reason})  # fmt: skip
        self.write_json(out)


class UpgradeHandler(MarketHandler):
    @operation(
        "Move your tenant's licence to the newest approved version",
        responses={200: api.Entitlement},
    )
    async def post(self, slug: str):
        self.require("marketplace:buy")
        out = await self.run(self.market.upgrade, self.actor, slug)
        self.emit("marketplace.upgraded", target=out["reference"])
        self.write_json(out)


class EntitlementsHandler(MarketHandler):
    @operation("Your tenant's licences", query=api.TenantQuery, responses={200: api.Entitlements})
    async def get(self):
        self.require("tenant:read")
        tenant = self.scoped_tenant(self.get_query_argument("tenant", None))
        out = await self.run(self.market.entitlements, self.actor, tenant)
        self.write_json({"entitlements": out})


class CheckHandler(MarketHandler):
    @operation(
        "Whether a licence lets this use happen (403 not_entitled otherwise)",
        query=api.CheckQuery,
        responses={200: api.Check},
    )
    async def get(self):
        """Users ask for themselves; hub services (the experiments service) and platform
        admins name the tenant and user."""
        ref = self.get_query_argument("ref", "")
        if self.caller.kind == "service" or self.caller.is_platform_admin:
            tenant = self.get_query_argument("tenant", None)
            user = self.get_query_argument("user", None)
            if not tenant:
                raise InvalidRequest("name the tenant: ?tenant=<slug>")
        else:
            self.require("tenant:read")
            tenant, user = self.caller.tenant, self.caller.name
        self.write_json(await self.run(self.market.check_entitlement, tenant, user, ref))


class ContentHandler(MarketHandler):
    @operation(
        "The licensed version's file (the licence is checked, the use counted)",
        query=api.ContentQuery,
        responses={200: {"application/octet-stream": None}},
    )
    async def get(self, slug: str):
        self.require("tenant:read")
        version = self.get_query_argument("version", None)
        ref = f"market/{slug}@{version}" if version else f"market/{slug}"
        caller = self.caller
        info, data = await self.run(self.market.content, caller.tenant, caller.name, ref)
        self.emit("marketplace.used", target=f"market/{slug}@{info['version']}",
                  details={"how": "download", "sha256": info["sha256"]})  # fmt: skip
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("X-Fedhub-Version", info["version"])
        self.set_header("X-Fedhub-Filename", info["filename"])
        self.set_header("X-Fedhub-Asset-Type", info["asset_type"])
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(data)


class ReviewsHandler(MarketHandler):
    @operation("An asset's reviews and rating", responses={200: api.Reviews})
    async def get(self, slug: str):
        self.require("tenant:read")
        self.write_json(await self.run(self.market.reviews, self.actor, slug))

    @operation(
        "Review an asset your tenant bought (one per user)",
        body=api.NewReview,
        responses={201: api.ReviewRow},
    )
    async def post(self, slug: str):
        self.require("tenant:read")
        data = self.body()
        out = await self.run(
            self.market.add_review, self.actor, slug, data.get("stars"), data.get("text") or ""
        )
        self.emit("marketplace.reviewed", target=f"market/{slug}", details={"stars": out["stars"]})
        self.write_json(out, status=201)


class AnswerHandler(MarketHandler):
    @operation(
        "The publisher's one answer to a review", body=api.Answer, responses={200: api.ReviewRow}
    )
    async def post(self, slug: str, review_id: str):
        self.require("marketplace:publish")
        data = self.body()
        out = await self.run(
            self.market.answer_review, self.actor, slug, int(review_id), data.get("text")
        )
        self.write_json(out)


class SalesHandler(MarketHandler):
    @operation(
        "Your tenant's sales (publishers)", query=api.TenantQuery, responses={200: api.Sales}
    )
    async def get(self):
        self.require("marketplace:publish")
        tenant = self.scoped_tenant(self.get_query_argument("tenant", None))
        self.write_json({"sales": await self.run(self.market.sales, self.actor, tenant)})


class PayoutsHandler(MarketHandler):
    @operation(
        "Your tenant's payout statements, one per billing period (publishers; platform "
        "admins: every publisher's)",
        query=api.PayoutsQuery,
        responses={200: api.Payouts},
    )
    async def get(self):
        self.require("marketplace:publish")
        tenant = self.scoped_tenant(self.get_query_argument("tenant", None))
        state = self.get_query_argument("state", None) or None
        out = await self.run(self.market.payouts, self.actor, tenant, state)
        self.write_json({"statements": out})


class StatementHandler(MarketHandler):
    @operation("One payout statement with its lines", responses={200: api.Statement})
    async def get(self, statement_id: str):
        self.require("marketplace:publish")
        self.write_json(await self.run(self.market.statement, self.actor, int(statement_id)))


class StatementPaidHandler(MarketHandler):
    @operation(
        "Mark a closed payout statement paid (platform admins)",
        body=api.MarkPaid,
        responses={200: api.Statement},
    )
    async def post(self, statement_id: str):
        self.require("tenant:read")
        reference = self.body().get("reference")
        out = await self.run(self.market.mark_paid, self.actor, int(statement_id), reference)
        self.emit("marketplace.payout_paid", tenant=out["tenant"],
                  target=f"payouts/{out['id']}", details={"period": out["period"],
                  "amount": out["amount"], "reference": out["paid_reference"]})  # fmt: skip
        self.write_json(out)
