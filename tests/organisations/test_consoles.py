"""The two consoles on a real hub: who may open which (own tenant's admin, another tenant's
admin, a member, an analyst, a platform admin), what they show (members, invitations,
teams, requests, usage and cost from billing's own numbers, audit events), and that no
other tenant's data is in a tenant's page. The actions are the API's (tested by the API's
modules, and end to end in test_browser_e2e.py).

One demo hub for the module on SQLite (acme: acme-admin, alice (member), dave (analyst);
globex: globex-admin, bob, gina (analyst)). The consoles' reads under PostgreSQL's
row-level security are exercised end to end in test_browser_e2e.py, whose hub runs on it.
"""

from __future__ import annotations

import html
import json
import re
import uuid

import pytest

from fedhub import db
from fedhub.approvals.store import ApprovalStore
from fedhub.billing.periods import containing
from fedhub.db import rls
from fedhub.db.base import utcnow
from fedhub.extensions.hub.tenancy_api.consoles import as_json
from fedhub.metering import Usage, record
from fedhub.tenancy import teams
from fedhub.tenancy.store import TenantStore
from tests.harness import this_month, wait_for

CONSOLE = "/hub/fedhub/console"
PLATFORM = "/hub/fedhub/platform"


@pytest.fixture(scope="module")
def hub(hub_factory):
    hub = hub_factory()
    hub.fedhub("user", "add", "gina", "--tenant", "globex", "--role", "analyst",
               "--password", hub.password)  # fmt: skip
    return hub


@pytest.fixture(scope="module")
def sessions(hub):
    """A logged-in browser-like session (cookies) of each person."""
    people = ("admin", "acme-admin", "alice", "dave", "globex-admin", "bob", "gina")
    out = {}
    for name in people:
        r = hub.login(name)
        assert r.status_code == 302, (name, r.status_code)
        out[name] = r.session
    return out


@pytest.fixture(scope="module")
def acme_data(hub, sessions):
    """acme's things a console shows: an invitation (through the API), a team, a pending
    tier change, this month's compute usage; globex's invitation."""
    for slug, email in (("acme", "new.colleague@acme.example"),
                        ("globex", "someone@globex.example")):  # fmt: skip
        s = sessions[f"{slug}-admin"]
        r = s.post(f"{hub.url}/hub/api/fedhub/tenants/{slug}/invitations",
                   json={"email": email, "role": "member"},
                   headers=xsrf(hub, s), timeout=30)  # fmt: skip
        assert r.status_code == 201, r.text
    store = TenantStore(hub.db_url)
    with rls.tenant("acme"), db.session_scope(hub.db_url) as s:
        teams.create_team(s, "acme", "rockets", store.tiers, lead="alice",
                          quotas={"servers": 1}, actor="acme-admin")  # fmt: skip
        # 2 CPU-core hours this month: what the quota and the bill count
        record(s, [Usage("acme", "cpu_seconds", 7200, *this_month(),
                         "tests", f"console-{uuid.uuid4().hex}", "alice")])  # fmt: skip
    view = ApprovalStore(store).create(
        "tier_change", tenant="acme", payload={"tier": "enterprise"},
        by=store.user("acme-admin"),
    )  # fmt: skip
    return {"request": view.id}


def xsrf(hub, session) -> dict:
    return {"X-XSRFToken": session.cookies.get("_xsrf"), "Referer": f"{hub.url}/hub/"}


def page(hub, session, path: str, **kwargs):
    return session.get(f"{hub.url}{path}", timeout=60, allow_redirects=False, **kwargs)


def text(r) -> str:
    return " ".join(html.unescape(r.text).split())


def test_the_charts_data_cannot_end_its_script_element():
    hostile = {"name": "</script><script>alert(1)</script>", "amp": "&lt;"}
    text = as_json(hostile)
    assert not set("<>&") & set(text) and json.loads(text) == hostile


@pytest.mark.slow
def test_who_may_open_which_console(hub, sessions, acme_data):
    # a tenant admin: their own tenant's console, not another's (404, like no tenant)
    r = page(hub, sessions["acme-admin"], CONSOLE)
    assert r.status_code == 200, r.text
    assert 'data-tenant="acme"' in r.text
    assert page(hub, sessions["acme-admin"], CONSOLE + "?tenant=acme").status_code == 200
    for other in ("globex", "nosuch"):
        r = page(hub, sessions["acme-admin"], f"{CONSOLE}?tenant={other}")
        assert r.status_code == 404 and "Globex" not in r.text
    r = page(hub, sessions["globex-admin"], CONSOLE)
    assert r.status_code == 200 and 'data-tenant="globex"' in r.text
    assert page(hub, sessions["globex-admin"], CONSOLE + "?tenant=acme").status_code == 404
    # members and analysts, of this tenant or another: neither console
    for person in ("alice", "dave", "bob", "gina"):
        assert page(hub, sessions[person], CONSOLE).status_code == 403, person
        assert page(hub, sessions[person], CONSOLE + "?tenant=acme").status_code == 403
        assert page(hub, sessions[person], PLATFORM).status_code == 403, person
    for admin in ("acme-admin", "globex-admin"):
        assert page(hub, sessions[admin], PLATFORM).status_code == 403
    # a platform admin: the platform console, and any tenant's console by name
    assert page(hub, sessions["admin"], PLATFORM).status_code == 200
    r = page(hub, sessions["admin"], CONSOLE)
    assert r.status_code == 302 and r.headers["Location"].endswith("/hub/fedhub/platform")
    r = page(hub, sessions["admin"], CONSOLE + "?tenant=globex")
    assert r.status_code == 200 and 'data-tenant="globex"' in r.text
    assert page(hub, sessions["admin"], CONSOLE + "?tenant=nosuch").status_code == 404
    # nobody signed in: the login page
    r = hub.api("GET", CONSOLE, allow_redirects=False)
    assert r.status_code == 302 and "/hub/login" in r.headers["Location"]


@pytest.mark.slow
def test_the_navigation_bar_links_to_the_consoles_one_may_open(hub, sessions):
    for person, console, platform in (
        ("acme-admin", True, False),
        ("alice", False, False),
        ("dave", False, False),
        ("admin", False, True),
    ):
        r = page(hub, sessions[person], "/hub/home")
        assert r.status_code == 200, r.text
        assert ('id="fedhub-console-link"' in r.text) == console, person
        assert ('id="fedhub-platform-link"' in r.text) == platform, person


@pytest.mark.slow
def test_the_tenant_console_shows_its_tenants_data_and_no_other(hub, sessions, acme_data):
    r = page(hub, sessions["acme-admin"], CONSOLE)
    body = text(r)
    # members with roles, the pending invitation, the team and its quota, the request
    for person in ("acme-admin", "alice", "dave"):
        assert f'data-user="{person}"' in r.text
    assert "new.colleague@acme.example" in body
    row = re.search(r'<tr data-team="rockets">.*?</tr>', r.text, re.S).group(0)
    assert "servers 1" in row and "alice" in row
    # and its usage: no server running of its one, alice's 2 compute hours this month
    cell = lambda name: re.search(rf'class="team-{name}">([^<]*)<', row).group(1)  # noqa: E731
    assert (cell("servers"), cell("hours")) == ("0 / 1", "2.00")
    row = re.search(rf'<tr data-request="{acme_data["request"]}">.*?</tr>', r.text, re.S).group(0)
    assert "tier change from professional to enterprise" in row and "pending" in row
    # usage against the tier: 2 of the professional tier's compute hours (tiers.yaml)
    row = re.search(r'<tr data-limit="compute_hours_per_month">.*?</tr>', r.text, re.S)
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", row.group(0))
    store = TenantStore(hub.db_url)
    allowed = store.tiers.get("professional").compute_hours_per_month
    assert [float(cells[1]), float(cells[2])] == [2.0, allowed]
    # the cost this month is billing's estimate: the base fee for the days so far
    chart = re.search(r'id="console-data">(.*?)</script>', r.text, re.S).group(1)
    assert '"basis": "estimate"' in chart and containing(utcnow()).name in chart
    assert "/hub/fedhub/static/plotly.min.js" in r.text
    # nothing of globex's: its people, its invitation
    for other in ("globex", "bob", "gina", "someone@globex.example"):
        assert other not in body, other
    # and globex's console has nothing of acme's
    body = text(page(hub, sessions["globex-admin"], CONSOLE))
    for other in ("acme", "alice", "dave", "rockets", "new.colleague@acme.example"):
        assert other not in body.lower(), other


@pytest.mark.slow
def test_recent_audit_events_are_the_tenants_own(hub, sessions, acme_data):
    def shown():
        r = page(hub, sessions["acme-admin"], CONSOLE)
        section = r.text.split('id="audit"', 1)[1]
        return "user.invited" in section and section

    section = wait_for(shown, 90, 1, "acme's invitation in its console's audit events")
    # who invited whom: personal fields, decrypted with the audit keys
    assert "acme-admin" in section and "new.colleague@acme.example" in section
    section = page(hub, sessions["globex-admin"], CONSOLE).text.split('id="audit"', 1)[1]
    assert "acme" not in section


@pytest.mark.slow
def test_the_platform_console_shows_every_tenant_and_pending_request(hub, sessions, acme_data):
    r = page(hub, sessions["admin"], PLATFORM)
    body = text(r)
    for slug in ("acme", "globex", "initech"):
        assert f'data-tenant="{slug}"' in r.text
    row = re.search(rf'<tr data-request="{acme_data["request"]}".*?</tr>', r.text, re.S).group(0)
    assert "tier change from professional to enterprise" in row
    for tier in TenantStore(hub.db_url).tiers.tiers:
        assert f'data-tier="{tier}"' in r.text
    assert "Revenue" in body and "/hub/fedhub/static/platform.js" in r.text


@pytest.mark.slow
def test_the_consoles_scripts_and_plotly_are_served_by_the_hub(hub):
    import plotly

    r = hub.api("GET", "/hub/fedhub/static/plotly.min.js")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith(
        ("application/javascript", "text/javascript")
    )
    shipped = __import__("pathlib").Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    assert r.content == shipped.read_bytes()
    for name in ("console.js", "platform.js"):
        r = hub.api("GET", f"/hub/fedhub/static/{name}")
        assert r.status_code == 200 and "X-XSRFToken" in r.text
    for path in ("consoles.py", "../tenancy_api/consoles.py", "%2e%2e/page.html", "nosuch.js"):
        assert hub.api("GET", f"/hub/fedhub/static/{path}").status_code == 404, path
