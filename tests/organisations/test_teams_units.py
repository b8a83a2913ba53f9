"""Teams without a hub (fast): quotas carved out of the tenant's, one team per user,
enforcement by the same reservation code as the tenant's limits (servers, compute hours,
experiments), the invoice's breakdown by team, and the team folder's Unix permissions.

A real migrated database (SQLite, and PostgreSQL where marked), real accounts and groups
(the folder test, as root).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import threading
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from fedhub import accounts, db, quotas
from fedhub.billing.invoices import by_team, get_invoice, invoice_document
from fedhub.billing.operations import Billing
from fedhub.billing.periods import parse
from fedhub.billing.render import render_html
from fedhub.billing.settings import BillingSettings
from fedhub.clock import FixedClock, set_clock
from fedhub.errors import Conflict, Forbidden, InvalidRequest, QuotaExceeded
from fedhub.metering import Usage, record
from fedhub.tenancy import team_folders, teams
from fedhub.tenancy.store import TenantStore


@pytest.fixture(scope="module")
def template_db(tmp_path_factory):
    """One SQLite database migrated to the newest revision, copied for each test (a
    migration per test costs seconds; a copy, milliseconds)."""
    path = tmp_path_factory.mktemp("teams") / "template.sqlite"
    db.upgrade(f"sqlite:///{path}")
    db.dispose_engines()
    return path


@pytest.fixture
def fresh_db(template_db, tmp_path):
    path = tmp_path / "fedhub.sqlite"
    shutil.copy(template_db, path)
    yield f"sqlite:///{path}"
    db.dispose_engines()


@pytest.fixture
def store(fresh_db):
    store = TenantStore(fresh_db)
    store.create_tenant("acme", "Acme", "professional")  # 25 servers, 500 h, 5 experiments
    store.create_tenant("globex", "Globex", "starter")
    for user in ("alice", "anna", "arno", "dora"):
        store.add_user(user, "acme", "member")
    store.add_user("bob", "globex", "member")
    return store


def create(store, name, **kw):
    with store.session() as s:
        return teams.create_team(s, "acme", name, store.tiers, **kw)


# -- carving ------------------------------------------------------------------------


def test_each_quota_is_at_most_the_tenants_limit(store):
    with pytest.raises(InvalidRequest) as e:
        create(store, "ml", quotas={"servers": 26})
    assert e.value.details["key"] == "servers"
    assert "max_servers_per_tenant (25" in e.value.message
    for key, value in (("compute_hours", 500.5), ("experiments", 6)):
        with pytest.raises(InvalidRequest) as e:
            create(store, "ml", quotas={key: value})
        assert e.value.details["key"] == key
    view = create(store, "ml", quotas={"servers": 25, "compute_hours": 500, "experiments": 5})
    assert view.quotas == {"servers": 25, "compute_hours": 500.0, "experiments": 5}


def test_quotas_of_all_teams_add_up_to_at_most_the_tenants(store):
    create(store, "ml", quotas={"servers": 10, "compute_hours": 300})
    create(store, "ds", quotas={"servers": 15})
    with pytest.raises(InvalidRequest) as e:  # 10 + 15 + 1 > 25
        create(store, "ops", quotas={"servers": 1})
    assert e.value.details == {
        "key": "servers",
        "limit": "max_servers_per_tenant",
        "allowed": 25,
        "carved": 25,
        "requested": 1,
    }
    with pytest.raises(InvalidRequest) as e:  # 300 + 201 > 500
        create(store, "ops", quotas={"compute_hours": 201})
    assert e.value.details["key"] == "compute_hours" and "at most 200 is left" in e.value.message
    # a team's own quota does not count against its new value; null removes a quota
    with store.session() as s:
        view = teams.update_team(s, "acme", "ml", store.tiers, quotas={"servers": 9})
        assert view.quotas == {"servers": 9, "compute_hours": 300}
        view = teams.update_team(s, "acme", "ml", store.tiers, quotas={"compute_hours": None})
        assert view.quotas == {"servers": 9}
    # the other tenant's teams carve the other tenant's limits
    with store.session() as s:
        assert teams.create_team(s, "globex", "ml", store.tiers, quotas={"servers": 5}).quotas
    with pytest.raises(InvalidRequest):
        create(store, "ops", quotas={"servers": 2})  # 9 + 15 + 2 > 25


BAD_QUOTAS = [
    ({"gpus": 1}, "gpus"),
    ({"servers": -1}, "servers"),
    ({"servers": 1.5}, "servers"),
    ({"servers": "2"}, "servers"),
    ({"servers": True}, "servers"),
    ({"compute_hours": float("inf")}, "compute_hours"),
    ([1], "quotas"),
]


def test_bad_quotas_and_names_are_a_400_naming_the_key(store):
    for quotas_, key in BAD_QUOTAS:
        with pytest.raises(InvalidRequest) as e:
            create(store, "ml", quotas=quotas_)
        assert e.value.details["key"] == key and e.value.status == 400, quotas_
    for name in ["", "ML", "a" * 21, "ml team", "ml/x", None, 3]:
        with pytest.raises(InvalidRequest) as e:
            create(store, name)
        assert e.value.details["key"] == "name", name
    with store.session() as s:
        assert teams.list_teams(s, "acme") == []  # nothing was stored


# -- members ------------------------------------------------------------------------


def test_a_user_is_in_at_most_one_team(store):
    create(store, "ml", lead="alice")
    create(store, "ds")
    with store.session() as s:
        teams.add_member(s, "acme", "ml", "anna")
        with pytest.raises(Conflict, match="anna is in team ml"):
            teams.add_member(s, "acme", "ds", "anna")
        with pytest.raises(InvalidRequest, match="not a member of acme"):
            teams.add_member(s, "acme", "ds", "bob")  # another tenant's user
        teams.remove_member(s, "acme", "ml", "anna")
        assert teams.add_member(s, "acme", "ds", "anna").members == ["anna"]
        assert teams.team_of(s, "anna").name == "ds"
        assert teams.team_of(s, "arno") is None
        assert teams.teams_by_user(s, "acme") == {"alice": "ml", "anna": "ds"}
        # the lead leaving the team is no longer its lead
        assert teams.remove_member(s, "acme", "ml", "alice").lead is None


def test_a_removed_users_name_given_again_is_in_no_team(store):
    create(store, "ml", lead="alice")
    store.remove_user("alice")
    store.add_user("alice", "acme", "member")
    with store.session() as s:
        assert teams.team_of(s, "alice") is None
        assert teams.get_team(s, "acme", "ml").members == []
        assert teams.add_member(s, "acme", "ml", "alice").members == ["alice"]


def test_team_groups_fit_unix_names():
    # fedhub_tm_acme_ml (the account prefix without its dash: fedhub-, or a test worker's)
    assert team_folders.team_group("acme", "ml") == accounts.ACCOUNT_PREFIX[:-1] + "_tm_acme_ml"
    # "a-b" + "c" and "a" + "b-c": two teams, two Unix groups
    assert team_folders.team_group("a-b", "c") != team_folders.team_group("a", "b-c")
    long_a = team_folders.team_group("a" * 63, "b" * 20)
    long_b = team_folders.team_group("a" * 63, "b" * 19 + "c")
    assert len(long_a) <= 32 and len(long_b) <= 32 and long_a != long_b
    # "a-b" + "c" and "a" + "b-c" have the same hub group name (the API refuses the second)
    assert teams.group_name("a-b", "c") == teams.group_name("a", "b-c")


# -- enforcement --------------------------------------------------------------------


def reserve(store, user, server=""):
    return quotas.reserve(
        store.db,
        tenant="acme",
        username=user,
        server_name=server,
        profile="small",
        catalog=store.tiers,
    )


def test_reserve_refuses_a_server_over_the_teams_quota(store):
    create(store, "ml", lead="alice", quotas={"servers": 2})
    with store.session() as s:
        teams.add_member(s, "acme", "ml", "anna")
    reserve(store, "alice")
    reserve(store, "anna")
    with pytest.raises(quotas.TeamServerLimit) as e:
        reserve(store, "alice", "second")
    assert "Your team ml is running 2 of the 2 servers" in e.value.message
    assert e.value.status == 429 and e.value.reason == "team_server_limit"
    assert e.value.details["team"] == "ml" and e.value.details["limit"] == "team.servers"
    reserve(store, "arno")  # not in the team: only the tenant's 25 apply
    # a slot frees when a team mate's server stops
    quotas.release(store.db, "anna", "")
    reserve(store, "alice", "second")


def test_racing_team_mates_start_exactly_the_teams_quota(store):
    """Twenty named servers of a team's members requested at once against a team quota of
    3 (the tenant allows 25): the team check runs under the tenant's lock, like the tenant's."""
    store.update_tenant("acme", overrides={"max_servers_per_user": 20})
    create(store, "ml", lead="alice", quotas={"servers": 3})
    with store.session() as s:
        teams.add_member(s, "acme", "ml", "anna")
    barrier = threading.Barrier(20)
    granted, refused, errors = [], [], []

    def attempt(i):
        barrier.wait()
        try:
            granted.append(reserve(store, ("alice", "anna")[i % 2], f"s{i}"))
        except quotas.TeamServerLimit:
            refused.append(i)
        except Exception as e:  # anything else is a bug the test must show
            errors.append(e)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    assert len(granted) == 3 and len(refused) == 17


def test_reserve_refuses_when_the_teams_compute_hours_are_used(store):
    create(store, "ml", lead="alice", quotas={"compute_hours": 2})
    now = datetime.utcnow()
    usage = Usage("acme", "cpu_seconds", 2 * 3600, now, now, "test", "u1", username="alice")
    with store.session() as s:
        record(s, [usage])
    with pytest.raises(quotas.TeamComputeLimit) as e:
        reserve(store, "alice")
    assert "Your team ml has used 2.00 of the 2 compute hours" in e.value.message
    reserve(store, "arno")  # the tenant has hours left


def test_experiments_service_refuses_over_the_teams_quota(store):
    from fedhub.services.experiments import models as exp_models
    from fedhub.services.experiments import quota as exp_quota
    from fedhub.services.experiments.spec import parse_spec

    assert tuple(teams.ACTIVE_EXPERIMENTS) == tuple(exp_models.ACTIVE)
    create(store, "ml", lead="alice", quotas={"experiments": 1})
    with store.session() as s:
        teams.add_member(s, "acme", "ml", "anna")
    tier = store.tiers.get("professional")  # 5 concurrent experiments for acme
    spec = parse_spec({"clients": 2, "rounds": 1})
    # the service's own reservation: limits checked and the run queued in one transaction
    run = exp_quota.reserve(store.db, "acme", "alice", "professional", tier, spec)
    with pytest.raises(QuotaExceeded) as e:  # anna, a team mate: the team has its one
        exp_quota.reserve(store.db, "acme", "anna", "professional", tier, spec)
    assert "your team ml already has 1 of the 1 experiments" in e.value.message
    assert e.value.details["limit"] == "team.experiments" and e.value.details["team"] == "ml"
    exp_quota.reserve(store.db, "acme", "arno", "professional", tier, spec)  # in no team
    with store.session() as s:
        assert teams.concurrent_experiments(s, "acme", ["alice", "anna"]) == 1
        s.get(exp_models.ExperimentRun, run.id).status = exp_models.COMPLETED
    exp_quota.reserve(store.db, "acme", "anna", "professional", tier, spec)  # a slot again


# -- invoices -----------------------------------------------------------------------


def test_invoice_breaks_costs_down_by_team(fresh_db, monkeypatch, tmp_path):
    migrated_db = fresh_db
    monkeypatch.setenv("FEDHUB_STATE_DIR", str(tmp_path))
    clock = FixedClock(datetime(2026, 10, 1))
    set_clock(clock)
    try:
        billing = Billing(migrated_db, settings=BillingSettings(grace_days=3), clock=clock)
        store = TenantStore(migrated_db, billing.catalog)
        store.create_tenant("acme", "Acme", "starter")  # 50 compute hours included, $0.5/h
        for user in ("alice", "anna", "arno"):
            store.add_user(user, "acme", "member")
        with store.session() as s:
            teams.create_team(s, "acme", "ml", store.tiers, lead="alice")
            teams.add_member(s, "acme", "ml", "anna")
            teams.create_team(s, "acme", "ds", store.tiers)
        at = datetime(2026, 10, 3)
        with store.session() as s:
            for user, hours in (("alice", 40), ("anna", 20), ("arno", 40)):
                record(s, [Usage("acme", "cpu_seconds", hours * 3600, at,
                                 at + timedelta(hours=hours), "test", user, username=user)])  # fmt: skip
        clock.set(datetime(2026, 11, 1, 1))
        billing.close(parse("2026-10"))
        with billing.session() as s:
            doc = invoice_document(s, get_invoice(s, "acme", parse("2026-10")))
    finally:
        set_clock(None)
    split = doc["by_team"]
    assert set(split) == {"ml", "(no team)", "(shared)"}
    # 100 h used, 50 included: 50 h over at $0.5 = $25, 60 % of it the team's (60 of 100 h)
    assert split["ml"]["amount"] == "15.00" and split["(no team)"]["amount"] == "10.00"
    assert Decimal(split["ml"]["usage"]["compute_hours"]) == 60
    assert Decimal(split["(shared)"]["amount"]) == 99  # the starter base fee
    assert sum(Decimal(t["amount"]) for t in split.values()) == Decimal(doc["total"])
    html = render_html(doc)
    table = html[html.index('id="by-team"') :]
    assert "<td>ml</td>" in table and "15.00" in table and "(no team)" in table
    # a tenant with no team gets no team table
    assert 'id="by-team"' not in render_html(dict(doc, by_team=by_team(doc["lines"], {})))


# -- the team folder ------------------------------------------------------------------


def run_as(account: str, *cmd: str) -> subprocess.CompletedProcess:
    """``cmd`` as ``account``, with the groups /etc/group gives it (as a login would)."""
    return subprocess.run(["runuser", "-u", account, "--", *cmd], capture_output=True, text=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="Unix groups and accounts need root")
def test_team_folder_only_the_teams_accounts_can_open(hub_state_root):
    root = hub_state_root / f"state-{uuid.uuid4().hex[:8]}"  # accounts may traverse it
    root.mkdir(mode=0o711)
    folders = team_folders.TeamFolders(root=str(root / "team-data"))
    slug, team = f"t{uuid.uuid4().hex[:8]}", "ml"
    member, outsider = (accounts.account_name(f"{slug}-{u}") for u in ("alice", "dora"))
    for account in (member, outsider):
        accounts.ensure_account(account)
    try:
        folder = folders.sync(slug, team, [f"{slug}-alice"])
        group = team_folders.team_group(slug, team)
        st = folder.stat()
        assert stat.S_IMODE(st.st_mode) == 0o2770 and st.st_uid == 0
        assert st.st_gid == team_folders.grp.getgrnam(group).gr_gid
        assert folder == root / "team-data" / slug / team
        assert run_as(member, "sh", "-c", f"echo hi > {folder}/notes.txt").returncode == 0
        assert run_as(member, "cat", f"{folder}/notes.txt").stdout == "hi\n"
        # setgid: a file made inside belongs to the team's group
        assert (folder / "notes.txt").stat().st_gid == st.st_gid
        denied = run_as(outsider, "ls", str(folder))
        assert denied.returncode != 0 and "Permission denied" in denied.stderr
        assert run_as(outsider, "touch", f"{folder}/x").returncode != 0
        # membership changes follow the team: the outsider joins, the member leaves
        folders.sync(slug, team, [f"{slug}-dora"])
        assert run_as(outsider, "cat", f"{folder}/notes.txt").returncode == 0
        assert run_as(member, "cat", f"{folder}/notes.txt").returncode != 0
        # a deleted team: its group is gone, its files are kept out of everyone's reach
        kept = folders.remove(slug, team)
        assert team_folders.group_members(group) is None and not folder.exists()
        assert stat.S_IMODE(kept.stat().st_mode) == 0o700 and (kept / "notes.txt").exists()
        assert run_as(outsider, "ls", str(kept)).returncode != 0
    finally:
        for account in (member, outsider):
            accounts.remove_account(account)
        subprocess.run(["groupdel", team_folders.team_group(slug, team)], capture_output=True)


# -- the team_quota request ------------------------------------------------------------


def test_team_quota_request_is_asked_by_the_lead_and_applied_carved(store, monkeypatch, tmp_path):
    from fedhub.approvals.store import ApprovalStore

    monkeypatch.setenv("FEDHUB_STATE_DIR", str(tmp_path))  # events spool (and outbox) here
    store.add_user("acme-admin", "acme", "tenant-admin", email="acme-admin@mail.example")
    create(store, "ml", lead="alice", quotas={"servers": 2})
    create(store, "ds", quotas={"servers": 20})
    requests = ApprovalStore(store)
    asked = {"team": "ml", "quotas": {"servers": 5}}
    with pytest.raises(Forbidden):  # a member who does not lead the team
        requests.create("team_quota", tenant="acme", payload=asked, by=store.user("arno"))
    with pytest.raises(InvalidRequest) as e:  # 20 + 6 > 25
        requests.create("team_quota", tenant="acme", payload={"team": "ml",
                        "quotas": {"servers": 6}}, by=store.user("alice"))  # fmt: skip
    assert e.value.details["key"] == "servers"
    view = requests.create("team_quota", tenant="acme", payload=asked, by=store.user("alice"))
    with pytest.raises(Conflict):  # one pending per team
        requests.create("team_quota", tenant="acme", payload=asked, by=store.user("alice"))
    with pytest.raises(Forbidden):  # the lead may not approve: the tenant's admins do
        requests.approve(view.id, store.user("alice"))
    # another team took more meanwhile: the approval is refused and the request stays pending
    with store.session() as s:
        teams.update_team(s, "acme", "ds", store.tiers, quotas={"servers": 21})
    with pytest.raises(Conflict, match="cannot be applied"):
        requests.approve(view.id, store.user("acme-admin"))
    assert requests.get(view.id).state == "pending"
    with store.session() as s:
        teams.update_team(s, "acme", "ds", store.tiers, quotas={"servers": 20})
    assert requests.approve(view.id, store.user("acme-admin")).state == "approved"
    with store.session() as s:
        assert teams.get_team(s, "acme", "ml").quotas == {"servers": 5}
