"""The marketplace's logic on SQLite and PostgreSQL: publishing and its review, what each
tenant sees, exactly-once purchases, exact money on the invoice and the payout statement,
refunds, the entitlement check at use, reviews."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from fedhub import db
from fedhub.approvals.models import ApprovalRequest
from fedhub.billing.invoices import close_period
from fedhub.billing.models import CreditNote
from fedhub.billing.periods import containing
from fedhub.billing.rating import rate
from fedhub.billing.settings import BillingSettings
from fedhub.errors import Forbidden
from fedhub.marketplace.errors import (
    AlreadyLicensed,
    AssetNotFound,
    BadAsset,
    KeyReused,
    NotEntitled,
    NotForSale,
    PublishingNotInTier,
    RefundRefused,
)
from fedhub.marketplace.fulltext import Query
from fedhub.marketplace.models import Entitlement, PayoutLine, Purchase
from fedhub.metering import MeterEvent

from .conftest import (
    ACME_ADMIN,
    ADMIN,
    ALICE,
    BOB,
    DAVE,
    GINA,
    GLOBEX_ADMIN,
    INITECH_ADMIN,
    listed,
    publish,
)

REF = "market/fedprox-variant@1.0.0"


def count(market, model) -> int:
    with market.session(None) as s:
        return s.scalar(select(func.count()).select_from(model))


def slugs(market, actor, **q) -> list[str]:
    return [a["slug"] for a in market.search(actor, Query(**q))[0]]


# -- publishing and review ------------------------------------------------------------------


def test_publishing_needs_the_tier_feature_and_the_permission(market):
    with pytest.raises(PublishingNotInTier, match="starter tier of globex") as e:
        publish_as(market, GLOBEX_ADMIN)
    assert e.value.status == 403
    for actor in (ALICE, DAVE):  # members and analysts hold no marketplace:publish
        with pytest.raises(Forbidden, match="may not publish"):
            publish_as(market, actor)
    asset = publish(market)
    assert asset["state"] == "pending_review" and asset["versions"][0]["state"] == "pending_review"
    assert len(asset["versions"][0]["sha256"]) == 64
    with market.session(None) as s:  # the review is an approval request (fedhub.approvals)
        req = s.get(ApprovalRequest, asset["review_request"])
        assert (req.kind, req.payload) == (
            "marketplace_publish",
            {"asset": "fedprox-variant", "version": "1.0.0"},
        )


def publish_as(market, actor):
    spec = {"name": "x", "asset_type": "algorithm"}
    return market.publish(actor, spec, content=b"x = 1\n", filename="x.py")


def test_content_is_checked_by_type(market):
    bad = {"name": "n", "asset_type": "algorithm"}
    with pytest.raises(BadAsset, match="does not parse"):
        market.publish(ACME_ADMIN, bad, content=b"def (:", filename="a.py")
    nb = {"name": "nb", "asset_type": "notebook"}
    with pytest.raises(BadAsset, match="not a notebook"):
        market.publish(ACME_ADMIN, nb, content=b'{"x": 1}', filename="a.ipynb")
    with pytest.raises(BadAsset, match="whole cents"):
        publish(market, price="1.001")
    with pytest.raises(BadAsset, match="licence"):
        publish(market, licence="gpl")


def test_pending_assets_are_invisible_to_other_tenants_until_approved(market):
    publish(market)
    assert slugs(market, ACME_ADMIN, text="fedprox") == ["fedprox-variant"]
    assert slugs(market, GLOBEX_ADMIN, text="fedprox") == []
    with pytest.raises(AssetNotFound):
        market.asset(GLOBEX_ADMIN, "fedprox-variant")
    with pytest.raises(AssetNotFound):  # globex's purchase before approval is refused
        market.purchase(GLOBEX_ADMIN, "fedprox-variant", "k1")
    with pytest.raises(Forbidden):
        market.review(ACME_ADMIN, "fedprox-variant", "1.0.0", "approve")
    out = market.review(ADMIN, "fedprox-variant", "1.0.0", "approve", "source read")
    assert out["asset"]["state"] == "listed"
    assert slugs(market, GLOBEX_ADMIN, text="fedprox") == ["fedprox-variant"]
    # a second version waits for its own review; buyers see only the approved one
    market.add_version(ACME_ADMIN, "fedprox-variant", version="1.1.0", content=b"y = 2\n",
                       filename="variant.py", changelog="smaller mu")  # fmt: skip
    seen = market.asset(GLOBEX_ADMIN, "fedprox-variant")["versions"]
    assert [v["version"] for v in seen] == ["1.0.0"]
    with pytest.raises(Exception, match="immutable"):
        market.add_version(ACME_ADMIN, "fedprox-variant", version="1.0.0", content=b"z = 3\n",
                           filename="variant.py")  # fmt: skip


def test_a_rejection_needs_a_note_and_leaves_the_asset_unlisted(market):
    publish(market)
    with pytest.raises(Exception, match="reason is required|needs a note"):
        market.review(ADMIN, "fedprox-variant", "1.0.0", "reject")
    out = market.review(ADMIN, "fedprox-variant", "1.0.0", "reject", "imports os.system")
    assert out["asset"]["state"] == "rejected"
    assert out["version"]["review_note"] == "imports os.system"
    assert slugs(market, GLOBEX_ADMIN) == []


# -- purchases ------------------------------------------------------------------------------


def test_the_same_key_100_times_is_one_purchase(market):
    listed(market)
    first, created = market.purchase(GLOBEX_ADMIN, "fedprox-variant", "key-1")
    assert created and first["amount"] == "49.99" and first["reference"] == REF
    for _ in range(99):
        again, created = market.purchase(GLOBEX_ADMIN, "fedprox-variant", "key-1")
        assert not created and again == first
    assert count(market, Purchase) == 1
    assert count(market, Entitlement) == 1
    assert count(market, PayoutLine) == 1
    with market.session(None) as s:
        kinds = s.scalars(select(MeterEvent.kind).where(MeterEvent.tenant == "globex")).all()
    assert kinds == ["marketplace"]
    with pytest.raises(AlreadyLicensed):  # another key: the tenant holds the licence
        market.purchase(GLOBEX_ADMIN, "fedprox-variant", "key-2")
    listed(market, "other-asset", name="Other")
    with pytest.raises(KeyReused):
        market.purchase(GLOBEX_ADMIN, "other-asset", "key-1")


def test_concurrent_retries_of_one_key_make_one_purchase(market):
    listed(market)
    results, errors = [], []

    def buy():
        try:
            results.append(market.purchase(GLOBEX_ADMIN, "fedprox-variant", "race")[1])
        except Exception as e:  # collected: the test reports it
            errors.append(e)

    threads = [threading.Thread(target=buy) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and sorted(results) == [False] * 7 + [True]
    assert count(market, Purchase) == count(market, Entitlement) == 1


def test_who_may_buy(market):
    listed(market)
    for actor in (BOB, GINA):  # a member, an analyst: not their organisation's money
        with pytest.raises(Forbidden, match="may not buy"):
            market.purchase(actor, "fedprox-variant", "k")
    with pytest.raises(NotForSale, match="own organisation"):
        market.purchase(ACME_ADMIN, "fedprox-variant", "k")
    with pytest.raises(Exception, match="Idempotency-Key"):
        market.purchase(GLOBEX_ADMIN, "fedprox-variant", "")


def test_the_invoice_line_and_the_payout_share_are_exact(market):
    listed(market)
    listed(market, "tiny", name="Tiny", price="0.05")
    listed(market, "free-one", name="Free", price="0")
    market.purchase(GLOBEX_ADMIN, "fedprox-variant", "a")
    market.purchase(GLOBEX_ADMIN, "tiny", "b")
    market.purchase(GLOBEX_ADMIN, "free-one", "c")  # an entitlement, no charge
    period = containing(market.now())
    with db.session_scope(market.db) as s:
        rating = rate(s, "globex", period, market.tenants.tiers)
    charges = [(ln.description, ln.amount) for ln in rating.lines if ln.line_type == "charge"]
    assert charges == [
        ("Marketplace: FedProx variant 1.0.0 (one-off)", Decimal("49.99")),
        ("Marketplace: Tiny 1.0.0 (one-off)", Decimal("0.05")),
    ]
    base = sum(ln.amount for ln in rating.lines if ln.line_type != "charge")
    assert rating.total == base + Decimal("50.04")
    [statement] = market.payouts(ACME_ADMIN)
    # 80 % of 49.99 is 39.992 -> 39.99; of 0.05 is 0.04 (half-up to the cent, per sale)
    assert (statement["period"], statement["gross"], statement["amount"]) == (
        "2026-11", "50.04", "40.03",
    )  # fmt: skip
    assert len(market.entitlements(GLOBEX_ADMIN)) == 3


def test_monthly_licences_are_charged_once_a_month(market, clock):
    listed(market, price="10.00", pricing="monthly")
    market.purchase(GLOBEX_ADMIN, "fedprox-variant", "m")
    clock.set(clock.now() + timedelta(days=55))  # January 4th
    assert market.renew_monthly() == 2  # December and January
    assert market.renew_monthly() == 0
    statements = market.payouts(ACME_ADMIN)
    assert [(s["period"], s["amount"]) for s in statements] == [
        ("2027-01", "8.00"), ("2026-12", "8.00"), ("2026-11", "8.00"),
    ]  # fmt: skip


# -- refunds and the check at use -----------------------------------------------------------


def test_a_refund_on_a_draft_reverses_the_charge_and_stops_the_next_use(market):
    listed(market)
    purchase, _ = market.purchase(GLOBEX_ADMIN, "fedprox-variant", "r")
    assert market.check_entitlement("globex", "bob", REF)["version"] == "1.0.0"
    with pytest.raises(Forbidden):
        market.refund(BOB, purchase["id"])
    with pytest.raises(Exception, match="no purchase"):
        market.refund(INITECH_ADMIN, purchase["id"])  # another tenant's: not found
    out = market.refund(GLOBEX_ADMIN, purchase["id"], "not what we needed")
    assert out["state"] == "refunded" and out["credit_note"] is None
    with pytest.raises(NotEntitled, match=REF):
        market.check_entitlement("globex", "bob", REF)
    with db.session_scope(market.db) as s:
        rating = rate(s, "globex", containing(market.now()), market.tenants.tiers)
    assert sum(ln.amount for ln in rating.lines if ln.line_type == "charge") == 0
    [statement] = market.payouts(ACME_ADMIN)
    assert statement["amount"] == "0.00"
    with pytest.raises(RefundRefused):
        market.refund(GLOBEX_ADMIN, purchase["id"])


def test_a_refund_after_the_invoice_is_final_is_a_credit_note(market, clock):
    listed(market)
    clock.set(clock.now() + timedelta(days=18))  # bought on 28 November
    purchase, _ = market.purchase(GLOBEX_ADMIN, "fedprox-variant", "f")
    period = containing(market.now())
    clock.set(period.end + timedelta(days=4))  # 7 days after the sale, 3 days' grace over
    with db.session_scope(market.db) as s:
        inv = close_period(s, "globex", period, catalog=market.tenants.tiers,
                           settings=BillingSettings(), now=clock.now())  # fmt: skip
        assert inv.status == "finalized"
        assert [ln.amount for ln in inv.lines if ln.line_type == "charge"] == [Decimal("49.99")]
    out = market.refund(GLOBEX_ADMIN, purchase["id"], "duplicate tool")
    with market.session(None) as s:
        note = s.scalar(select(CreditNote).where(CreditNote.number == out["credit_note"]))
        assert (note.tenant, note.total) == ("globex", Decimal("49.99"))


def test_no_refund_after_the_window(market, clock):
    listed(market)
    purchase, _ = market.purchase(GLOBEX_ADMIN, "fedprox-variant", "w")
    clock.set(clock.now() + timedelta(days=15))
    with pytest.raises(RefundRefused, match="refund window"):
        market.refund(GLOBEX_ADMIN, purchase["id"])


def test_the_entitlement_check_names_the_asset(market):
    listed(market)
    with pytest.raises(
        NotEntitled, match=r"initech holds no active licence for market/fedprox"
    ) as e:
        market.check_entitlement("initech", "carol", REF)
    assert e.value.status == 403 and e.value.details["asset"] == "fedprox-variant"
    assert market.check_entitlement("acme", "alice", REF)["own"] is True
    market.purchase(GLOBEX_ADMIN, "fedprox-variant", "e")
    held = market.check_entitlement("globex", "bob", REF)
    with pytest.raises(NotEntitled):  # a version the licence does not cover
        market.check_entitlement("globex", "bob", "market/fedprox-variant@2.0.0")
    market.revoke(ADMIN, held["entitlement"], "licence breach")
    with pytest.raises(NotEntitled):  # a revoked licence stops the next use
        market.check_entitlement("globex", "bob", REF)
    # delisting stops sales, not licences
    listed(market, "kept", name="Kept")
    market.purchase(GLOBEX_ADMIN, "kept", "d")
    market.delist(ACME_ADMIN, "kept")
    assert market.check_entitlement("globex", "bob", "market/kept@1.0.0")
    assert market.asset(GLOBEX_ADMIN, "kept")["state"] == "delisted"
    for call in (market.asset, lambda a, s: market.purchase(a, s, "x")):
        with pytest.raises(AssetNotFound):  # initech holds no licence: the asset is gone
            call(INITECH_ADMIN, "kept")


# -- reviews --------------------------------------------------------------------------------


def test_reviews_come_from_entitled_tenants_once_per_user(market):
    listed(market)
    with pytest.raises(Forbidden, match="bought"):
        market.add_review(INITECH_ADMIN, "fedprox-variant", 5)
    with pytest.raises(Forbidden, match="own asset"):
        market.add_review(ALICE, "fedprox-variant", 5)
    market.purchase(GLOBEX_ADMIN, "fedprox-variant", "v")
    first = market.add_review(BOB, "fedprox-variant", 5, "converges fast")
    market.add_review(GINA, "fedprox-variant", 2, "needs docs")
    with pytest.raises(Exception, match="reviewed fedprox-variant already"):
        market.add_review(BOB, "fedprox-variant", 1)
    with pytest.raises(Exception, match="stars"):
        market.add_review(GLOBEX_ADMIN, "fedprox-variant", 6)
    out = market.reviews(INITECH_ADMIN, "fedprox-variant")
    assert (out["rating"], out["count"]) == (3.5, 2)
    assert market.asset(INITECH_ADMIN, "fedprox-variant")["rating"] == 3.5
    with pytest.raises(Forbidden):
        market.answer_review(GLOBEX_ADMIN, "fedprox-variant", first["id"], "thanks")
    answered = market.answer_review(ACME_ADMIN, "fedprox-variant", first["id"], "thanks!")
    assert answered["answer"] == "thanks!"
    with pytest.raises(Exception, match="one answer"):
        market.answer_review(ACME_ADMIN, "fedprox-variant", first["id"], "again")


# -- search ---------------------------------------------------------------------------------


def test_search_filters_sorts_and_pages(market):
    listed(market, "fedprox-variant", price="49.99")
    listed(market, "scaffold-notes", name="Scaffold notes", asset_type="algorithm",
           description="Client drift correction", tags=["scaffold"], price="5.00",
           licence="academic", category="optimisers")  # fmt: skip
    listed(market, "proximal-free", name="Proximal free", description="a FedProx for all",
           price="0", licence={"custom": "Use it kindly."})  # fmt: skip
    publish(market, "still-pending", name="Pending fedprox")
    assert set(slugs(market, GLOBEX_ADMIN, text="fedprox")) == {"fedprox-variant", "proximal-free"}
    assert slugs(market, GLOBEX_ADMIN, text="fedpr") != []  # the last word is a prefix
    assert slugs(market, GLOBEX_ADMIN, text='" OR 1=1 --') == []  # no query syntax gets in
    assert slugs(market, GLOBEX_ADMIN, licence="custom") == ["proximal-free"]
    assert slugs(market, GLOBEX_ADMIN, category="optimisers") == ["scaffold-notes"]
    cheap = slugs(market, GLOBEX_ADMIN, min_price=Decimal("1"), max_price=Decimal("10"))
    assert cheap == ["scaffold-notes"]
    assert "still-pending" in slugs(market, ACME_ADMIN, text="fedprox")
    assert "still-pending" not in slugs(market, GLOBEX_ADMIN, text="fedprox")
    market.purchase(GLOBEX_ADMIN, "scaffold-notes", "s")
    market.add_review(BOB, "scaffold-notes", 4)
    assert slugs(market, GLOBEX_ADMIN, sort="rating")[0] == "scaffold-notes"
    assert slugs(market, GLOBEX_ADMIN, min_rating=4.0) == ["scaffold-notes"]
    page, nxt = market.search(GLOBEX_ADMIN, Query(sort="newest", limit=2))
    rest, end = market.search(GLOBEX_ADMIN, Query(sort="newest", limit=2, offset=nxt))
    assert (len(page), nxt, len(rest), end) == (2, 2, 1, None)
    assert {a["slug"] for a in page + rest} == {
        "fedprox-variant",
        "scaffold-notes",
        "proximal-free",
    }
