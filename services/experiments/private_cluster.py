"""The experiments service's own Dask cluster: TLS only, workers under an unprivileged account.

Every tenant's training data and models pass through this cluster, and a Dask client can run
any code on its workers (``client.run``), so:

* **Only the service can connect.** The cluster's TLS credentials are made in memory when the
  service starts (:meth:`distributed.security.Security.temporary`, a fresh self-signed
  certificate each start, ``require_encryption=True``); the scheduler demands a client
  certificate signed by it. They are never written to disk: the workers get theirs on a pipe.
  A client without them is refused during the TLS handshake, and plain ``tcp://`` is not
  served at all.
* **Workers cannot read the hub's files.** The scheduler runs inside the service (the hub's
  account); each worker is a separate process, ``python -m fedhub.services.experiments.worker``,
  started already switched to :data:`fedhub.accounts.WORKER_ACCOUNT` (no supplementary
  groups) when the service runs as root, so it never holds root even briefly. Not root, the
  workers run as the service's own account (logged as a warning): TLS still applies.
* **Loopback only**, random ports, no dashboard: the scheduler's and workers' HTTP endpoints
  answer only the health check.

The same class makes each tenant's own small cluster (:mod:`.tenant_workers`), whose
workers run as the tenant's account instead (``account``), under a scheduler of its own.

Each worker is a Nanny with one worker process of one thread; the Nanny restarts a worker
process that dies (the round runner retries its clients meanwhile) and enforces the memory
limit. Closing the cluster closes each worker's standard input, its lifeline: a worker whose
service is gone (closed or killed) stops by itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import subprocess
import sys
import time

import dask
from distributed import Scheduler, SpecCluster
from distributed.core import Status
from distributed.deploy.spec import ProcessInterface
from distributed.security import Security

#: Only the health check on the scheduler's HTTP endpoint (no dashboard, info or JSON pages).
SCHEDULER_HTTP_ROUTES = ["distributed.http.health"]

#: Environment variables a worker inherits from the service; nothing else (the service's hub
#: token and database URL stay in the service).
_PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ")


def _worker_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
    env.update({k: v for k, v in os.environ.items() if k.startswith("DASK_")})
    env["PYTHONUNBUFFERED"] = "1"
    return env


class AccountWorker(ProcessInterface):
    """One worker process of :class:`PrivateCluster`, run as ``account``.

    ``account`` is a ``pwd`` entry, or None to run as the service's own account.
    """

    def __init__(
        self,
        scheduler: str,
        name: str,
        *,
        security: Security,
        account: pwd.struct_passwd | None,
        memory_limit: str,
        scratch_parent: str = "",
        python: str = sys.executable,
        preload: list[str] | None = None,
        close_timeout: float = 1.0,
    ):
        super().__init__(scheduler, name)
        self.scheduler = scheduler
        self.name = name
        self.account = account
        self.python = python
        self.close_timeout = close_timeout
        self._settings = {
            "scheduler": scheduler,
            "name": name,
            "memory_limit": memory_limit,
            "scratch_parent": scratch_parent,
            "preload": list(preload or []),
            "tls": {
                "ca": security.tls_ca_file,
                "cert": security.tls_worker_cert,
                "key": security.tls_worker_key,
            },
        }
        self.proc: subprocess.Popen | None = None

    async def start(self) -> None:
        kwargs = {}
        if self.account is not None:
            kwargs = dict(user=self.account.pw_uid, group=self.account.pw_gid, extra_groups=[])
        self.proc = subprocess.Popen(
            [self.python, "-m", "fedhub.services.experiments.worker"],
            stdin=subprocess.PIPE,
            env=_worker_env(),
            cwd="/",
            close_fds=True,
            # its own session: a Ctrl-C meant for the hub reaches the service, which closes
            # its workers in order, instead of interrupting them all at once
            start_new_session=True,
            umask=0o077,  # what a worker writes (its scratch files) is its own
            **kwargs,
        )
        self.proc.stdin.write(json.dumps(self._settings).encode() + b"\n")
        self.proc.stdin.flush()
        await super().start()

    async def close(self) -> None:
        proc = self.proc
        if proc is not None:
            try:
                proc.stdin.close()  # the lifeline: the worker closes its Nanny and exits
            except OSError:
                pass
            try:
                await asyncio.wait_for(asyncio.to_thread(proc.wait), self.close_timeout)
            except TimeoutError:
                proc.kill()  # its worker process follows (it watches the Nanny)
                await asyncio.to_thread(proc.wait)
        await super().close()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


class PrivateCluster(SpecCluster):
    """The service's cluster: an in-process TLS scheduler and :class:`AccountWorker` workers."""

    def __init__(
        self,
        n_workers: int,
        *,
        account: pwd.struct_passwd | None,
        memory_limit: str,
        scratch_parent: str = "",
        python: str = sys.executable,
        preload: list[str] | None = None,
        worker_prefix: str = "fedhub-worker",
        name: str = "fedhub-experiments",
        **kwargs,
    ):
        security = Security.temporary()
        scheduler = {
            "cls": Scheduler,
            "options": {
                "host": "127.0.0.1",
                "port": 0,
                "protocol": "tls",
                "security": security,
                "dashboard": False,
                "dashboard_address": "127.0.0.1:0",
            },
        }
        worker = {
            "cls": AccountWorker,
            "options": {
                "security": security,
                "account": account,
                "memory_limit": memory_limit,
                "scratch_parent": scratch_parent,
                "python": python,
                "preload": preload,
            },
        }
        workers = {f"{worker_prefix}-{i}": worker for i in range(n_workers)}
        # the scheduler is made (and reads its HTTP routes) inside __init__
        with dask.config.set({"distributed.scheduler.http.routes": SCHEDULER_HTTP_ROUTES}):
            super().__init__(
                scheduler=scheduler,
                workers=workers,
                worker=worker,
                security=security,
                name=name,
                **kwargs,
            )

    def wait_until_ready(self, timeout: float) -> None:
        """Wait for every worker to join; fail at once if a worker process exits first."""
        deadline = time.monotonic() + timeout
        while len(self.scheduler_info.get("workers", {})) < len(self.worker_spec):
            for w in list(self.workers.values()):
                code = w.proc.poll() if isinstance(w, AccountWorker) and w.proc else None
                if code is not None:
                    raise RuntimeError(
                        f"Dask worker {w.name} exited with status {code} before joining the "
                        "cluster (its error is in the service's log)"
                    )
            if time.monotonic() > deadline:
                raise TimeoutError(f"Dask workers did not join within {timeout}s")
            time.sleep(0.1)

    def worker_pids(self) -> list[int]:
        """Process ids of the worker entry processes (each the parent of a worker process)."""
        return [
            w.pid
            for w in self.workers.values()
            if isinstance(w, AccountWorker) and w.pid and w.status != Status.closed
        ]
