"""The marketplace service on one real hub (PostgreSQL, so row-level security is enforced
in the service): publish, review, buy exactly once (also across a SIGKILLed service),
licences, reviews, downloads, sales and payouts, each endpoint tried with the tokens of other
tenants and roles. Bought assets in experiments: test_runs_hub.py.

One hub for the module (the demo: acme on professional, globex on starter, initech on free).
"""

from __future__ import annotations

import signal

import pytest

from tests.harness import wait_for
from tests.marketplace.conftest import ALGORITHM
from tests.marketplace.on_hub import API, ASSET, REF, SLUG, call, code, start_hub, tokens

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture(scope="module")
def hub(hub_factory, postgres):
    # a killed service is started again within a second (JupyterHub's own check: 30 s)
    return start_hub(hub_factory, postgres, "--FedhubHub.service_poll_interval=1")


@pytest.fixture(scope="module")
def t(hub) -> dict[str, str]:
    return tokens(hub)


def test_publish_review_buy_use_and_get_paid(hub, t):
    r = call(hub, t["globex-admin"], "POST", "assets", json={**ASSET, "slug": "g"})
    assert (r.status_code, code(r)) == (403, "marketplace_publishing_not_in_tier")
    r = call(hub, t["alice"], "POST", "assets", json=ASSET)  # a member: no publish scope
    assert r.status_code == 403
    r = call(hub, t["acme-admin"], "POST", "assets", json=ASSET)
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "pending_review"

    # pending: acme sees it, globex neither finds, opens nor buys it
    assert [
        a["slug"] for a in call(hub, t["acme-admin"], "GET", "search?q=fedprox").json()["assets"]
    ] == [SLUG]
    assert call(hub, t["globex-admin"], "GET", "search?q=fedprox").json()["assets"] == []
    assert call(hub, t["globex-admin"], "GET", f"assets/{SLUG}").status_code == 404
    r = call(
        hub, t["globex-admin"], "POST", f"assets/{SLUG}/purchase", headers={"Idempotency-Key": "k1"}
    )
    assert r.status_code == 404

    # the platform admin reads the source in the queue and approves
    queue = call(hub, t["admin"], "GET", "assets?state=pending_review").json()["pending"]
    [item] = [p for p in queue if p["asset"]["slug"] == SLUG]
    assert item["source"] == ALGORITHM.decode()
    body = {"version": "1.0.0", "decision": "approve", "note": "read"}
    assert call(hub, t["acme-admin"], "POST", f"assets/{SLUG}/review", json=body).status_code == 403
    assert call(hub, t["admin"], "POST", f"assets/{SLUG}/review", json=body).status_code == 200
    card = call(hub, t["carol"], "GET", f"assets/{SLUG}").json()
    assert card["state"] == "listed" and "<script>" not in card["description_html"]

    # buying: tenant admins only, a key required, one purchase per key
    path = f"assets/{SLUG}/purchase"
    assert call(hub, t["bob"], "POST", path, headers={"Idempotency-Key": "k1"}).status_code == 403
    assert call(hub, t["globex-admin"], "POST", path).status_code == 400
    first = call(hub, t["globex-admin"], "POST", path, headers={"Idempotency-Key": "k1"})
    again = call(hub, t["globex-admin"], "POST", path, headers={"Idempotency-Key": "k1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json() and first.json()["amount"] == "49.99"

    # use: the licence is checked every time
    [ent] = call(hub, t["bob"], "GET", "entitlements").json()["entitlements"]
    assert ent["reference"] == REF
    assert call(hub, t["bob"], "GET", f"entitlements/check?ref={REF}").status_code == 200
    r = call(hub, t["carol"], "GET", f"entitlements/check?ref={REF}")
    assert (r.status_code, code(r)) == (403, "not_entitled") and SLUG in r.json()["error"][
        "message"
    ]
    assert call(hub, t["carol"], "GET", f"assets/{SLUG}/content").status_code == 403
    got = call(hub, t["bob"], "GET", f"assets/{SLUG}/content")
    assert got.content == ALGORITHM and got.headers["X-Fedhub-Version"] == "1.0.0"
    assert call(hub, t["carol"], "GET", "entitlements").json()["entitlements"] == []

    # reviews: from the buyer's tenant only, once per user
    assert (
        call(hub, t["carol"], "POST", f"assets/{SLUG}/reviews", json={"stars": 5}).status_code
        == 403
    )
    assert (
        call(
            hub, t["bob"], "POST", f"assets/{SLUG}/reviews", json={"stars": 4, "text": "good"}
        ).status_code
        == 201
    )
    assert (
        call(hub, t["bob"], "POST", f"assets/{SLUG}/reviews", json={"stars": 5}).status_code == 409
    )
    reviews = call(hub, t["carol"], "GET", f"assets/{SLUG}/reviews").json()
    assert (reviews["rating"], reviews["count"]) == (4.0, 1)

    # the publisher's sales and payouts: its own only
    [statement] = call(hub, t["acme-admin"], "GET", "payouts").json()["statements"]
    assert (statement["gross"], statement["amount"]) == ("49.99", "39.99")
    assert call(hub, t["globex-admin"], "GET", "sales?tenant=acme").status_code == 404
    assert call(hub, t["globex-admin"], "GET", "payouts?tenant=acme").status_code == 404
    assert call(hub, t["globex-admin"], "GET", "sales").json()["sales"] == []
    assert call(hub, t["bob"], "GET", "sales").status_code == 403
    assert call(hub, t["admin"], "GET", "sales?tenant=acme").json()["sales"][0]["buyer"] == "globex"


def test_an_experiment_naming_the_asset_is_refused_without_a_licence(hub, t):
    """The experiments service asks the marketplace at every submission."""
    path = "/services/experiments/api/v1/experiments"
    spec = {"strategy": REF, "rounds": 1, "clients": 2}
    r = hub.api("POST", path, t["carol"], json=spec)  # initech holds no licence
    assert (r.status_code, r.json()["error"]["code"]) == (403, "not_entitled")
    assert SLUG in r.json()["error"]["message"]
    r = hub.api("POST", path, t["bob"], json={"model": REF, "rounds": 1, "clients": 2})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "marketplace_not_runnable")
    assert "not as 'model'" in r.json()["error"]["message"]


def test_other_tenants_purchases_and_licences_are_out_of_reach(hub, t):
    mine = call(hub, t["globex-admin"], "GET", "entitlements").json()["entitlements"]
    assert mine, "runs after the purchase test"
    purchase = mine[0]["purchase"]
    r = call(hub, t["acme-admin"], "POST", f"purchases/{purchase}/refund", json={})
    assert r.status_code == 404  # another tenant's purchase does not exist for acme
    assert call(hub, t["acme-admin"], "GET", "entitlements?tenant=globex").status_code == 404
    assert call(hub, t["dave"], "GET", "entitlements").json()["entitlements"] == []


def test_bad_input_is_a_4xx_in_fedhubs_shape(hub, t):
    cases = [
        ("POST", "assets", {"data": b"{not json"}),
        ("POST", "assets", {"json": {**ASSET, "slug": "x", "price": "-1"}}),
        ("POST", "assets", {"json": {**ASSET, "slug": "y", "content_base64": "%%%"}}),
        ("GET", "search?sort=cheapest", {}),
        ("GET", "search?min_price=abc", {}),
        ("GET", "entitlements/check?ref=not-a-ref", {}),
        ("POST", f"assets/{SLUG}/reviews", {"json": {"stars": 9}}),
    ]
    for method, path, kw in cases:
        r = call(hub, t["acme-admin"], method, path, **kw)
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text)


def test_the_notebook_client(hub, t, tmp_path, monkeypatch):
    """fedhub.marketplace.* against the service, with the same errors as the API."""
    import fedhub
    from fedhub.client import FedhubAPIError

    monkeypatch.setenv("FEDHUB_MARKETPLACE_URL", f"{hub.url}/services/marketplace/")
    notebook = tmp_path / "tour.ipynb"
    notebook.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')

    def as_user(name):
        monkeypatch.setenv("JUPYTERHUB_API_TOKEN", t[name])

    as_user("acme-admin")
    made = fedhub.marketplace.publish("Tour notebook", "notebook", notebook, slug="tour",
                                      price="0", tags=["intro"])  # fmt: skip
    assert made["state"] == "pending_review"
    body = {"version": "1.0.0", "decision": "approve", "note": "ok"}
    assert call(hub, t["admin"], "POST", "assets/tour/review", json=body).status_code == 200

    as_user("carol")
    with pytest.raises(FedhubAPIError) as e:
        fedhub.marketplace.install("tour", into=tmp_path / "carol")
    assert (e.value.status, e.value.code) == (403, "not_entitled")

    as_user("globex-admin")
    assert [a["slug"] for a in fedhub.marketplace.search("tour")] == ["tour"]
    first = fedhub.marketplace.purchase("tour", idempotency_key="nb-1")
    assert fedhub.marketplace.purchase("tour", idempotency_key="nb-1") == first
    assert first["amount"] == "0.00"  # free: an entitlement, no charge
    as_user("bob")
    path = fedhub.marketplace.install("tour", into=tmp_path / "bob")
    assert path.name == "tour-1.0.0.ipynb" and path.read_bytes() == notebook.read_bytes()
    assert fedhub.marketplace.review("tour", 5, "clear")["stars"] == 5
    with pytest.raises(FedhubAPIError) as e:
        fedhub.marketplace.purchase("tour")  # a member: not their organisation's money
    assert e.value.status == 403


def test_upgrade_then_revoke_stops_the_next_use(hub, t):
    v2 = {"version": "1.1.0", "filename": "variant.py", "content": "mu = 0.25\n",
          "changelog": "smaller mu"}  # fmt: skip
    assert call(hub, t["acme-admin"], "POST", f"assets/{SLUG}/versions", json=v2).status_code == 201
    body = {"version": "1.1.0", "decision": "approve", "note": "read"}
    assert call(hub, t["admin"], "POST", f"assets/{SLUG}/review", json=body).status_code == 200
    assert call(hub, t["bob"], "POST", f"assets/{SLUG}/upgrade").status_code == 403
    up = call(hub, t["globex-admin"], "POST", f"assets/{SLUG}/upgrade")
    assert (up.status_code, up.json()["version"]) == (200, "1.1.0")
    new_ref = f"market/{SLUG}@1.1.0"
    assert call(hub, t["bob"], "GET", f"entitlements/check?ref={new_ref}").status_code == 200
    revoke = f"entitlements/{up.json()['id']}/revoke"
    assert call(hub, t["globex-admin"], "POST", revoke, json={"reason": "x"}).status_code == 403
    r = call(hub, t["admin"], "POST", revoke, json={"reason": "licence breach"})
    assert (r.status_code, r.json()["state"]) == (200, "revoked")
    r = call(hub, t["bob"], "GET", f"entitlements/check?ref={new_ref}")
    assert (r.status_code, code(r)) == (403, "not_entitled")
    spec = {"strategy": new_ref, "rounds": 1, "clients": 2}
    r = hub.api("POST", "/services/experiments/api/v1/experiments", t["bob"], json=spec)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "not_entitled")


def test_a_models_weights_through_install_and_statements_only_admins_pay(
    hub, t, tmp_path, monkeypatch
):
    """A model asset from the notebook client: checked at publish (a pickled module is a
    400), its state dict back from ``install``; the publisher's statement over HTTP, which
    only a platform admin may mark paid, and only once its month is closed."""
    import torch

    import fedhub
    from fedhub.client import FedhubAPIError

    monkeypatch.setenv("FEDHUB_MARKETPLACE_URL", f"{hub.url}/services/marketplace/")
    torch.manual_seed(1)
    net = torch.nn.Linear(4, 3)
    good, whole = tmp_path / "linear.pt", tmp_path / "whole.pt"
    torch.save(net.state_dict(), good)
    torch.save(net, whole)

    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", t["acme-admin"])
    with pytest.raises(FedhubAPIError) as e:
        fedhub.marketplace.publish("Whole module", "model", whole, slug="whole-module")
    assert (e.value.status, e.value.code) == (400, "invalid_asset")
    assert "weights_only" in e.value.message
    made = fedhub.marketplace.publish("Linear 4x3", "model", good, slug="linear-4x3",
                                      price="2.50")  # fmt: skip
    assert made["versions"][0]["schema"]["parameters"] == 15
    body = {"version": "1.0.0", "decision": "approve", "note": "weights only"}
    assert call(hub, t["admin"], "POST", "assets/linear-4x3/review", json=body).status_code == 200
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", t["globex-admin"])
    fedhub.marketplace.purchase("linear-4x3", idempotency_key="model-1")

    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", t["bob"])
    for _ in range(2):  # the second install finds the same file and loads it again
        weights = fedhub.marketplace.install("linear-4x3", into=tmp_path / "bob")
        assert list(weights) == ["weight", "bias"]
        assert all(torch.equal(weights[k], v) for k, v in net.state_dict().items())
    kept = tmp_path / "bob" / "marketplace" / "linear-4x3" / "1.0.0" / "linear.pt"
    assert kept.read_bytes() == good.read_bytes()

    statements = call(hub, t["acme-admin"], "GET", "payouts").json()["statements"]
    [st] = [s for s in statements if any(ln["asset"] == "linear-4x3" for ln in s["lines"])]
    assert st["state"] == "open"
    assert call(hub, t["acme-admin"], "GET", f"payouts/{st['id']}").json()["id"] == st["id"]
    assert call(hub, t["globex-admin"], "GET", f"payouts/{st['id']}").status_code == 404
    paid = f"payouts/{st['id']}/paid"
    for who in ("globex-admin", "acme-admin", "bob"):  # the buyer, the publisher: 403
        assert call(hub, t[who], "POST", paid, json={"reference": "x"}).status_code == 403
    r = call(hub, t["admin"], "POST", paid, json={"reference": "SEPA-1"})
    assert (r.status_code, code(r)) == (409, "conflict")  # open: its month is not over
    every = call(hub, t["admin"], "GET", "payouts?state=open").json()["statements"]
    assert st["id"] in [s["id"] for s in every]


def test_must_show_5_the_service_killed_mid_purchase_then_a_retry_buys_once(hub, t):
    """The marketplace service is SIGKILLed while a purchase's transaction waits (it wrote
    the purchase, the entitlement and the charge, and waits to put the publisher's share on
    acme's payout statement, whose row this test holds locked); the hub starts the service
    again and the client's retries with the same Idempotency-Key buy exactly once: one
    purchase, one entitlement, one ``marketplace`` meter event (one invoice line), one
    payout line."""
    import contextlib
    import threading
    import time

    import psutil
    import requests
    from sqlalchemy import create_engine, select, text

    from fedhub import db
    from fedhub.db import rls
    from fedhub.marketplace.models import Entitlement, PayoutLine, Purchase
    from fedhub.metering import MeterEvent

    began = time.monotonic()
    slug, key = "killed-mid-purchase", "sigkill-1"
    asset = {**ASSET, "name": "Killed mid purchase", "slug": slug, "price": "7.77"}
    assert call(hub, t["acme-admin"], "POST", "assets", json=asset).status_code == 201
    body = {"version": "1.0.0", "decision": "approve", "note": "read"}
    assert call(hub, t["admin"], "POST", f"assets/{slug}/review", json=body).status_code == 200

    def service():
        """The hub's managed service ``marketplace``: its process runs the module."""
        found = []
        for proc in psutil.Process(hub.proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):  # a child that just exited
                if "fedhub.services.marketplace" in proc.cmdline():
                    found.append(proc)
        [proc] = found
        return proc

    killed = service()
    answers: list = []

    def buy():
        try:
            answers.append(hub.api("POST", f"{API}assets/{slug}/purchase", t["globex-admin"],
                                   headers={"Idempotency-Key": key}))  # fmt: skip
        except requests.RequestException as e:  # the connection dropped with the service
            answers.append(e)

    engine = create_engine(hub.db_url)  # as the cluster's superuser: no row-level security
    try:
        with engine.connect() as holder, engine.connect() as watcher:
            watcher.execution_options(isolation_level="AUTOCOMMIT")
            holder.begin()
            locked = holder.execute(text(
                "SELECT id FROM fedhub_market_payout_statements WHERE tenant = 'acme' FOR UPDATE"
            )).all()  # fmt: skip
            assert locked, "acme sold earlier in this module: its statement exists"
            me = holder.execute(text("SELECT pg_backend_pid()")).scalar()
            thread = threading.Thread(target=buy, daemon=True)
            thread.start()
            waiting = text(
                "SELECT pid FROM pg_stat_activity "
                "WHERE :me = ANY(pg_blocking_pids(pid)) AND wait_event_type = 'Lock'"
            )
            [backend] = wait_for(lambda: watcher.execute(waiting, {"me": me}).scalars().all(),
                                 30, 0.05, "the purchase waiting on the statement's row")  # fmt: skip
            query = watcher.execute(
                text("SELECT query FROM pg_stat_activity WHERE pid = :p"), {"p": backend}
            ).scalar()
            assert "fedhub_market_payout_statements" in query and "FOR UPDATE" in query
            # mid-transaction: it has inserted the purchase, the entitlement and the charge
            written = set(watcher.execute(text(
                "SELECT relation::regclass::text FROM pg_locks "
                "WHERE pid = :p AND mode = 'RowExclusiveLock'"
            ), {"p": backend}).scalars())  # fmt: skip
            assert {"fedhub_market_purchases", "fedhub_market_entitlements"} <= written, written
            assert any(w.startswith("fedhub_meter_events") for w in written), written
            killed.send_signal(signal.SIGKILL)
            kill_at = time.monotonic()
            killed.wait(10)
            holder.rollback()  # the lock goes; the dead service's transaction never commits
            thread.join(30)
            # its PostgreSQL backend finds its client gone and rolls back
            wait_for(lambda: not watcher.execute(
                text("SELECT 1 FROM pg_stat_activity WHERE pid = :p"), {"p": backend}
            ).all(), 30, 0.05, "the killed service's backend to end")  # fmt: skip
    finally:
        engine.dispose()
    [first] = answers
    assert isinstance(first, requests.RequestException) or first.status_code >= 500, first

    # the client retries with the same key until the restarted service answers
    def retry():
        r = hub.api("POST", f"{API}assets/{slug}/purchase", t["globex-admin"],
                    headers={"Idempotency-Key": key})  # fmt: skip
        return r if r.status_code < 500 else None

    bought = wait_for(retry, 60, 0.2, "the restarted marketplace service")
    restarted = time.monotonic() - kill_at
    assert service().pid != killed.pid
    assert bought.status_code == 201, bought.text  # the first attempt left nothing behind
    again = call(hub, t["globex-admin"], "POST", f"assets/{slug}/purchase",
                 headers={"Idempotency-Key": key})  # fmt: skip
    assert (again.status_code, again.json()) == (200, bought.json())

    with rls.platform(), db.session_scope(hub.db_url) as s:
        purchases = s.scalars(select(Purchase.id).where(Purchase.tenant == "globex",
                                                        Purchase.idempotency_key == key)).all()  # fmt: skip
        [purchase] = purchases
        entitlements = s.scalars(
            select(Entitlement.id).where(Entitlement.purchase_id == purchase)
        ).all()
        charges = [a for a in s.scalars(select(MeterEvent.attributes).where(
            MeterEvent.kind == "marketplace", MeterEvent.tenant == "globex")) if a.get("asset") == slug]  # fmt: skip
        payouts = s.scalars(select(PayoutLine.id).where(PayoutLine.asset_slug == slug)).all()
    assert (len(entitlements), len(payouts)) == (1, 1)
    assert [c["amount"] for c in charges] == ["7.77"]
    took = time.monotonic() - began
    print(f"must-show 5: killed to bought {restarted:.1f} s, the test {took:.1f} s")
