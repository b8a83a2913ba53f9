"""The marketplace service on one real hub (PostgreSQL, so row-level security is enforced
in the service): publish, review, buy exactly once, licences, reviews, downloads, sales
and payouts, each endpoint tried with the tokens of other tenants and roles.

One hub for the module (the demo: acme on professional, globex on starter, initech on free).
"""

from __future__ import annotations

import base64
import signal
import uuid

import pytest

from tests.harness import wait_for
from tests.marketplace.conftest import ALGORITHM

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

API = "/services/marketplace/api/v1/"
SLUG = "fedprox-variant"
REF = f"market/{SLUG}@1.0.0"
ASSET = {
    "name": "FedProx variant",
    "slug": SLUG,
    "asset_type": "algorithm",
    "category": "strategies",
    "description": "FedProx with a smaller proximal term. <script>alert(1)</script>",
    "tags": ["fedprox"],
    "licence": "commercial",
    "price": "49.99",
    "filename": "variant.py",
    "content_base64": base64.b64encode(ALGORITHM).decode(),
}


@pytest.fixture(scope="module")
def hub(hub_factory, postgres):
    db_url = postgres.create_database(f"market_{uuid.uuid4().hex[:8]}")
    # a killed service is started again within a second (JupyterHub's own check: 30 s)
    hub = hub_factory(db_url=db_url, args=["--FedhubHub.service_poll_interval=1"])
    wait_for(lambda: hub.api("GET", API + "openapi.json").status_code == 200, 120, 0.3,
             "the marketplace service")  # fmt: skip
    return hub


@pytest.fixture(scope="module")
def t(hub) -> dict[str, str]:
    people = ("admin", "acme-admin", "alice", "dave", "globex-admin", "bob", "carol")
    return {name: hub.token(name) for name in people}


def call(hub, token, method, path, **kw):
    r = hub.api(method, API + path, token, **kw)
    if r.status_code >= 400:
        body = r.json()
        assert set(body["error"]) >= {"code", "message"}, body  # fedhub's error shape
    return r


def code(r) -> str:
    return r.json()["error"]["code"]


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


#: a FedProx variant: the server moves only ``server_lr`` of the way to the clients' average
#: (its evaluate reports the Unix account its hooks ran as)
VARIANT = b"""import os

from fedhub.fl.registry import Param
from fedhub.fl.strategies import FedProx


class DampedFedProx(FedProx):
    params = {"mu": Param(float, min=0.0, max=10.0), "server_lr": Param(float, min=0.0, max=1.0)}

    def __init__(self, mu=0.01, server_lr=0.5):
        super().__init__(mu)
        self.server_lr = server_lr

    def aggregate(self, rnd, params, results):
        return params + self.server_lr * (self.average(results) - params)

    def evaluate(self, rnd, params):
        return {"uid": os.getuid()}
"""


def test_must_show_1_a_bought_strategy_runs_and_both_amounts_are_exact(hub, t):
    """acme publishes a FedProx variant, globex cannot buy it before the review, buys it
    after, bob runs an experiment with it on globex's own workers; globex's invoice has the
    price, acme's payout statement its share, and the use is audited."""
    import os
    import pwd
    from datetime import datetime, timedelta
    from decimal import Decimal

    from sqlalchemy import select

    from fedhub import accounts, db
    from fedhub.billing.money import cents
    from fedhub.billing.operations import Billing
    from fedhub.billing.periods import containing
    from fedhub.billing.settings import BillingSettings
    from fedhub.clock import FixedClock
    from fedhub.db import rls
    from fedhub.marketplace.settings import MarketplaceSettings
    from tests.organisations.hub_helpers import spool_events

    slug, price = "damped-fedprox", Decimal("24.99")
    ref = f"market/{slug}@1.0.0"
    asset = {**ASSET, "name": "Damped FedProx", "slug": slug, "price": str(price),
             "filename": "damped.py", "content_base64": base64.b64encode(VARIANT).decode()}  # fmt: skip
    assert call(hub, t["acme-admin"], "POST", "assets", json=asset).status_code == 201
    buy = f"assets/{slug}/purchase"
    r = call(hub, t["globex-admin"], "POST", buy, headers={"Idempotency-Key": "d1"})
    assert r.status_code == 404  # pending review: not for sale, not even visible
    body = {"version": "1.0.0", "decision": "approve", "note": "source read"}
    assert call(hub, t["admin"], "POST", f"assets/{slug}/review", json=body).status_code == 200
    purchase = call(hub, t["globex-admin"], "POST", buy, headers={"Idempotency-Key": "d1"})
    assert purchase.status_code == 201, purchase.text

    exps = "/services/experiments/api/v1/experiments"
    spec = {"strategy": ref, "strategy_params": {"mu": 0.1, "server_lr": 0.5}, "rounds": 2,
            "clients": 4, "dataset": "synthetic", "seed": 1}  # fmt: skip
    r = hub.api("POST", exps, t["bob"], json={**spec, "strategy_params": {"lr": 1}})
    assert r.status_code == 201  # accepted: its parameters are the source's, checked at run
    bad = r.json()["id"]
    r = hub.api("POST", exps, t["bob"], json=spec)
    assert r.status_code == 201, r.text
    run = r.json()["id"]

    def finished(exp_id):
        d = hub.api("GET", f"{exps}/{exp_id}", t["bob"]).json()
        return d if d["status"] in ("completed", "failed", "cancelled") else None

    done = wait_for(lambda: finished(run), 240, 0.5, "the experiment with the bought strategy")
    assert (done["status"], done["rounds_done"]) == ("completed", 2), done
    # its hooks ran on globex's own workers, as globex's account, not in the service
    account = pwd.getpwnam(accounts.tenant_account("globex")).pw_uid
    assert [m["uid"] for m in done["metrics"]] == [account, account] and account != os.getuid()
    refused = wait_for(lambda: finished(bad), 120, 0.5, "the run with an undeclared parameter")
    assert refused["status"] == "failed" and "strategy_params.lr: unknown" in refused["error"]

    # the next invoice: billing closes the month of the sale (its clock past the month's end
    # and grace, so the invoice is finalized) and globex reads it through billing's API: one
    # charge line of exactly the price
    month = containing(datetime.fromisoformat(purchase.json()["created_at"]).replace(tzinfo=None))
    after = FixedClock(month.end + BillingSettings().grace + timedelta(minutes=1))
    [closed] = Billing(hub.db_url, clock=after).close(month, tenants=["globex"])
    assert closed["status"] == "finalized", closed
    bills = "/services/billing/api/v1/invoices"
    listed = hub.api("GET", f"{bills}?tenant=globex", t["globex-admin"]).json()["invoices"]
    [invoice] = [i for i in listed if i["period"] == month.name]
    doc = hub.api("GET", f"{bills}/{invoice['id']}", t["globex-admin"]).json()
    assert (doc["tenant"], doc["status"]) == ("globex", "finalized")
    charges = [
        ln for ln in doc["lines"] if ln["type"] == "charge" and "Damped" in ln["description"]
    ]
    assert [Decimal(ln["amount"]) for ln in charges] == [price], doc["lines"]
    assert hub.api("GET", f"{bills}/{invoice['id']}", t["acme-admin"]).status_code == 404
    # the payout statement: the publisher's share, computed here from the configured percent
    share = cents(price * Decimal(str(MarketplaceSettings().revenue_share_percent)) / 100)
    [line] = [x for x in call(hub, t["acme-admin"], "GET", "sales").json()["sales"]
              if x["asset"] == slug]  # fmt: skip
    assert (Decimal(line["gross"]), Decimal(line["amount"])) == (price, share)
    statements = call(hub, t["acme-admin"], "GET", "payouts").json()["statements"]
    [statement] = [st for st in statements if st["period"] == line["period"]]
    [on_it] = [x for x in statement["lines"] if x["id"] == line["id"]]
    assert (statement["state"], Decimal(on_it["amount"])) == ("open", share)
    assert Decimal(statement["amount"]) == sum(Decimal(x["amount"]) for x in statement["lines"])

    # the use: metered once and audited for this run
    from fedhub.metering import MeterEvent

    with rls.platform(), db.session_scope(hub.db_url) as s:
        uses = s.scalars(
            select(MeterEvent.attributes).where(MeterEvent.kind == "marketplace_uses")
        ).all()
    assert [u["ref"] for u in uses if u.get("experiment") == run] == [ref]
    used = [e for e in spool_events(hub, "marketplace.used")
            if e["details"].get("context") == {"experiment": run}]  # fmt: skip
    assert [(e["tenant"], e["actor"], e["details"]["ref"]) for e in used] == [
        ("globex", "bob", ref)
    ]


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


def test_a_bought_model_is_a_runs_initial_weights(hub, t):
    """init_weights: market/<model>@<version> starts the run from the model's state dict,
    loaded on globex's workers; weights that do not fit the run's model fail it, saying so;
    a model is no strategy (409)."""
    import io

    import torch

    from fedhub import fl

    def state_dict_file(in_features: int) -> str:
        buf = io.BytesIO()
        model = fl.models.get("logistic_regression", in_features=in_features, num_classes=10)
        torch.save(model.state_dict(), buf)
        return base64.b64encode(buf.getvalue()).decode()

    exps = "/services/experiments/api/v1/experiments"
    spec = {"rounds": 1, "clients": 2, "dataset": "synthetic"}
    refs = {}
    for slug, features in (("warm-start", 60), ("narrow-start", 30)):
        asset = {**ASSET, "name": slug, "slug": slug, "asset_type": "model", "price": "0",
                 "filename": "weights.pt", "content_base64": state_dict_file(features)}  # fmt: skip
        r = call(hub, t["acme-admin"], "POST", "assets", json=asset)
        assert r.status_code == 201, r.text
        body = {"version": "1.0.0", "decision": "approve", "note": "weights only"}
        assert call(hub, t["admin"], "POST", f"assets/{slug}/review", json=body).status_code == 200
        key = {"Idempotency-Key": slug}
        assert call(hub, t["globex-admin"], "POST", f"assets/{slug}/purchase", headers=key).ok
        r = hub.api("POST", exps, t["bob"], json={**spec, "init_weights": f"market/{slug}@1.0.0"})
        assert r.status_code == 201, r.text
        refs[slug] = r.json()["id"]
    r = hub.api("POST", exps, t["bob"], json={**spec, "strategy": "market/warm-start@1.0.0"})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "marketplace_not_runnable")
    assert "market/warm-start@1.0.0 is of type model" in r.json()["error"]["message"]

    def finished(exp_id):
        d = hub.api("GET", f"{exps}/{exp_id}", t["bob"]).json()
        return d if d["status"] in ("completed", "failed", "cancelled") else None

    done = wait_for(lambda: finished(refs["warm-start"]), 240, 0.5, "the warm-started run")
    assert done["status"] == "completed", done
    bad = wait_for(lambda: finished(refs["narrow-start"]), 240, 0.5, "the run that cannot fit")
    assert bad["status"] == "failed"
    assert "market/narrow-start@1.0.0: does not load into the run's model" in bad["error"]


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


def test_a_bought_dataset_trains_a_run_on_the_buyers_workers_until_revoked(hub, t):
    """dataset: market/<slug>@<version> (HD): globex's run trains on the licensed CSV,
    copied into globex's store as globex's account; the revoked licence refuses the next
    submission and deletes the copy."""
    import os
    import pwd
    import stat

    import numpy as np
    import pandas as pd

    from fedhub import accounts

    rng = np.random.default_rng(3)
    kind = rng.integers(0, 2, 120)
    frame = pd.DataFrame({f"f{i}": rng.normal(kind * (i + 1), 0.3) for i in range(3)})
    frame["kind"] = np.array(["cat", "dog"])[kind]
    slug = "pets-table"
    asset = {**ASSET, "name": "Pets", "slug": slug, "asset_type": "dataset", "price": "0",
             "filename": "pets.csv", "label_column": "kind",
             "content_base64": base64.b64encode(frame.to_csv(index=False).encode()).decode()}  # fmt: skip
    r = call(hub, t["acme-admin"], "POST", "assets", json=asset)
    assert r.status_code == 201, r.text
    body = {"version": "1.0.0", "decision": "approve", "note": "a table"}
    assert call(hub, t["admin"], "POST", f"assets/{slug}/review", json=body).status_code == 200
    held = call(hub, t["globex-admin"], "POST", f"assets/{slug}/purchase",
                headers={"Idempotency-Key": slug})  # fmt: skip
    assert held.status_code == 201, held.text

    exps = "/services/experiments/api/v1/experiments"
    spec = {"dataset": f"market/{slug}@1.0.0", "rounds": 2, "clients": 2, "model": "mlp"}
    r = hub.api("POST", exps, t["bob"], json=spec)
    assert r.status_code == 201, r.text
    run = r.json()["id"]

    def finished():
        d = hub.api("GET", f"{exps}/{run}", t["bob"]).json()
        return d if d["status"] in ("completed", "failed", "cancelled") else None

    done = wait_for(finished, 240, 0.5, "the run on the bought dataset")
    assert (done["status"], done["rounds_done"]) == ("completed", 2), done
    copies = hub.state_dir / "tenant-data" / "globex" / "market" / slug
    [copy] = list(copies.iterdir())
    account = pwd.getpwnam(accounts.tenant_account("globex")).pw_uid
    assert account != os.getuid()
    for path in (copies, copy, *copy.iterdir()):  # the tenant's account's, nobody else's
        mode = path.stat()
        assert (mode.st_uid, stat.S_IMODE(mode.st_mode) & 0o077) == (account, 0), path

    [licence] = [e for e in call(hub, t["globex-admin"], "GET", "entitlements").json()[
        "entitlements"] if e["asset"] == slug]  # fmt: skip
    revoke = f"entitlements/{licence['id']}/revoke"
    assert call(hub, t["admin"], "POST", revoke, json={"reason": "test"}).status_code == 200
    r = hub.api("POST", exps, t["bob"], json=spec)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "not_entitled")
    assert not copies.exists()  # the licence is gone, so is globex's copy
