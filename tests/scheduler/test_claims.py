"""The scheduler's core without a hub, on SQLite and PostgreSQL: schedules in time zones,
a scheduled time claimed once however many replicas race for it, catch-up, stale runs,
the tenant's concurrent runs, and the API's description."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator
from sqlalchemy import select

from fedhub.db import session_scope
from fedhub.errors import InvalidRequest
from fedhub.scheduler import claims, schedule
from fedhub.scheduler.models import ScheduledJob, ScheduledRun
from fedhub.tiers import DEFAULT_TIERS_PATH, load_tiers

TIER = load_tiers(DEFAULT_TIERS_PATH).get("enterprise")
NOON = datetime(2026, 11, 30, 12, 0)


def make_job(url, cron="*/10 * * * *", tenant="acme", user="ann", now=NOON) -> ScheduledJob:
    return claims.create_job(url, TIER, now, tenant=tenant, username=user, name="j",
                             notebook="usage", parameters={}, cron=cron, timezone="UTC",
                             timeout_seconds=60, notify=False, paused=False)  # fmt: skip


def runs(url, job_id=None) -> list[ScheduledRun]:
    with session_scope(url) as s:
        q = select(ScheduledRun).order_by(ScheduledRun.scheduled_for)
        if job_id:
            q = q.where(ScheduledRun.job_id == job_id)
        found = list(s.scalars(q))
        s.expunge_all()
    return found


def test_a_schedule_is_read_in_its_time_zone_across_summer_time():
    winter = schedule.next_after("0 7 * * *", "Europe/Paris", datetime(2026, 1, 10, 12))
    summer = schedule.next_after("0 7 * * *", "Europe/Paris", datetime(2026, 3, 28, 12))
    assert winter == datetime(2026, 1, 11, 6)  # 07:00 at UTC+1
    assert summer == datetime(2026, 3, 29, 5)  # 07:00 at UTC+2, the night the clocks moved
    assert schedule.shortest_interval_minutes("*/5 * * * *", "UTC", NOON) == 5
    assert schedule.shortest_interval_minutes("* * * * * */10", "UTC", NOON) == pytest.approx(1 / 6)
    for cron, zone, words in (("every day", "UTC", "not a cron"), ("0 7 * * *", "Mars/Base",
                              "unknown time zone"), ("61 * * * *", "UTC", "not a cron")):  # fmt: skip
        with pytest.raises(InvalidRequest, match=words):
            schedule.validate(cron, zone)


def test_racing_replicas_queue_and_claim_a_time_once(migrated_db):
    url = migrated_db
    job = make_job(url)
    due = job.next_run_at + timedelta(seconds=1)
    queued, claimed, errors = [], [], []
    barrier = threading.Barrier(4)

    def replica(name):
        try:
            barrier.wait()
            queued.extend(claims.enqueue_due(url, due))
            claimed.extend(r.id for r in claims.claim(url, name, due, lambda t: 10))
        except Exception as e:  # a failed replica must fail the test, not vanish
            errors.append(e)

    threads = [threading.Thread(target=replica, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    [run] = runs(url, job.id)
    assert queued == [run.id] and claimed == [run.id]
    assert run.status == "running" and run.scheduled_for == job.next_run_at


def test_missed_times_run_once_or_not_at_all(migrated_db):
    url = migrated_db
    job = make_job(url)  # every 10 minutes, first at 12:10
    back = NOON + timedelta(hours=3, minutes=5)  # 18 times missed
    assert len(claims.enqueue_due(url, back)) == 1
    assert len(claims.enqueue_due(url, back)) == 0
    [run] = runs(url, job.id)
    assert run.scheduled_for == datetime(2026, 11, 30, 12, 10)
    with session_scope(url) as s:
        assert s.get(ScheduledJob, job.id).next_run_at == datetime(2026, 11, 30, 15, 10)
    skipper = make_job(url, cron="*/10 * * * *", user="bo")
    assert claims.enqueue_due(url, back, catch_up=False) == []
    with session_scope(url) as s:
        assert s.get(ScheduledJob, skipper.id).next_run_at == datetime(2026, 11, 30, 15, 10)


def test_a_run_left_running_is_failed_not_rerun(migrated_db):
    url = migrated_db
    job = make_job(url)
    due = job.next_run_at
    claims.enqueue_due(url, due)
    [run] = claims.claim(url, "dead-replica", due, lambda t: 1)
    assert claims.reap_stale(url, due + timedelta(seconds=30), timedelta(seconds=60)) == []
    [reaped] = claims.reap_stale(url, due + timedelta(seconds=61), timedelta(seconds=60))
    assert reaped.id == run.id and reaped.status == "failed"
    assert claims.claim(url, "new-replica", due + timedelta(seconds=62), lambda t: 1) == []
    assert [r.status for r in runs(url, job.id)] == ["failed"]


def test_a_tenant_runs_no_more_than_its_tier_allows_at_once(migrated_db):
    url = migrated_db
    first, second = make_job(url, user="a"), make_job(url, user="b")
    other = make_job(url, tenant="globex", user="c")
    claims.enqueue_due(url, first.next_run_at)
    limits = {"acme": 1, "globex": 1}
    claimed = claims.claim(url, "w", first.next_run_at, limits.get)
    assert sorted(r.tenant for r in claimed) == ["acme", "globex"]
    assert claims.claim(url, "w", first.next_run_at, limits.get) == []  # acme's other waits
    assert {r.job_id for r in runs(url)} == {first.id, second.id, other.id}


def test_the_api_description_is_valid_openapi():
    from fedhub.services.scheduler.handlers import handlers
    from fedhub.web import description_routes, service_description

    doc = json.loads(service_description([*handlers(), *description_routes()], "/")["json"])
    OpenAPIV31SpecValidator(doc).validate()
    assert "/api/v1/runs/{run_id}/outputs/{name}" in doc["paths"]


def test_a_once_at_time_is_read_in_its_zone_and_must_be_ahead():
    assert schedule.plan(None, "2026-12-24T18:00", "Europe/Paris", NOON) == (
        "", datetime(2026, 12, 24, 17, 0))  # fmt: skip
    assert schedule.plan(None, "2026-12-24T18:00+00:00", "Europe/Paris", NOON)[1] == datetime(
        2026, 12, 24, 18, 0)  # fmt: skip
    assert schedule.plan("0 7 * * 1", None, "UTC", NOON) == ("0 7 * * 1", None)
    for cron, at, zone, words in (
        ("0 7 * * 1", "2026-12-24T18:00", "UTC", "not both"),
        (None, None, "UTC", "not neither"),
        (None, "2026-11-30T12:30", "Europe/Paris", "not in the future"),  # 11:30 UTC
        (None, "Christmas", "UTC", "not a date and time"),
        (None, "2026-12-24T18:00", "Mars/Base", "unknown time zone"),
    ):
        with pytest.raises(InvalidRequest, match=words):
            schedule.plan(cron, at, zone, NOON)


def test_a_once_job_runs_once_even_late(migrated_db):
    url = migrated_db
    at = NOON + timedelta(hours=1)
    job = claims.create_job(url, TIER, NOON, tenant="acme", username="ann", name="once",
                            notebook="usage", parameters={}, cron="", run_once_at=at,
                            timezone="UTC", timeout_seconds=60, notify=False, paused=False)  # fmt: skip
    assert job.next_run_at == at and job.to_json()["cron"] is None
    assert claims.enqueue_due(url, at - timedelta(seconds=1)) == []
    late = at + timedelta(days=2)  # the service was down at its time
    assert len(claims.enqueue_due(url, late, catch_up=False)) == 1
    assert claims.enqueue_due(url, late + timedelta(days=400)) == []
    [run] = runs(url, job.id)
    assert run.scheduled_for == at
    with session_scope(url) as s:
        assert s.get(ScheduledJob, job.id).next_run_at is None
