"""The rate limiter's SQL storage and the limiter, on SQLite and PostgreSQL.

The storage is a ``limits`` storage: the library's own fixed-window strategy runs on it
unchanged. Hits from concurrent processes on one key are all counted, each count is
handed out once (so exactly one process sees the first refusal and emits its audit
event), and a window restarts when it expires (an injected clock, no sleeping).
"""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from types import SimpleNamespace

import pytest
from limits import RateLimitItemPerDay, RateLimitItemPerHour
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter

from fedhub.ratelimit import (
    NAMESPACE,
    RateLimited,
    RateLimits,
    SQLStorage,
    TenantRateLimiter,
    tier_limits,
)
from fedhub.tiers import DEFAULT_TIERS_PATH, load_tiers

HOUR = 3600
REQUEST = SimpleNamespace(method="GET", path="/x", remote_ip="127.0.0.1", headers={})


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_window_counts_then_restarts_when_it_expires(migrated_db):
    clock = Clock()
    storage = SQLStorage.for_url(migrated_db, clock=clock)
    assert storage.check()
    assert [storage.incr_with_expiry("k", HOUR) for _ in range(3)] == [
        (1, clock.now + HOUR),
        (2, clock.now + HOUR),
        (3, clock.now + HOUR),
    ]
    assert storage.incr("k", HOUR, amount=2) == 5
    assert storage.get("k") == 5 and storage.get_expiry("k") == clock.now + HOUR
    clock.now += HOUR - 1  # the last second of the window
    assert storage.incr("k", HOUR) == 6
    clock.now += 1  # the window is over: the same row starts a new one
    assert storage.get("k") == 0
    assert storage.incr_with_expiry("k", HOUR) == (1, clock.now + HOUR)
    assert storage.incr("other", 60) == 1
    storage.clear("k")
    assert storage.get("k") == 0 and storage.get("other") == 1
    assert storage.reset() == 1 and storage.get("other") == 0


def test_the_libraries_fixed_window_strategy_runs_on_it(migrated_db):
    limiter = FixedWindowRateLimiter(SQLStorage.for_url(migrated_db))
    item = RateLimitItemPerHour(3)
    assert [limiter.hit(item, "acme") for _ in range(4)] == [True, True, True, False]
    assert limiter.hit(item, "globex") and limiter.test(item, "globex")
    stats = limiter.get_window_stats(item, "acme")
    assert stats.remaining == 0
    limiter.clear(item, "acme")
    assert limiter.get_window_stats(item, "acme").remaining == 3


def _hits(url: str, key: str, n: int) -> list[int]:
    storage = SQLStorage.for_url(url)
    return [storage.incr(key, HOUR) for _ in range(n)]


def test_concurrent_processes_lose_no_hit_and_share_no_count(migrated_db):
    processes, per_process = 4, 150
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=ctx) as pool:
        futures = [
            pool.submit(_hits, migrated_db, "LIMITER/acme/1/1/hour", per_process)
            for _ in range(processes)
        ]
        counts = sorted(c for f in futures for c in f.result(timeout=180))
    # every hit counted, and each count handed to exactly one caller
    assert counts == list(range(1, processes * per_process + 1))
    assert SQLStorage.for_url(migrated_db).get("LIMITER/acme/1/1/hour") == processes * per_process


def _limited(url: str, spool: str, n: int) -> list[int]:
    import os

    os.environ["FEDHUB_EVENTS_SPOOL"] = spool
    limiter = TenantRateLimiter(
        SQLStorage.for_url(url),
        lambda tenant: ("free", {"api_calls_per_hour": 10, "api_calls_per_day": None}),
        where="test",
    )
    statuses = []
    for _ in range(n):
        try:
            limiter.check("acme", actor="ann", request=REQUEST)
            statuses.append(200)
        except RateLimited:
            statuses.append(429)
    return statuses


def test_one_audit_event_per_window_whichever_process_refuses_first(migrated_db, tmp_path):
    spool = tmp_path / "spool"
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(3, mp_context=ctx) as pool:
        futures = [pool.submit(_limited, migrated_db, str(spool), 8) for _ in range(3)]
        statuses = [s for f in futures for s in f.result(timeout=180)]
    assert statuses.count(200) == 10 and statuses.count(429) == 14
    events = [
        json.loads(line)
        for path in spool.glob("*")
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    refusals = [e for e in events if e["action"] == "ratelimit.exceeded"]
    assert len(refusals) == 1, events
    assert refusals[0]["tenant"] == "acme" and refusals[0]["details"]["allowed"] == 10


# -- the limiter on a storage of the library (the Redis path takes the same code) -----------


def limiter_for(limits: dict, storage=None) -> TenantRateLimiter:
    return TenantRateLimiter(storage or MemoryStorage(), lambda t: ("starter", limits), where="t")


def test_the_tightest_window_refuses_and_a_refused_call_does_not_use_up_the_day():
    limiter = limiter_for({"api_calls_per_hour": 2, "api_calls_per_day": 5})
    windows = [limiter.check("acme", actor="a", request=REQUEST) for _ in range(2)]
    assert [w.key for w in windows] == ["api_calls_per_hour", "api_calls_per_hour"]
    assert [w.remaining for w in windows] == [1, 0]
    for _ in range(3):
        with pytest.raises(RateLimited) as refused:
            limiter.check("acme", actor="a", request=REQUEST)
    assert refused.value.details["limit"] == "api_calls_per_hour"
    # the day's counter saw the two calls let through, not the refusals
    assert limiter.storage.get(RateLimitItemPerDay(5, namespace=NAMESPACE).key_for("acme")) == 2
    assert limiter.check("globex", actor="b", request=REQUEST).remaining == 1


def test_the_day_refuses_when_it_is_tighter():
    limiter = limiter_for({"api_calls_per_hour": 10, "api_calls_per_day": 3})
    assert [limiter.hit("acme").key for _ in range(3)][-1] == "api_calls_per_day"
    with pytest.raises(RateLimited) as refused:
        limiter.check("acme", actor="a", request=REQUEST)
    assert refused.value.details["limit"] == "api_calls_per_day"
    assert refused.value.headers["RateLimit-Policy"] == "3;w=86400"


def test_refusal_headers_and_message():
    limiter = limiter_for({"api_calls_per_hour": 1, "api_calls_per_day": None})
    ok = limiter.check("acme", actor="a", request=REQUEST)
    assert ok.headers() == {
        "RateLimit-Limit": "1",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "3600",
        "RateLimit-Policy": "1;w=3600",
    }
    with pytest.raises(RateLimited) as refused:
        limiter.check("acme", actor="a", request=REQUEST)
    e = refused.value
    assert (e.status, e.code) == (429, "rate_limited")
    assert e.headers["Retry-After"] == e.headers["RateLimit-Reset"] == "3600"
    assert "api_calls_per_hour of tier 'starter'" in e.message and "resets in 3600 s" in e.message
    assert e.to_json()["error"]["code"] == "rate_limited"


def test_no_limits_no_count():
    limiter = limiter_for({"api_calls_per_hour": None, "api_calls_per_day": None})
    assert limiter.check("acme", actor="a", request=REQUEST) is None
    unknown = TenantRateLimiter(MemoryStorage(), lambda t: None, where="t")
    assert unknown.check("gone", actor="a", request=REQUEST) is None


def test_the_bundled_tiers_cap_the_hour_and_only_the_free_tier_caps_the_day():
    catalog = load_tiers(DEFAULT_TIERS_PATH)
    caps = {name: tier_limits(catalog.get(name)) for name in catalog.names()}
    assert all(c["api_calls_per_hour"] for c in caps.values()), caps
    assert caps["free"]["api_calls_per_day"] == catalog.get("free").api_calls_per_day
    for paid in ("starter", "professional", "enterprise"):
        assert caps[paid]["api_calls_per_day"] is None  # an allowance, billed beyond


def test_a_tenants_tier_is_read_once_per_change_of_the_tenancy():
    reads, revision = [], [1]

    def tier_of(tenant):
        reads.append(tenant)
        return "starter", {"api_calls_per_hour": 100 * revision[0], "api_calls_per_day": None}

    limiter = TenantRateLimiter(
        MemoryStorage(), tier_of, where="t", revision=lambda: revision[0], cache_seconds=0
    )
    for _ in range(3):
        assert limiter.hit("acme").allowed == 100
    assert reads == ["acme"]  # the revision did not move: no second read
    revision[0] = 2  # e.g. `fedhub tenant update acme --override api_calls_per_hour=200`
    assert limiter.hit("acme").allowed == 200 and reads == ["acme", "acme"]


def test_a_storage_that_fails_lets_the_call_through(tmp_path, caplog):
    unmigrated = SQLStorage.for_url(f"sqlite:///{tmp_path / 'empty.sqlite'}")  # no table
    limiter = limiter_for({"api_calls_per_hour": 1, "api_calls_per_day": None}, unmigrated)
    for _ in range(3):
        assert limiter.check("acme", actor="a", request=REQUEST) is None
    assert "Rate limit not checked for tenant acme (OperationalError" in caplog.text


def test_configuration_picks_the_storage(migrated_db):
    settings = RateLimits(storage_uri="memory://")
    assert isinstance(settings.make_storage(migrated_db), MemoryStorage)
    assert isinstance(RateLimits().make_storage(migrated_db), SQLStorage)
    assert RateLimits(enabled=False).limiter(None, where="t") is None
