"""The fast paths keep the slow paths' answers.

- ``canonical_record`` builds the very bytes ``crypto.canonical(hashed_fields(row))``
  does, for any stored values, tampered ones included;
- verify with spans checked by worker processes finds a tamper in any chain, at
  the same record a single pass in order names;
- a batch append (one insert per chain, ``COPY`` on PostgreSQL) stores what was sent;
- an export streams: its memory does not grow with the number of records.
"""

from __future__ import annotations

import json
import tracemalloc
from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, update

from fedhub.audit import crypto
from fedhub.audit import verify as verify_mod
from fedhub.audit.models import PLATFORM, AuditRecord, ChainHead
from fedhub.audit.query import EventFilter, export_lines, read_events
from fedhub.audit.records import HASHED_COLUMNS, canonical_record, hashed_fields
from fedhub.audit.verify import verify
from fedhub.events import make_event
from tests.audit.conftest import sample_events

FIELDS = HASHED_COLUMNS
# what a database owner can leave in a column: text of any kind, numbers, nothing, bytes
VALUES = st.one_of(
    st.text(),
    st.sampled_from(['a"b', "a\\b", "x\ny", "\x00", "\x7f", "\u2028", "é", "2026-11-29 06:00:00"]),
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.booleans(),
    st.binary(max_size=8),
    st.datetimes(),
)


def _slow(values: list) -> bytes | type:
    try:
        return crypto.canonical(hashed_fields(dict(zip(FIELDS, values, strict=True))))
    except Exception as e:  # noqa: BLE001 (the fast path must fail the same way)
        return type(e)


def _fast(values: list) -> bytes | type:
    try:
        return canonical_record(*values)
    except Exception as e:  # noqa: BLE001
        return type(e)


@settings(max_examples=500, deadline=None)
@given(values=st.lists(VALUES, min_size=len(FIELDS), max_size=len(FIELDS)), ints=st.booleans())
def test_canonical_record_is_the_canonical_json_of_the_hashed_fields(values, ints):
    if ints:  # the usual shape: integers where the writer puts them
        values[1], values[7] = abs(hash(str(values[1]))) % 10**9, 1
    assert _fast(values) == _slow(values)


@settings(max_examples=200, deadline=None)
@given(key=st.binary(min_size=1, max_size=200), text=st.text())
def test_record_mac_function_is_hmac_sha256(key, text):
    assert crypto.record_mac_function(key)(text) == crypto.record_mac(key, text)


# -- parallel verify ------------------------------------------------------------------

TENANTS = ("acme", "globex", None)
PER_CHAIN = 240


@pytest.fixture
def spans(monkeypatch):
    """Spans of 40 records, two worker processes, for any log size."""
    monkeypatch.setattr(verify_mod, "SPAN_RECORDS", 40)
    monkeypatch.setattr(verify_mod, "MIN_SPAN_RECORDS", 10)
    monkeypatch.setattr(verify_mod, "PARALLEL_MIN_RECORDS", 0)


def _three_chains(audit):
    audit.append(sample_events(PER_CHAIN * len(TENANTS), tenants=TENANTS))
    for t in ("acme", "globex", PLATFORM):
        audit.checkpoint(t)


def _both(audit, deep: bool = False) -> tuple[list, list]:
    parallel = [r.as_dict() for r in verify(audit, processes=2, deep=deep)]
    single = [r.as_dict() for r in verify(audit, processes=1, deep=deep)]
    return parallel, single


TAMPERS = {
    # (what, seq): seq 41 is the first record of the second span, 40 the last of the first
    "modify first of a span": ("modify", 41),
    "modify inside a span": ("modify", 77),
    "modify a column of a span's last (--deep)": ("column", 80),
    "delete first of a span": ("delete", 41),
    "delete last of a span": ("delete", 40),
    "swap across spans": ("swap", 40),
    "truncate the tail": ("truncate", 200),
}


@pytest.mark.parametrize("tamper", sorted(TAMPERS))
@pytest.mark.parametrize("chain", ["acme", "globex", PLATFORM])
def test_parallel_verify_finds_a_tamper_in_any_chain(audit, spans, tamper, chain):
    _three_chains(audit)
    parallel, single = _both(audit)
    assert all(r["ok"] for r in parallel) and parallel == single
    assert {r["tenant"]: r["records"] for r in parallel} == {
        "acme": PER_CHAIN,
        "globex": PER_CHAIN,
        PLATFORM: PER_CHAIN,
    }
    what, seq = TAMPERS[tamper]
    t = AuditRecord.__table__
    where = (t.c.tenant == chain, t.c.seq == seq)
    with audit.session() as s:
        if what == "modify":  # what the hash covers: the stored canonical bytes
            stored = s.scalar(select(t.c.canonical).where(*where))
            forged = stored.replace(b'"action":"', b'"action":"tenant.deleted ', 1)
            s.execute(update(t).where(*where).values(canonical=forged))
        elif what == "column":  # a column only reads filter on
            s.execute(update(t).where(*where).values(action="tenant.deleted"))
        elif what == "delete":
            s.execute(delete(t).where(*where))
        elif what == "swap":
            ids = dict(s.execute(select(t.c.seq, t.c.id).where(t.c.tenant == chain)).all())
            s.execute(update(t).where(t.c.id == ids[seq]).values(seq=-1))
            s.execute(update(t).where(t.c.id == ids[seq + 1]).values(seq=seq))
            s.execute(update(t).where(t.c.id == ids[seq]).values(seq=seq + 1))
        else:  # the tail, and the head rolled back to match: the checkpoint still tells
            s.execute(delete(t).where(t.c.tenant == chain, t.c.seq > seq))
            s.execute(update(ChainHead).where(ChainHead.tenant == chain).values(seq=seq))
    parallel, single = _both(audit, deep=what == "column")
    assert parallel == single
    bad = {r["tenant"]: r for r in parallel if not r["ok"]}
    assert list(bad) == [chain], parallel
    expected_seq = seq + 1 if what == "truncate" else seq
    assert bad[chain]["bad_seq"] == expected_seq, bad[chain]


def test_parallel_verify_finds_a_rehashed_forgery(audit, spans):
    """A forger who recomputes the hashes after a change, without the master key,
    still fails the MAC, in whichever span the change lands."""
    _three_chains(audit)
    t = AuditRecord.__table__
    with audit.session() as s:
        row = s.execute(select(t).where(t.c.tenant == "globex", t.c.seq == 121)).one()._asdict()
        row["action"] = "tenant.deleted"
        forged = canonical_record(*[row[f] for f in FIELDS])
        new_hash = crypto.sha256_hex(forged)
        s.execute(
            update(t)
            .where(t.c.id == row["id"])
            .values(action=row["action"], canonical=forged, hash=new_hash)
        )
        s.execute(
            update(t).where(t.c.tenant == "globex", t.c.seq == 122).values(prev_hash=new_hash)
        )
    parallel, single = _both(audit)
    assert parallel == single
    [bad] = [r for r in parallel if not r["ok"]]
    assert (bad["tenant"], bad["bad_seq"]) == ("globex", 121) and "MAC" in bad["problem"]


# -- batch append ------------------------------------------------------------------


def test_a_batch_append_stores_what_was_sent(audit):
    """Tenants mixed in one batch, ids repeated inside it and already stored, events
    without actor or target, text that needs escaping: stored, chained, readable."""
    start = datetime(2026, 11, 1, 12, 0, 0, 123456)
    odd = 'quote " backslash \\ newline \n tab \t é ✓'
    batch = []
    for i in range(1500):
        e = make_event(
            "auth.login" if i % 3 else "tenant.updated",
            tenant=("acme", "globex", None)[i % 3],
            actor=None if i % 7 == 0 else f"user{i % 11}",
            target=None if i % 5 == 0 else f"user{(i * 3) % 11}",
            source_ip=None if i % 7 == 0 else f"10.0.{i % 256}.1",
            user_agent=odd if i % 13 == 0 else "pytest",
            details={"i": i, "note": odd, "email": f"u{i}@example.com"} if i % 2 else {"i": i},
        )
        e["time"] = (start + timedelta(seconds=i)).isoformat() + "+00:00"
        batch.append(e)
    assert audit.append(batch[:100]) == 100
    # 100 already stored, then every event of the rest twice in the same batch
    rest = batch[100:]
    assert audit.append(batch[:100] + [x for e in rest for x in (e, dict(e))]) == len(rest)
    assert audit.append(batch) == 0
    [*reports] = verify(audit)
    assert all(r.ok for r in reports) and sum(r.records for r in reports) == len(batch)
    with audit.session() as s:
        heads = {h.tenant: (h.seq, h.hash) for h in s.scalars(select(ChainHead))}
        for tenant, (seq, head_hash) in heads.items():
            seqs = list(s.scalars(select(AuditRecord.seq).where(AuditRecord.tenant == tenant)))
            assert sorted(seqs) == list(range(1, seq + 1))
            last = s.scalar(
                select(AuditRecord.hash).where(AuditRecord.tenant == tenant, AuditRecord.seq == seq)
            )
            assert last == head_hash
    stored = {}
    cursor = None
    while True:
        page, cursor = read_events(audit, EventFilter(), cursor=cursor, limit=1000)
        stored.update({e["id"]: e for e in page})
        if cursor is None:
            break
    assert len(stored) == len(batch)
    for e in batch:
        got = stored[e["id"]]
        for k in ("action", "actor", "target", "source_ip", "user_agent", "details", "tenant"):
            assert got[k] == e[k], (k, got[k], e[k])
        assert (
            got["time"]
            == datetime.fromisoformat(e["time"])
            .replace(tzinfo=None)
            .isoformat(timespec="microseconds")
            + "Z"
        )


# -- streaming export --------------------------------------------------------------------


def _export_peak(audit, fmt: str) -> tuple[int, int]:
    """(lines, peak bytes allocated) of a whole export written to nowhere."""
    tracemalloc.start()
    try:
        lines = 0
        for chunk in export_lines(audit, EventFilter(), fmt, page=500):
            lines += chunk.count("\n")
        return lines, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_memory_does_not_grow_with_the_log(migrated_db, tmp_path, fmt):
    from fedhub.audit import AuditLog

    audit = AuditLog(db_url=migrated_db, audit_dir=str(tmp_path / "audit"))
    audit.append(sample_events(2000, tenants=("acme",)))
    small_lines, small_peak = _export_peak(audit, fmt)
    for _ in range(4):
        audit.append(sample_events(2000, tenants=("acme",)))
    big_lines, big_peak = _export_peak(audit, fmt)
    header = 1 if fmt == "csv" else 0
    assert (small_lines, big_lines) == (2000 + header, 10000 + header)
    # five times the records, about the same memory (one page of 500 at a time)
    assert big_peak < 1.3 * small_peak, (small_peak, big_peak)


def test_cli_export_streams_every_event(tmp_path):
    from fedhub import db as fedhub_db
    from fedhub.audit import AuditLog
    from fedhub.cli import main

    url = f"sqlite:///{tmp_path / 'jupyterhub.sqlite'}"
    fedhub_db.upgrade(url)
    audit = AuditLog(db_url=url, audit_dir=str(tmp_path / "audit"))
    audit.append(sample_events(1200, tenants=("acme", "globex")))
    out = tmp_path / "acme.jsonl"
    env = {"FEDHUB_AUDIT_DIR": "", "FEDHUB_EVENTS_SPOOL": str(tmp_path / "spool")}
    args = ["--db-url", url, "--state-dir", str(tmp_path), "audit", "export"]
    r = CliRunner().invoke(main, [*args, "--tenant", "acme", "-o", str(out)], env=env)
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 600 and {e["tenant"] for e in rows} == {"acme"}
    assert rows[0]["actor"] in {"alice", "bob", "carol", "dave"}
    r = CliRunner().invoke(main, [*args, "--format", "csv"], env=env)
    assert r.exit_code == 0 and len(r.output.splitlines()) == 1201
    # the export itself is an audit event
    spooled = "".join(p.read_text() for p in (tmp_path / "spool").glob("*.jsonl"))
    assert spooled.count('"audit.exported"') == 2


def test_parallel_verify_from_a_thread(audit, spans):
    """The service verifies in a thread: its workers then start from a fork server
    (forking a process with other threads is unsafe), with the same answer."""
    import threading

    _three_chains(audit)
    with audit.session() as s:
        s.execute(
            update(AuditRecord.__table__)
            .where(AuditRecord.tenant == "acme", AuditRecord.seq == 200)
            .values(result="denied")
        )
    out: list = []

    def run():
        out.append(verify_mod._mp_context().get_start_method())
        out.append(verify(audit, processes=2, deep=True))

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(timeout=120)
    method, reports = out
    assert method == "forkserver"
    [bad] = [r for r in reports if not r.ok]
    assert (bad.tenant, bad.bad_seq) == ("acme", 200), bad.as_dict()
    single = verify(audit, processes=1, deep=True)
    assert [r.as_dict() for r in reports] == [r.as_dict() for r in single]
