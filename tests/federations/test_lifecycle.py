"""A federation's state machine in the database, without a hub (SQLite and PostgreSQL).

The handlers' blocking functions (:mod:`fedhub.services.experiments.federations.lifecycle`)
and the runner's bookkeeping (:class:`FederationRunner`): the transitions and their 409s,
each round stored, metered and audited once per member however often it is recorded, and a
federation a stopped service left running ends ``failed`` with an event in every member's
chain. The run itself (Dask, the members' accounts) is the end-to-end module's.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from fedhub import metering
from fedhub.db import rls, session_scope
from fedhub.errors import Conflict
from fedhub.services.experiments import quota
from fedhub.services.experiments.federations import lifecycle, results
from fedhub.services.experiments.federations.models import Federation
from fedhub.services.experiments.federations.runner import FederationRunner

SCHEMA = {"features": [{"name": "a", "dtype": "float32"}], "label": {"name": "y", "num_classes": 2}}


@pytest.fixture
def spool(tmp_path, monkeypatch):
    path = tmp_path / "spool"
    monkeypatch.setenv("FEDHUB_EVENTS_SPOOL", str(path))

    def events() -> list[dict]:
        return [
            json.loads(line) for f in path.glob("*.jsonl") for line in f.read_text().splitlines()
        ]

    return events


def three_members(url: str) -> str:
    fid = lifecycle.create(url, tenant="acme", username="acme-admin", name="f",
                           task={"rounds": 3}, schema=SCHEMA, privacy={}, dataset="d@1")  # fmt: skip
    assert lifecycle.invite(url, fid, "globex", "acme-admin") == 2
    assert lifecycle.invite(url, fid, "initech", "acme-admin") == 3
    return fid


def test_the_state_machine_and_its_conflicts(migrated_db):
    url = migrated_db
    with rls.platform():
        fid = three_members(url)
        with pytest.raises(Conflict, match="at least 2 members"):
            lifecycle.start(url, fid, "acme-admin")  # invitations pending: only acme joined
        with pytest.raises(Conflict, match="already invited"):
            lifecycle.invite(url, fid, "globex", "acme-admin")
        lifecycle.respond(url, fid, "globex", "globex-admin", dataset="g@2")
        lifecycle.respond(url, fid, "initech", "initech-admin", dataset=None)
        for tenant, answer in (("globex", "g@2"), ("initech", "g@1"), ("acme", None)):
            with pytest.raises(Conflict, match="has already"):
                lifecycle.respond(url, fid, tenant, "x", dataset=answer)
        # invitees and decliners still list it; joined members are the run's
        assert [f["id"] for f in lifecycle.listed(url, "initech")] == [fid]
        assert lifecycle.listed(url, "hooli") == []
        assert lifecycle.member_tenants(url, fid, joined_only=True) == ["acme", "globex"]
        assert lifecycle.start(url, fid, "acme-admin") == ["acme", "globex"]
        with session_scope(url) as s:  # a running federation holds a slot of each member
            slots = {t: quota.usage(s, t)["concurrent_experiments"] for t in ("globex", "initech")}
        assert slots == {"globex": 1, "initech": 0}
        with pytest.raises(Conflict, match="already running"):
            lifecycle.start(url, fid, "acme-admin")
        with pytest.raises(Conflict, match="no longer takes answers"):
            lifecycle.respond(url, fid, "initech", "x", dataset="i@1")
        with pytest.raises(Conflict, match="invite before it runs"):
            lifecycle.invite(url, fid, "hooli", "acme-admin")
        assert lifecycle.request_cancel(url, fid) == "running"  # the runner stops it
        draft = three_members(url)
        assert lifecycle.request_cancel(url, draft) == "cancelled"  # nothing to stop
        with pytest.raises(Conflict, match="already cancelled"):
            lifecycle.request_cancel(url, draft)


def test_a_round_is_stored_metered_and_audited_once_per_member(migrated_db, spool):
    url = migrated_db
    runner = SimpleNamespace(db_url=url)
    record = {"round": 1, "duration_s": 2.0, "epsilon": 0.5, "members": [1, 2], "dropped": [],
              "aggregate": {"accuracy": 0.7, "loss": 0.9, "examples": 30},
              "per_member": {"acme": {"accuracy": 0.8, "client_seconds": 1.25, "examples": 10},
                             "globex": {"accuracy": 0.6, "client_seconds": 0.75, "examples": 20}}}  # fmt: skip
    with rls.platform():
        fid = three_members(url)
        users = {"acme": "acme-admin", "globex": "globex-admin"}
        for _ in range(2):  # a repeated round (a retried callback) counts once
            FederationRunner._record_round(runner, fid, record, users)
        assert results.rounds(url, fid) == [{k: v for k, v in record.items() if k != "per_member"}]
        assert results.member_metrics(url, fid, "globex")["rounds"] == [
            {"round": 1, "accuracy": 0.6, "client_seconds": 0.75, "examples": 20}]  # fmt: skip
        with session_scope(url) as s:
            rows = s.execute(
                select(metering.MeterEvent.tenant, metering.MeterEvent.quantity,
                       metering.MeterEvent.idempotency_key, metering.MeterEvent.username)
            ).all()  # fmt: skip
            fed = s.get(Federation, fid)
            assert (fed.rounds_done, fed.epsilon) == (1, 0.5)
    assert sorted(rows) == [("acme", 1.25, f"fed:{fid}:1:acme", "acme-admin"),
                            ("globex", 0.75, f"fed:{fid}:1:globex", "globex-admin")]  # fmt: skip
    done = [e for e in spool() if e["action"] == "federation.round_completed"]
    assert sorted(e["tenant"] for e in done) == ["acme", "acme", "globex", "globex"]
    assert {e["details"]["round"] for e in done} == {1} and {e["actor"] for e in done} == {None}


def test_a_run_left_by_a_stopped_service_ends_failed_in_every_members_chain(migrated_db, spool):
    url = migrated_db
    with rls.platform():
        fid = three_members(url)
        lifecycle.respond(url, fid, "globex", "globex-admin", dataset="g@1")
        lifecycle.start(url, fid, "acme-admin")
    FederationRunner(url, SimpleNamespace()).start()  # a new service process
    with rls.platform(), session_scope(url) as s:
        fed = s.get(Federation, fid)
        assert (fed.status, fed.error) == ("failed", "the service restarted during the run")
    failed = [e for e in spool() if e["action"] == "federation.failed"]
    assert sorted(e["tenant"] for e in failed) == ["acme", "globex"]  # not initech (invited)
    assert all(e["target"] == f"federation:{fid}" for e in failed)


def test_the_run_stops_for_a_member_suspended_removed_or_out_of_client_hours(migrated_db, spool):
    from fedhub.tenancy.models import TenantStatus
    from fedhub.tenancy.store import TenantStore
    from tests.harness import this_month

    url = migrated_db
    runner = FederationRunner(url, SimpleNamespace())
    with rls.platform():
        store = TenantStore(url)
        for slug in ("acme", "globex"):
            store.create_tenant(slug, tier="starter")
        assert runner._stop_reason(["acme", "globex"]) is None
        start, end = this_month()
        with session_scope(url) as s:  # globex spends its 50 client-hours
            metering.record(s, [metering.Usage(tenant="globex", kind=quota.FL_CLIENT_SECONDS,
                                               quantity=50 * 3600, start=start,
                                               end=end, source="tests", idempotency_key="k")])  # fmt: skip
        assert runner._stop_reason(["acme", "globex"]) == (
            "client_hours_exhausted: member globex has used all its federated client-hours"
            " this month (tier starter: federated_client_hours_per_month = 50)"
        )
        store.set_status("acme", TenantStatus.SUSPENDED, actor="tests")
        assert (
            runner._stop_reason(["acme", "globex"]) == "tenant_suspended: member acme is suspended"
        )
        assert runner._stop_reason(["initech"]) == "tenant_removed: member initech was removed"
