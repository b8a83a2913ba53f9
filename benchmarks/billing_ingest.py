"""Billing benchmarks: idempotent ingest vs plain insert, and closing a month.

    .venv/bin/python benchmarks/billing_ingest.py [--events 50000] [--tenants 1000]

1. events/s through ``fedhub.billing.ingest`` (validation of the JSON batch +
   ``INSERT ... ON CONFLICT DO NOTHING`` in one transaction per batch of 1,000, with
   10 % of the events resent) vs a plain ``INSERT`` of the same rows, on SQLite and
   on a throwaway PostgreSQL 15 cluster, in the same run;
2. the time to close a month (rate + draft + finalize) for N tenants with hourly usage
   (one ``server_seconds`` event per tenant and hour: 720 × N rows), on SQLite.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert  # noqa: E402

from fedhub import db  # noqa: E402
from fedhub.billing.clock import FixedClock  # noqa: E402
from fedhub.billing.ingest import ingest, parse_batch  # noqa: E402
from fedhub.billing.models import Subscription  # noqa: E402
from fedhub.billing.operations import Billing  # noqa: E402
from fedhub.billing.periods import parse  # noqa: E402
from fedhub.billing.settings import BillingSettings  # noqa: E402
from fedhub.metering import MeterEvent, Usage  # noqa: E402

NOW = datetime(2026, 11, 20)


def batches(n, size=1000, dup=0.1, seed=1):
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
                    "tenant": f"t{k % 50}",
                    "kind": "api_calls",
                    "quantity": 1 + k % 9,
                    "time": (NOW - timedelta(minutes=k % 5000)).isoformat(),
                    "user": f"u{k % 7}",
                }
            )
        yield {"events": events}


def bench_ingest(url, n):
    db.upgrade(url)
    t0 = time.perf_counter()
    accepted = 0
    for body in batches(n):
        usages = parse_batch(
            body,
            now=NOW,
            late_window=timedelta(days=7),
            future_skew=timedelta(minutes=5),
            max_batch=10000,
        )
        with db.session_scope(url) as s:
            accepted += ingest(s, usages, now=NOW)["accepted"]
    idem = n / (time.perf_counter() - t0)
    # plain insert of the same rows (unique keys: no conflicts to skip), same batches
    t0 = time.perf_counter()
    for j, body in enumerate(batches(n, dup=0)):
        rows = [
            Usage(
                e["tenant"],
                e["kind"],
                e["quantity"],
                NOW,
                NOW,
                "plain",
                f"{j}:{e['id']}",
                username=e["user"],
            ).row(NOW)
            for e in body["events"]
        ]
        with db.session_scope(url) as s:
            s.execute(insert(MeterEvent.__table__), rows)
    plain = n / (time.perf_counter() - t0)
    return idem, plain, accepted


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
    ap.add_argument("--tenants", type=int, default=1000)
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="billing-bench-"))
    print(f"ingest: {args.events} events in batches of 1,000, 10 % resent")
    urls = {"SQLite": f"sqlite:///{tmp / 'ingest.sqlite'}"}
    cluster = None
    if not args.no_postgres:
        from tests.harness import PostgresCluster

        cluster = PostgresCluster.start()
        urls["PostgreSQL"] = cluster.create_database("bench")
    try:
        for name, url in urls.items():
            idem, plain, accepted = bench_ingest(url, args.events)
            print(
                f"  {name:10s} idempotent ingest {idem:9,.0f} events/s "
                f"(accepted {accepted}) | plain insert {plain:9,.0f} rows/s"
            )
    finally:
        if cluster:
            cluster.stop()
    load, close, rows = bench_close(f"sqlite:///{tmp / 'close.sqlite'}", args.tenants)
    print(f"close: {args.tenants} tenants, {rows:,} hourly usage rows (loaded in {load:.1f} s)")
    print(
        f"  SQLite     close + finalize the month: {close:.1f} s "
        f"({args.tenants / close:.0f} tenants/s)"
    )


if __name__ == "__main__":
    main()
