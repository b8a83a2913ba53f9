"""Billing benchmarks: idempotent ingest through the HTTP API vs a raw insert, and a month's close.

    .venv/bin/python benchmarks/billing_ingest.py [--events 50000] [--clients 1] [--tenants 1000]

1. events/s through ``POST /services/billing/api/v1/events`` of a real hub (``fedhub up``
   with its proxy and the billing service, as the tests start it), in batches of 1,000
   with 10 % of the events resent, on SQLite and on a throwaway PostgreSQL 15 cluster;
   in the same run, a raw DBAPI ``executemany`` of the same rows (``INSERT ... ON
   CONFLICT DO NOTHING``, one transaction per batch) into the same table of a fresh
   database, and the library path alone (``fedhub.billing.ingest``: validation of the
   JSON bytes + the write), with the time of each stage;
2. the time to close a month (rate + draft + finalize) for N tenants with hourly usage
   (one ``server_seconds`` event per tenant and hour: 720 × N rows), on SQLite.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402
import requests  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from fedhub import db  # noqa: E402
from fedhub.billing.clock import FixedClock  # noqa: E402
from fedhub.billing.ingest import batch_adapter, ingest, parse_batch  # noqa: E402
from fedhub.billing.operations import Billing  # noqa: E402
from fedhub.billing.periods import parse  # noqa: E402
from fedhub.billing.settings import BillingSettings  # noqa: E402
from fedhub.db.base import utcnow  # noqa: E402
from fedhub.metering import MeterEvent, Usage  # noqa: E402
from fedhub.tenancy.plans import Subscription  # noqa: E402

NOW = datetime(2026, 11, 20)
TENANTS = ("acme", "globex")  # demo tenants: the API refuses unknown ones
API = "/services/billing/api/v1/events"


def batches(n, size=1000, dup=0.1, seed=1, now=NOW):
    """Request bodies: ``size`` events each; ``dup`` of them resend an earlier id."""
    rng = random.Random(seed)
    sent = []
    for b in range(0, n, size):
        events = []
        for i in range(b, min(n, b + size)):
            k = rng.randrange(len(sent)) if sent and rng.random() < dup else i
            sent.append(k)
            events.append(
                {
                    "id": f"e{k}",
                    "tenant": TENANTS[k % len(TENANTS)],
                    "kind": "api_calls",
                    "quantity": 1 + k % 9,
                    "time": (now - timedelta(minutes=1 + k % 5000)).isoformat(),
                    "user": f"u{k % 7}",
                }
            )
        yield {"events": events}


def encoded(n, now):
    return [json.dumps(body).encode() for body in batches(n, now=now)]


def _service_process(state_dir: Path) -> psutil.Process:
    for p in psutil.process_iter(["cmdline"]):
        if "fedhub.services.billing" in (p.info["cmdline"] or []):
            try:
                if p.environ().get("FEDHUB_STATE_DIR") == str(state_dir):
                    return p
            except psutil.Error:
                continue
    raise LookupError("billing service process not found")


def _cpu(process: psutil.Process) -> float:
    t = process.cpu_times()
    return t.user + t.system


def bench_api(url: str, bodies: list[bytes], clients: int) -> tuple[float, float, int]:
    """Offered events/s through the hub's proxy and the billing service, the service's
    CPU seconds per batch (the machine's load does not inflate those much), accepted."""
    from tests.harness import HubProcess, wait_for

    root = Path(tempfile.mkdtemp(prefix="billing-bench-hub-"))
    root.chmod(0o711)
    hub = HubProcess(root / "state", db_url=url, password="bench-password")
    (root / "state").mkdir()
    hub.start(timeout=120)
    try:
        token = hub.token("admin")
        endpoint = f"{hub.url}{API}"
        headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}
        wait_for(
            lambda: (
                requests.get(
                    f"{hub.url}/services/billing/api/v1/invoices", headers=headers
                ).status_code
                == 200
            ),
            120,
            what="the billing service",
        )
        warm = requests.post(endpoint, data=bodies[0], headers=headers, timeout=60)
        warm.raise_for_status()  # starts connections; its events are resent below (duplicates)
        queue = list(reversed(bodies))
        accepted = []
        lock = threading.Lock()

        def client():
            with requests.Session() as http:
                while True:
                    with lock:
                        if not queue:
                            return
                        body = queue.pop()
                    r = http.post(endpoint, data=body, headers=headers, timeout=120)
                    r.raise_for_status()
                    accepted.append(r.json()["accepted"])

        threads = [threading.Thread(target=client) for _ in range(clients)]
        service = _service_process(hub.state_dir)
        cpu0 = _cpu(service)
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        cpu = (_cpu(service) - cpu0) / len(bodies)
        n = sum(body.count(b'"id"') for body in bodies)
        return n / elapsed, cpu, sum(accepted) + warm.json()["accepted"]
    finally:
        hub.stop()
        shutil.rmtree(root, ignore_errors=True)


_COLS = 'tenant, username, kind, quantity, start, "end", source, idempotency_key, attributes'


def _raw_rows(body: bytes, fmt_time) -> list[tuple]:
    return [
        (
            e["tenant"],
            e["user"],
            e["kind"],
            float(e["quantity"]),
            fmt_time(e["time"]),
            fmt_time(e["time"]),
            "ext:default",
            e["id"],
            "{}",
            fmt_time(utcnow().isoformat()),
        )
        for e in json.loads(body)["events"]
    ]


def bench_raw(url: str, bodies: list[bytes]) -> tuple[float, int]:
    """The same rows through the bare driver: ``executemany`` of ``INSERT ... ON CONFLICT
    DO NOTHING`` into the same (migrated, empty) table, one transaction per batch."""
    db.upgrade(url)
    db.dispose_engines()
    sql = (
        f"INSERT INTO fedhub_meter_events ({_COLS}, recorded_at) VALUES "
        "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (tenant, source, idempotency_key) DO NOTHING"
    )
    accepted = 0
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        sql = sql.replace("%s", "?")

        def fmt(t):  # SQLAlchemy's SQLite DateTime text
            return datetime.fromisoformat(t).strftime("%Y-%m-%d %H:%M:%S.%f")
    else:
        import psycopg

        conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
        fmt = datetime.fromisoformat
    t0 = time.perf_counter()
    for body in bodies:
        cur = conn.cursor()
        cur.executemany(sql, _raw_rows(body, fmt))
        accepted += cur.rowcount
        conn.commit()
    elapsed = time.perf_counter() - t0
    conn.close()
    return sum(body.count(b'"id"') for body in bodies) / elapsed, accepted


def bench_library(url: str, bodies: list[bytes], now: datetime) -> tuple[float, dict, int]:
    """``fedhub.billing.ingest`` alone: validate the bytes, write, commit; ms per batch each."""
    db.upgrade(url)
    batch_adapter()  # built once per process (cached), not per batch
    stages = {"validate": 0.0, "insert": 0.0, "commit": 0.0}
    accepted = 0
    t0, cpu0 = time.perf_counter(), time.process_time()
    for body in bodies:
        a = time.perf_counter()
        usages = parse_batch(
            body, now=now, late_window=timedelta(days=7), future_skew=timedelta(minutes=5)
        )
        b = time.perf_counter()
        with db.session_scope(url) as s:
            accepted += ingest(s, usages, now=now)["accepted"]
            c = time.perf_counter()
        stages["validate"] += b - a
        stages["insert"] += c - b
        stages["commit"] += time.perf_counter() - c
    elapsed = time.perf_counter() - t0
    stages["CPU"] = time.process_time() - cpu0
    db.dispose_engines()
    n = sum(body.count(b'"id"') for body in bodies)
    return n / elapsed, {k: v / len(bodies) * 1000 for k, v in stages.items()}, accepted


def bench_close(url, tenants):
    db.upgrade(url)
    period = parse("2026-10")
    t0 = time.perf_counter()
    with db.session_scope(url) as s:
        s.execute(
            insert(Subscription.__table__),
            [
                {
                    "tenant": f"c{t}",
                    "tier": "professional",
                    "overrides": {},
                    "effective_at": datetime(2026, 9, 1),
                    "recorded_at": datetime(2026, 9, 1),
                }
                for t in range(tenants)
            ],
        )
        for t in range(tenants):
            s.execute(
                insert(MeterEvent.__table__),
                [
                    Usage(
                        f"c{t}",
                        "server_seconds",
                        3600.0,
                        period.start + timedelta(hours=h),
                        period.start + timedelta(hours=h + 1),
                        "bench",
                        f"h{h}",
                        username=f"u{h % 5}",
                    ).row(NOW)
                    for h in range(period.days * 24)
                ],
            )
    load = time.perf_counter() - t0
    billing = Billing(
        url, settings=BillingSettings(grace_days=3), clock=FixedClock(datetime(2026, 11, 5))
    )
    t0 = time.perf_counter()
    results = billing.close(period)
    close = time.perf_counter() - t0
    assert len(results) == tenants and all(r["status"] == "finalized" for r in results)
    return load, close, tenants * period.days * 24


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=50000)
    ap.add_argument("--clients", type=int, default=1, help="concurrent API clients")
    ap.add_argument("--tenants", type=int, default=1000)
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--no-close", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="billing-bench-"))
    now = utcnow().replace(microsecond=0)
    bodies = encoded(args.events, now)
    print(
        f"ingest: {args.events} events in batches of 1,000, 10 % resent; "
        f"API with {args.clients} client(s) through the hub's proxy"
    )
    cluster = None
    engines = {"SQLite": lambda name: f"sqlite:///{tmp / (name + '.sqlite')}"}
    if not args.no_postgres:
        from tests.harness import PostgresCluster

        cluster = PostgresCluster.start()
        engines["PostgreSQL"] = cluster.create_database
    try:
        for engine, new_db in engines.items():
            raw, raw_accepted = bench_raw(new_db("raw"), bodies)
            lib, stages, lib_accepted = bench_library(new_db("library"), bodies, now)
            api, api_cpu, api_accepted = bench_api(new_db("api"), bodies, args.clients)
            assert raw_accepted == lib_accepted == api_accepted, (
                raw_accepted,
                lib_accepted,
                api_accepted,
            )
            print(f"  {engine} (accepted {api_accepted} of {args.events} on every path)")
            print(f"    raw executemany, ON CONFLICT DO NOTHING  {raw:9,.0f} events/s")
            print(
                f"    library (validate + insert + commit)     {lib:9,.0f} events/s  "
                f"({lib / raw:.2f} of raw; ms per batch: "
                + ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
                + ")"
            )
            print(
                f"    HTTP API, POST {API}  {api:9,.0f} events/s  ({api / raw:.2f} of raw; "
                f"billing service CPU {api_cpu * 1000:.1f} ms per batch)"
            )
    finally:
        if cluster:
            cluster.stop()
    if args.no_close:
        shutil.rmtree(tmp, ignore_errors=True)
        return
    try:
        load, close, rows = bench_close(f"sqlite:///{tmp / 'close.sqlite'}", args.tenants)
    finally:
        db.dispose_engines()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"close: {args.tenants} tenants, {rows:,} hourly usage rows (loaded in {load:.1f} s)")
    print(
        f"  SQLite     close + finalize the month: {close:.1f} s "
        f"({args.tenants / close:.0f} tenants/s)"
    )


if __name__ == "__main__":
    main()
