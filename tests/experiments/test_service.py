"""The experiments service on a real hub: runs, tier refusals, isolation, cancel, resume,
fair share, metering and audit events."""

import pytest

from tests.experiments.conftest import TINY, kill_service, service_pid, spooled_events, sql
from tests.harness import wait_for

pytestmark = pytest.mark.slow


def test_run_completes_with_metrics_meter_and_audit(exp_hub, api):
    alice = api("alice")
    r = alice.submit(**TINY, strategy="fedprox", strategy_params={"mu": 0.5})
    assert r.status_code == 201, r.text
    exp = r.json()
    assert exp["status"] == "queued" and exp["tenant"] == "acme" and exp["user"] == "alice"
    done = alice.wait_done(exp["id"])
    assert done["status"] == "completed", done
    assert [m["round"] for m in done["metrics"]] == [1, 2, 3, 4]
    assert all(0.0 <= m["test_accuracy"] <= 1.0 for m in done["metrics"])
    # the final weights are served
    w = alice.call("GET", f"/experiments/{exp['id']}/weights")
    assert w.status_code == 200 and len(w.content) > 100
    # metered per round, once per (experiment, round)
    rows = sql(
        exp_hub,
        "select kind, count(*), sum(quantity), min(username) from fedhub_meter_events"
        " where source='experiments' and attributes like ? group by kind",
        f'%"{exp["id"]}"%',
    )
    meters = {k: (n, q, u) for k, n, q, u in rows}
    assert meters["fl_rounds"] == (4, 4.0, "alice")
    assert meters["fl_client_seconds"][0] == 4 and meters["fl_client_seconds"][1] > 0
    # audit: submitted (by the handler) and completed (by the runner)
    actions = {e["action"] for e in spooled_events(exp_hub) if exp["id"] in str(e["target"])}
    assert {"experiment.submitted", "experiment.completed"} <= actions
    # listed for the tenant, with the quota counting it
    listed = alice.call("GET", "/experiments").json()["experiments"]
    assert exp["id"] in [e["id"] for e in listed]
    # a page at a time: the newest first, then the rest after the cursor
    first = alice.call("GET", "/experiments?limit=1").json()
    assert first["experiments"] == listed[:1]
    if len(listed) > 1:
        rest = alice.call("GET", f"/experiments?cursor={first['next_cursor']}").json()
        assert rest["experiments"] == listed[1:] and rest["next"] is None
    else:
        assert first["next"] is None
    q = alice.call("GET", "/quota").json()
    assert q["tenant"] == "acme" and q["tier"] == "professional"
    assert q["usage"]["experiments_this_month"] >= 1 and q["usage"]["fl_rounds_this_month"] >= 4


def test_suspended_tenant_cannot_submit(exp_hub, api):
    carol = api("carol")  # her token is made before the suspension (login is refused after)
    exp_hub.fedhub("tenant", "suspend", "initech")
    try:
        r = carol.submit(**TINY)
        assert r.status_code == 403 and r.json()["error"]["code"] == "tenant_suspended"
    finally:
        exp_hub.fedhub("tenant", "resume", "initech")


def test_invalid_spec_is_400_naming_the_field(api):
    r = api("alice").submit(**{**TINY, "clients_per_round": 50})
    assert r.status_code == 400
    assert "clients_per_round" in r.json()["error"]["message"]


def test_refused_max_clients_per_experiment(exp_hub, api):
    r = api("carol").submit(**{**TINY, "clients": 11})  # free tier: 10
    assert r.status_code == 429, r.text
    err = r.json()["error"]
    assert err["code"] == "quota_exceeded"
    assert err["details"]["limit"] == "max_clients_per_experiment"
    assert "max_clients_per_experiment = 10" in err["message"] and "requested 11" in err["message"]
    refused = [e for e in spooled_events(exp_hub) if e["action"] == "experiment.refused"]
    assert any(e["actor"] == "carol" and e["result"] == "denied" for e in refused)


def test_refused_experiments_per_month(exp_hub, api):
    exp_hub.fedhub("tenant", "update", "initech", "--override", "experiments_per_month=0")
    try:
        r = api("carol").submit(**TINY)
        assert r.status_code == 429, r.text
        err = r.json()["error"]
        assert err["details"]["limit"] == "experiments_per_month"
        assert "current usage 0" in err["message"]
    finally:
        exp_hub.fedhub("tenant", "update", "initech", "--override", "experiments_per_month=")


def test_refused_federated_client_hours(exp_hub, api):
    exp_hub.fedhub(
        "tenant", "update", "initech", "--override", "federated_client_hours_per_month=0"
    )
    try:
        r = api("carol").submit(**TINY)
        assert r.status_code == 429
        assert r.json()["error"]["details"]["limit"] == "federated_client_hours_per_month"
    finally:
        exp_hub.fedhub(
            "tenant", "update", "initech", "--override", "federated_client_hours_per_month="
        )


def test_concurrent_limit_then_cancel_within_a_round(exp_hub, api):
    carol = api("carol")  # free tier: one experiment at a time
    long = {**TINY, "rounds": 300}
    first = carol.submit(**long)
    assert first.status_code == 201, first.text
    exp_id = first.json()["id"]
    second = carol.submit(**TINY)
    assert second.status_code == 429
    err = second.json()["error"]
    assert err["details"]["limit"] == "max_concurrent_experiments"
    assert "current usage 1" in err["message"]
    running = carol.wait(exp_id, lambda d: d["rounds_done"] >= 2, what="two rounds")
    r = carol.call("POST", f"/experiments/{exp_id}/cancel")
    assert r.status_code == 202, r.text
    asked_at = running["rounds_done"]
    done = carol.wait_done(exp_id, timeout=30)
    assert done["status"] == "cancelled"
    # the round in flight when asked may finish, plus the one whose callback saw the flag
    assert done["rounds_done"] <= asked_at + 2 < 300
    assert carol.call("POST", f"/experiments/{exp_id}/cancel").status_code == 409
    # the slot is free again
    again = carol.submit(**{**TINY, "rounds": 1})
    assert again.status_code == 201, again.text
    assert carol.wait_done(again.json()["id"])["status"] == "completed"


def test_other_tenants_experiment_is_404_and_analyst_is_read_only(api):
    alice, bob, dave = api("alice"), api("bob"), api("dave")
    exp_id = alice.submit(**{**TINY, "rounds": 1}).json()["id"]
    for method, path in [
        ("GET", f"/experiments/{exp_id}"),
        ("POST", f"/experiments/{exp_id}/cancel"),
        ("GET", f"/experiments/{exp_id}/events"),
        ("GET", f"/experiments/{exp_id}/weights"),
    ]:
        r = bob.call(method, path)
        assert r.status_code == 404, (method, path, r.status_code)
        assert r.json()["error"]["code"] == "not_found"
    assert exp_id not in [e["id"] for e in bob.call("GET", "/experiments").json()["experiments"]]
    assert bob.call("GET", "/experiments?tenant=acme").status_code == 404
    # dave (analyst, acme) reads but cannot run or cancel
    assert dave.call("GET", f"/experiments/{exp_id}").status_code == 200
    assert dave.submit(**TINY).status_code == 403
    assert dave.call("POST", f"/experiments/{exp_id}/cancel").status_code == 403


def test_event_stream_sends_every_round_then_status(api):
    alice = api("alice")
    exp_id = alice.submit(**{**TINY, "rounds": 3}).json()["id"]
    r = alice.call("GET", f"/experiments/{exp_id}/events", stream=True)
    assert r.headers["Content-Type"].startswith("text/event-stream")
    events = [line for line in r.iter_lines(decode_unicode=True) if line.startswith("event:")]
    assert events == ["event: round"] * 3 + ["event: status"]


def test_two_tenants_at_once_both_progress(api):
    """acme queues two experiments, globex one; with one slot per tenant, globex runs
    alongside acme's first while acme's second waits its turn."""
    alice, bob = api("alice"), api("bob")
    alice.settle()
    bob.settle()
    spec = {**TINY, "rounds": 12}
    a1 = alice.submit(**spec).json()["id"]
    a2 = alice.submit(**spec).json()["id"]
    g1 = bob.submit(**spec).json()["id"]
    seen_both = wait_for(
        lambda: (
            (x := alice.get(a1))["status"] == "running"
            and x["rounds_done"] >= 1
            and (y := bob.get(g1))["status"] == "running"
            and y["rounds_done"] >= 1
            and alice.get(a2)["status"] == "queued"
            and (x, y)
        ),
        90,
        0.2,
        "both tenants running at once",
    )
    assert seen_both[0]["rounds_done"] < 12 and seen_both[1]["rounds_done"] < 12
    for exp_id, who in ((a1, alice), (g1, bob), (a2, alice)):
        assert who.wait_done(exp_id, 120)["status"] == "completed"


def test_resume_after_the_service_is_killed(exp_hub, api):
    alice = api("alice")
    spec = {**TINY, "rounds": 40, "clients": 8, "clients_per_round": 8, "local_epochs": 3}
    exp_id = alice.submit(**spec).json()["id"]
    before = alice.wait(exp_id, lambda d: d["rounds_done"] >= 3, what="three rounds")
    old_pid = kill_service(exp_hub)
    # the hub notices (its poll interval is ~30 s) and starts the service again
    wait_for(lambda: service_pid(exp_hub) != old_pid, 60, 0.5, "the service to restart")
    done = alice.wait_done(exp_id, timeout=120)
    assert done["status"] == "completed", done
    rounds = [m["round"] for m in done["metrics"]]
    assert rounds == list(range(1, 41)), rounds  # no round lost or repeated
    assert before["rounds_done"] < 40
    attempts = sql(exp_hub, "select attempts from fedhub_experiments where id=?", exp_id)
    assert attempts == [(2,)]
    assert f"experiment {exp_id} resumes after round" in exp_hub.log()  # not from scratch
    n = sql(
        exp_hub,
        "select count(*) from fedhub_meter_events where kind='fl_rounds' and attributes like ?",
        f'%"{exp_id}"%',
    )
    assert n == [(40,)]  # metered exactly once per round across the restart


def test_event_stream_resumes_after_a_round_and_refuses_other_positions(api):
    """A negative position kept the stream of a run cancelled before its first round open
    forever, one that is no number was a 500 and so was one beyond SQLite's integers
    (found by tests/access/test_fuzz.py)."""
    alice = api("alice")
    exp_id = alice.submit(**{**TINY, "rounds": 2}).json()["id"]
    assert alice.wait_done(exp_id)["status"] == "completed"
    r = alice.call("GET", f"/experiments/{exp_id}/events?after=1", stream=True)
    lines = [line for line in r.iter_lines(decode_unicode=True) if line.startswith(("id", "event"))]
    assert lines == ["id: 2", "event: round", "event: status"]
    # past the run's last round (beyond any database integer too): only the status
    r = alice.call("GET", f"/experiments/{exp_id}/events?after={'9' * 30}", stream=True)
    assert [line for line in r.iter_lines(decode_unicode=True) if line.startswith("event")] == [
        "event: status"
    ]
    for query, headers in (("?after=-1", {}), ("?after=two", {}), ("", {"Last-Event-ID": "x"})):
        r = alice.call("GET", f"/experiments/{exp_id}/events{query}", headers=headers)
        assert r.status_code == 400, (query, headers, r.status_code)
        assert r.json()["error"]["code"] == "invalid_request"
