"""Audit log throughput: chained appends vs plain inserts, spool ingestion, verify, export, emit().

    .venv/bin/python benchmarks/audit_ingest.py [--append 50000] [--verify 1000000] [--export] [--engines sqlite,postgresql]

Same run, same machine, same batches (one transaction per batch):

- plain: the event envelopes inserted as rows of a table with no chain, no
  encryption (SQLAlchemy Core, batches of --batch);
- chained: ``AuditLog.append_in`` (dedup by event id, per-user AES-GCM of the
  personal fields, SHA-256 chain, HMAC, head row lock), what the service's
  ingester calls per batch;
- spool: ``SpoolIngester`` (what the audit service runs) from JSON-lines files
  written by ``emit()``;
- verify, on a chain of --verify records, interleaved twice (best of each): the
  raw baseline (the columns verify reads, plain DBAPI cursor, one process, no
  checks), ``verify_chain`` in one process and in ``AuditLog.verify_processes``
  worker processes, and ``fedhub audit verify`` in a new process (start-up included);
- export (--export): ``fedhub audit export`` JSONL of 100,000 records and of the
  --verify chain, each in a new process: records/s and peak RSS (``ru_maxrss``);
- emit: µs per ``emit()`` call (validate + append one line), and what the
  jsonschema validator that ``EventLogger.emit`` uses would cost instead.

PostgreSQL is a throwaway cluster (tests.harness.PostgresCluster, fsync off
like the tests). Prints a Markdown table and writes benchmarks/results/audit_ingest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from fedhub import db as fedhub_db  # noqa: E402
from fedhub import events  # noqa: E402
from fedhub.audit import AuditLog  # noqa: E402
from fedhub.audit import verify as verify_mod  # noqa: E402
from fedhub.audit.ingest import SpoolIngester  # noqa: E402
from fedhub.audit.verify import verify_chain  # noqa: E402

USERS = [f"user{i}" for i in range(200)]


def make_events(n: int, tenant: str = "bench") -> list[dict]:
    start = datetime.now(UTC) - timedelta(days=1)
    out = []
    for i in range(n):
        e = events.make_event(
            "auth.login" if i % 4 else "server.started",
            tenant=tenant,
            actor=USERS[i % len(USERS)],
            target=USERS[(i * 7) % len(USERS)],
            source_ip=f"10.1.{i % 256}.{i % 199}",
            user_agent="Mozilla/5.0 (X11; Linux x86_64) bench",
            details={"profile": "small", "i": i},
        )
        e["time"] = (start + timedelta(milliseconds=i)).isoformat()
        out.append(e)
    return out


def plain_table(engine) -> sa.Table:
    md = sa.MetaData()
    t = sa.Table(
        "bench_plain_events",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("event_id", sa.String(36), unique=True),
        sa.Column("tenant", sa.String(63)),
        sa.Column("time", sa.DateTime),
        sa.Column("actor", sa.String(255)),
        sa.Column("action", sa.String(127)),
        sa.Column("target", sa.String(1024)),
        sa.Column("result", sa.String(16)),
        sa.Column("severity", sa.String(16)),
        sa.Column("source_ip", sa.String(64)),
        sa.Column("user_agent", sa.String(1024)),
        sa.Column("details", sa.JSON),
    )
    md.drop_all(engine)
    md.create_all(engine)
    return t


def bench_plain(url: str, evs: list[dict], batch: int) -> float:
    engine = fedhub_db.get_engine(url)
    t = plain_table(engine)
    tic = time.perf_counter()
    for i in range(0, len(evs), batch):
        rows = [
            {
                "event_id": e["id"],
                "tenant": e["tenant"],
                "time": datetime.fromisoformat(e["time"]).replace(tzinfo=None),
                "actor": e["actor"],
                "action": e["action"],
                "target": e["target"],
                "result": e["result"],
                "severity": e["severity"],
                "source_ip": e["source_ip"],
                "user_agent": e["user_agent"],
                "details": e["details"],
            }
            for e in evs[i : i + batch]
        ]
        with engine.begin() as conn:
            conn.execute(sa.insert(t), rows)
    return len(evs) / (time.perf_counter() - tic)


def bench_chained(audit: AuditLog, evs: list[dict], batch: int) -> tuple[float, float]:
    """Events per wall second and per CPU second of this process (the machine is shared)."""
    tic, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(evs), batch):
        with audit.session() as s:
            audit.append_in(s, evs[i : i + batch])
    return len(evs) / (time.perf_counter() - tic), len(evs) / (time.process_time() - cpu)


def bench_spool(audit: AuditLog, n: int, batch: int, tmp: Path) -> float:
    spool = tmp / f"spool-{uuid.uuid4().hex[:6]}"
    os.environ["FEDHUB_EVENTS_SPOOL"] = str(spool)
    for e in make_events(n, tenant="spooled"):
        events._spool(e)
    tic = time.perf_counter()
    got = SpoolIngester(audit, spool, batch_size=batch).ingest_once()
    assert got == n, got
    return n / (time.perf_counter() - tic)


def raw_read(url: str, tenant: str) -> int:
    """The baseline: the columns verify reads, in the same order, through a plain
    DBAPI cursor (server-side on PostgreSQL), one process, no checks."""
    engine = fedhub_db.get_engine(url)
    conn = engine.raw_connection()
    postgres = url.startswith("postgresql")
    mark = "%s" if postgres else "?"
    cur = conn.cursor(name="bench_raw_read") if postgres else conn.cursor()
    cur.execute(
        f"SELECT {', '.join(verify_mod.COLUMNS)} FROM fedhub_audit_records "
        f"WHERE tenant = {mark} ORDER BY seq",
        (tenant,),
    )
    n = 0
    while rows := cur.fetchmany(5000):
        n += len(rows)
    cur.close()
    conn.rollback()
    conn.close()
    return n


def cli_verify(audit: AuditLog, tenant: str, tmp: Path) -> float:
    """Seconds of ``fedhub audit verify --tenant T`` in a new process (start-up included)."""
    env = {**os.environ, "FEDHUB_AUDIT_DIR": audit.audit_dir}
    cmd = [
        str(ROOT / ".venv" / "bin" / "fedhub"),
        "--db-url",
        audit.db_url,
        "--state-dir",
        str(tmp / "cli-state"),
        "audit",
        "verify",
        "--tenant",
        tenant,
    ]
    tic = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    elapsed = time.perf_counter() - tic
    assert done.returncode == 0, done.stdout + done.stderr
    return elapsed


def bench_verify(audit: AuditLog, total: int, batch: int, tmp: Path) -> dict:
    have = 0
    tic = time.perf_counter()
    while have < total:
        chunk = make_events(min(50_000, total - have), tenant="big")
        for i in range(0, len(chunk), batch):
            with audit.session() as s:
                audit.append_in(s, chunk[i : i + batch])
        have += len(chunk)
        print(f"  big chain: {have} appended", file=sys.stderr, flush=True)
    append_rate = total / (time.perf_counter() - tic)
    audit.checkpoint("big")
    out = {"append_1m_per_s": append_rate}
    # interleaved: raw read, verify in one process, verify in parallel, the CLI; twice,
    # keeping each one's best, so a burst of load on the shared machine hits both sides
    runs: dict[str, list[float]] = {"read": [], "verify_1": [], "verify_n": [], "cli": []}
    cpu_1 = 0.0
    for _ in range(2):
        tic = time.perf_counter()
        assert raw_read(audit.db_url, "big") == total
        runs["read"].append(time.perf_counter() - tic)
        tic, cpu = time.perf_counter(), time.process_time()
        report = verify_chain(audit, "big", processes=1)
        runs["verify_1"].append(time.perf_counter() - tic)
        cpu_1 = time.process_time() - cpu
        assert report.ok and report.records == total, report.as_dict()
        tic = time.perf_counter()
        report = verify_chain(audit, "big")
        runs["verify_n"].append(time.perf_counter() - tic)
        assert report.ok and report.records == total, report.as_dict()
        runs["cli"].append(cli_verify(audit, "big", tmp))
    best = {k: min(v) for k, v in runs.items()}
    out.update(
        {
            "read_per_s": total / best["read"],
            "verify_1proc_per_s": total / best["verify_1"],
            "verify_1proc_per_cpu_s": total / cpu_1,
            "verify_per_s": total / best["verify_n"],
            "verify_processes": audit.verify_processes or os.cpu_count(),
            "verify_seconds": best["verify_n"],
            "cli_verify_per_s": total / best["cli"],
            "cli_verify_seconds": best["cli"],
            "verify_over_read": best["read"] / best["verify_n"],
            "cli_over_read": best["read"] / best["cli"],
            "runs_seconds": runs,
        }
    )
    return out


EXPORT_SCRIPT = """
import resource, sys, time
from fedhub.cli import main
tic = time.perf_counter()
main(sys.argv[1:], standalone_mode=False)
print(time.perf_counter() - tic, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def cli_export(audit: AuditLog, tenant: str, tmp: Path) -> dict:
    """``fedhub audit export --tenant T -o FILE`` in a new process: seconds, peak RSS, lines."""
    out = tmp / f"export-{tenant}.jsonl"
    env = {**os.environ, "FEDHUB_AUDIT_DIR": audit.audit_dir}
    args = ["--db-url", audit.db_url, "--state-dir", str(tmp / "cli-state")]
    args += ["audit", "export", "--tenant", tenant, "--format", "jsonl", "-o", str(out)]
    done = subprocess.run(
        [sys.executable, "-c", EXPORT_SCRIPT, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    seconds, maxrss_kb = done.stderr.strip().splitlines()[-1].split()
    with open(out, "rb") as f:
        lines = sum(1 for _ in f)
    out.unlink()
    return {"seconds": float(seconds), "peak_rss_mb": int(maxrss_kb) / 1024, "lines": lines}


def bench_export(audit: AuditLog, big: int, tmp: Path, batch: int = 5000) -> dict:
    """Peak RSS of a JSONL export of 100k records and of the ``big`` chain (1M)."""
    small = min(100_000, big // 10)
    evs = make_events(small, tenant="mid")
    for i in range(0, len(evs), batch):
        with audit.session() as s:
            audit.append_in(s, evs[i : i + batch])
    mid = cli_export(audit, "mid", tmp)
    full = cli_export(audit, "big", tmp)
    assert (mid["lines"], full["lines"]) == (small, big), (mid, full)
    return {
        "export_small": {**mid, "records": small, "per_s": small / mid["seconds"]},
        "export_big": {**full, "records": big, "per_s": big / full["seconds"]},
    }


def bench_emit(tmp: Path, n: int = 20000) -> dict:
    os.environ["FEDHUB_EVENTS_SPOOL"] = str(tmp / "emit-spool")
    kw = dict(
        tenant="acme",
        actor="alice",
        target="alice",
        source_ip="127.0.0.1",
        user_agent="Mozilla/5.0",
        details={"reason": "x"},
    )
    events.emit("auth.login", **kw)
    tic = time.perf_counter()
    for _ in range(n):
        events.emit("auth.login", **kw)
    emit_us = (time.perf_counter() - tic) / n * 1e6
    e = events.make_event("auth.login", **kw)
    tic = time.perf_counter()
    for _ in range(n):
        events.validate(e)
    fast_us = (time.perf_counter() - tic) / n * 1e6
    schema = events.event_logger().schemas.get(events.SCHEMA_ID)
    tic = time.perf_counter()
    for _ in range(n // 4):
        schema.validate(e)
    slow_us = (time.perf_counter() - tic) / (n // 4) * 1e6
    return {
        "emit_us": emit_us,
        "validate_fastjsonschema_us": fast_us,
        "validate_jsonschema_us": slow_us,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--append", type=int, default=50_000)
    ap.add_argument("--verify", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--engines", default="sqlite,postgresql")
    ap.add_argument(
        "--export", action="store_true", help="also export 100k and --verify records (peak RSS)"
    )
    args = ap.parse_args()
    results: dict = {"load_before": os.getloadavg(), "cpus": os.cpu_count(), "args": vars(args)}
    tmp = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    results["emit"] = bench_emit(tmp)
    print(json.dumps(results["emit"]), file=sys.stderr)
    cluster = None
    for engine in args.engines.split(","):
        if engine == "sqlite":
            url = f"sqlite:///{tmp / 'bench.sqlite'}"
        else:
            from tests.harness import PostgresCluster

            cluster = PostgresCluster.start()
            url = cluster.create_database(f"bench_{uuid.uuid4().hex[:8]}")
        fedhub_db.upgrade(url)
        audit = AuditLog(db_url=url, audit_dir=str(tmp / f"audit-{engine}"))
        r: dict = {}
        if args.append:
            evs = make_events(args.append)
            plain = bench_plain(url, evs, args.batch)
            chained, chained_cpu = bench_chained(audit, evs, args.batch)
            r = {
                "plain_per_s": plain,
                "chained_per_s": chained,
                "chained_per_cpu_s": chained_cpu,
                "chained_over_plain": chained / plain,
                "spool_ingest_per_s": bench_spool(audit, args.append, args.batch, tmp),
            }
        print(engine, json.dumps(r), file=sys.stderr, flush=True)
        if args.verify:
            r.update(bench_verify(audit, args.verify, 5000, tmp))
            if args.export:
                r.update(bench_export(audit, args.verify, tmp))
        results[engine] = r
        print(engine, json.dumps(r), file=sys.stderr, flush=True)
        fedhub_db.dispose_engines()
    if cluster:
        cluster.stop()
    results["load_after"] = os.getloadavg()
    out = Path(__file__).parent / "results" / "audit_ingest.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(
        "| engine | plain inserts/s | chained appends/s (per CPU-s) | spool ingest/s "
        "| 1M append/s | raw read/s | verify/s 1 proc (per CPU-s) | verify/s N procs "
        "| CLI verify/s | verify / read | CLI / read |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for engine in args.engines.split(","):
        r = results[engine]
        print(
            f"| {engine} | {r.get('plain_per_s', 0):,.0f} | {r.get('chained_per_s', 0):,.0f} "
            f"({r.get('chained_per_cpu_s', 0):,.0f}) | {r.get('spool_ingest_per_s', 0):,.0f} | "
            f"{r.get('append_1m_per_s', 0):,.0f} | {r.get('read_per_s', 0):,.0f} | "
            f"{r.get('verify_1proc_per_s', 0):,.0f} ({r.get('verify_1proc_per_cpu_s', 0):,.0f}) | "
            f"{r.get('verify_per_s', 0):,.0f} | {r.get('cli_verify_per_s', 0):,.0f} | "
            f"{r.get('verify_over_read', 0):.2f} | {r.get('cli_over_read', 0):.2f} |"
        )
    for engine in args.engines.split(","):
        r = results[engine]
        if "export_big" in r:
            a, b = r["export_small"], r["export_big"]
            print(
                f"\n{engine} JSONL export through the CLI: {a['records']:,} records "
                f"{a['per_s']:,.0f}/s, peak RSS {a['peak_rss_mb']:.0f} MB; {b['records']:,} "
                f"records {b['per_s']:,.0f}/s, peak RSS {b['peak_rss_mb']:.0f} MB"
            )
    e = results["emit"]
    print(
        f"\nemit(): {e['emit_us']:.1f} µs/event; validation {e['validate_fastjsonschema_us']:.1f} µs "
        f"(fastjsonschema) vs {e['validate_jsonschema_us']:.1f} µs (jsonschema, EventLogger.emit's)"
    )


if __name__ == "__main__":
    main()
