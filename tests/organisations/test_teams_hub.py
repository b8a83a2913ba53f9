"""Teams on a real hub: the API (who may read and change whose teams, refusals in fedhub's
error shape), the hub group each team becomes, a real server start refused once the
team's ``servers`` quota is used, the team folder as the spawned account sees it, and a
team's costs on the invoice the billing service serves.

One hub at a time for the module (the demo's tenants acme and globex and their people), on
SQLite and on PostgreSQL, whose servers are the spawner tests' stand-in (tests/spawner/fast_server.py: a real
process of the user's own Unix account, up in ~50 ms).
"""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta
from decimal import Decimal

import psutil
import pytest

from fedhub import accounts
from fedhub.billing import subscriptions
from fedhub.billing.operations import Billing
from fedhub.billing.periods import containing
from fedhub.billing.rating import rate
from fedhub.db.base import utcnow
from fedhub.metering import Usage, record
from fedhub.tenancy import team_folders
from tests.harness import wait_for
from tests.organisations.hub_helpers import spool_events as events
from tests.spawner import race

pytestmark = pytest.mark.slow

TEAMS = "/hub/api/fedhub/tenants/{}/teams"
TEAM = "vision"  # acme's team in this module


@pytest.fixture(scope="module")
def hub(hub_factory):
    """The demo hub on SQLite. The same endpoints through PostgreSQL's row-level security
    (the handlers read and write the teams' rows in the tenant's own scope):
    test_tenancy_api_pg.py."""
    hub = hub_factory(args=["--JupyterHub.allow_named_servers=True", *race.FAST_SERVER_ARGS])
    yield hub
    hub.stop()
    for name in (TEAM, "ops"):  # the machine's Unix groups the hub made for them
        subprocess.run(["groupdel", team_folders.team_group("acme", name)], capture_output=True)


@pytest.fixture(scope="module")
def tokens(hub):
    # the demo has no analyst in globex: gina is one
    hub.fedhub("user", "add", "gina", "--tenant", "globex", "--role", "analyst",
               "--password", hub.password)  # fmt: skip
    people = ("admin", "acme-admin", "alice", "dave", "globex-admin", "bob", "gina")
    return {name: hub.token(name) for name in people}


@pytest.fixture(scope="module")
def team(hub, tokens):
    """acme's team ``vision``: alice leads it, acme-admin is in it, one server at a time."""
    r = hub.api("POST", TEAMS.format("acme"), tokens["acme-admin"],
                json={"name": TEAM, "lead": "alice", "quotas": {"servers": 1}})  # fmt: skip
    assert r.status_code == 201, r.text
    r = hub.api("PUT", f"{TEAMS.format('acme')}/{TEAM}/members/acme-admin", tokens["alice"])
    assert r.status_code == 200, r.text  # the lead adds a member
    return r.json()


def hub_group(hub, tokens, name):
    return hub.api("GET", f"/hub/api/groups/{name}", tokens["admin"])


def test_a_team_is_made_and_mirrored_into_a_hub_group(hub, tokens, team):
    assert team["members"] == ["acme-admin", "alice"] and team["lead"] == "alice"
    assert team["group"] == f"team-acme-{TEAM}" and team["quotas"] == {"servers": 1}
    group = hub_group(hub, tokens, f"team-acme-{TEAM}").json()
    assert sorted(group["users"]) == ["acme-admin", "alice"]
    assert group["properties"]["fedhub_team"] == TEAM
    # every member of the tenant reads its teams (an analyst too)
    for who in ("alice", "dave", "acme-admin", "admin"):
        r = hub.api("GET", TEAMS.format("acme"), tokens[who])
        assert r.status_code == 200 and [t["name"] for t in r.json()["teams"]] == [TEAM], who
    created = [e for e in events(hub, "team.created") if e["target"] == f"acme/{TEAM}"]
    assert created and created[0]["actor"] == "acme-admin" and created[0]["tenant"] == "acme"
    usage = hub.api("GET", f"{TEAMS.format('acme')}/{TEAM}/usage", tokens["dave"]).json()
    assert usage["quotas"] == {"servers": 1} and usage["usage"]["servers"] == 0


def test_refusals_are_4xx_naming_what_is_wrong(hub, tokens, team):
    admin, url = tokens["acme-admin"], TEAMS.format("acme")
    cases = [
        ("POST", url, {"name": "ds", "quotas": {"servers": 26}}, 400, "servers"),
        ("POST", url, {"name": "ds", "quotas": {"servers": 25}}, 400, "at most 24 is left"),
        ("POST", url, {"name": "Data Science"}, 400, "team name"),
        ("POST", url, {"name": "ds", "colour": "red"}, 400, "colour"),
        ("POST", url, {"name": TEAM}, 409, "already has a team"),
        ("POST", url, {"name": "ds", "lead": "bob"}, 400, "not a member of acme"),
        ("PATCH", f"{url}/{TEAM}", {"quotas": {"gpus": 1}}, 400, "gpus"),
        ("PATCH", f"{url}/nope", {"quotas": {}}, 404, "no team"),
        ("PUT", f"{url}/{TEAM}/members/gina", None, 400, "not a member of acme"),
        ("DELETE", f"{url}/{TEAM}/members/dave", None, 404, "not in team"),
    ]
    for method, path, body, status, words in cases:
        r = hub.api(method, path, admin, json=body)
        assert r.status_code == status, (method, path, body, r.text)
        assert words in r.json()["error"]["message"], (body, r.json())
    r = hub.api("POST", url, admin, data=b"[1]")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
    # nothing was stored by any of them
    names = [t["name"] for t in hub.api("GET", url, admin).json()["teams"]]
    assert names == [TEAM]


def test_every_endpoint_refuses_other_tenants_and_lesser_roles(hub, tokens, team):
    url = TEAMS.format("acme")
    endpoints = [
        ("GET", url, None, "read"),
        ("POST", url, {"name": "ops"}, "admin"),
        ("GET", f"{url}/{TEAM}", None, "read"),
        ("PATCH", f"{url}/{TEAM}", {"quotas": {"servers": 0}}, "admin"),
        ("DELETE", f"{url}/{TEAM}", None, "admin"),
        ("PUT", f"{url}/{TEAM}/members/dave", None, "lead"),
        ("DELETE", f"{url}/{TEAM}/members/acme-admin", None, "lead"),
        ("GET", f"{url}/{TEAM}/usage", None, "read"),
    ]
    for method, path, body, needs in endpoints:
        # another tenant's admin, member and analyst: as if acme did not exist
        for who in ("globex-admin", "bob", "gina"):
            r = hub.api(method, path, tokens[who], json=body)
            assert r.status_code == 404, (who, method, path, r.status_code)
            assert r.json()["error"]["code"] == "not_found" and TEAM not in r.text
        r = hub.api(method, path, None, json=body)  # nobody
        assert r.status_code in (401, 403), (method, path, r.status_code)
        if needs == "read":
            continue
        # acme's analyst never changes teams; alice (a member) only as the team's lead
        r = hub.api(method, path, tokens["dave"], json=body)
        assert r.status_code == 403, ("dave", method, path, r.text)
        if needs == "admin":
            r = hub.api(method, path, tokens["alice"], json=body)
            assert r.status_code == 403, ("alice", method, path, r.text)
    # a new team never inherits files left under its name (a deleted tenant's same-named team)
    left = hub.state_dir / "team-data" / "acme" / "ops"
    left.mkdir(parents=True)
    (left / "old.txt").write_text("someone else's")
    # a lead changes only their own team's members
    r = hub.api("POST", url, tokens["acme-admin"], json={"name": "ops"})
    assert r.status_code == 201
    if os.geteuid() == 0:  # team folders are made by a root hub (the embedded default)
        assert left.is_dir() and not (left / "old.txt").exists()
        [aside] = left.parent.glob(".ops-deleted-*")
        assert (aside / "old.txt").exists() and oct(aside.stat().st_mode & 0o777) == "0o700"
    r = hub.api("PUT", f"{url}/ops/members/dave", tokens["alice"])
    assert r.status_code == 403 and "lead of team ops" in r.json()["error"]["message"]
    assert hub.api("DELETE", f"{url}/ops", tokens["acme-admin"]).status_code == 204
    wait_for(lambda: hub_group(hub, tokens, "team-acme-ops").status_code == 404, 10,
             what="the deleted team's hub group to go")  # fmt: skip
    # the team is as it was
    assert hub.api("GET", f"{url}/{TEAM}", tokens["alice"]).json() == team


def servers(hub, user, token):
    return hub.api("GET", f"/hub/api/users/{user}", token).json()["servers"]


def _groups_of(account: str) -> set[int]:
    """The supplementary groups of ``account``'s running processes."""
    found = set()
    for proc in psutil.process_iter(["username", "pid"]):
        if proc.info["username"] == account:
            with open(f"/proc/{proc.info['pid']}/status") as f:
                for line in f:
                    if line.startswith("Groups:"):
                        found |= {int(g) for g in line.split()[1:]}
    return found


def _environ_of(account: str) -> dict[str, str]:
    """The environment of ``account``'s server process (the first one found)."""
    for proc in psutil.process_iter(["username", "pid"]):
        if proc.info["username"] == account:
            return proc.environ()
    return {}


@pytest.mark.skipif(os.geteuid() != 0, reason="per-user accounts need root")
def test_a_server_start_is_refused_once_the_teams_servers_are_used(hub, tokens, team):
    alice, admin = tokens["alice"], tokens["acme-admin"]
    r = hub.api("POST", "/hub/api/users/alice/server", alice)
    assert r.status_code in (201, 202), r.text
    wait_for(lambda: (servers(hub, "alice", alice).get("") or {}).get("ready"), 60,
             what="alice's server")  # fmt: skip
    try:
        r = hub.api("POST", "/hub/api/users/acme-admin/server", admin)
        assert r.status_code == 429, r.text
        message = r.json()["message"]
        assert f"Your team {TEAM} is running 1 of the 1 servers its team quota allows" in message
        refused = [e for e in events(hub, "server.spawn_refused") if e["actor"] == "acme-admin"]
        assert refused[-1]["details"]["reason"] == "team_server_limit"
        assert refused[-1]["details"]["team"] == TEAM
        usage = hub.api("GET", f"{TEAMS.format('acme')}/{TEAM}/usage", admin).json()
        assert usage["usage"]["servers"] == 1
        # alice's server runs with the team's group: it may open the team folder
        group = team_folders.team_group("acme", TEAM)
        gid = team_folders.grp.getgrnam(group).gr_gid
        assert gid in _groups_of(accounts.account_name("alice"))
        folder = hub.state_dir / "team-data" / "acme" / TEAM
        assert oct(folder.stat().st_mode & 0o7777) == "0o2770" and folder.stat().st_gid == gid
        env = _environ_of(accounts.account_name("alice"))
        assert env.get("FEDHUB_TEAM") == TEAM and env.get("FEDHUB_TEAM_DIR") == str(folder)
        write = ["runuser", "-u", accounts.account_name("alice"), "--", "sh", "-c",
                 f"echo plan > {folder}/plan.txt"]  # fmt: skip
        assert subprocess.run(write, capture_output=True).returncode == 0
        # dave is in acme but not in the team: his account cannot even list it
        dave = accounts.account_name("dave")
        made = accounts.lookup(dave) is None
        accounts.ensure_account(dave)
        try:
            peek = subprocess.run(["runuser", "-u", dave, "--", "ls", str(folder)],
                                  capture_output=True, text=True)  # fmt: skip
            assert peek.returncode != 0 and "Permission denied" in peek.stderr
        finally:
            if made:
                accounts.remove_account(dave)
    finally:
        hub.api("DELETE", "/hub/api/users/alice/server", alice)
        wait_for(lambda: not servers(hub, "alice", alice), 60, what="alice's server to stop")
    # the slot is free again: acme-admin's server starts
    r = hub.api("POST", "/hub/api/users/acme-admin/server", admin)
    assert r.status_code in (201, 202), r.text
    hub.api("DELETE", "/hub/api/users/acme-admin/server", admin)
    wait_for(lambda: not servers(hub, "acme-admin", admin), 60, what="acme-admin's server")


def test_the_lead_asks_for_a_higher_quota_and_a_tenant_admin_approves(hub, tokens, team):
    asked = {"kind": "team_quota", "payload": {"team": TEAM, "quotas": {"servers": 2}}}
    r = hub.api("POST", "/hub/api/fedhub/requests", tokens["dave"], json=asked)
    assert r.status_code == 403, r.text  # not the team's lead
    r = hub.api("POST", "/hub/api/fedhub/requests", tokens["alice"], json=asked)
    assert r.status_code == 201, r.text
    request = r.json()
    assert request["approver"] == "tenant" and request["state"] == "pending"
    approve = f"/hub/api/fedhub/requests/{request['id']}/approve"
    assert hub.api("POST", approve, tokens["globex-admin"], json={}).status_code == 404
    assert hub.api("POST", approve, tokens["alice"], json={}).status_code == 403
    r = hub.api("POST", approve, tokens["acme-admin"], json={"reason": "ok"})
    assert r.status_code == 200 and r.json()["state"] == "approved", r.text
    view = hub.api("GET", f"{TEAMS.format('acme')}/{TEAM}", tokens["alice"]).json()
    assert view["quotas"] == {"servers": 2}
    wait_for(lambda: hub_group(hub, tokens, f"team-acme-{TEAM}").json()["properties"]["quotas"]
             == {"servers": 2}, 15, what="the mirror to show the new quota")  # fmt: skip


def test_the_invoice_shows_costs_by_team(hub, tokens, team):
    last = containing(utcnow().replace(day=1) - timedelta(days=1))
    billing = Billing(hub.db_url)
    with billing.session() as s:
        subscriptions.record_change(s, "acme", "professional", at=last.start)
        at = last.start + timedelta(days=2)
        record(s, [Usage("acme", "cpu_seconds", hours * 3600, at, at + timedelta(hours=hours),
                         "test", f"teams-{user}", username=user)
                   for user, hours in (("alice", 400), ("dave", 200))])  # fmt: skip
    billing.close(last)
    api = "/services/billing/api/v1/invoices"
    token = tokens["acme-admin"]
    r = wait_for(lambda: (x := hub.api("GET", f"{api}?tenant=acme", token)).ok and x,
                 60, 0.5, "billing service")  # fmt: skip
    [invoice] = [i for i in r.json()["invoices"] if i["period"] == last.name]
    doc = hub.api("GET", f"{api}/{invoice['id']}", token).json()
    # 600 h used, 500 included: 100 h at $0.40, two thirds of it alice's, so the team's
    assert doc["by_team"][TEAM]["usage"]["compute_hours"].startswith("400")
    assert doc["by_team"][TEAM]["amount"] == "26.67"
    assert doc["by_team"]["(no team)"]["amount"] == "13.33"
    # this month so far, as the console shows it: alice's usage is past the included hours
    now = utcnow()
    with billing.session() as s:
        record(s, [Usage("acme", "cpu_seconds", 600 * 3600, now, now, "test", "teams-now",
                         username="alice")])  # fmt: skip
    usage = hub.api("GET", f"{TEAMS.format('acme')}/{TEAM}/usage", token).json()
    # the members' shares of billing's own rating of the month so far (its per-user lines)
    with billing.session() as s:
        rating = rate(s, "acme", containing(now), billing.catalog, until=utcnow())
    members = set(usage["members"])
    expected = sum(Decimal(share["amount"]) for line in rating.lines
                   for user, share in line.attribution.get("users", {}).items()
                   if user in members)  # fmt: skip
    assert expected > 0 and usage["cost_this_month"] == {"amount": str(expected), "currency": "USD"}
    html = hub.api("GET", f"{api}/{invoice['id']}.html", token).text
    assert "Cost by team" in html and f"<td>{TEAM}</td>" in html
