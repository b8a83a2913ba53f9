"""The load test's set-up (:mod:`load` runs it): who is on the hubs (:class:`Population`),
fedhub's tenants and users written before its hub starts, the plain JupyterHub's config and
process (:class:`PlainHub`), and one API token per user."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness import free_port, wait_for  # noqa: E402

ADMIN = "loadadmin"
ADMIN_PASSWORD = "Load-test-Password-2026"
TIER = "professional"
#: per-tenant overrides sized for the run: every submission is one experiment of the month
EXPERIMENT_OVERRIDES = {"experiments_per_month": 1_000_000, "max_concurrent_experiments": 1_000}
#: a spec that validates like any other; the scheduler never admits it (max_running = 0)


@dataclass
class Population:
    tenants: list[str]
    admins: dict[str, str]  # tenant -> its tenant admin
    members: dict[str, list[str]]  # tenant -> every user of it (the admin too)

    @classmethod
    def plan(cls, users: int, tenants: int) -> Population:
        if users < tenants:
            raise SystemExit("--users must be at least --tenants (one tenant admin each)")
        slugs = [f"t{i:03d}" for i in range(tenants)]
        members: dict[str, list[str]] = {s: [] for s in slugs}
        for i in range(users):
            members[slugs[i % tenants]].append(f"u{i:04d}")
        return cls(slugs, {s: m[0] for s, m in members.items()}, members)

    @property
    def users(self) -> list[str]:
        return [u for s in self.tenants for u in self.members[s]]


# ---------------------------------------------------------------------------- set-up


def seed_fedhub(db_url: str, state: Path, pop: Population) -> float:
    """Tenants and users in fedhub's tables before the hub starts; returns the seconds."""
    from fedhub import db
    from fedhub.tenancy.store import TenantStore
    from fedhub.tiers import load_tiers

    os.environ["FEDHUB_STATE_DIR"] = str(state)  # their events go to this hub's spool
    tic = time.perf_counter()
    db.upgrade(db_url)
    store = TenantStore(db_url, load_tiers())
    for slug in pop.tenants:
        store.create_tenant(slug, tier=TIER, overrides=EXPERIMENT_OVERRIDES, actor="load-test")
        for username in pop.members[slug]:
            role = "tenant-admin" if username == pop.admins[slug] else "member"
            store.add_user(username, slug, role, actor="load-test")
    store.add_user(ADMIN, None, "platform-admin", password=ADMIN_PASSWORD, actor="load-test")
    db.dispose_engines()
    return time.perf_counter() - tic


def plain_config(pop: Population, db_url: str, state: Path, token: str) -> tuple[str, str]:
    """A stock JupyterHub's config with the same users, groups and tenant-admin roles."""
    from fedhub.launcher import proxy_command
    from fedhub.tenancy.roles import group_name, tenant_admin_role

    groups = {group_name(s): {"users": pop.members[s]} for s in pop.tenants}
    roles = [{**tenant_admin_role(s), "users": [pop.admins[s]]} for s in pop.tenants]
    roles.append({"name": "load-test", "scopes": ["admin:users", "tokens"], "services": ["load"]})
    port = free_port()
    lines = {
        "c.JupyterHub.bind_url": f"http://127.0.0.1:{port}/",
        "c.JupyterHub.hub_bind_url": f"http://127.0.0.1:{free_port()}",
        "c.JupyterHub.db_url": db_url,
        "c.JupyterHub.cookie_secret_file": str(state / "cookie_secret"),
        "c.JupyterHub.pid_file": str(state / "jupyterhub.pid"),
        "c.JupyterHub.authenticator_class": "dummy",
        "c.Authenticator.allow_all": True,
        "c.JupyterHub.cleanup_servers": True,
        "c.JupyterHub.cleanup_proxy": True,
        "c.ConfigurableHTTPProxy.api_url": f"http://127.0.0.1:{free_port()}",
        "c.ConfigurableHTTPProxy.command": proxy_command(),
        "c.ConfigurableHTTPProxy.pid_file": str(state / "proxy.pid"),
        "c.JupyterHub.load_groups": groups,
        "c.JupyterHub.load_roles": roles,
        "c.JupyterHub.services": [{"name": "load", "api_token": token}],
    }
    return "".join(f"{k} = {v!r}\n" for k, v in lines.items()), f"http://127.0.0.1:{port}"


class PlainHub:
    """Stock ``jupyterhub -f config.py`` in its own process group, stopped by PID."""

    def __init__(self, state: Path, config: str, url: str, token: str):
        self.state, self.url, self.token = state, url, token
        self.config_path = state / "jupyterhub_config.py"
        self.config_path.write_text(config)
        self.log_path = state / "hub.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 300) -> None:
        import requests

        self._log = open(self.log_path, "ab")
        jupyterhub = Path(sys.executable).with_name("jupyterhub")
        self.proc = subprocess.Popen(
            [str(jupyterhub), "-f", str(self.config_path)],
            cwd=self.state,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"plain hub exited; log:\n{self.log_path.read_text()[-3000:]}")
            return requests.get(f"{self.url}/hub/api/", timeout=2).status_code == 200

        wait_for(ready, timeout, interval=0.2, what="the plain JupyterHub")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._log.close()


async def issue_tokens(url: str, admin_token: str, users: list[str]) -> dict[str, str]:
    """One API token per user through ``POST /hub/api/users/<name>/tokens``, 20 at a time."""
    gate = asyncio.Semaphore(20)
    headers = {"Authorization": f"token {admin_token}"}
    tokens: dict[str, str] = {}
    async with aiohttp.ClientSession(headers=headers) as http:

        async def one(name: str) -> None:
            async with gate:
                async with http.post(
                    f"{url}/hub/api/users/{name}/tokens", json={"note": "load test"}
                ) as r:
                    if r.status != 201:
                        raise RuntimeError(f"token of {name}: {r.status} {await r.text()}")
                    tokens[name] = (await r.json())["token"]

        await asyncio.gather(*(one(u) for u in users))
    return tokens
