"""A marketplace over a fresh database on each engine, with three tenants on three tiers.

acme (professional: may publish), globex (starter: may not), initech (free); a tenant
admin, a member and an analyst where the tests need them, and a platform admin. The
process clock is fixed (10 November 2026, noon) so periods and refund windows are exact.
"""

from __future__ import annotations

import shutil
import uuid
from datetime import datetime

import pytest

from fedhub import db
from fedhub.clock import FixedClock, set_clock
from fedhub.marketplace.store import Actor, MarketStore
from fedhub.tenancy.models import Role
from fedhub.tenancy.store import TenantStore

NOW = datetime(2026, 11, 10, 12, 0)
ALGORITHM = b"from fedhub.fl.strategies import FedProx\n\n\nclass Variant(FedProx):\n    mu = 0.5\n"

ACME_ADMIN = Actor("acme-admin", "acme", Role.TENANT_ADMIN)
ALICE = Actor("alice", "acme", Role.MEMBER)
DAVE = Actor("dave", "acme", Role.ANALYST)
GLOBEX_ADMIN = Actor("globex-admin", "globex", Role.TENANT_ADMIN)
BOB = Actor("bob", "globex", Role.MEMBER)
GINA = Actor("gina", "globex", Role.ANALYST)
INITECH_ADMIN = Actor("initech-admin", "initech", Role.TENANT_ADMIN)
ADMIN = Actor("admin", None, Role.PLATFORM_ADMIN)


@pytest.fixture
def clock():
    fixed = FixedClock(NOW)
    set_clock(fixed)
    yield fixed
    set_clock(None)


#: what the tests write; emptied between PostgreSQL tests (the tenants cascade to their rows)
WRITTEN = (
    "fedhub_market_payout_lines", "fedhub_market_payout_statements", "fedhub_market_reviews",
    "fedhub_market_entitlements",
    "fedhub_market_purchases", "fedhub_market_versions", "fedhub_market_assets",
    "fedhub_request_comments", "fedhub_requests", "fedhub_meter_events",
    "fedhub_billing_invoice_lines", "fedhub_billing_credit_notes", "fedhub_billing_adjustments",
    "fedhub_billing_invoices", "fedhub_billing_subscriptions", "fedhub_memberships",
    "fedhub_tenants",
)  # fmt: skip


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def migrated_template(request, tmp_path_factory):
    """One database per engine and module, migrated once: each SQLite test starts from a
    copy of the file; the PostgreSQL tests share the database, emptied of what they write
    between tests (a ``CREATE DATABASE`` or a migration run costs ~1.5 s here)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('market') / 'template.sqlite'}"
    else:
        url = request.getfixturevalue("postgres").create_database(f"mt_{uuid.uuid4().hex[:10]}")
    db.upgrade(url)
    db.dispose_engines()
    yield request.param, url
    db.dispose_engines()


@pytest.fixture
def market_db(migrated_template, tmp_path) -> str:
    engine, url = migrated_template
    if engine == "sqlite":
        path = tmp_path / "fedhub.sqlite"
        shutil.copyfile(url.removeprefix("sqlite:///"), path)
        yield f"sqlite:///{path}"
        db.dispose_engines()
        return
    with db.get_engine(url).begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {', '.join(WRITTEN)} RESTART IDENTITY CASCADE")
    yield url


@pytest.fixture
def market(market_db, clock) -> MarketStore:
    migrated_db = market_db
    tenants = TenantStore(migrated_db)
    for slug, tier in (("acme", "professional"), ("globex", "starter"), ("initech", "free")):
        tenants.create_tenant(slug, tier=tier)
    for actor in (ACME_ADMIN, ALICE, DAVE, GLOBEX_ADMIN, BOB, GINA, INITECH_ADMIN, ADMIN):
        tenants.add_user(actor.name, actor.tenant, actor.role)
    return MarketStore(migrated_db, tenants)


def publish(market: MarketStore, slug: str = "fedprox-variant", **spec) -> dict:
    """acme publishes an algorithm (pending review)."""
    spec = {
        "name": "FedProx variant",
        "slug": slug,
        "asset_type": "algorithm",
        "description": "FedProx with a **smaller** proximal term.",
        "tags": ["fedprox", "strategy"],
        "licence": "commercial",
        "price": "49.99",
        **spec,
    }
    return market.publish(ACME_ADMIN, spec, content=ALGORITHM, filename="variant.py")


def listed(market: MarketStore, slug: str = "fedprox-variant", **spec) -> dict:
    asset = publish(market, slug, **spec)
    market.review(ADMIN, slug, asset["versions"][0]["version"], "approve", "read the source")
    return asset
