"""A load test: many users of many tenants on one fedhub, on PostgreSQL, against a plain JupyterHub.

One throwaway PostgreSQL 15 server (``tests.harness.PostgresCluster``) holds two databases:

* **fedhub**: a real ``fedhub up`` (``tests.harness.HubProcess``: the hub, its
  configurable-http-proxy and the audit, billing, experiments and scheduler services), with
  ``--tenants`` tenants on the professional tier and ``--users`` users spread over them (the
  first of each tenant its tenant admin). They are written before the hub starts with
  ``TenantStore``, the library behind ``fedhub tenant create`` and ``fedhub user add`` (one
  process, no passwords to hash: seconds for 1,000 users); the hub's tenant mirror makes the
  hub's users, groups and roles from them at start-up.
* **plain**: stock ``jupyterhub`` (``DummyAuthenticator``, the same configurable-http-proxy
  from ``node_modules``) with the same users, the same ``tenant-<slug>`` groups and the same
  group-filtered tenant-admin roles, loaded with JupyterHub's own ``load_groups`` and
  ``load_roles``.

Every user gets an API token through the hub's REST API (``POST /hub/api/users/<name>/tokens``,
as a platform admin on fedhub and as an admin service on the plain hub).

Then ``--concurrency`` clients (asyncio + aiohttp, loopback only, every request through the
hubs' proxies) run in alternating slices until ``--duration`` seconds of the mix have passed:

* **mix** slices (fedhub only): ``GET /hub/api/users`` as a tenant admin, ``GET /hub/api/user``,
  quota reads (experiments service), experiment submissions, each cancelled at once, and
  listings, billing usage reads, audit event reads (tenant admins);
* **comparison** slices, one on each hub, in alternating order: the same hub API workload
  (``GET /hub/api/users`` as a tenant admin, ``GET /hub/api/user``), so machine noise falls on
  both hubs alike. Their ratio is fedhub's overhead on the hub API.

Nothing is trained: ``c.ExperimentScheduler.max_running = 0`` keeps submissions queued (the
submission path is the real one: validation, the tenant lock, the quota reservation, the meter
and audit events), and each is cancelled right away, which the scheduler's next scan finishes.
Rate limits stay on at the tier's values (36,000 API calls an hour per tenant, far above what
2 cores can send a tenant in a run); each tenant's experiment quota is raised by an override
(``experiments_per_month``, ``max_concurrent_experiments``), as an operator would for a tenant
that submits thousands of runs.

Run from the repository root (about 1.5 x ``--duration``, plus 1.5 to 4 minutes of set-up
and 2,000 tokens on a shared 2-core machine):

    .venv/bin/python benchmarks/load.py                       # 1,000 users, 100 tenants, 5 min
    .venv/bin/python benchmarks/load.py --duration 20 --users 100 --tenants 10

It prints a table (p50/p99 per endpoint, requests, errors, the overhead ratios) and writes the
figures as JSON to ``--output``. The exit status is 1 when any request failed.

The set-up (the population, seeding fedhub, the plain hub, the tokens) is :mod:`load_setup`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from load_setup import (  # noqa: E402
    ADMIN,
    ADMIN_PASSWORD,
    PlainHub,
    Population,
    issue_tokens,
    plain_config,
    seed_fedhub,
)

from tests.harness import HubProcess, PostgresCluster  # noqa: E402

TINY_SPEC = {"name": "load test", "dataset": "synthetic", "rounds": 1, "clients": 1}
FEDHUB_CONFIG = "c.ExperimentScheduler.max_running = 0\n"

#: (endpoint label, weight) of the mix; a submission is followed by its cancel
MIX = (
    ("GET /hub/api/users", 20),
    ("GET /hub/api/user", 20),
    ("GET experiments/quota", 15),
    ("GET experiments (list)", 15),
    ("POST experiments (submit)", 6),
    ("GET billing/usage", 12),
    ("GET audit/events", 12),
)
COMPARE = (("GET /hub/api/users", 1), ("GET /hub/api/user", 1))
HUB_ENDPOINTS = ("GET /hub/api/users", "GET /hub/api/user")


# ---------------------------------------------------------------------------- load


@dataclass
class Target:
    name: str  # "fedhub" or "plain"
    url: str
    tokens: dict[str, str]


@dataclass
class Stats:
    latencies: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    error_samples: list[str] = field(default_factory=list)
    busy: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # phase -> s


class Client:
    """One of the concurrent clients: picks the next request of its workload and times it."""

    def __init__(self, http: aiohttp.ClientSession, pop: Population, stats: Stats, seed: int):
        self.http, self.pop, self.stats = http, pop, stats
        self.rng = random.Random(seed)
        self.seed = seed
        self.calls: dict[str, int] = defaultdict(int)  # phase -> requests begun

    async def call(
        self, phase: str, label: str, target: Target, method: str, path: str, user: str, **kw
    ):
        headers = {"Authorization": f"token {target.tokens[user]}"}
        expected = kw.pop("expected", 200)
        tic = time.perf_counter()
        try:
            async with self.http.request(method, f"{target.url}{path}", headers=headers, **kw) as r:
                body = await r.read()
                status = r.status
        except (TimeoutError, aiohttp.ClientError) as e:
            self._error(phase, label, f"{type(e).__name__}: {e}")
            return None
        elapsed = time.perf_counter() - tic
        if status != expected:
            self._error(phase, label, f"{status} {body[:200]!r}")
            return None
        self.stats.latencies[(phase, label)].append(elapsed)
        return body

    def _error(self, phase: str, label: str, what: str) -> None:
        self.stats.errors[(phase, label)] += 1
        if len(self.stats.error_samples) < 20:
            self.stats.error_samples.append(f"{phase} {label}: {what}")

    async def one(self, phase: str, target: Target, workload) -> None:
        labels, weights = zip(*workload, strict=True)
        n = self.calls[phase]
        self.calls[phase] += 1
        if n < len(labels):  # each client goes through every endpoint once, from its own
            label = labels[(n + self.seed) % len(labels)]  # place, so short runs miss none
        else:
            label = self.rng.choices(labels, weights)[0]
        tenant = self.rng.choice(self.pop.tenants)
        admin = self.pop.admins[tenant]
        member = self.rng.choice(self.pop.members[tenant])
        exp = "/services/experiments/api/v1"
        if label == "GET /hub/api/users":
            await self.call(phase, label, target, "GET", "/hub/api/users", admin)
        elif label == "GET /hub/api/user":
            await self.call(phase, label, target, "GET", "/hub/api/user", member)
        elif label == "GET experiments/quota":
            await self.call(phase, label, target, "GET", f"{exp}/quota", member)
        elif label == "GET experiments (list)":
            await self.call(phase, label, target, "GET", f"{exp}/experiments?limit=20", member)
        elif label == "POST experiments (submit)":
            body = await self.call(
                phase, label, target, "POST", f"{exp}/experiments", member,
                json=TINY_SPEC, expected=201,
            )  # fmt: skip
            if body is not None:
                exp_id = json.loads(body)["id"]
                await self.call(
                    phase, "POST experiments/<id>/cancel", target, "POST",
                    f"{exp}/experiments/{exp_id}/cancel", member, expected=202,
                )  # fmt: skip
        elif label == "GET billing/usage":
            await self.call(phase, label, target, "GET", "/services/billing/api/v1/usage", member)
        elif label == "GET audit/events":
            await self.call(
                phase, label, target, "GET", "/services/audit/api/v1/events?limit=20", admin
            )
        else:  # pragma: no cover - the tables above name every label
            raise AssertionError(label)


async def run_slice(
    clients: list[Client], phase: str, target: Target, workload, seconds: float
) -> None:
    """Every client sends its workload, one request at a time, until ``seconds`` pass."""
    deadline = time.monotonic() + seconds

    async def loop(client: Client) -> None:
        while time.monotonic() < deadline:
            await client.one(phase, target, workload)

    tic = time.monotonic()
    await asyncio.gather(*(loop(c) for c in clients))
    clients[0].stats.busy[phase] += time.monotonic() - tic


async def load(args, pop: Population, fedhub: Target, plain: Target) -> Stats:
    stats = Stats()
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=args.concurrency * 2)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        clients = [Client(http, pop, stats, seed=i) for i in range(args.concurrency)]
        # warm-up, not recorded: every endpoint a few times on each hub (the services'
        # first submission imports the engine's registries)
        warm = Stats()
        for c in clients:
            c.stats = warm
        await run_slice(clients, "warm", fedhub, MIX, min(5.0, args.duration / 4))
        await run_slice(clients, "warm", plain, COMPARE, min(3.0, args.duration / 8))
        if warm.errors:
            raise RuntimeError(f"errors while warming up: {warm.error_samples}")
        for c in clients:
            c.stats = stats
        mixed, order = 0.0, [fedhub, plain]
        while mixed < args.duration - 1e-6:
            seconds = min(args.slice, args.duration - mixed)
            await run_slice(clients, "mix", fedhub, MIX, seconds)
            mixed += seconds
            compare = args.compare_slice * seconds / args.slice
            for target in order:
                await run_slice(clients, f"compare-{target.name}", target, COMPARE, compare)
            order.reverse()
    return stats


# ---------------------------------------------------------------------------- report


def quantile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def summarise(stats: Stats) -> dict:
    rows = {}
    for (phase, label), values in sorted(stats.latencies.items()):
        rows.setdefault(phase, {})[label] = {
            "requests": len(values),
            "errors": stats.errors.get((phase, label), 0),
            "p50_ms": round(statistics.median(values) * 1000, 2),
            "p99_ms": round(quantile(values, 0.99) * 1000, 2),
            "mean_ms": round(statistics.fmean(values) * 1000, 2),
            "per_s": round(len(values) / stats.busy[phase], 1),
        }
    for (phase, label), n in stats.errors.items():  # endpoints that only failed
        rows.setdefault(phase, {}).setdefault(
            label, {"requests": 0, "errors": n, "p50_ms": None, "p99_ms": None}
        )
    overhead = {}
    for label in HUB_ENDPOINTS:
        f = rows.get("compare-fedhub", {}).get(label)
        p = rows.get("compare-plain", {}).get(label)
        if f and p and f["requests"] and p["requests"]:
            overhead[label] = {
                "fedhub": f,
                "plain": p,
                "p50_ratio": round(f["p50_ms"] / p["p50_ms"], 3),
                "p99_ratio": round(f["p99_ms"] / p["p99_ms"], 3),
                "mean_ratio": round(f["mean_ms"] / p["mean_ms"], 3),
            }
    return {"phases": rows, "overhead": overhead}


def table(report: dict) -> str:
    mix = report["phases"].get("mix", {})
    out = [
        f"fedhub mix: {report['concurrency']} clients, {report['users']} users, "
        f"{report['tenants']} tenants, {report['duration']} s (PostgreSQL)",
        "",
        "| endpoint | requests | errors | req/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for label, r in mix.items():
        out.append(
            f"| {label} | {r['requests']:,} | {r['errors']} | {r.get('per_s', 0)} "
            f"| {r['p50_ms']} | {r['p99_ms']} |"
        )
    total = sum(r["requests"] for r in mix.values())
    errors = sum(r["errors"] for r in mix.values())
    out.append(f"| **all** | {total:,} | {errors} | | | |")
    out += [
        "",
        "hub API, fedhub against plain JupyterHub (alternating slices, same workload):",
        "",
        "| endpoint | fedhub p50 / p99 ms | plain p50 / p99 ms | fedhub req/s | plain req/s "
        "| ratio p50 | ratio p99 | ratio mean |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, o in report["overhead"].items():
        f, p = o["fedhub"], o["plain"]
        out.append(
            f"| {label} | {f['p50_ms']} / {f['p99_ms']} | {p['p50_ms']} / {p['p99_ms']} "
            f"| {f['per_s']} | {p['per_s']} | **{o['p50_ratio']}** | {o['p99_ratio']} "
            f"| {o['mean_ratio']} |"
        )
    out.append("")
    out.append(f"errors in all phases: {report['errors']}")
    return "\n".join(out)


# ---------------------------------------------------------------------------- main


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=300, help="seconds of the fedhub mix")
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--tenants", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--slice", type=float, default=20, help="seconds of each mix slice")
    p.add_argument(
        "--compare-slice",
        type=float,
        default=5,
        help="seconds on each hub of the comparison after each mix slice",
    )
    p.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "load.json")
    args = p.parse_args()
    started = time.perf_counter()
    pop = Population.plan(args.users, args.tenants)
    base = Path(tempfile.mkdtemp(prefix="fedhub-bench-load-"))
    base.chmod(0o711)  # user accounts traverse it to their homes (none are started here)
    pg = hub = plain = None
    try:
        pg = PostgresCluster.start()
        fed_url = pg.create_database("fedhub_load")
        plain_url = pg.create_database("plain_load")
        (base / "fedhub").mkdir()
        (base / "plain").mkdir()
        seeded = seed_fedhub(fed_url, base / "fedhub", pop)
        print(f"seeded {args.users} users in {args.tenants} tenants in {seeded:.1f} s", flush=True)
        hub = HubProcess(
            base / "fedhub", db_url=fed_url, demo=False, password=ADMIN_PASSWORD,
            fedhub_config=FEDHUB_CONFIG,
        )  # fmt: skip
        service_token = secrets.token_hex(32)
        config, url = plain_config(pop, plain_url, base / "plain", service_token)
        plain = PlainHub(base / "plain", config, url, service_token)
        tic = time.perf_counter()
        failure: list[BaseException] = []

        def start_fedhub() -> None:
            try:
                hub.start(timeout=600)
            except BaseException as e:  # reported below, in the main thread
                failure.append(e)

        thread = threading.Thread(target=start_fedhub)
        thread.start()
        plain.start()
        thread.join()
        if failure:
            raise failure[0]
        print(f"both hubs up in {time.perf_counter() - tic:.1f} s", flush=True)
        tic = time.perf_counter()
        admin_token = hub.token(ADMIN)
        fedhub = Target(
            "fedhub", hub.url, asyncio.run(issue_tokens(hub.url, admin_token, pop.users))
        )
        plain_target = Target(
            "plain", plain.url, asyncio.run(issue_tokens(plain.url, service_token, pop.users))
        )
        print(
            f"{2 * len(pop.users)} tokens through the hub APIs in "
            f"{time.perf_counter() - tic:.1f} s",
            flush=True,
        )
        load_started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        load1 = os.getloadavg()[0]
        stats = asyncio.run(load(args, pop, fedhub, plain_target))
        report = {
            "command": " ".join(["benchmarks/load.py", *sys.argv[1:]]),
            "started": load_started,
            "users": args.users,
            "tenants": args.tenants,
            "concurrency": args.concurrency,
            "duration": args.duration,
            "load_average": [round(load1, 2), round(os.getloadavg()[0], 2)],
            **summarise(stats),
            "errors": sum(stats.errors.values()),
            "error_samples": stats.error_samples,
            "seed_seconds": round(seeded, 1),
            "seconds": round(time.perf_counter() - started),
        }
        print(table(report))
        print(f"load average 1 min: {report['load_average'][0]} at start, "
              f"{report['load_average'][1]} at end; {report['seconds']} s in all")  # fmt: skip
        for sample in stats.error_samples:
            print(f"error: {sample}")
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")
        return 1 if report["errors"] else 0
    finally:
        for process in (hub, plain):
            if process is not None:
                process.stop()
        if pg is not None:
            pg.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
