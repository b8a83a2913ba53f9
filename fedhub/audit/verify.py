"""Check every chain against its stored canonical bytes and the signed checkpoints.

What is checked, per chain, in sequence order:

- each record's hash is the SHA-256 of its stored canonical bytes (a changed
  byte shows);
- the previous hash named in those bytes, and the ``prev_hash`` column, are the
  previous record's hash, and sequence numbers have no gaps (a deleted,
  inserted or reordered record shows);
- each record's MAC, when the master key is at hand (a record rewritten or
  appended by someone with database access only shows, even after the last
  checkpoint);
- every signed checkpoint (database rows and files, verified with the public
  key) names a record that is still there with that hash (history rewritten
  up to a checkpoint shows; so does truncation after it);
- records missing at the start are allowed only behind a signed purge
  checkpoint at the last purged sequence number;
- with ``deep``, that each record's columns (what queries filter on) encode to
  its stored bytes. Without it a changed column goes unseen here; reads render
  records from the bytes, so it can only hide a record from a filtered query.

How it is fast: five columns are read with a plain DBAPI cursor (a server-side
one on PostgreSQL), in batches, and the bytes hashed as stored. A chain is cut
into spans of sequence numbers that worker processes check on their own
(hashes, MACs, checkpoints, gaps inside the span); the parent then links the
spans (each span's first ``prev_hash`` must be the previous span's last hash),
so the answer, and the first bad record it names, are those of one pass in order.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.pool import NullPool

from fedhub import db as fedhub_db
from fedhub.audit import crypto
from fedhub.audit.chain import AuditLog
from fedhub.audit.models import AuditRecord, ChainHead, Checkpoint
from fedhub.audit.records import HASHED_COLUMNS, canonical_record, hashed_fields

# what a span check reads: the chain position, the stored bytes, their hash and MAC
COLUMNS = ("seq", "prev_hash", "canonical", "hash", "mac")
# --deep also reads the columns the bytes were built from, in canonical_record's order
DEEP_COLUMNS = (*COLUMNS, *HASHED_COLUMNS)
_PG_TIME = "to_char(time, 'YYYY-MM-DD\"T\"HH24:MI:SS.US')"
# where a record's canonical bytes name its predecessor: the last occurrence of the key
# (every quote inside a string value is escaped, so a value cannot hold this text)
_PREV_KEY = b'"prev_hash":"'
_PREV_AT = len(_PREV_KEY)
SPAN_RECORDS = 100_000  # at most this many records per unit of work
MIN_SPAN_RECORDS = 10_000
PARALLEL_MIN_RECORDS = 50_000  # fewer in all: checked in this process
FETCH_ROWS = 5_000


@dataclass
class ChainReport:
    tenant: str
    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    checkpoints: int = 0
    problem: str | None = None  # the first bad thing found (verification stops there)
    bad_seq: int | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None

    def as_dict(self) -> dict:
        return {**self.__dict__, "ok": self.ok}


def _signed_checkpoints(log: AuditLog, tenant: str, report: ChainReport, public=None) -> list[dict]:
    """Valid checkpoints of a chain from files and rows; a bad signature is a problem."""
    public = public or log.keys.public_key()
    found: dict[tuple[int, str], dict] = {}
    sources: dict[tuple[int, str], set[str]] = {}
    entries: list[tuple[str, dict]] = []
    directory = log.checkpoint_dir / tenant
    if directory.is_dir():
        for path in sorted(directory.glob("*.json")):
            try:
                entries.append((f"file {path.name}", json.loads(path.read_text())))
            except (OSError, ValueError):
                report.problem = f"checkpoint file {path} is unreadable"
                return []
    with log.session() as s:
        for cp in s.scalars(select(Checkpoint).where(Checkpoint.tenant == tenant)):
            entries.append((f"row {cp.id}", {"payload": cp.payload, "signature": cp.signature}))
    verified: set[tuple[str, str]] = set()  # a file and its row are usually the same bytes
    for where, cp in entries:
        signed = (cp["payload"], cp["signature"])
        if signed not in verified:
            if not crypto.verify_signature(public, cp["payload"].encode(), cp["signature"]):
                report.problem = f"checkpoint {where} has an invalid signature"
                return []
            verified.add(signed)
        payload = json.loads(cp["payload"])
        if payload["tenant"] != tenant:
            report.problem = f"checkpoint {where} is for tenant {payload['tenant']!r}"
            return []
        key = (payload["seq"], payload["kind"])
        found[key] = payload
        sources.setdefault(key, set()).add(where.split()[0])
    for (seq, kind), src in sources.items():
        if src == {"row"}:
            report.warnings.append(f"checkpoint {kind} at seq {seq} has no file")
        elif src == {"file"}:
            report.warnings.append(f"checkpoint {kind} at seq {seq} is missing from the database")
    report.checkpoints = len(found)
    return list(found.values())


# -- one span of one chain: what a worker process does --------------------------------

_worker_engines: dict[str, object] = {}
_worker_lock = threading.Lock()


def _raw_connection(url: str, *, own: bool):
    """A DBAPI connection: the shared pool's in this process, a private engine's
    (no pool) in a worker process, whose inherited pool belongs to its parent."""
    if not own:
        return fedhub_db.get_engine(url).raw_connection()
    with _worker_lock:
        engine = _worker_engines.get(url)
        if engine is None:
            engine = _worker_engines[url] = fedhub_db.create_db_engine(url, poolclass=NullPool)
    return engine.raw_connection()


def _span_rows(
    url: str, tenant: str, lo: int, hi: int, own: bool, deep: bool
) -> Iterator[list[tuple]]:
    """Batches of the span's rows (``lo <= seq < hi``) in sequence order: COLUMNS, or
    DEEP_COLUMNS when ``deep``."""
    conn = _raw_connection(url, own=own)
    try:
        postgres = url.startswith("postgresql")
        mark = "%s" if postgres else "?"
        # the time as text, formatted by the server as isoformat(timespec="microseconds")
        # would (SQLite stores text already; records.canonical_record takes either)
        read = DEEP_COLUMNS if deep else COLUMNS
        columns = [_PG_TIME if (c == "time" and postgres) else c for c in read]
        sql = (
            f"SELECT {', '.join(columns)} FROM {AuditRecord.__tablename__} "
            f"WHERE tenant = {mark} AND seq >= {mark} AND seq < {mark} ORDER BY seq"
        )
        # PostgreSQL: a named (server-side) cursor streams, a plain one buffers the result;
        # in binary format the canonical bytes come as they are stored, not in hex (half
        # the client's CPU per row, and less of the server's)
        name = f"fedhub_audit_verify_{os.getpid()}"
        cur = conn.cursor(name=name, binary=True) if postgres else conn.cursor()
        try:
            cur.execute(sql, (tenant, lo, hi))
            while rows := cur.fetchmany(FETCH_ROWS):
                yield rows
        finally:
            cur.close()
            if postgres:
                conn.rollback()
    finally:
        conn.close()


def check_span(
    url: str,
    tenant: str,
    lo: int,
    hi: int,
    mac_key: bytes | None,
    checkpoints: dict[int, list[str]],
    deep: bool = False,
    own_connection: bool = True,
) -> dict:
    """Check the records ``lo <= seq < hi`` of a chain on their own: each hash (of
    the stored canonical bytes), the predecessor those bytes name, MAC and
    checkpoint, and that the span has no gap and links inside; with ``deep``, also
    that the bytes are those of the record's columns. How its first record follows
    what comes before is the caller's to check, from ``first`` (seq, prev_hash);
    ``last`` is (seq, hash) of its last record."""
    sha256 = hashlib.sha256
    mac = crypto.record_mac_function(mac_key) if mac_key is not None else None
    out: dict = {"records": 0, "first": None, "last": None, "bad_seq": None, "problem": None}
    records = 0
    expected = prev = None

    def bad(seq: int, problem: str) -> dict:
        out.update(records=records, bad_seq=seq, problem=problem)
        return out

    for rows in _span_rows(url, tenant, lo, hi, own_connection, deep):
        for row in rows:
            seq = row[0]
            prev_hash = row[1]
            stored = row[2]
            if expected is None:
                out["first"] = (seq, prev_hash)
            elif seq != expected:
                return bad(expected, f"record seq {expected} is missing (deleted or renumbered)")
            elif prev_hash != prev:
                return bad(seq, f"record seq {seq} does not follow seq {seq - 1} (prev_hash)")
            try:
                computed = sha256(stored).hexdigest()
                at = stored.rfind(_PREV_KEY) + _PREV_AT
            except TypeError:  # no bytes at all (NULL, or text put in a SQLite blob)
                return bad(seq, f"record seq {seq} was modified (no canonical bytes)")
            if computed != row[3]:
                return bad(seq, f"record seq {seq} was modified (hash mismatch)")
            # the link the hash covers is the one in the bytes; the column must say the same
            if at < _PREV_AT or stored[at : at + 64] != prev_hash.encode():
                return bad(seq, f"record seq {seq} was modified (prev_hash differs from its bytes)")
            if mac is not None and row[4] != mac(computed):
                return bad(seq, f"record seq {seq} has a bad MAC (written without the key)")
            if seq in checkpoints and any(h != computed for h in checkpoints[seq]):
                return bad(seq, f"record seq {seq} differs from the signed checkpoint")
            if deep and canonical_record(*row[5:]) != stored:
                return bad(seq, f"record seq {seq} was modified ({_differing(row)})")
            prev = computed
            expected = seq + 1
            records += 1
    out["records"] = records
    if expected is not None:
        out["last"] = (expected - 1, prev)
    return out


def _differing(row: tuple) -> str:
    """Which columns of a DEEP_COLUMNS row differ from its canonical bytes (on failure only)."""
    columns = dict(zip(HASHED_COLUMNS, row[len(COLUMNS) :], strict=True))
    try:
        hashed = json.loads(row[2])
    except ValueError:
        return "its canonical bytes are not JSON"
    names = [c for c, v in hashed_fields(columns).items() if hashed.get(c) != v]
    names = [{"id": "event_id", "v": "schema_version"}.get(c, c) for c in names]
    if not names:
        return "its canonical bytes are not those of its columns"
    return f"column {', '.join(names)} differs from its hashed bytes"


def _check_span_task(args: tuple) -> dict:
    return check_span(*args)


# -- whole chains ------------------------------------------------------------------------


@dataclass
class _Plan:
    """One chain: its report so far, what the spans need, and the spans."""

    report: ChainReport
    purges: dict[int, dict] = field(default_factory=dict)
    checkpoint_seqs: set[int] = field(default_factory=set)
    head_seq: int | None = None
    spans: list[tuple] = field(default_factory=list)


def _plan(
    log: AuditLog, tenant: str, public, mac_key: bytes | None, processes: int, deep: bool
) -> _Plan:
    plan = _Plan(ChainReport(tenant=tenant))
    checkpoints = _signed_checkpoints(log, tenant, plan.report, public)
    if plan.report.problem:
        return plan
    by_seq: dict[int, list[str]] = {}
    for cp in checkpoints:
        by_seq.setdefault(cp["seq"], []).append(cp["head_hash"])
    plan.checkpoint_seqs = set(by_seq)
    plan.purges = {cp["seq"]: cp for cp in checkpoints if cp["kind"] == "purge"}
    if mac_key is None:
        plan.report.warnings.append("master key not available: record MACs not checked")
    t = AuditRecord.__table__
    with log.session() as s:
        # the head first: records appended while we read lie beyond it, not short of it
        head = s.get(ChainHead, tenant)
        plan.head_seq = head.seq if head is not None else None
        lo, hi = s.execute(
            select(func.min(t.c.seq), func.max(t.c.seq)).where(t.c.tenant == tenant)
        ).one()
    if lo is None:
        return plan
    # enough spans to keep every worker busy to the end, none too long or too short
    size = hi - lo + 1
    parts = max(-(-size // SPAN_RECORDS), min(4 * processes, -(-size // MIN_SPAN_RECORDS)))
    step = -(-(hi - lo + 1) // parts)
    for start in range(lo, hi + 1, step):
        end = min(start + step, hi + 1)
        cps = {seq: hs for seq, hs in by_seq.items() if start <= seq < end}
        plan.spans.append((log.db_url, tenant, start, end, mac_key, cps, deep))
    return plan


def _finish(plan: _Plan, results: list[dict]) -> ChainReport:
    """Link the spans in order and apply the checks that need the whole chain."""
    report = plan.report
    if report.problem:  # a checkpoint was bad: nothing was read
        return report
    expected = prev = None
    for res in results:
        if res["first"] is None:  # no records in this span
            continue
        seq, prev_hash = res["first"]
        if expected is None:
            report.first_seq = seq
            if seq == 1:
                prev = crypto.GENESIS
            elif seq - 1 in plan.purges:
                prev = plan.purges[seq - 1]["head_hash"]
            else:
                base = max((p for p in plan.purges if p < seq), default=0)
                return _bad(
                    report,
                    base + 1,
                    f"records {base + 1}-{seq - 1} are missing and no signed purge covers them",
                )
            expected = seq
        if seq != expected:
            return _bad(
                report, expected, f"record seq {expected} is missing (deleted or renumbered)"
            )
        if prev_hash != prev:
            return _bad(report, seq, f"record seq {seq} does not follow seq {seq - 1} (prev_hash)")
        report.records += res["records"]
        if res["problem"]:
            return _bad(report, res["bad_seq"], res["problem"])
        expected, prev = res["last"][0] + 1, res["last"][1]
    report.last_seq = expected - 1 if expected else None
    last = report.last_seq or 0
    beyond = [s for s in plan.checkpoint_seqs if s > last]
    if beyond:
        return _bad(
            report,
            last + 1,
            f"log truncated: a signed checkpoint names seq {max(beyond)}, the log ends at {last}",
        )
    if plan.head_seq is not None and plan.head_seq > last:
        return _bad(
            report,
            last + 1,
            f"log truncated: the chain head is at {plan.head_seq}, the log ends at {last}",
        )
    return report


def _bad(report: ChainReport, seq: int, message: str) -> ChainReport:
    report.bad_seq = seq
    report.problem = message
    return report


def _mp_context():
    """``fork`` from a single-threaded process (the CLI: no start-up cost); from a
    threaded one (the service verifies in an executor thread) ``forkserver``, as
    forking a process whose other threads may hold locks is unsafe."""
    methods = multiprocessing.get_all_start_methods()
    if threading.active_count() == 1 and "fork" in methods:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        return multiprocessing.get_context("forkserver")
    return multiprocessing.get_context("spawn")


def _run_spans(tasks: list[tuple], processes: int) -> list[dict]:
    total = sum(t[3] - t[2] for t in tasks)
    if processes <= 1 or len(tasks) <= 1 or total < PARALLEL_MIN_RECORDS:
        return [check_span(*t, own_connection=False) for t in tasks]
    with ProcessPoolExecutor(min(processes, len(tasks)), mp_context=_mp_context()) as pool:
        return list(pool.map(_check_span_task, tasks))


def chains(log: AuditLog) -> list[str]:
    """Every chain the database or the checkpoint directory knows of."""
    with log.session() as s:
        names = set(s.scalars(select(ChainHead.tenant)))
        names.update(s.scalars(select(AuditRecord.tenant).distinct()))
        names.update(s.scalars(select(Checkpoint.tenant).distinct()))
    if log.checkpoint_dir.is_dir():
        names.update(p.name for p in log.checkpoint_dir.iterdir() if p.is_dir())
    return sorted(names)


def verify(
    log: AuditLog,
    tenant: str | None = None,
    public=None,
    processes: int | None = None,
    *,
    deep: bool = False,
) -> list[ChainReport]:
    """Verify one chain or every chain; spans of all of them are checked by
    ``processes`` worker processes (default ``AuditLog.verify_processes``).

    ``deep`` also checks every record's columns against its canonical bytes: what
    the default check leaves to the reads, which render records from the bytes
    and drop rows whose columns do not match the filter (docs/audit.md)."""
    mac_key = log.keys.mac_key() if (Path(log.audit_dir) / "master.key").exists() else None
    processes = processes or log.verify_processes or os.cpu_count() or 1
    names = [tenant] if tenant else chains(log)
    plans = [_plan(log, t, public, mac_key, processes, deep) for t in names]
    tasks = [span for plan in plans for span in plan.spans]
    results = iter(_run_spans(tasks, processes))
    return [_finish(plan, [next(results) for _ in plan.spans]) for plan in plans]


def verify_chain(
    log: AuditLog, tenant: str, public=None, processes: int | None = None, *, deep: bool = False
):
    """Check one chain; ``public`` is the Ed25519 public key (default: the audit dir's)."""
    return verify(log, tenant, public, processes, deep=deep)[0]
