"""Tier limits are reserved atomically, on SQLite and on PostgreSQL."""

import threading

import pytest

from fedhub.errors import QuotaExceeded
from fedhub.services.experiments import quota
from fedhub.services.experiments.spec import parse_spec
from fedhub.tiers import load_tiers

FREE = load_tiers().get("free")  # 1 concurrent experiment, 5 per month, 10 clients


def test_racing_submissions_get_exactly_one_slot(migrated_db):
    spec = parse_spec({"clients": 4, "rounds": 1})
    barrier = threading.Barrier(6)
    outcomes = []

    def submit(i):
        barrier.wait()
        try:
            quota.reserve(migrated_db, "initech", f"user{i}", "free", FREE, spec)
            outcomes.append("queued")
        except QuotaExceeded as e:
            outcomes.append(e.details["limit"])

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["max_concurrent_experiments"] * 5 + ["queued"]


def test_monthly_count_and_client_cap(migrated_db):
    from fedhub.db import session_scope
    from fedhub.services.experiments.models import ExperimentRun

    spec = parse_spec({"clients": 10, "rounds": 1})
    for _ in range(5):  # finished runs still count against the month
        run = quota.reserve(migrated_db, "initech", "carol", "free", FREE, spec)
        with session_scope(migrated_db) as s:
            s.get(ExperimentRun, run.id).status = "completed"
    with pytest.raises(QuotaExceeded) as err:
        quota.reserve(migrated_db, "initech", "carol", "free", FREE, spec)
    assert err.value.details == {
        "limit": "experiments_per_month", "allowed": 5, "used": 5, "requested": 1,
        "unit": "experiments", "tier": "free",
    }  # fmt: skip
    with pytest.raises(QuotaExceeded) as err:
        quota.reserve(migrated_db, "globex", "bob", "free", FREE, parse_spec({"clients": 11}))
    assert err.value.details["limit"] == "max_clients_per_experiment"
    assert (err.value.details["allowed"], err.value.details["requested"]) == (10, 11)


def test_each_accepted_run_records_one_experiments_meter_event(migrated_db):
    """The experiments meter billing prices: one event per run, recorded with the run."""
    from sqlalchemy import select

    from fedhub.db import session_scope
    from fedhub.metering import MeterEvent

    spec = parse_spec({"clients": 2, "rounds": 1})
    run = quota.reserve(migrated_db, "initech", "carol", "free", FREE, spec)
    with pytest.raises(QuotaExceeded):  # refused: nothing recorded
        quota.reserve(migrated_db, "initech", "carol", "free", FREE, spec)
    with session_scope(migrated_db) as s:
        rows = s.execute(select(MeterEvent.kind, MeterEvent.quantity, MeterEvent.attributes)).all()
    assert rows == [("experiments", 1.0, {"experiment": run.id})]
