"""The billing service under a real hub: scoping on every endpoint, rendering, ingest,
and exactly-once ingest across a SIGKILL mid-batch."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
from datetime import timedelta

import psutil
import pytest
import requests

from fedhub import db
from fedhub.billing import subscriptions
from fedhub.billing.operations import Billing
from fedhub.db.base import utcnow
from fedhub.metering import Usage, record
from tests.harness import settled_period, wait_for

pytestmark = pytest.mark.slow
API = "/services/billing/api/v1"


@pytest.fixture(scope="module")
def bhub(hub_factory):
    hub = hub_factory(env={"FEDHUB_BILLING_MAX_BATCH": "20000"})
    tok = hub.token("admin")
    wait_for(
        lambda: hub.api("GET", f"{API}/invoices", tok).status_code == 200,
        60,
        what="billing service",
    )
    # last month: usage for acme (alice) and globex (bob), closed into invoices
    last = settled_period()
    with db.session_scope(hub.db_url) as s:
        for tenant, tier in (("acme", "professional"), ("globex", "starter")):
            subscriptions.record_change(s, tenant, tier, at=last.start)
        record(
            s,
            [
                Usage(
                    "acme",
                    "cpu_seconds",
                    600 * 3600,
                    last.start,
                    last.start,
                    "t",
                    "a1",
                    username="alice",
                ),
                Usage(
                    "globex",
                    "cpu_seconds",
                    70 * 3600,
                    last.start,
                    last.start,
                    "t",
                    "g1",
                    username="bob",
                ),
            ],
        )
    Billing(hub.db_url).close(last)
    hub.last = last
    return hub


def _invoice(hub, tenant):
    r = hub.api("GET", f"{API}/invoices?tenant={tenant}", hub.token("admin"))
    [inv] = [i for i in r.json()["invoices"] if i["period"] == hub.last.name]
    return inv


def test_every_endpoint_refuses_another_tenant(bhub):
    acme_inv = _invoice(bhub, "acme")["id"]
    other = bhub.token("globex-admin")
    member = bhub.token("bob")
    cross = [
        ("GET", f"{API}/usage?tenant=acme", None),
        ("GET", f"{API}/costs?tenant=acme", None),
        ("GET", f"{API}/invoices?tenant=acme", None),
        ("GET", f"{API}/invoices/{acme_inv}", None),
        ("GET", f"{API}/invoices/{acme_inv}.html", None),
        ("GET", f"{API}/invoices/{acme_inv}.pdf", None),
        ("GET", f"{API}/credit-notes?tenant=acme", None),
        ("GET", f"{API}/budget?tenant=acme", None),
        ("PUT", f"{API}/budget?tenant=acme", {"monthly_limit": 1}),
        (
            "POST",
            f"{API}/events",
            {
                "events": [
                    {
                        "id": "x1",
                        "tenant": "acme",
                        "kind": "api_calls",
                        "quantity": 1,
                        "time": utcnow().isoformat(),
                    }
                ]
            },
        ),
    ]
    for method, path, body in cross:
        r = bhub.api(method, path, other, json=body)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
        assert r.json()["error"]["code"] == "not_found"
        assert "acme" not in r.text or "no tenant 'acme'" in r.text
        r = bhub.api(method, path, member, json=body)
        assert r.status_code in (403, 404), (method, path, r.status_code)
    # platform-only endpoints
    for method, path, body in [
        ("GET", f"{API}/revenue", None),
        ("POST", f"{API}/invoices/{acme_inv}/credit-notes", {"amount": 1, "reason": "x"}),
    ]:
        for tok in (other, member, bhub.token("acme-admin")):
            assert bhub.api(method, path, tok, json=body).status_code == 403
    # an unscoped list shows only the caller's own tenant
    r = bhub.api("GET", f"{API}/invoices", other)
    assert {i["tenant"] for i in r.json()["invoices"]} == {"globex"}
    assert bhub.api("GET", f"{API}/credit-notes", other).json()["credit_notes"] == []
    # nothing of acme's was recorded by globex's admin
    with db.session_scope(bhub.db_url) as s:
        from sqlalchemy import select

        from fedhub.metering import MeterEvent

        assert s.scalar(select(MeterEvent.id).where(MeterEvent.idempotency_key == "x1")) is None


def test_roles_see_what_they_should(bhub):
    inv = _invoice(bhub, "acme")
    admin, tadmin, alice = (bhub.token(u) for u in ("admin", "acme-admin", "alice"))
    doc = bhub.api("GET", f"{API}/invoices/{inv['id']}", tadmin).json()
    assert doc["tenant"] == "acme" and doc["total"] == inv["total"]
    html = bhub.api("GET", f"{API}/invoices/{inv['id']}.html", tadmin)
    assert html.status_code == 200 and inv["total"] in html.text
    pdf = bhub.api("GET", f"{API}/invoices/{inv['id']}.pdf", tadmin)
    assert pdf.headers["Content-Type"] == "application/pdf" and pdf.content[:5] == b"%PDF-"
    costs = bhub.api("GET", f"{API}/costs?period={bhub.last.name}", tadmin).json()
    assert "alice" in costs["users"]
    # a member: their own usage and cost, nobody else's, and no invoices
    mine = bhub.api("GET", f"{API}/costs?period={bhub.last.name}", alice).json()
    assert set(mine["users"]) == {"alice"}
    usage = bhub.api("GET", f"{API}/usage?period={bhub.last.name}", alice).json()
    assert usage["user"] == "alice" and "by_user" not in usage
    assert float(usage["meters"]["compute_hours"]["usage"]) == 600
    assert bhub.api("GET", f"{API}/invoices", alice).status_code == 403
    # platform admins: every tenant and the revenue totals
    rev = bhub.api("GET", f"{API}/revenue?period={bhub.last.name}", admin).json()
    assert {"acme", "globex"} <= set(rev["tenants"])
    # budgets: a tenant admin sets their own
    r = bhub.api("PUT", f"{API}/budget", tadmin, json={"monthly_limit": "1000"})
    assert r.status_code == 200, r.text
    assert bhub.api("GET", f"{API}/budget", tadmin).json()["monthly_limit"] == "1000.00"


def test_events_outside_the_late_window_are_refused(bhub):
    tok = bhub.token("admin")
    old = (utcnow() - timedelta(days=30)).isoformat()
    r = bhub.api(
        "POST",
        f"{API}/events",
        tok,
        json={
            "events": [
                {"id": "late-1", "tenant": "acme", "kind": "api_calls", "quantity": 5, "time": old}
            ]
        },
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "late_event"
    r = bhub.api("POST", f"{API}/events", tok, json={"events": [{"id": "bad"}]})
    assert r.status_code == 400 and "tenant" in r.json()["error"]["message"]


def _billing_pid(hub) -> int:
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "fedhub.services.billing" in cmd:
            try:
                if p.environ().get("FEDHUB_STATE_DIR") == str(hub.state_dir):
                    return p.pid
            except psutil.Error:
                continue
    raise LookupError("billing service process not found")


def _writer_active(path: str) -> bool:
    con = sqlite3.connect(path, timeout=0)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        con.close()


def _batch(keys, when):
    return {
        "events": [
            {
                "id": f"k{i}",
                "tenant": "globex",
                "kind": "api_calls",
                "quantity": i % 7,
                "time": when,
                "user": "bob",
                "source": "kill-test",
            }
            for i in keys
        ]
    }


def test_sigkill_mid_batch_then_retry_counts_every_event_once(bhub):
    tok = bhub.token("admin")
    url = f"{bhub.url}{API}/events"
    when = (utcnow() - timedelta(hours=1)).isoformat()
    r = bhub.api("POST", url, tok, json=_batch(range(0, 5000), when))
    assert r.json()["accepted"] == 5000
    big = _batch(range(2500, 22500), when)
    pid = _billing_pid(bhub)
    outcome = {}

    def send():
        try:
            outcome["status"] = requests.post(
                url, json=big, timeout=60, headers={"Authorization": f"token {tok}"}
            ).status_code
        except requests.RequestException as e:
            outcome["error"] = e

    sender = threading.Thread(target=send)
    sender.start()
    path = bhub.db_url.removeprefix("sqlite:///")
    wait_for(lambda: _writer_active(path), 30, interval=0.005, what="the batch's transaction")
    os.kill(pid, signal.SIGKILL)
    sender.join(60)
    assert "status" not in outcome or outcome["status"] >= 500, outcome  # no answer: killed

    def count():
        with db.session_scope(bhub.db_url) as s:
            from sqlalchemy import func, select

            from fedhub.metering import MeterEvent

            return s.execute(
                select(func.count(), func.coalesce(func.sum(MeterEvent.quantity), 0)).where(
                    MeterEvent.source == "ext:kill-test"
                )
            ).one()

    assert count()[0] == 5000  # the killed batch left nothing behind

    # the hub restarts its managed service; the client retries until it is answered
    def retry():
        r = requests.post(url, json=big, timeout=60, headers={"Authorization": f"token {tok}"})
        return r if r.status_code == 200 else None

    r = wait_for(retry, 120, interval=1, what="billing service restarted by the hub")
    assert r.json() == {**r.json(), "received": 20000, "accepted": 17500, "duplicates": 2500}
    assert _billing_pid(bhub) != pid
    n, total = count()
    assert n == 22500 and total == sum(i % 7 for i in range(22500))
    # and once more: all duplicates
    again = bhub.api("POST", url, tok, json=big).json()
    assert again["accepted"] == 0 and again["duplicates"] == 20000


def test_invoices_are_paged_with_a_cursor(bhub):
    """``?limit=&cursor=``: every invoice once, in order, with a ``next`` link; a cursor
    this service did not write is a 400."""
    admin = bhub.token("admin")
    everything = bhub.api("GET", f"{API}/invoices", admin).json()
    assert everything["next"] is None and len(everything["invoices"]) >= 2
    seen, url = [], f"{API}/invoices?limit=1"
    while url:
        page = bhub.api("GET", url, admin).json()
        assert len(page["invoices"]) == 1
        seen += page["invoices"]
        url = page["next"]  # a path on the hub's proxy
    assert seen == everything["invoices"]
    r = bhub.api("GET", f"{API}/invoices?cursor=not-ours", admin)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"


def test_odd_invoice_ids_and_credit_amounts_are_refused_not_500(bhub):
    """Both were 500s, found by tests/access/test_fuzz.py: an invoice id beyond SQLite's
    integers (an overflow in the database driver) and a credit amount that is no number."""
    admin = bhub.token("admin")
    huge = "9" * 20
    for path in (f"{API}/invoices/{huge}", f"{API}/invoices/{huge}.pdf"):
        r = bhub.api("GET", path, admin)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
    note = {"amount": 1, "reason": "goodwill"}
    r = bhub.api("POST", f"{API}/invoices/{huge}/credit-notes", admin, json=note)
    assert r.status_code == 404, r.text
    invoice = _invoice(bhub, "acme")["id"]
    for body in (
        {"amount": "\u00a2", "reason": "goodwill"},
        {"amount": "NaN", "reason": "goodwill"},
        {"amount": None, "reason": "goodwill"},
        ["amount", 1],
    ):
        r = bhub.api("POST", f"{API}/invoices/{invoice}/credit-notes", admin, json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["code"] == "invalid_request"


def test_credit_note_routes_answer_other_methods_with_405(bhub):
    """One handler served both routes: GET on an invoice's credit notes and POST on the
    list reached methods that cannot take those routes' arguments, a 500 each."""
    admin = bhub.token("admin")
    invoice = _invoice(bhub, "acme")["id"]
    for method, path in (
        ("GET", f"{API}/invoices/{invoice}/credit-notes"),
        ("POST", f"{API}/credit-notes"),
    ):
        r = bhub.api(method, path, admin, json={"amount": 1, "reason": "goodwill"})
        assert r.status_code == 405, (method, path, r.status_code)
        assert r.json()["error"]["code"] == "http_405"


def test_periods_outside_the_calendar_are_refused_not_500(bhub):
    """``?period=0000-01`` was a 500 on usage, costs and revenue (found by
    tests/access/test_fuzz.py); the first and last months datetime holds still answer."""
    admin = bhub.token("admin")
    for endpoint in ("usage?tenant=acme&", "costs?tenant=acme&", "revenue?"):
        for period in ("0000-01", "9999-12", "2026-13", "2026-00"):
            r = bhub.api("GET", f"{API}/{endpoint}period={period}", admin)
            assert r.status_code == 400, (endpoint, period, r.status_code)
            assert "invalid billing period" in r.json()["error"]["message"]
        for period in ("0001-01", "9999-11"):
            r = bhub.api("GET", f"{API}/{endpoint}period={period}", admin)
            assert r.status_code == 200, (endpoint, period, r.status_code, r.text)
