"""The approval requests' store on both database engines (fast, no hub): the state
machine, who may see and decide what, apply in the same transaction as the approval,
audit events, the ``tier_change`` and ``join_tenant`` kinds, and row-level security
on PostgreSQL (a request with no tenant is platform work only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from fedhub.approvals import ApprovalRequest, ApprovalStore, Kind, RequestState, register
from fedhub.approvals import registry as approvals_registry
from fedhub.db import rls
from fedhub.errors import Conflict, Forbidden, InvalidRequest, NotFound
from fedhub.tenancy.models import Membership, SignupRequest, Tenant
from fedhub.tenancy.store import TenantStore

PASSWORD = "Approvals-test-pw-1"


@pytest.fixture
def spool(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "spool"
    monkeypatch.setenv("FEDHUB_EVENTS_SPOOL", str(path))
    return path


def events(spool: Path, prefix: str = "request.") -> list[dict]:
    found = []
    for file in sorted(spool.glob("*.jsonl")):
        found += [json.loads(line) for line in file.read_text().splitlines()]
    return [e for e in found if e["action"].startswith(prefix)]


@pytest.fixture
def world(migrated_db, spool):
    """acme (starter, admin_approval sign-ups from acme.example) and globex, their people."""
    tenants = TenantStore(migrated_db)
    with rls.platform():
        tenants.create_tenant("acme", tier="starter", email_domains=["acme.example"])
        tenants.set_signup_policy("acme", "admin_approval")
        tenants.create_tenant("globex", tier="starter")
        for name, tenant, role in (
            ("root", None, "platform-admin"),
            ("acme-admin", "acme", "tenant-admin"),
            ("acme-admin2", "acme", "tenant-admin"),
            ("alice", "acme", "member"),
            ("dave", "acme", "analyst"),
            ("globex-admin", "globex", "tenant-admin"),
        ):
            tenants.add_user(name, tenant, role, email=f"{name}@mail.example")
    people = {name: tenants.user(name) for name in ("root", "acme-admin", "acme-admin2",
              "alice", "dave", "globex-admin")}  # fmt: skip
    return tenants, ApprovalStore(tenants), people


def tier(tenants, slug):
    with rls.platform():
        return tenants.get_tenant(slug).tier


def test_tier_change_pending_then_approved_applies_once(world, spool):
    tenants, store, p = world
    with rls.tenant("acme"):
        view = store.create("tier_change", tenant="acme", payload={"tier": "professional"},
                            by=p["acme-admin"])  # fmt: skip
    assert view.state == RequestState.PENDING and view.tenant == "acme"
    assert view.payload == {"tier": "professional", "from": "starter"}
    assert tier(tenants, "acme") == "starter"  # nothing changes before the decision
    # only a platform admin decides a tier change: not another tenant admin of acme
    with rls.tenant("acme"), pytest.raises(Forbidden, match="platform admin"):
        store.approve(view.id, p["acme-admin2"])
    with rls.platform():
        done = store.approve(view.id, p["root"], reason="welcome aboard")
    assert (done.state, done.decided_by, done.reason) == ("approved", "root", "welcome aboard")
    assert tier(tenants, "acme") == "professional"
    # final states are final
    with rls.platform():
        with pytest.raises(Conflict, match="approved already"):
            store.approve(view.id, p["root"])
        with pytest.raises(Conflict, match="approved already"):
            store.withdraw(view.id, p["acme-admin"])
        with pytest.raises(Conflict):
            store.reject(view.id, p["root"], reason="too late")
    actions = [(e["action"], e["tenant"], e["actor"]) for e in events(spool)]
    assert actions == [("request.created", "acme", "acme-admin"),
                       ("request.approved", "acme", "root")]  # fmt: skip
    assert any(e["action"] == "tenant.tier_changed" for e in events(spool, "tenant."))


BAD_PAYLOADS = [
    ({"tier": "platinum"}, "unknown tier 'platinum': use one of free, starter"),
    ({"tier": "starter"}, "on the starter tier already"),
    ({"tier": 3}, "payload"),
    ({"tier": "professional", "extra": 1}, "payload"),
    ({}, "payload"),
    ("professional", "payload must be a JSON object"),
]


def test_tier_change_refuses_bad_payloads(world):
    tenants, store, p = world
    for payload, words in BAD_PAYLOADS:  # one database for the table (a migration each costs)
        with rls.tenant("acme"), pytest.raises(InvalidRequest, match=words):
            store.create("tier_change", tenant="acme", payload=payload, by=p["acme-admin"])
    with rls.tenant("acme"):
        assert store.list(None) == []


def test_one_pending_tier_change_per_tenant_and_only_admins_ask(world):
    tenants, store, p = world
    with rls.tenant("acme"):
        first = store.create("tier_change", tenant="acme", payload={"tier": "professional"},
                             by=p["acme-admin"])  # fmt: skip
        with pytest.raises(Conflict, match="pending already"):
            store.create("tier_change", tenant="acme", payload={"tier": "enterprise"},
                         by=p["acme-admin2"])  # fmt: skip
        for who in ("alice", "dave"):
            with pytest.raises(Forbidden, match="only a tenant admin"):
                store.create("tier_change", tenant="acme", payload={"tier": "free"}, by=p[who])
        # only the requester withdraws; then a new one may be asked
        with pytest.raises(Forbidden, match="only the person who asked"):
            store.withdraw(first.id, p["acme-admin2"])
        assert store.withdraw(first.id, p["acme-admin"]).state == "withdrawn"
        again = store.create("tier_change", tenant="acme", payload={"tier": "enterprise"},
                             by=p["acme-admin2"])  # fmt: skip
    with rls.platform():
        with pytest.raises(Conflict, match="withdrawn already"):
            store.approve(first.id, p["root"])
        with pytest.raises(InvalidRequest, match="reason is required"):
            store.reject(again.id, p["root"])
        done = store.reject(again.id, p["root"], reason="talk to sales first")
    assert done.state == "rejected" and done.reason == "talk to sales first"
    assert tier(tenants, "acme") == "starter"


def test_the_database_keeps_one_pending_tier_change_per_tenant(world):
    """Two asked at the same moment both pass the store's check; the partial unique index
    refuses the second row (a 409 from the store)."""
    tenants, store, p = world
    with rls.tenant("acme"):
        store.create("tier_change", tenant="acme", payload={"tier": "professional"},
                     by=p["acme-admin"])  # fmt: skip
    with rls.platform(), pytest.raises(IntegrityError), tenants.session() as s:
        acme = s.scalar(select(Tenant.id).where(Tenant.slug == "acme"))
        s.add(ApprovalRequest(kind="tier_change", tenant_id=acme, requester="acme-admin2",
                              payload={"tier": "enterprise"}))  # fmt: skip
        s.flush()
    with rls.platform(), tenants.session() as s:  # any other kind, or a decided one, is fine
        s.add(ApprovalRequest(kind="join_tenant", tenant_id=acme, requester="x", payload={}))
        s.add(ApprovalRequest(kind="tier_change", tenant_id=acme, requester="y", payload={},
                              state=RequestState.REJECTED))  # fmt: skip


def test_who_sees_which_requests(world):
    tenants, store, p = world
    with rls.tenant("acme"):
        mine = store.create("tier_change", tenant="acme", payload={"tier": "professional"},
                            by=p["acme-admin"])  # fmt: skip
        store.comment(mine.id, "we need more servers", p["acme-admin"])
    with rls.tenant("globex"):
        theirs = store.create("tier_change", tenant="globex", payload={"tier": "free"},
                              by=p["globex-admin"])  # fmt: skip
    with rls.tenant("acme"):
        assert [v.id for v in store.list(p["acme-admin2"])] == [mine.id]
        assert store.list(p["alice"]) == [] and store.list(p["dave"]) == []
        with pytest.raises(NotFound):
            store.get(mine.id, p["alice"])  # a colleague's request: as if it did not exist
        with pytest.raises(NotFound):
            store.comment(mine.id, "me too", p["dave"])
        with pytest.raises(NotFound, match="no tenant 'globex'"):
            store.list(p["acme-admin"], tenant="globex")
        [shown] = [store.get(mine.id, p["acme-admin2"])]
        assert [(c.author, c.text) for c in shown.comments] == [
            ("acme-admin", "we need more servers")
        ]
    with rls.tenant("globex"):
        for action in (lambda: store.get(mine.id, p["globex-admin"]),
                       lambda: store.withdraw(mine.id, p["globex-admin"]),
                       lambda: store.comment(mine.id, "hi", p["globex-admin"])):  # fmt: skip
            with pytest.raises(NotFound):
                action()
    with rls.platform():
        assert {v.id for v in store.list(p["root"])} == {mine.id, theirs.id}
        assert [v.id for v in store.list(p["root"], tenant="globex")] == [theirs.id]
        assert [v.id for v in store.list(None, state="pending", kind="tier_change")] == [
            theirs.id,
            mine.id,
        ]
        with pytest.raises(InvalidRequest, match="unknown state"):
            store.list(None, state="maybe")
        with pytest.raises(InvalidRequest, match="unknown request kind"):
            store.list(None, kind="nope")


def test_an_approval_that_cannot_be_applied_is_a_409_and_changes_nothing(world, spool):
    """apply runs in the approval's transaction: what it did before failing is rolled
    back with the state change."""
    tenants, store, p = world

    def apply(session, request, actor):
        session.scalar(select(Tenant).where(Tenant.slug == "acme")).name = "half-done"
        raise InvalidRequest("the quota is gone meanwhile")

    register(Kind("test_fragile", approver="tenant", validate=lambda pl, ctx: pl, apply=apply))
    try:
        with rls.tenant("acme"):
            view = store.create("test_fragile", tenant="acme", payload={}, by=p["alice"])
            # a member's own request: a tenant admin decides it (the member may not)
            with pytest.raises(Forbidden, match="tenant admin"):
                store.approve(view.id, p["alice"])
            with pytest.raises(Conflict, match="cannot be approved: the quota is gone"):
                store.approve(view.id, p["acme-admin"])
            assert store.get(view.id, p["acme-admin"]).state == "pending"
        with rls.platform():
            assert tenants.get_tenant("acme").name == "acme"
        assert [e["action"] for e in events(spool)] == ["request.created"]
    finally:
        approvals_registry._kinds.pop("test_fragile")


def test_join_tenant_follows_its_sign_up_both_ways(world, spool):
    """A domain sign-up under admin_approval makes a join_tenant request; approving the
    request makes the member; rejecting the sign-up on the review page rejects it."""
    tenants, store, p = world

    def awaiting(username):
        with rls.platform():
            result = tenants.sign_up(username, f"{username}@acme.example", PASSWORD)
            tenants.verify_signup(result.token, PASSWORD)
        with rls.tenant("acme"):
            [view] = [v for v in store.list(p["acme-admin"], kind="join_tenant")
                      if v.requester == username]  # fmt: skip
        return view

    erin = awaiting("erin")
    assert erin.state == "pending" and erin.requester_email == "erin@acme.example"
    assert erin.approver == "tenant" and erin.payload["username"] == "erin"
    with rls.tenant("acme"):
        done = store.approve(erin.id, p["acme-admin"], reason="welcome")
    assert done.state == "approved"
    with rls.platform(), tenants.session() as s:
        assert s.scalar(select(Membership.role).where(Membership.username == "erin")) == "member"
        assert s.scalar(select(SignupRequest).where(SignupRequest.username == "erin")) is None
    assert tenants.user("erin").tenant == "acme"

    frank = awaiting("frank")
    with rls.tenant("acme"):
        tenants.reject_signup("frank", "not one of ours", tenant="acme", actor="acme-admin")
        after = store.get(frank.id, p["acme-admin"])
    assert (after.state, after.reason, after.decided_by) == (
        "rejected", "not one of ours", "acme-admin")  # fmt: skip

    gina = awaiting("gina")
    with rls.tenant("acme"):
        tenants.approve_signup("gina", tenant="acme", actor="acme-admin2")
        assert store.get(gina.id, p["acme-admin"]).state == "approved"
        # nobody asks for a join through the store's API path twice: it is decided
        with pytest.raises(Conflict):
            store.approve(gina.id, p["acme-admin"])
    assert tenants.user("gina").tenant == "acme"
    got = [(e["action"], e["target"]) for e in events(spool)]
    assert ("request.created", f"request:{erin.id}") in got
    assert ("request.approved", f"request:{gina.id}") in got
    assert ("request.rejected", f"request:{frank.id}") in got


def test_a_request_without_a_tenant_is_platform_work_only(world, db_url):
    """An onboarding-like request (no tenant yet): the platform sees it; on PostgreSQL no
    tenant's transaction does, whatever the query asks (row-level security)."""
    tenants, store, p = world
    register(Kind("test_tenantless", approver="platform", validate=lambda pl, ctx: pl,
                  apply=lambda s, r, a: None, api=False, needs_tenant=False))  # fmt: skip
    try:
        with rls.platform():
            view = store.create("test_tenantless", tenant=None, payload={"org": "Initrode"},
                                requester="pat@initrode.example",
                                requester_email="pat@initrode.example")  # fmt: skip
            assert view.tenant is None
            assert [v.id for v in store.list(None, kind="test_tenantless")] == [view.id]
        if db_url.startswith("postgresql"):
            with rls.tenant("acme"):
                with pytest.raises(NotFound):
                    store.get(view.id)  # by=None: the store would show it; the database does not
                assert store.list(None, kind="test_tenantless") == []
        with rls.platform():
            assert store.approve(view.id, p["root"]).state == "approved"
    finally:
        approvals_registry._kinds.pop("test_tenantless")
