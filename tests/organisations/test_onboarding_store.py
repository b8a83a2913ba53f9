"""Onboarding's store functions (fedhub.tenancy.onboarding) and its approval kind on both
engines, with no hub: on PostgreSQL with row-level security, the approval of a paid tier
runs as platform work, as the hub runs a platform admin's decision. The hub's pages and
API are in ``test_onboarding.py``."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from fedhub import db
from fedhub.approvals import ApprovalStore
from fedhub.approvals.kinds.onboarding import asker
from fedhub.db import rls
from fedhub.errors import Conflict, Forbidden
from fedhub.tenancy import onboarding
from fedhub.tenancy.models import LocalCredential, Membership, Role
from fedhub.tenancy.onboarding import Onboarding
from fedhub.tenancy.plans import Subscription
from fedhub.tenancy.signup import LinkExpired
from fedhub.tenancy.store import TenantStore

PASSWORD = "Store-test-pass-77"


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], scope="module"
)
def store(request, tmp_path_factory):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('onb') / 'fedhub.sqlite'}"
    else:
        import uuid

        url = request.getfixturevalue("postgres").create_database(f"o_{uuid.uuid4().hex[:10]}")
    db.upgrade(url)
    yield TenantStore(url)
    db.dispose_engines()


def ask(store, name: str, tier: str = "free", **kw):
    user = name.lower().replace(" ", "-")
    return onboarding.request_onboarding(
        store,
        organisation=name,
        email=f"{user}@example.org",
        username=user,
        password=PASSWORD,
        tier=tier,
        **kw,
    )


def test_free_tier_founds_tenant_and_admin_in_one_go(store):
    view = ask(store, "Free One")
    assert view.token and view.state == "awaiting_email" and not view.paid
    with pytest.raises(Forbidden):
        onboarding.verify(store, view.token, "wrong-password")
    done = onboarding.verify(store, view.token, PASSWORD)
    assert done.state == "onboarded" and done.slug == "free-one"
    assert store.get_tenant("free-one").tier == "free"
    info = store.user("free-one")
    assert (info.role, info.tenant, info.email) == (Role.TENANT_ADMIN, "free-one", done.email)
    with store.session() as s:
        cred = s.get(LocalCredential, "free-one")
        from fedhub.tenancy import passwords

        assert passwords.verify_password(cred.password_hash, PASSWORD)
        row = s.scalar(select(Onboarding).where(Onboarding.slug == "free-one"))
        assert row.password_hash == ""  # the credential holds it now, the request does not
        assert s.scalar(select(Subscription.tier).where(Subscription.tenant == "free-one"))
    # the link is spent
    with pytest.raises(Exception) as spent:
        onboarding.verify(store, view.token, PASSWORD)
    assert getattr(spent.value, "status", None) == 400


def test_expired_links_are_refused_and_free_the_address(store):
    view = ask(store, "Late Link", link_valid_for=timedelta(seconds=-1))
    with pytest.raises(LinkExpired):
        onboarding.verify(store, view.token, PASSWORD)
    # an expired request holds nothing: the same address, name and slug may ask again
    again = ask(store, "Late Link")
    assert again.slug == "late-link"


def test_five_wrong_passwords_kill_the_link(store):
    view = ask(store, "Guessed One")
    for _ in range(onboarding.MAX_CONFIRM_ATTEMPTS):
        with pytest.raises(Forbidden):
            onboarding.verify(store, view.token, "not-the-password")
    with pytest.raises(LinkExpired):
        onboarding.verify(store, view.token, PASSWORD)
    assert store.user("guessed-one") is None


def test_paid_tier_waits_for_a_platform_admin(store):
    view = ask(store, "Paid One", tier="starter")
    assert view.paid
    waiting = onboarding.verify(store, view.token, PASSWORD, ask=asker(store))
    assert waiting.state == "awaiting_approval" and waiting.request_id
    assert store.user("paid-one") is None
    approvals = ApprovalStore(store)
    admin = None  # the operator at the CLI; the hub passes the platform admin's UserInfo
    with rls.platform():
        decided = approvals.approve(waiting.request_id, admin, actor="ops")
    assert decided.tenant == "paid-one"
    assert store.get_tenant("paid-one").tier == "starter"
    assert store.user("paid-one").role == Role.TENANT_ADMIN
    assert onboarding.by_token(store, view.token).state == "onboarded"


def test_paid_tier_without_approvals_is_refused(store):
    view = ask(store, "No Approvals", tier="professional")
    with pytest.raises(Conflict):
        onboarding.verify(store, view.token, PASSWORD)
    assert onboarding.by_token(store, view.token).state == "awaiting_email"  # nothing changed


def test_rejection_keeps_the_reason_and_drops_the_password(store):
    view = ask(store, "Refused One", tier="enterprise")
    waiting = onboarding.verify(store, view.token, PASSWORD, ask=asker(store))
    with rls.platform():
        ApprovalStore(store).reject(waiting.request_id, None, reason="no contract", actor="ops")
    status = onboarding.by_token(store, view.token)
    assert (status.state, status.reason) == ("rejected", "no contract")
    with store.session() as s:
        assert s.scalar(select(Membership).where(Membership.username == "refused-one")) is None
        row = s.scalar(select(Onboarding).where(Onboarding.slug == "refused-one"))
        assert row.password_hash == ""


@pytest.mark.parametrize(
    "name, slug",
    [
        ("Acme", "acme"),
        ("  Ümlaut   GmbH  ", "umlaut-gmbh"),
        ("Two--Dashes__and  spaces", "two-dashes-and-spaces"),
        ("日本語", "org"),
        ("x" * 80, "x" * 40),
        ("-edge-", "edge"),
    ],
)
def test_derive_slug(name, slug):
    assert onboarding.derive_slug(name) == slug
    assert onboarding.SLUG_RE.match(slug)
