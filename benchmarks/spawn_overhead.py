"""Tier spawner overhead: spawn time vs plain SimpleLocalProcessSpawner, and quota-check latency.

1. Two real hubs side by side (``fedhub up``): one with the tier spawner, one with
   plain ``SimpleLocalProcessSpawner``; spawns alternate between them so both see
   the same machine load. Reports the median time from ``POST /users/:name/server``
   to the server being ready, and the ratio.
2. ``fedhub.quotas.reserve`` (every spawn-time check plus the reservation, one
   transaction) against a database holding 1,000 tenants, 10,000 users, 50,000
   meter events and 2,000 reserved servers, on SQLite and PostgreSQL: p50/p99.

Run from the repository root: ``.venv/bin/python benchmarks/spawn_overhead.py``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402

from fedhub import db as fedhub_db  # noqa: E402
from fedhub import quotas  # noqa: E402
from fedhub.db.base import utcnow  # noqa: E402
from fedhub.metering import MeterEvent  # noqa: E402
from fedhub.tenancy.models import Membership, Role, Tenant, TenantStatus  # noqa: E402
from fedhub.tiers import load_tiers  # noqa: E402
from tests.harness import HubProcess, PostgresCluster, wait_for  # noqa: E402

PASSWORD = "fedhub-bench-password"


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


# -- 1. spawn time -----------------------------------------------------------------


def spawn_once(hub: HubProcess, user: str, token: str) -> float:
    tic = time.perf_counter()
    r = hub.api("POST", f"/hub/api/users/{user}/server", token, json={})
    assert r.status_code in (201, 202), r.text
    wait_for(
        lambda: (
            hub.api("GET", f"/hub/api/users/{user}", token)
            .json()["servers"]
            .get("", {})
            .get("ready")
        ),
        180,
        interval=0.05,
        what="ready",
    )
    took = time.perf_counter() - tic
    hub.api("DELETE", f"/hub/api/users/{user}/server", token)
    wait_for(
        lambda: not hub.api("GET", f"/hub/api/users/{user}", token).json()["servers"],
        120,
        interval=0.2,
        what="stopped",
    )
    return took


def bench_spawn(n: int) -> dict:
    base = Path(tempfile.mkdtemp(prefix="fedhub-bench-spawn-"))
    hubs = {
        "TierSpawner": HubProcess(base / "tier", password=PASSWORD),
        "SimpleLocalProcessSpawner": HubProcess(
            base / "plain",
            password=PASSWORD,
            args=["--JupyterHub.spawner_class=jupyterhub.spawner.SimpleLocalProcessSpawner"],
        ),
    }
    times: dict[str, list[float]] = {k: [] for k in hubs}
    try:
        for hub in hubs.values():
            hub.state_dir.mkdir(parents=True)
            hub.start(timeout=180)
        tokens = {k: h.token("alice") for k, h in hubs.items()}
        for _ in range(n):
            for name, hub in hubs.items():
                times[name].append(spawn_once(hub, "alice", tokens[name]))
    finally:
        for hub in hubs.values():
            hub.stop()
    tier = statistics.median(times["TierSpawner"])
    plain = statistics.median(times["SimpleLocalProcessSpawner"])
    return {
        "spawns_each": n,
        "median_s": {"TierSpawner": round(tier, 3), "SimpleLocalProcessSpawner": round(plain, 3)},
        "all_s": {k: [round(v, 3) for v in vs] for k, vs in times.items()},
        "ratio": round(tier / plain, 3),
    }


# -- 2. quota-check latency -----------------------------------------------------


def populate(url: str, tenants: int, users: int, events_per_user: int, reserved: int) -> None:
    fedhub_db.upgrade(url)
    now = utcnow()
    tiers = ["free", "starter", "professional", "enterprise"]
    with fedhub_db.session_scope(url) as s:
        s.execute(
            insert(Tenant),
            [
                {
                    "slug": f"t{i}",
                    "name": f"Tenant {i}",
                    "tier": tiers[i % 4],
                    "status": TenantStatus.ACTIVE,
                    "allowed_email_domains": [],
                    "overrides": {
                        "compute_hours_per_month": 1e6,
                        "max_servers_per_tenant": 10_000,
                        "max_servers_per_user": 10,
                    },
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(tenants)
            ],
        )
        ids = dict(
            s.execute(Tenant.__table__.select().with_only_columns(Tenant.slug, Tenant.id)).all()
        )
        s.execute(
            insert(Membership),
            [
                {
                    "username": f"u{j}",
                    "tenant_id": ids[f"t{j % tenants}"],
                    "role": Role.MEMBER,
                    "created_at": now,
                }
                for j in range(users)
            ],
        )
    rows = []
    for j in range(users):
        for k in range(events_per_user):
            start = now - timedelta(hours=k + 1)
            rows.append(
                {
                    "tenant": f"t{j % tenants}",
                    "username": f"u{j}",
                    "kind": "cpu_seconds",
                    "quantity": 60.0,
                    "start": start,
                    "end": start + timedelta(minutes=1),
                    "source": "bench",
                    "idempotency_key": f"{j}:{k}",
                    "attributes": {},
                    "recorded_at": now,
                }
            )
    with fedhub_db.session_scope(url) as s:
        for i in range(0, len(rows), 5000):
            s.execute(insert(MeterEvent), rows[i : i + 5000])
    catalog = load_tiers()
    for j in range(reserved):
        _reserve(url, catalog, j, tenants, server_name="")


def _reserve(url: str, catalog, user: int, tenants: int, server_name: str) -> None:
    """Reserve the default profile for ``u<user>`` of tenant ``t<user % tenants>``."""
    quotas.reserve(
        url,
        tenant=f"t{user % tenants}",
        username=f"u{user}",
        server_name=server_name,
        profile=None,
        catalog=catalog,
    )


def bench_quota(url: str, samples: int, users: int, tenants: int) -> dict:
    catalog = load_tiers()
    rng = random.Random(1)
    lat = []
    for _ in range(samples):
        j = rng.randrange(users)
        tic = time.perf_counter()
        _reserve(url, catalog, j, tenants, server_name="bench")
        lat.append(time.perf_counter() - tic)
        quotas.release(url, f"u{j}", "bench", meter=False)
    return {
        "samples": samples,
        "p50_ms": round(1000 * pct(lat, 50), 3),
        "p99_ms": round(1000 * pct(lat, 99), 3),
        "mean_ms": round(1000 * statistics.mean(lat), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spawns", type=int, default=5, help="spawns per spawner (0 skips part 1)")
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--tenants", type=int, default=1000)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--engines", default="sqlite,postgresql")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "spawn_overhead.json"))
    args = ap.parse_args()
    result: dict = {"machine_note": "2 cores, shared with other engineers' test runs"}
    for engine in args.engines.split(","):
        pg = None
        if engine == "sqlite":
            url = f"sqlite:///{tempfile.mkdtemp(prefix='fedhub-bench-q-')}/q.sqlite"
        else:
            pg = PostgresCluster.start()
            url = pg.create_database("bench")
        try:
            tic = time.perf_counter()
            populate(url, args.tenants, args.users, 5, 2000)
            print(f"{engine}: populated in {time.perf_counter() - tic:.1f}s", flush=True)
            result[f"quota_check_{engine}"] = bench_quota(
                url, args.samples, args.users, args.tenants
            )
            print(engine, result[f"quota_check_{engine}"], flush=True)
        finally:
            fedhub_db.dispose_engines()
            if pg:
                pg.stop()
    if args.spawns:
        result["spawn"] = bench_spawn(args.spawns)
        print(result["spawn"], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
