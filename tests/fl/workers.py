"""Real Dask clusters for the FL engine tests, and a worker killed in the middle of a round."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from fedhub.fl.runtime import active_round
from tests.harness import wait_for


def cluster_kwargs(n_workers: int) -> dict:
    """A ``LocalCluster`` of ``n_workers`` one-thread processes on loopback, no fixed port."""
    return {"n_workers": n_workers, "threads_per_worker": 1, "processes": True,
            "host": "127.0.0.1", "dashboard_address": ":0", "memory_limit": "2GiB"}  # fmt: skip


@contextmanager
def kill_worker_in_round(client, round_no: int = 2, within: float = 120.0) -> Iterator[dict]:
    """SIGKILL the first of ``client``'s workers seen running a task of round ``round_no``
    while the body runs (a watcher thread polls the workers every ~2 ms for up to
    ``within`` seconds). Yields ``{address: pid}`` of the worker killed, empty if none was:
    assert on it after the body, or the test proves nothing."""
    pids = client.run(os.getpid)
    killed: dict[str, int] = {}

    def worker_in_round() -> str | None:
        try:
            rounds = client.run(active_round, on_error="ignore")
        except OSError:
            return None
        return next((addr for addr, rnd in rounds.items() if rnd == round_no), None)

    def kill_when_training():
        with suppress(TimeoutError):  # none seen: the caller's assertion on `killed` fails
            addr = wait_for(worker_in_round, within, 0.002, f"a worker in round {round_no}")
            os.kill(pids[addr], signal.SIGKILL)
            killed[addr] = pids[addr]

    killer = threading.Thread(target=kill_when_training, daemon=True)
    killer.start()
    yield killed
    killer.join(timeout=5)
