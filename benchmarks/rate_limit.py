"""What the tenant rate limiter adds to a hub API request, at 1,000 tenants.

Two real hubs (``fedhub up``) on copies of one database that holds ``--tenants`` tenants,
each with one member and an API token of theirs:

* ``on``: the default, the limiter counting in fedhub's database (SQLite, the embedded
  default): each request of a tenant's user is one upsert per limit on the hub's session;
* ``off``: ``c.RateLimits.enabled = False`` (calls are still metered: the difference is
  the limiter alone).

``GET /hub/api/users/<self>`` is sent straight to each hub (not through the proxy, whose
own jitter would hide a millisecond), one request at a time, each from the next tenant's
user in turn, so every request counts for a different tenant as in a busy deployment.
The hubs alternate request by request (``--batch 1``: both see the same moments of
machine load, which on a shared machine moves more than the limiter costs), after a
warm-up that fills the tier caches. It prints p50/p99 of each, the added
p99 and the ratio. Run from the repository root:

    .venv/bin/python benchmarks/rate_limit.py

(``--tenants 1000 --requests 3000 --batch 1``: about three minutes on 2 cores.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness import HubProcess, free_port  # noqa: E402

PASSWORD = "fedhub-bench-password"


def seed(db_url: str, tenants: int) -> list[str]:
    """The tenants and their members, written before the hubs start (the mirror adds them)."""
    from fedhub import db
    from fedhub.tenancy.store import TenantStore
    from fedhub.tiers import load_tiers

    db.upgrade(db_url)
    store = TenantStore(db_url, load_tiers())
    names = []
    tiers = ("free", "starter", "professional", "enterprise")
    for i in range(tenants):
        store.create_tenant(f"t{i:04d}", tier=tiers[i % len(tiers)])
        store.add_user(f"u{i:04d}", tenant=f"t{i:04d}")
        names.append(f"u{i:04d}")
    db.dispose_engines()
    return names


def issue_tokens(db_url: str, names: list[str]) -> dict[str, str]:
    """An API token per user, written into the running hub's database (JupyterHub's ORM)."""
    from jupyterhub import orm

    session = orm.new_session_factory(db_url)()
    tokens = {}
    try:
        for name in names:
            user = session.query(orm.User).filter_by(name=name).one()
            tokens[name] = user.new_api_token(note="rate-limit benchmark")
    finally:
        session.close()
    return tokens


def start_hub(state: Path, limiter: bool) -> tuple[HubProcess, str]:
    port = free_port()
    hub = HubProcess(
        state,
        password=PASSWORD,
        demo=False,
        fedhub_config="" if limiter else "c.RateLimits.enabled = False\n",
        args=[f"--JupyterHub.hub_bind_url=http://127.0.0.1:{port}"],
    )
    hub.start(timeout=600)
    return hub, f"http://127.0.0.1:{port}"


def timed(session: requests.Session, base: str, name: str, token: str) -> float:
    tic = time.perf_counter()
    r = session.get(
        f"{base}/hub/api/users/{name}", headers={"Authorization": f"token {token}"}, timeout=30
    )
    elapsed = time.perf_counter() - tic
    if r.status_code != 200:
        raise RuntimeError(f"{name}: {r.status_code} {r.text[:200]}")
    return elapsed


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tenants", type=int, default=1000)
    p.add_argument("--requests", type=int, default=3000, help="measured requests per hub")
    p.add_argument("--batch", type=int, default=1, help="requests before switching hubs")
    args = p.parse_args()
    started = time.perf_counter()
    base = Path(tempfile.mkdtemp(prefix="fedhub-bench-ratelimit-"))
    base.chmod(0o755)  # user accounts reach their homes below the state dirs
    hubs: dict[str, tuple[HubProcess, str]] = {}
    try:
        names = seed(f"sqlite:///{base / 'seed.sqlite'}", args.tenants)
        print(f"seeded {args.tenants} tenants in {time.perf_counter() - started:.0f} s", flush=True)
        for mode in ("on", "off"):
            state = base / mode
            state.mkdir()
            shutil.copy(base / "seed.sqlite", state / "jupyterhub.sqlite")
            hubs[mode] = start_hub(state, limiter=mode == "on")
        print(f"hubs up in {time.perf_counter() - started:.0f} s", flush=True)
        tokens = {mode: issue_tokens(hub.db_url, names) for mode, (hub, _) in hubs.items()}
        sessions = {mode: requests.Session() for mode in hubs}
        samples: dict[str, list[float]] = {mode: [] for mode in hubs}
        # warm-up: every tenant once on each hub (tier caches, connection, the ORM's caches)
        for mode, (_, url) in hubs.items():
            for name in names:
                timed(sessions[mode], url, name, tokens[mode][name])
            counted = (
                "RateLimit-Limit"
                in sessions[mode]
                .get(
                    f"{url}/hub/api/users/{names[0]}",
                    headers={"Authorization": f"token {tokens[mode][names[0]]}"},
                )
                .headers
            )
            assert counted == (mode == "on"), f"the {mode} hub does not say so"
        order = ["on", "off"]
        while len(samples["on"]) < args.requests:
            for mode in order:
                url = hubs[mode][1]
                for _ in range(args.batch):
                    name = names[len(samples[mode]) % len(names)]
                    samples[mode].append(timed(sessions[mode], url, name, tokens[mode][name]))
            order.reverse()
        figures = {
            mode: {
                "p50_ms": round(statistics.median(v) * 1000, 2),
                "p99_ms": round(percentile(v, 99) * 1000, 2),
                "n": len(v),
            }
            for mode, v in samples.items()
        }
        added = figures["on"]["p99_ms"] - figures["off"]["p99_ms"]
        report = {
            "tenants": args.tenants,
            "engine": "sqlite",
            "limiter_on": figures["on"],
            "limiter_off": figures["off"],
            "added_p50_ms": round(figures["on"]["p50_ms"] - figures["off"]["p50_ms"], 2),
            "added_p99_ms": round(added, 2),
            "p99_ratio": round(figures["on"]["p99_ms"] / figures["off"]["p99_ms"], 3),
            "seconds": round(time.perf_counter() - started),
        }
        print(json.dumps(report, indent=2))
    finally:
        for hub, _ in hubs.values():
            hub.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
