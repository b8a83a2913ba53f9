"""The shared toolkit (docs/architecture.md, "Shared toolkit"), on SQLite and PostgreSQL."""

import asyncio
import logging
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import event, select

from fedhub import db
from fedhub.db import InvalidCursor, insert_ignore, keyset_page, parse_iso, tenant_lock
from fedhub.db.toolkit import decode_cursor, encode_cursor, insert_ignore_many
from fedhub.jobs import PeriodicJob, run_blocking
from fedhub.metering import MeterEvent, Usage
from fedhub.quotas import QuotaNotice

T0 = datetime(2026, 11, 1, 12, 0, 0)
NOTICES = QuotaNotice.__table__


def _notice(key: str, tenant: str = "acme", at: datetime = T0) -> dict:
    return {"tenant": tenant, "key": key, "created_at": at}


# -- insert_ignore -----------------------------------------------------------------------


def test_insert_ignore_counts_new_rows_only(migrated_db):
    with db.session_scope(migrated_db) as s:
        key = ["tenant", "key"]
        assert insert_ignore(s, NOTICES, _notice("a"), key, returning=NOTICES.c.id) == 1
        assert insert_ignore(s, NOTICES, _notice("a"), key, returning=NOTICES.c.id) == 0
        rows = [_notice("a"), _notice("b"), _notice("c")]
        assert insert_ignore(s, NOTICES, rows, key, returning=NOTICES.c.id) == 2
        # by default the count comes from the primary key
        assert insert_ignore(s, NOTICES, _notice("d"), key) == 1
        assert insert_ignore(s, NOTICES, _notice("d"), key) == 0
        assert insert_ignore(s, NOTICES, [], key) == 0
    with db.session_scope(migrated_db) as s:
        assert sorted(s.scalars(select(QuotaNotice.key))) == ["a", "b", "c", "d"]


def test_insert_ignore_many_counts_new_rows_and_stores_what_sqlalchemy_would(migrated_db):
    """The bulk form: the count by row count, values through the columns' types (times,
    JSON), rows in any key order, several batches in one transaction, any column order."""
    events = MeterEvent.__table__
    key = ["tenant", "source", "idempotency_key"]

    def usage(k, **attributes):
        t = T0 - timedelta(minutes=len(k))
        return Usage("acme", "api_calls", 2.5, t, t, "bulk", k, attributes=attributes).row(T0)

    with db.session_scope(migrated_db) as s:
        first = [usage("b"), usage("a", experiment="e1"), usage("b")]
        assert insert_ignore_many(s, events, first, key) == 2
        later = [{**usage("c"), "username": "alice"}, usage("a")]
        assert insert_ignore_many(s, events, [dict(reversed(r.items())) for r in later], key) == 1
        assert insert_ignore_many(s, events, [], key) == 0
    with db.session_scope(migrated_db) as s:
        stored = {e.idempotency_key: e for e in s.scalars(select(MeterEvent))}
        assert sorted(stored) == ["a", "b", "c"]
        assert stored["a"].attributes == {"experiment": "e1"} and stored["b"].attributes == {}
        assert stored["c"].start == T0 - timedelta(minutes=1) and stored["c"].recorded_at == T0
        assert (stored["c"].username, stored["c"].quantity) == ("alice", 2.5)
        # the same rows again, in a new transaction: nothing is new
        assert insert_ignore_many(s, events, first + later, key) == 0
    with db.session_scope(migrated_db) as s:  # other tables work the same
        assert insert_ignore_many(s, NOTICES, [_notice("x"), _notice("x")], ["tenant", "key"]) == 1


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_insert_ignore_many_falls_back_to_text_copy_for_jsonb(db_url):
    """``jsonb``'s binary form is not its text: such a table takes the text ``COPY``."""
    from sqlalchemy import Column, DateTime, MetaData, String, Table
    from sqlalchemy.dialects.postgresql import JSONB

    docs = Table(
        "bulk_docs",
        MetaData(),
        Column("key", String(20), primary_key=True),
        Column("doc", JSONB),
        Column("at", DateTime),
    )
    docs.create(db.get_engine(db_url))
    rows = [{"key": "a", "doc": {"n": [1, 2]}, "at": T0}, {"key": "b", "doc": {}, "at": T0}]
    with db.session_scope(db_url) as s:
        assert insert_ignore_many(s, docs, rows, ["key"]) == 2
        assert insert_ignore_many(s, docs, rows[:1], ["key"]) == 0
    with db.session_scope(db_url) as s:
        stored = s.execute(select(docs.c.key, docs.c.doc, docs.c.at).order_by(docs.c.key)).all()
    assert [tuple(r) for r in stored] == [("a", {"n": [1, 2]}, T0), ("b", {}, T0)]
    db.dispose_engines()


# -- tenant_lock -------------------------------------------------------------------------


def _hold_lock(url, tenant, locked: threading.Event, release: threading.Event):
    with db.session_scope(url) as s:
        tenant_lock(s, tenant)
        locked.set()
        assert release.wait(30)


def _try_lock(url, tenant, locked: threading.Event):
    with db.session_scope(url) as s:
        tenant_lock(s, tenant)
        locked.set()


def test_tenant_lock_serialises_one_tenant(migrated_db):
    """A second transaction of the same tenant waits until the first ends (on both
    engines; the tenant needs no row: the experiments service locks by name)."""
    first, second, release = threading.Event(), threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_lock, args=(migrated_db, "acme", first, release))
    holder.start()
    assert first.wait(30)
    waiter = threading.Thread(target=_try_lock, args=(migrated_db, "acme", second))
    waiter.start()
    try:
        assert not second.wait(0.5), "the second transaction got the lock while it was held"
    finally:
        release.set()
    assert second.wait(30), "the lock was not released at commit"
    holder.join(30)
    waiter.join(30)


# SQLite's BEGIN IMMEDIATE serialises every writer by design: PostgreSQL only
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_tenant_lock_leaves_other_tenants_alone_on_postgresql(migrated_db):
    first, other, release = threading.Event(), threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_lock, args=(migrated_db, "acme", first, release))
    holder.start()
    assert first.wait(30)
    try:
        _try_lock(migrated_db, "globex", other)  # would block for good if it shared the lock
        assert other.is_set()
    finally:
        release.set()
        holder.join(30)


# -- keyset_page -------------------------------------------------------------------------


def test_keyset_page_walks_every_row_once_in_order(migrated_db):
    # ties on created_at: the id breaks them
    times = [T0 + timedelta(minutes=i // 3) for i in range(8)]
    with db.session_scope(migrated_db) as s:
        insert_ignore(s, NOTICES, [_notice(f"k{i}", at=t) for i, t in enumerate(times)], ["id"])
    order = [(QuotaNotice.created_at, True), (QuotaNotice.id, True)]
    with db.session_scope(migrated_db) as s:
        everything = [
            n.key
            for n in s.scalars(
                select(QuotaNotice).order_by(QuotaNotice.created_at.desc(), QuotaNotice.id.desc())
            )
        ]
        seen, cursor, pages = [], None, 0
        while True:
            rows, cursor = keyset_page(s, select(QuotaNotice), order, cursor=cursor, limit=3)
            seen += [n.key for n in rows]
            pages += 1
            if cursor is None:
                break
    assert seen == everything and len(seen) == 8
    assert pages == 3


def test_keyset_page_mixed_directions_and_filters(migrated_db):
    with db.session_scope(migrated_db) as s:
        rows = [_notice(f"k{i}", tenant=t) for i in range(3) for t in ("b", "a", "c")]
        insert_ignore(s, NOTICES, rows, ["tenant", "key"])
    order = [(QuotaNotice.tenant, False), (QuotaNotice.key, True)]
    q = select(QuotaNotice).where(QuotaNotice.tenant != "c")
    with db.session_scope(migrated_db) as s:
        first, cursor = keyset_page(s, q, order, cursor=None, limit=4)
        rest, end = keyset_page(s, q, order, cursor=cursor, limit=4)
    got = [(n.tenant, n.key) for n in first + rest]
    assert got == [("a", "k2"), ("a", "k1"), ("a", "k0"), ("b", "k2"), ("b", "k1"), ("b", "k0")]
    assert end is None


@pytest.mark.parametrize(
    "bad",
    [
        "x",
        "bm90IGpzb24",
        encode_cursor([1, 2, 3]),  # one value too many
        encode_cursor(["monday", 1]),  # a string where a time belongs
        encode_cursor([T0, {"id": 1}]),
        encode_cursor([T0, True]),
    ],
)
def test_a_cursor_we_did_not_write_is_a_400(migrated_db, bad):
    order = [(QuotaNotice.created_at, True), (QuotaNotice.id, True)]
    with db.session_scope(migrated_db) as s, pytest.raises(InvalidCursor) as e:
        keyset_page(s, select(QuotaNotice), order, cursor=bad, limit=3)
    assert e.value.status == 400


def test_cursor_round_trips_times():
    assert decode_cursor(encode_cursor([T0, 7, "acme"])) == [T0, 7, "acme"]


# -- parse_iso, sqlite_url ---------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-01T12:00:00Z",
        "2026-11-01T12:00:00+00:00",
        "2026-11-01T13:00:00+01:00",
        "2026-11-01T12:00:00",
        " 2026-11-01T12:00:00z ",
        datetime(2026, 11, 1, 12, tzinfo=UTC),
        datetime(2026, 11, 1, 7, tzinfo=timezone(timedelta(hours=-5))),
    ],
)
def test_parse_iso_gives_naive_utc(value):
    assert parse_iso(value) == T0


def test_parse_iso_refuses_other_text():
    with pytest.raises(ValueError):
        parse_iso("yesterday")


def test_sqlite_url(tmp_path):
    assert db.sqlite_url(tmp_path) == f"sqlite:///{tmp_path / 'jupyterhub.sqlite'}"
    url = db.sqlite_url(tmp_path / "new" / "state")
    db.ensure_sqlite_dir(url)
    assert (tmp_path / "new" / "state").is_dir()


# -- PeriodicJob, run_blocking -----------------------------------------------------------


async def _until(predicate, timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_periodic_job_logs_errors_and_keeps_going(caplog):
    calls, results = [], []

    def tick():
        calls.append(threading.get_ident())
        if len(calls) == 1:
            raise RuntimeError("database hiccup")

    job = PeriodicJob(
        "test job", tick, 0.01, blocking=True, first_delay=0, on_result=results.append
    )
    with caplog.at_level(logging.ERROR, logger="fedhub.jobs"):
        job.start()
        assert job.start() is job  # idempotent
        await _until(lambda: job.runs >= 3)
        job.stop()
    assert not job.running
    assert results[:3] == [False, True, True]
    assert job.failures == 1
    assert "test job failed; retrying in 0.01s" in caplog.text
    assert threading.get_ident() not in calls  # blocking work ran in a thread


async def test_periodic_job_runs_coroutines_on_the_loop():
    seen = []

    async def tick():
        seen.append(threading.get_ident())

    job = PeriodicJob("async job", tick, 0.01, first_delay=0).start()
    await _until(lambda: len(seen) >= 2)
    job.stop()
    assert set(seen) == {threading.get_ident()}


def test_periodic_job_started_before_the_loop_runs():
    """A service wires its jobs before it serves: the job starts with the loop."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        ran = []
        job = PeriodicJob("early job", lambda: ran.append(1), 0.01, first_delay=0).start()

        async def wait():
            await _until(lambda: ran)

        loop.run_until_complete(wait())
        job.stop()
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    assert ran


def test_periodic_job_refuses_a_zero_interval():
    with pytest.raises(ValueError):
        PeriodicJob("never", lambda: None, 0)


async def test_run_blocking_runs_in_a_thread():
    def where(a, b=0):
        return threading.get_ident(), a + b

    ident, total = await run_blocking(where, 1, b=2)
    assert total == 3 and ident != threading.get_ident()


# -- transactions on SQLite ----------------------------------------------------------------


def _in_thread(fn, seconds: float = 10.0):
    """``fn()`` in a thread; whether it finished within ``seconds`` (a lock wait would not:
    SQLite's busy timeout is 30 s), and its result or error."""
    out: dict = {}

    def run():
        try:
            out["result"] = fn()
        except Exception as e:  # reported to the test
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    return not t.is_alive(), out


def test_read_only_work_inside_a_write_transaction_does_not_wait_on_it(tmp_path):
    """The stall behind the suite's 60-second timeouts: a tier refresh opened a second
    connection inside a rating's transaction, and its BEGIN IMMEDIATE waited on its own
    thread's lock for the whole busy timeout, holding every other writer up too."""
    url = db.sqlite_url(tmp_path)
    db.upgrade(url)
    engine = db.get_engine(url)

    def read_inside_a_write():
        with db.session_scope(url) as s:
            s.add(QuotaNotice(**_notice("held")))
            s.flush()  # this thread now holds the write lock
            with db.read_only(engine).connect() as conn:
                return conn.execute(select(NOTICES.c.key)).scalars().all()

    finished, out = _in_thread(read_inside_a_write)
    assert finished and out == {"result": []}, out  # the other transaction's row is unseen
    with db.session_scope(url) as s:
        assert s.scalars(select(QuotaNotice.key)).all() == ["held"]
    db.dispose_engines()


def test_a_second_write_transaction_in_one_thread_is_logged(tmp_path, caplog):
    url = db.sqlite_url(tmp_path)
    db.upgrade(url)
    quick = db.create_db_engine(url)

    @event.listens_for(quick, "connect")
    def _fail_fast(dbapi_connection, _record):  # after fedhub's 30 s busy timeout
        dbapi_connection.execute("PRAGMA busy_timeout=100")

    with caplog.at_level(logging.WARNING, logger="fedhub.db"):
        with db.session_scope(url) as s:
            s.add(QuotaNotice(**_notice("held")))
            s.flush()
            with pytest.raises(Exception, match="locked"), quick.connect() as conn:
                conn.execute(select(NOTICES.c.key)).all()
        with db.session_scope(url) as s:  # one at a time: nothing to say
            s.scalars(select(QuotaNotice.key)).all()
    waits = [r for r in caplog.records if "waits on the first's lock" in r.getMessage()]
    assert len(waits) == 1 and str(tmp_path) in waits[0].getMessage()
    quick.dispose()
    db.dispose_engines()
