"""Sessions users can see and end, and their tier's lifetimes (issue 12, must show 3).

Browsers are ``requests`` sessions with their own cookie jars, logged in through the
hub's form. The hub runs with a frozen clock (``FEDHUB_BILLING_NOW``, the process clock
of :mod:`fedhub.clock`); the lifetime test moves it by restarting the hub with a later
time, the only way into a running hub's clock. Cookies survive the restart (the cookie
secret and the database are in the state dir).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import psutil
import pytest
import requests

from fedhub import db
from fedhub.tenancy.sessions import EndReason, SessionBook, expiry_reason
from fedhub.tenancy.store import TenantStore
from tests.harness import wait_for

T0 = datetime(2026, 11, 2, 9, 0)
SESSIONS = "/hub/api/fedhub/sessions"
USAGE = "/services/billing/api/v1/usage"


@pytest.fixture(scope="module")
def hub(hub_factory):
    return hub_factory(env={"FEDHUB_BILLING_NOW": T0.isoformat()})


def browser(hub, username: str, agent: str = "test-browser", s=None) -> requests.Session:
    """A browser (new, or ``s``) logged in as ``username`` through the form, stopping short
    of the spawn the form leads to."""
    if s is None:
        s = requests.Session()
        s.headers["User-Agent"] = agent
    s.get(f"{hub.url}/hub/login", allow_redirects=False, timeout=10)  # never to /hub/spawn
    r = s.post(
        f"{hub.url}/hub/login",
        data={"username": username, "password": hub.password, "_xsrf": s.cookies.get("_xsrf")},
        allow_redirects=False,
        timeout=30,
    )
    assert r.status_code == 302, (username, r.status_code)
    return s


def call(hub, s: requests.Session, method: str, path: str, **kw) -> requests.Response:
    """A cookie-authenticated hub API call, with the XSRF header the hub asks of cookies."""
    headers = {"X-XSRFToken": s.cookies.get("_xsrf") or ""}
    return s.request(method, f"{hub.url}{path}", headers=headers, timeout=30, **kw)


def session_id(s: requests.Session) -> str:
    return s.cookies.get("jupyterhub-session-id")


def logged_out(hub, s: requests.Session) -> bool:
    """The browser's next page request is sent to the login form, its login cookie cleared."""
    r = s.get(f"{hub.url}/hub/home", allow_redirects=False, timeout=30)
    return (
        r.status_code == 302
        and "/hub/login" in r.headers["Location"]
        and "jupyterhub-hub-login" not in s.cookies
    )


def oauth_token(hub, s: requests.Session, service: str) -> str:
    """What a service gets when this browser opens it: an OAuth token of the browser's session.

    The code grant is completed as the service completes it, with its client secret
    (its hub token), which the test, as root, reads from the service's environment.
    """
    proc = next(
        p
        for p in psutil.Process(hub.proc.pid).children(recursive=True)
        if f"fedhub.services.{service}" in " ".join(p.cmdline())
    )
    env = proc.environ()
    redirect = env["JUPYTERHUB_OAUTH_CALLBACK_URL"]
    r = s.get(
        f"{hub.url}/hub/api/oauth2/authorize",
        params={
            "client_id": env["JUPYTERHUB_CLIENT_ID"],
            "redirect_uri": redirect,
            "response_type": "code",
            "state": "s",
        },
        allow_redirects=False,
        timeout=30,
    )
    assert r.status_code == 302, r.text
    code = requests.utils.urlparse(r.headers["Location"]).query.split("code=")[1].split("&")[0]
    r = requests.post(
        f"{hub.url}/hub/api/oauth2/token",
        data={
            "client_id": env["JUPYTERHUB_CLIENT_ID"],
            "client_secret": env["JUPYTERHUB_API_TOKEN"],
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect,
        },
        timeout=30,
    )
    r.raise_for_status()
    return r.json()["access_token"]


def ended_events(hub) -> list[dict]:
    found = []
    for path in sorted((hub.state_dir / "spool").glob("events-*.jsonl")):
        for line in path.read_text().splitlines():
            event = json.loads(line)
            if event["action"] == "session.ended":
                found.append(event)
    return found


def ended_event(hub, session: str) -> dict:
    return wait_for(
        lambda: next((e for e in ended_events(hub) if e["details"]["session"] == session), None),
        10,
        what=f"session.ended of {session}",
    )


# -- the table ----------------------------------------------------------------------------


def test_expiry_reason_boundaries():
    created = T0
    kw = {"idle_minutes": 60, "absolute_hours": 2}
    assert expiry_reason(created, T0, T0 + timedelta(minutes=59), **kw) is None
    assert expiry_reason(created, T0, T0 + timedelta(minutes=60), **kw) == EndReason.IDLE
    late = T0 + timedelta(hours=1, minutes=50)
    assert expiry_reason(created, late, T0 + timedelta(hours=1, minutes=59), **kw) is None
    assert expiry_reason(created, late, T0 + timedelta(hours=2), **kw) == EndReason.ABSOLUTE
    unlimited = {"idle_minutes": 0, "absolute_hours": 0}
    assert expiry_reason(created, T0, T0 + timedelta(days=400), **unlimited) is None


def test_session_book(migrated_db):
    store = TenantStore(migrated_db)
    store.create_tenant("acme", "Acme", "professional", actor="test")
    book = SessionBook(migrated_db)
    book.start("a1", "alice", tenant="acme", now=T0, ip="10.0.0.1", user_agent="A")
    book.start("a2", "alice", tenant="acme", now=T0 + timedelta(minutes=1))
    book.start("p1", "admin", tenant=None, now=T0)
    a1 = book.get("a1")
    assert (a1.tenant, a1.tier, a1.ip, a1.user_agent, a1.active) == (
        "acme",
        "professional",
        "10.0.0.1",
        "A",
        True,
    )
    assert book.get("p1").tier is None and book.get("nope") is None
    book.touch("a1", T0 + timedelta(minutes=5), "10.0.0.2")
    assert book.get("a1").last_seen_at == T0 + timedelta(minutes=5)
    assert [s.id for s in book.list("alice")] == ["a2", "a1"]
    # another user's id is not ended through alice; each end is reported once
    assert book.end("alice", by="x", why=EndReason.USER, now=T0, only={"p1"}) == []
    ended = book.end("alice", by="alice", why=EndReason.USER, now=T0, keep={"a2"})
    assert [s.id for s in ended] == ["a1"]
    assert book.end("alice", by="alice", why=EndReason.USER, now=T0, only={"a1"}) == []
    assert [s.id for s in book.list("alice")] == ["a2"]
    a1 = next(s for s in book.list("alice", include_ended=True) if s.id == "a1")
    assert (a1.end_reason, a1.ended_by, a1.active) == ("user", "alice", False)
    # an ended session is not touched back to life
    book.touch("a1", T0 + timedelta(hours=1))
    assert book.get("a1").last_seen_at == T0 + timedelta(minutes=5)
    db.dispose_engines()


# -- ending one browser's session ----------------------------------------------------------


@pytest.mark.slow
def test_ending_a_session_logs_that_browser_out_at_its_next_request(hub):
    a = browser(hub, "alice", "browser-A")
    b = browser(hub, "alice", "browser-B")
    listing = call(hub, a, "GET", SESSIONS).json()
    mine = {s["id"]: s for s in listing["sessions"]}
    assert {session_id(a), session_id(b)} <= set(mine)
    assert [s["id"] for s in listing["sessions"] if s["current"]] == [session_id(a)]
    assert mine[session_id(b)]["user_agent"] == "browser-B"
    assert mine[session_id(b)]["ip"] == "127.0.0.1"
    assert mine[session_id(b)]["created"] == T0.isoformat() + "Z"
    # B opened the billing service: an OAuth token of B's session, which billing accepts
    token = oauth_token(hub, b, "billing")
    assert hub.api("GET", "/hub/api/user", token).json()["session_id"] == session_id(b)
    assert hub.api("GET", USAGE, token).status_code == 200
    b_id, b_cookies = session_id(b), b.cookies.copy()

    r = call(hub, a, "DELETE", f"{SESSIONS}/{b_id}")
    assert r.status_code == 200 and r.json() == {"ended": [b_id]}

    assert logged_out(hub, b)
    # the same cookies, replayed by whoever copied them: refused by the API
    r = requests.get(f"{hub.url}/hub/api/user", cookies=b_cookies, timeout=30)
    assert r.status_code == 403
    r = requests.get(f"{hub.url}{SESSIONS}", cookies=b_cookies, timeout=30)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    # A is untouched
    r = call(hub, a, "GET", "/hub/api/user")
    assert r.status_code == 200 and r.json()["name"] == "alice"
    # B's OAuth token is revoked: the hub refuses it now, billing after its cache
    assert hub.api("GET", "/hub/api/user", token).status_code == 403
    wait_for(lambda: hub.api("GET", USAGE, token).status_code == 403, 10, what="billing to refuse")
    event = ended_event(hub, b_id)
    assert (event["actor"], event["target"], event["tenant"]) == ("alice", "alice", "acme")
    assert event["details"]["why"] == "user" and event["details"]["tokens_revoked"] == 1
    # ending it again: it is not a live session any more
    r = call(hub, a, "DELETE", f"{SESSIONS}/{b_id}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


@pytest.mark.slow
def test_end_all_my_other_sessions_and_logout(hub):
    a, b, c = (browser(hub, "bob", agent) for agent in ("A", "B", "C"))
    r = call(hub, a, "DELETE", SESSIONS)
    assert r.status_code == 200
    assert set(r.json()["ended"]) >= {session_id(b), session_id(c)}
    assert session_id(a) not in r.json()["ended"]
    assert logged_out(hub, b) and logged_out(hub, c)
    assert call(hub, a, "GET", "/hub/api/user").status_code == 200
    # logging out ends the session too (it leaves the list)
    a_id = session_id(a)
    a.get(f"{hub.url}/hub/logout", timeout=30)
    assert ended_event(hub, a_id)["details"]["why"] == "logout"
    d = browser(hub, "bob", "D")
    assert a_id not in {s["id"] for s in call(hub, d, "GET", SESSIONS).json()["sessions"]}
    # logging in again in the same browser: a new session id, the old one ended
    d_id = session_id(d)
    browser(hub, "bob", s=d)
    assert session_id(d) != d_id
    assert ended_event(hub, d_id)["details"]["why"] == "replaced"
    live = {s["id"] for s in call(hub, d, "GET", SESSIONS).json()["sessions"]}
    assert session_id(d) in live and d_id not in live


@pytest.mark.slow
def test_the_sessions_page_lists_and_ends(hub):
    a = browser(hub, "dave", "page-A")
    b = browser(hub, "dave", "page-B")
    page = a.get(f"{hub.url}/hub/fedhub/sessions", timeout=30)
    assert page.status_code == 200
    assert "page-A" in page.text and "page-B" in page.text and "this browser" in page.text
    assert "/hub/token" in page.text  # API tokens are managed on the hub's token page
    # every hub page links to the sessions and security pages (extensions/hub/templates/page.html)
    home = a.get(f"{hub.url}/hub/home", timeout=30).text
    assert 'href="/hub/fedhub/sessions"' in home and 'href="/hub/fedhub/security"' in home
    r = a.post(
        f"{hub.url}/hub/fedhub/sessions",
        data={"session": "others", "_xsrf": a.cookies.get("_xsrf")},
        timeout=30,
    )
    assert r.status_code == 200 and "Ended" in r.text
    assert logged_out(hub, b)
    assert a.get(f"{hub.url}/hub/fedhub/sessions", timeout=30).status_code == 200
    # "Log out" on this browser's own row: logged out in this very response
    r = a.post(
        f"{hub.url}/hub/fedhub/sessions",
        data={"session": session_id(a), "_xsrf": a.cookies.get("_xsrf")},
        allow_redirects=False,
        timeout=30,
    )
    assert r.status_code == 302 and "/hub/login" in r.headers["Location"]
    assert "jupyterhub-hub-login" not in a.cookies


# -- a tenant admin and everybody else -------------------------------------------------------


@pytest.mark.slow
def test_tenant_admin_ends_a_members_session_and_no_one_else_can(hub):
    member = browser(hub, "alice", "member")
    sid = session_id(member)
    path = "/hub/api/fedhub/users/alice/sessions"
    # another tenant's admin, another tenant's member, a member of the same tenant:
    # as if alice did not exist
    for outsider in ("globex-admin", "bob", "dave"):
        token = hub.token(outsider)
        for method, p in (("GET", path), ("DELETE", path), ("DELETE", f"{path}/{sid}")):
            r = hub.api(method, p, token)
            assert r.status_code == 404, (outsider, method, p, r.status_code)
            assert r.json()["error"]["code"] == "not_found"
    assert call(hub, member, "GET", "/hub/api/user").status_code == 200

    admin = hub.token("acme-admin")
    listed = hub.api("GET", path, admin).json()["sessions"]
    assert sid in {s["id"] for s in listed}
    r = hub.api("DELETE", f"{path}/{sid}", admin)
    assert r.status_code == 200 and r.json() == {"ended": [sid]}
    assert logged_out(hub, member)
    event = ended_event(hub, sid)
    assert (event["actor"], event["target"], event["tenant"]) == ("acme-admin", "alice", "acme")
    assert event["details"]["why"] == "admin"
    # "my sessions" never reaches someone else's; a platform admin's reach is every tenant
    other = browser(hub, "bob", "bob")
    assert hub.api("DELETE", f"{SESSIONS}/{session_id(other)}", admin).status_code == 404
    r = hub.api(
        "DELETE", f"/hub/api/fedhub/users/bob/sessions/{session_id(other)}", hub.token("admin")
    )
    assert r.status_code == 200 and logged_out(hub, other)


# -- lifetimes ---------------------------------------------------------------------------------


def restart_at(hub, when: datetime) -> None:
    """The same hub (state, port, cookie secret) with its clock at ``when``."""
    children = psutil.Process(hub.proc.pid).children(recursive=True)
    hub.stop()
    # the proxy must have let go of the port before the next one takes it
    psutil.wait_procs(children, timeout=15)
    hub.env["FEDHUB_BILLING_NOW"] = when.isoformat()
    hub.start()


@pytest.mark.slow
def test_idle_and_absolute_lifetimes_expire_sessions(hub):
    """Tenant ``lazy`` has a 60-minute idle limit, ``brief`` a 1-hour absolute one."""
    for slug, policy in (("lazy", "{idle_minutes: 60}"), ("brief", "{absolute_hours: 1}")):
        hub.fedhub(
            "tenant", "create", slug, "--tier", "starter",
            "--override", f"security={{sessions: {policy}}}",
        )  # fmt: skip
        hub.fedhub("user", "add", f"{slug}-user", "--tenant", slug, "--password", hub.password)
    wait_for(lambda: hub.login("brief-user").status_code == 302, 15, what="the users")
    idle = browser(hub, "lazy-user", "idle")
    busy = browser(hub, "lazy-user", "busy")
    brief = browser(hub, "brief-user", "brief")
    unlimited = browser(hub, "bob", "starter")  # starter: no lifetimes
    ids = {name: session_id(s) for name, s in (("idle", idle), ("busy", busy), ("brief", brief))}

    restart_at(hub, T0 + timedelta(minutes=30))
    for s in (busy, brief, unlimited):  # busy is used at +30 min; idle is not
        assert call(hub, s, "GET", "/hub/api/user").status_code == 200

    restart_at(hub, T0 + timedelta(minutes=61))
    assert logged_out(hub, idle)  # 61 minutes without a request
    assert call(hub, busy, "GET", "/hub/api/user").status_code == 200  # 31 minutes
    assert logged_out(hub, brief)  # 61 minutes after its login, used 31 minutes ago
    assert call(hub, unlimited, "GET", "/hub/api/user").status_code == 200
    assert ended_event(hub, ids["idle"])["details"]["why"] == "idle"
    assert ended_event(hub, ids["brief"])["details"]["why"] == "absolute"
    assert ended_event(hub, ids["idle"])["actor"] == "fedhub"
    assert not [e for e in ended_events(hub) if e["details"]["session"] == ids["busy"]]


@pytest.mark.slow
def test_on_postgresql_a_member_is_logged_out_by_their_tenant_admin(hub_factory, postgres):
    """The hub's own session on PostgreSQL: the row, the tier join and the token revocation."""
    pg_hub = hub_factory(
        db_url=postgres.create_database(f"sessions_{uuid.uuid4().hex[:8]}"),
        env={"FEDHUB_BILLING_NOW": T0.isoformat()},
    )
    kept, ended = browser(pg_hub, "alice", "kept"), browser(pg_hub, "alice", "ended")
    ended_id = session_id(ended)
    token = oauth_token(pg_hub, ended, "billing")
    admin = pg_hub.token("acme-admin")
    path = f"/hub/api/fedhub/users/alice/sessions/{ended_id}"
    assert pg_hub.api("DELETE", path, pg_hub.token("globex-admin")).status_code == 404
    assert pg_hub.api("DELETE", path, admin).status_code == 200
    assert logged_out(pg_hub, ended)
    assert call(pg_hub, kept, "GET", "/hub/api/user").status_code == 200
    assert pg_hub.api("GET", "/hub/api/user", token).status_code == 403
    assert ended_event(pg_hub, ended_id)["details"]["why"] == "admin"
