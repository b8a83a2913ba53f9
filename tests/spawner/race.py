"""Many named-server spawns of one user at once, as the spawn race tests run them."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from fedhub import quotas
from fedhub.extensions.hub import session_guard
from tests.harness import HubProcess, wait_for

FAST_SERVER = Path(__file__).resolve().with_name("fast_server.py")
# hub arguments that make every server tests/spawner/fast_server.py (up in ~50 ms)
FAST_SERVER_ARGS = ["--Spawner.cmd=/usr/bin/python3", f"--Spawner.cmd={FAST_SERVER}"]


def guard_report(hub: HubProcess) -> str:
    """The first session-guard report in the hub's log (with its stack), or ''."""
    log = hub.log()
    at = log.find(session_guard.MARKER)
    return log[at : at + 5000] if at >= 0 else ""


def servers(hub: HubProcess, user: str, token: str) -> dict:
    return hub.api("GET", f"/hub/api/users/{user}", token).json()["servers"]


def spawn_at_once(hub: HubProcess, user: str, token: str, names: list[str]):
    """POST every named server in the same instant (threads released by one barrier)."""
    barrier = threading.Barrier(len(names))

    def post(name: str) -> requests.Response:
        barrier.wait()
        return hub.api("POST", f"/hub/api/users/{user}/servers/{name}", token)

    with ThreadPoolExecutor(len(names)) as pool:
        return list(pool.map(post, names))


def stop_all(hub: HubProcess, user: str, token: str, tenant: str, timeout: float = 60) -> None:
    """Stop and remove every server of ``user``; wait until their reservations are freed."""
    for name in list(servers(hub, user, token)):
        path = f"/hub/api/users/{user}/servers/{name}" if name else f"/hub/api/users/{user}/server"
        r = hub.api("DELETE", path, token, json={"remove": True} if name else None)
        assert r.status_code in (202, 204), (r.status_code, r.text[:300])
    wait_for(lambda: not servers(hub, user, token), timeout, what=f"{user}'s servers to stop")
    wait_for(
        lambda: not [r for r in quotas.reservations(hub.db_url, tenant) if r.username == user],
        timeout,
        what=f"{user}'s reservations to be freed",
    )


def race_round(hub: HubProcess, user: str, token: str, n: int, limit: int, tag: str) -> list:
    """``n`` spawns at once against a limit of ``limit`` servers: exactly ``limit`` start,
    the others get a 429, nobody a 5xx; waits until the started ones are ready."""
    results = spawn_at_once(hub, user, token, [f"{tag}-{i}" for i in range(n)])
    seen = [(r.status_code, r.text[:300]) for r in results]
    assert all(r.status_code < 500 for r in results), f"{seen}\n{guard_report(hub)}"
    assert sorted(r.status_code for r in results).count(429) == n - limit, seen
    assert all(r.status_code in (201, 202, 429) for r in results), seen
    wait_for(
        lambda: sum(s["ready"] for s in servers(hub, user, token).values()) == limit,
        90,
        what=f"{limit} servers ready",
    )
    assert len(servers(hub, user, token)) == limit
    return results
