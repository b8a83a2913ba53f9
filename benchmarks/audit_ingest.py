"""Audit log throughput: chained appends and spool ingestion vs plain inserts, verify vs a
raw read, export memory, emit().

    .venv/bin/python benchmarks/audit_ingest.py --verify 0                     # appends and ingest
    .venv/bin/python benchmarks/audit_ingest.py --append 0 --verify 1000000    # verify
    .venv/bin/python benchmarks/audit_ingest.py --append 0 --verify 1000000 --export

Every rate is printed with its baseline, measured in the same run on the same
database, and their ratio; every rate both per wall second and per CPU second
(this process, its child processes, and on PostgreSQL the server's processes:
the machine is shared, and CPU seconds are what load does not inflate):

- plain (baseline of ingest): the event envelopes inserted as rows of a table with
  no chain, no encryption (SQLAlchemy Core, batches of --batch);
- chained: ``AuditLog.append_in`` (dedup by event id, per-user AES-GCM of the
  personal fields, SHA-256 chain, HMAC, chain lock), batches of --batch;
- spool: ``SpoolIngester`` (what the audit service runs: read, parse, validate,
  chained append, offset) from JSON-lines files written by ``emit()``;
- verify, on a chain of --verify records, interleaved twice (best of each): the raw
  baselines (every column of the chain's rows, and only the columns verify reads
  as verify reads them, in binary format on PostgreSQL, through a plain DBAPI
  cursor, server-side on PostgreSQL, one process, no checks),
  ``verify_chain`` in one process and in ``AuditLog.verify_processes`` worker
  processes (the default check: hashes of the stored canonical bytes), the same
  with ``deep`` (every column checked against the bytes too), and ``fedhub audit
  verify`` in a new process (start-up included);
- export (--export): ``fedhub audit export`` JSONL of 100,000 records and of the
  --verify chain, each in a new process: records/s and peak RSS (``ru_maxrss``);
- emit: µs per ``emit()`` call (validate + append one line), and what the
  jsonschema validator that ``EventLogger.emit`` uses would cost instead.

PostgreSQL is a throwaway cluster (tests.harness.PostgresCluster, fsync off
like the tests). Prints Markdown tables and writes benchmarks/results/audit_ingest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
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


def _server_cpu(cluster) -> float:
    """CPU seconds of a PostgreSQL cluster's processes so far: the postmaster (with the
    backends it has reaped) and its live children."""
    if cluster is None:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    master = int((cluster.datadir / "postmaster.pid").read_text().split()[0])
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = open(f"/proc/{entry.name}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry.name), int(fields[1])
        if pid == master:
            total += sum(int(x) for x in fields[11:15]) / tick  # its own and reaped children
        elif ppid == master:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


class Meter:
    """Wall seconds and CPU seconds (this process, reaped children, the database
    server) of a ``with`` block; ``rates(n)`` gives n per wall second and per CPU second."""

    cluster = None  # the PostgreSQL cluster under test, if any

    def __enter__(self) -> Meter:
        self._start = self._now()
        return self

    def __exit__(self, *exc) -> None:
        end = self._now()
        self.wall, self.cpu = (e - s for e, s in zip(end[:2], self._start[:2], strict=True))
        self.cpu += end[2] - self._start[2]

    def _now(self) -> tuple[float, float, float]:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        own = time.process_time() + children.ru_utime + children.ru_stime
        return time.perf_counter(), own, _server_cpu(self.cluster)

    def rates(self, n: int) -> dict:
        return {"per_s": n / self.wall, "per_cpu_s": n / self.cpu, "seconds": self.wall}


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


def bench_plain(url: str, evs: list[dict], batch: int) -> dict:
    engine = fedhub_db.get_engine(url)
    t = plain_table(engine)
    with Meter() as m:
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
    return m.rates(len(evs))


def bench_chained(audit: AuditLog, evs: list[dict], batch: int) -> dict:
    with Meter() as m:
        for i in range(0, len(evs), batch):
            with audit.session() as s:
                audit.append_in(s, evs[i : i + batch])
    return m.rates(len(evs))


def bench_spool(audit: AuditLog, n: int, batch: int, tmp: Path) -> dict:
    spool = tmp / f"spool-{uuid.uuid4().hex[:6]}"
    os.environ["FEDHUB_EVENTS_SPOOL"] = str(spool)
    for e in make_events(n, tenant="spooled"):
        events._spool(e)
    with Meter() as m:
        got = SpoolIngester(audit, spool, batch_size=batch).ingest_once()
    assert got == n, got
    return m.rates(n)


def raw_read(url: str, tenant: str, columns: str, binary: bool = False) -> int:
    """A baseline: ``columns`` of the chain's rows in sequence order through a plain
    DBAPI cursor (server-side on PostgreSQL, in binary format if ``binary``, as verify
    reads), one process, no checks."""
    engine = fedhub_db.get_engine(url)
    conn = engine.raw_connection()
    postgres = url.startswith("postgresql")
    mark = "%s" if postgres else "?"
    cur = conn.cursor(name="bench_raw_read", binary=binary) if postgres else conn.cursor()
    cur.execute(
        f"SELECT {columns} FROM fedhub_audit_records WHERE tenant = {mark} ORDER BY seq",
        (tenant,),
    )
    n = 0
    while rows := cur.fetchmany(verify_mod.FETCH_ROWS):
        n += len(rows)
    cur.close()
    conn.rollback()
    conn.close()
    return n


def cli_verify(audit: AuditLog, tenant: str, tmp: Path) -> None:
    """``fedhub audit verify --tenant T`` in a new process."""
    env = {**os.environ, "FEDHUB_AUDIT_DIR": audit.audit_dir}
    cmd = [str(ROOT / ".venv" / "bin" / "fedhub"), "--db-url", audit.db_url]
    cmd += ["--state-dir", str(tmp / "cli-state"), "audit", "verify", "--tenant", tenant]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr


def build_chain(audit: AuditLog, total: int, batch: int) -> dict:
    with Meter() as m:
        have = 0
        while have < total:
            chunk = make_events(min(50_000, total - have), tenant="big")
            for i in range(0, len(chunk), batch):
                with audit.session() as s:
                    audit.append_in(s, chunk[i : i + batch])
            have += len(chunk)
            print(f"  big chain: {have} appended", file=sys.stderr, flush=True)
    audit.checkpoint("big")
    return m.rates(total)


def bench_verify(audit: AuditLog, total: int, batch: int, tmp: Path) -> dict:
    """Raw reads, verify in one and in N processes, the CLI: interleaved twice, the best
    of each kept, so a burst of load on the shared machine hits every side."""
    out = {"append_big": build_chain(audit, total, batch)}
    verified = ", ".join(verify_mod.COLUMNS)

    def checked(processes: int | None, deep: bool = False):
        report = verify_chain(audit, "big", processes=processes, deep=deep)
        assert report.ok and report.records == total, report.as_dict()

    def read(columns: str, binary: bool = False):
        assert raw_read(audit.db_url, "big", columns, binary) == total

    runs = {
        "read_all": lambda: read("*"),
        "read_verified": lambda: read(verified, binary=True),
        "verify_1": lambda: checked(1),
        "verify_n": lambda: checked(None),
        "verify_deep": lambda: checked(None, deep=True),
        "cli": lambda: cli_verify(audit, "big", tmp),
    }
    best: dict[str, dict] = {}
    for _ in range(2):
        for name, run in runs.items():
            with Meter() as m:
                run()
            rates = m.rates(total)
            if name not in best or rates["per_s"] > best[name]["per_s"]:
                best[name] = rates
    out.update(best)
    out["verify_processes"] = audit.verify_processes or os.cpu_count()
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


# (measure, its baseline, goal in measures per wall second, goal as a share of the baseline)
COMPARISONS = [
    ("chained", "plain", 25_000, None),
    ("spool", "plain", 25_000, None),
    ("verify_n", "read_all", 300_000, 0.5),
    ("verify_n", "read_verified", None, None),
    ("verify_1", "read_all", None, None),
    ("verify_deep", "read_all", None, None),
    ("cli", "read_all", None, None),
]
LABELS = {
    "plain": "plain batched INSERT",
    "chained": "chained append (AuditLog.append_in)",
    "spool": "spool ingestion (SpoolIngester)",
    "read_all": "raw read, every column",
    "read_verified": "raw read, verify's columns",
    "verify_1": "verify, 1 process",
    "verify_n": "verify, worker processes",
    "verify_deep": "verify --deep, worker processes",
    "cli": "fedhub audit verify (CLI)",
}


def print_table(engines: list[str], results: dict) -> None:
    """One row per measure: its rate, its same-run baseline's, the ratios, the goal."""
    print(
        "| engine | measure | per s (per CPU-s) | baseline | per s (per CPU-s) "
        "| ratio wall (CPU) | goal |"
    )
    print("|---|---|---|---|---|---|---|")
    for engine in engines:
        r = results[engine]
        for what, base, goal_rate, goal_ratio in COMPARISONS:
            if what not in r or base not in r:
                continue
            m, b = r[what], r[base]
            ratio = m["per_s"] / b["per_s"]
            goal = []
            if goal_rate:
                goal.append(f"≥ {goal_rate:,}/s: {'met' if m['per_s'] >= goal_rate else 'NOT met'}")
            if goal_ratio:
                goal.append(
                    f"≥ {goal_ratio} of baseline: {'met' if ratio >= goal_ratio else 'NOT met'}"
                )
            print(
                f"| {engine} | {LABELS[what]} | {m['per_s']:,.0f} ({m['per_cpu_s']:,.0f}) "
                f"| {LABELS[base]} | {b['per_s']:,.0f} ({b['per_cpu_s']:,.0f}) "
                f"| {ratio:.2f} ({m['per_cpu_s'] / b['per_cpu_s']:.2f}) | {'; '.join(goal)} |"
            )
    print(
        "\nper CPU-s: this process, its child processes and (PostgreSQL) the server's "
        f"processes; load average before {results['load_before'][0]:.1f}, after "
        f"{results['load_after'][0]:.1f}, {results['cpus']} CPUs"
    )


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
        Meter.cluster = cluster if engine == "postgresql" else None
        r: dict = {}
        if args.append:
            evs = make_events(args.append)
            r["plain"] = bench_plain(url, evs, args.batch)
            r["chained"] = bench_chained(audit, evs, args.batch)
            r["spool"] = bench_spool(audit, args.append, args.batch, tmp)
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
    shutil.rmtree(tmp, ignore_errors=True)  # a 1M-record chain is ~1 GB of SQLite and keys
    results["load_after"] = os.getloadavg()
    out = Path(__file__).parent / "results" / "audit_ingest.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print_table(args.engines.split(","), results)
    for engine in args.engines.split(","):
        r = results[engine]
        if "export_big" in r:
            a, b = r["export_small"], r["export_big"]
            print(
                f"\n{engine} JSONL export through the CLI: {a['records']:,} records "
                f"{a['per_s']:,.0f}/s, peak RSS {a['peak_rss_mb']:.0f} MB; {b['records']:,} "
                f"records {b['per_s']:,.0f}/s, peak RSS {b['peak_rss_mb']:.0f} MB "
                f"({b['peak_rss_mb'] / a['peak_rss_mb']:.2f} times the small export's: "
                "constant memory is 1.00)"
            )
    e = results["emit"]
    print(
        f"\nemit(): {e['emit_us']:.1f} µs/event; validation {e['validate_fastjsonschema_us']:.1f} µs "
        f"(fastjsonschema) vs {e['validate_jsonschema_us']:.1f} µs (jsonschema, EventLogger.emit's)"
    )


if __name__ == "__main__":
    main()
