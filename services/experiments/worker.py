"""``python -m fedhub.services.experiments.worker``: one worker of the service's Dask cluster.

Owner: the worker account (``fedhub-worker`` when the service runs as root, else the
service's own account). The service starts this module already switched to that account
(:class:`~.private_cluster.AccountWorker`); nothing here ever runs as root, so the process
cannot open the hub's database, keys or experiment files.

What it may read: the Python environment (world-readable) and the TLS credentials of the
worker role, given as one JSON line on standard input (never in a file, an argument or the
environment, where other processes could read them). Everything it computes on arrives over
that TLS connection (``client.scatter`` and tasks).

Neither this process nor the worker process it spawns is dumpable (:mod:`.worker_guard`):
other processes of the same account (a tenant's marketplace strategy host) cannot ptrace
them or read their memory, where the TLS credentials are.

Standard input stays open as a lifeline: when the service closes it, or dies, this process
closes its Nanny (which ends the worker process) and removes its scratch directory.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import shutil
import sys
import tempfile
import threading

#: Dask preload of every worker process this Nanny starts (before any configured one)
GUARD = "fedhub.services.experiments.worker_guard"

#: Only the health check on the worker's HTTP endpoint (it listens on 127.0.0.1, random port).
HTTP_ROUTES = ["distributed.http.health"]


def main() -> None:
    from .worker_guard import forbid_dumps

    forbid_dumps()  # before the credentials are read
    settings = json.loads(sys.stdin.readline())
    # a private (0700) scratch dir of our own, outside the hub's state dir
    scratch = tempfile.mkdtemp(prefix="fedhub-worker-", dir=settings.get("scratch_parent") or None)
    os.environ["HOME"] = os.environ["TMPDIR"] = scratch
    try:
        asyncio.run(_serve(settings, scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    # The Nanny is closed and its worker process gone. Release what it held (the
    # multiprocessing queues' semaphores) and leave without the interpreter's slow
    # teardown: the service gives its workers about a second to go.
    gc.collect()
    logging.shutdown()
    os._exit(0)


async def _serve(settings: dict, scratch: str) -> None:
    import dask
    from distributed import Nanny
    from distributed.security import Security

    tls = settings["tls"]
    security = Security(
        require_encryption=True,
        tls_ca_file=tls["ca"],
        tls_worker_cert=tls["cert"],
        tls_worker_key=tls["key"],
    )
    loop = asyncio.get_running_loop()
    service_gone = asyncio.Event()

    def lifeline() -> None:
        sys.stdin.buffer.read()  # returns at EOF: the service closed the pipe or died
        loop.call_soon_threadsafe(service_gone.set)

    threading.Thread(target=lifeline, name="lifeline", daemon=True).start()
    with dask.config.set({"distributed.worker.http.routes": HTTP_ROUTES}):
        async with Nanny(
            settings["scheduler"],
            name=settings["name"],
            nthreads=1,
            memory_limit=settings["memory_limit"],
            security=security,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            local_directory=scratch,
            preload=[GUARD, *(settings.get("preload") or [])],
        ) as nanny:
            finished = asyncio.ensure_future(nanny.finished())
            gone = asyncio.ensure_future(service_gone.wait())
            await asyncio.wait({finished, gone}, return_when=asyncio.FIRST_COMPLETED)
            if service_gone.is_set() and not finished.done():
                await nanny.close(timeout=0.5, reason="service-closed")
            finished.cancel()
            gone.cancel()


if __name__ == "__main__":
    main()
