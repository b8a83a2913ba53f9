"""What separate Unix accounts cost a spawn: isolated vs shared account, same run.

Two real hubs (``fedhub up``) side by side, both with the tier spawner:

* ``isolated``: the embedded default, ``UnixAccountSpawner`` (an account per user,
  created on first spawn, a 0700 home it owns);
* ``shared``: ``SimpleLocalProcessSpawner``, every server as the hub's own account
  (``--allow-root``), which is what fedhub did before accounts.

Measured, alternating between the hubs so both see the same machine load:

1. single spawns of one user (account already there) — the median of ``--spawns``;
2. the first spawn of ten new users at once (ten accounts created in parallel),
   from ``POST`` to all ten ready, repeated ``--bursts`` times with fresh users.

Needs root (that is what separate accounts need). Run from the repository root:
``.venv/bin/python benchmarks/isolation_overhead.py``. Accounts made for the
burst users are removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fedhub import accounts  # noqa: E402
from tests.harness import HubProcess, wait_for  # noqa: E402

PASSWORD = "Fedhub-bench-password-1"  # keeps the enterprise tier's password policy
SHARED_CONFIG = """# the pre-isolation layout: every server as the hub's own account
c.TierSpawner.backend_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.SimpleLocalProcessSpawner.home_dir_template = {homes!r}
c.Spawner.args = ["--allow-root"]
"""


def server_ready(hub: HubProcess, user: str, token: str) -> bool:
    model = hub.api("GET", f"/hub/api/users/{user}", token).json()
    return bool(model["servers"].get("", {}).get("ready"))


def spawn_and_wait(hub: HubProcess, user: str, token: str) -> float:
    tic = time.perf_counter()
    r = hub.api("POST", f"/hub/api/users/{user}/server", token, json={})
    assert r.status_code in (201, 202), r.text
    wait_for(lambda: server_ready(hub, user, token), 180, interval=0.05, what=f"{user} ready")
    return time.perf_counter() - tic


def stop(hub: HubProcess, user: str, token: str) -> None:
    hub.api("DELETE", f"/hub/api/users/{user}/server", token)
    wait_for(
        lambda: not hub.api("GET", f"/hub/api/users/{user}", token).json()["servers"],
        120,
        interval=0.2,
        what=f"{user} stopped",
    )


def burst(hub: HubProcess, users: list[str], admin: str) -> float:
    """Ten first spawns at once: seconds until the last one is ready."""
    tic = time.perf_counter()
    with ThreadPoolExecutor(len(users)) as pool:
        list(pool.map(lambda u: spawn_and_wait(hub, u, admin), users))
    took = time.perf_counter() - tic
    with ThreadPoolExecutor(len(users)) as pool:
        list(pool.map(lambda u: stop(hub, u, admin), users))
    return took


def start_hubs(base: Path) -> dict[str, HubProcess]:
    hubs = {"isolated": HubProcess(base / "isolated", password=PASSWORD)}
    shared = HubProcess(base / "shared", password=PASSWORD)
    shared.state_dir.mkdir(parents=True)
    (shared.state_dir / "jupyterhub_config.py").write_text(
        SHARED_CONFIG.format(homes=str(shared.state_dir / "homes" / "{username}"))
    )
    hubs["shared"] = shared
    for hub in hubs.values():
        hub.state_dir.mkdir(parents=True, exist_ok=True)
        hub.start(timeout=180)
        hub.fedhub("tenant", "create", "benchco", "--tier", "enterprise")
    return hubs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spawns", type=int, default=6, help="single spawns per hub")
    ap.add_argument("--bursts", type=int, default=3, help="bursts of ten first spawns per hub")
    ap.add_argument("--burst-size", type=int, default=10)
    ap.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "isolation_overhead.json")
    )
    args = ap.parse_args()
    if not accounts.can_isolate():
        sys.exit("isolation_overhead: needs root (separate accounts need it)")
    base = Path(tempfile.mkdtemp(prefix="fedhub-bench-iso-"))
    base.chmod(0o711)
    made: list[str] = []
    single: dict[str, list[float]] = {"isolated": [], "shared": []}
    bursts: dict[str, list[float]] = {"isolated": [], "shared": []}
    hubs = start_hubs(base)
    try:
        admins = {k: h.token("admin") for k, h in hubs.items()}
        alice = {k: h.token("alice") for k, h in hubs.items()}
        for name, hub in hubs.items():  # alice's account exists before timing
            spawn_and_wait(hub, "alice", alice[name])
            stop(hub, "alice", alice[name])
        for _ in range(args.spawns):
            for name, hub in hubs.items():
                single[name].append(spawn_and_wait(hub, "alice", alice[name]))
                stop(hub, "alice", alice[name])
        for _ in range(args.bursts):
            for name, hub in hubs.items():
                users = [f"b{uuid.uuid4().hex[:8]}" for _ in range(args.burst_size)]
                for user in users:
                    hub.fedhub("user", "add", user, "--tenant", "benchco", "--password", PASSWORD)
                made += [accounts.account_name(u) for u in users]
                for user in users:  # the mirror may have made it already: 409
                    r = hub.api("POST", f"/hub/api/users/{user}", admins[name])
                    assert r.status_code in (201, 409), r.text
                bursts[name].append(burst(hub, users, admins[name]))
    finally:
        for hub in hubs.values():
            hub.stop()
        for account in made:
            accounts.remove_account(account)
    result = {
        "machine_note": f"{os.cpu_count()} cores",
        "single_spawn_median_s": {k: round(statistics.median(v), 3) for k, v in single.items()},
        "single_spawn_all_s": {k: [round(x, 3) for x in v] for k, v in single.items()},
        "burst_of_ten_median_s": {k: round(statistics.median(v), 3) for k, v in bursts.items()},
        "burst_all_s": {k: [round(x, 3) for x in v] for k, v in bursts.items()},
    }
    result["single_ratio"] = round(
        result["single_spawn_median_s"]["isolated"] / result["single_spawn_median_s"]["shared"], 3
    )
    result["burst_ratio"] = round(
        result["burst_of_ten_median_s"]["isolated"] / result["burst_of_ten_median_s"]["shared"], 3
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
