"""Dask execution: where clients' data lives, how a round's training is submitted and
collected, and what happens when a worker dies.

* The data, the model factory and the run's constants travel once per run as one object
  scattered to every worker (a fresh key per run); workers keep it in memory and build
  their torch tensors and model once (cached per run token).
* Each round sends the global weights once per worker (inline when small, otherwise
  scattered under a fresh key) and submits ONE task per worker holding that worker's share
  of the sampled clients, balanced by expected work. Per-client work is often a few
  milliseconds, so one task per client would be mostly scheduler overhead.
* Results do not depend on the assignment: every client is seeded by (seed, round, id)
  and the driver aggregates in sorted client order.
* A task lost with its worker is rescheduled by Dask; one that errs with ``KilledWorker``
  or a closed connection is resubmitted (fresh key) on the survivors, up to
  ``max_retries`` times, after which its clients count as dropped for the round.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import CancelledError
from dataclasses import dataclass

import dask
import numpy as np

from .training import ClientJob, ClientResult, FlatModel, to_tensors, train_client

log = logging.getLogger("fedhub.fl")

#: Below this size the weights go inline with the task instead of through a scatter.
INLINE_BYTES = 1 << 20


@dataclass
class WorkerPayload:
    """Everything a worker needs for a whole run; shipped once."""

    token: str
    data: object  # FederatedData
    model_factory: Callable
    lr: float
    batch_size: int | None
    mu: float
    seed: int


# ---------------------------------------------------------------- worker side

_WORKER_CACHE: OrderedDict[str, tuple[FlatModel, list]] = OrderedDict()
_WORKER_CACHE_SIZE = 2


def _worker_state(payload: WorkerPayload) -> tuple[FlatModel, list]:
    """The worker's model and tensors for this run, built on first use.

    Only the last two runs are kept, so a notebook re-running experiments against a
    long-lived cluster does not grow the workers' memory.
    """
    state = _WORKER_CACHE.get(payload.token)
    if state is None:
        import torch

        torch.set_num_threads(1)
        fm = FlatModel(payload.model_factory())
        if payload.data.kind == "rl":  # a client is an environment config, not tensors
            tensors = list(payload.data.clients)
        else:
            tensors = [to_tensors(c) for c in payload.data.clients]
        state = (fm, tensors)
        _WORKER_CACHE[payload.token] = state
        while len(_WORKER_CACHE) > _WORKER_CACHE_SIZE:
            _WORKER_CACHE.popitem(last=False)
    return state


def train_batch(
    payload: WorkerPayload, params: np.ndarray, jobs: list[ClientJob], rnd: int
) -> list[ClientResult]:
    """Dask task: train a batch of clients one after another on this worker."""
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    fm, tensors = _worker_state(payload)
    global_params = torch.from_numpy(np.asarray(params, dtype=np.float32))
    kind = payload.data.kind
    _ACTIVE["round"] = rnd
    try:
        return _train_jobs(fm, tensors, global_params, jobs, rnd, payload, kind)
    finally:
        _ACTIVE["round"] = None


def _train_jobs(fm, tensors, global_params, jobs, rnd, payload, kind):
    if kind == "rl":  # the data trains its own clients (fedhub.fl.rl.federated.RLClients)
        train = payload.data.train_client
        return [
            train(fm, job, global_params, rnd=rnd, seed=payload.seed, mu=payload.mu) for job in jobs
        ]
    return [
        train_client(
            fm,
            tensors[job.cid],
            global_params,
            job,
            rnd=rnd,
            seed=payload.seed,
            lr=payload.lr,
            batch_size=payload.batch_size,
            mu=payload.mu,
            kind=kind,
            sampling=getattr(payload.data, "sampling", None),  # TenantData and RL data have none
        )
        for job in jobs
    ]


class ClientTrainer:
    """A Dask actor holding one worker's share of a run.

    Calling an actor goes straight from the driver to the worker, skipping the scheduler:
    a round costs one round trip per worker instead of submit, schedule, run, gather. When
    an actor's worker dies the call fails with ``OSError`` and the runner falls back to
    ordinary tasks, which Dask can reschedule on the survivors.
    """

    def __init__(self, payload: WorkerPayload) -> None:
        self.payload = payload

    def train(self, params: np.ndarray, jobs: list[ClientJob], rnd: int) -> list[ClientResult]:
        return train_batch(self.payload, params, jobs, rnd)

    def prepare(self) -> int:
        """Build the worker's tensors and model and run one throwaway client step, so
        that round 1 does not pay for caches and torch's lazy initialisation. Every
        client starts from the global weights, so this leaves no trace in results."""
        fm, _ = _worker_state(self.payload)
        # an RL client's step is whole episodes on a simulator: not worth a warm-up
        if self.payload.data.num_clients and self.payload.data.kind != "rl":
            train_batch(self.payload, fm.get(), [ClientJob(0, 1)], 0)
        return os.getpid()


def active_round() -> int | None:
    """The round this worker is training right now, if any (tests use it to kill
    a worker mid-round)."""
    return _ACTIVE.get("round")


_ACTIVE: dict[str, int | None] = {"round": None}


def _warm_up() -> int:
    """Import torch and pin it to one thread on a worker before the first round."""
    import torch

    torch.set_num_threads(1)
    return os.getpid()


# ---------------------------------------------------------------- driver side


def local_cluster_kwargs(n_workers: int | None = None, memory_limit: str | None = None) -> dict:
    """Defaults for the LocalCluster a run creates when given no client or address.

    One thread per worker (torch is pinned to one thread inside tasks as well), process
    workers so that a hung or crashing client cannot take the driver down, a hard memory
    limit per worker, everything on loopback and no fixed dashboard port.
    """
    cpus = os.cpu_count() or 1
    n = n_workers or max(1, min(cpus, 4))
    if memory_limit is None:
        try:
            import psutil

            total = psutil.virtual_memory().total
        except ImportError:  # pragma: no cover - psutil is a dependency
            total = 8 << 30
        memory_limit = str(min(4 << 30, int(0.8 * total / n)))
    return {
        "n_workers": n,
        "threads_per_worker": 1,
        "processes": True,
        "memory_limit": memory_limit,
        "host": "127.0.0.1",
        "dashboard_address": ":0",
    }


_FORKSERVER_MODULES = ["distributed", "numpy", "torch", "fedhub.fl.runtime"]


def _prime_forkserver() -> None:
    """Fork workers from a server that has already imported torch.

    Spawned workers pay ~1-2 s each to import torch and distributed; forked from a
    pre-loaded forkserver they start in a fraction of a second, which is what makes a
    notebook re-running an experiment (or a test suite creating clusters) fast. The
    preload list only takes effect before the forkserver first starts; later calls are
    no-ops. The forkserver itself starts no threads, so forking from it is safe.
    """
    from distributed.utils import get_mp_context

    ctx = get_mp_context()  # lets distributed register its own preload first
    ctx.set_forkserver_preload(_FORKSERVER_MODULES)


@contextlib.contextmanager
def dask_client(client=None, address: str | None = None, cluster_kwargs: dict | None = None):
    """Yield a Dask client; close whatever this function created, even on errors."""
    from distributed import Client, LocalCluster

    if client is not None:
        yield client
        return
    if address is not None:
        c = Client(address, set_as_default=False)
        try:
            yield c
        finally:
            c.close()
        return
    kwargs = local_cluster_kwargs()
    kwargs.update(cluster_kwargs or {})
    with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
        _prime_forkserver()
        cluster = LocalCluster(**kwargs)
    # A notebook interrupted mid-run must not leave workers behind.
    finalizer = weakref.finalize(cluster, cluster.close)
    c = Client(cluster, set_as_default=False, direct_to_workers=True)
    try:
        c.run(_warm_up)
        yield c
    finally:
        c.close()
        finalizer()


class RoundRunner:
    """Submits rounds of client jobs to Dask and collects their results."""

    def __init__(
        self, client, payload: WorkerPayload, max_retries: int = 3, use_actors: bool = True
    ) -> None:
        self.client = client
        self.use_actors = use_actors
        self._actors: dict = {}
        self.payload = payload
        self.max_retries = max_retries
        self._payload_future = None
        self._params_future = None
        self.lost_clients_total = 0

    def start(self) -> None:
        self._payload_future = self.client.scatter(self.payload, broadcast=True, hash=False)
        self._actors = {}
        self._actor_pool(self._workers())

    def _actor_pool(self, workers: list[str]) -> dict:
        """One ClientTrainer actor per worker, (re)created when the workers change."""
        if not self.use_actors or workers == [None]:
            return {}
        if sorted(self._actors) != workers:
            self._release_actors()
            futs = {
                w: self.client.submit(
                    ClientTrainer,
                    self._payload_future,
                    actor=True,
                    workers=[w],
                    allow_other_workers=False,
                    key=f"fl-actor-{self.payload.token}-{uuid.uuid4().hex[:8]}",
                )
                for w in workers
            }
            try:
                # An Actor handle binds to the *current* client when it is deserialised.
                with self.client.as_current():
                    self._actors = {w: (f, f.result(timeout=60)) for w, f in futs.items()}
                for call in [actor.prepare() for _, actor in self._actors.values()]:
                    call.result()
            except Exception as exc:  # noqa: BLE001 - fall back to tasks this round
                log.warning("could not start trainers on every worker (%s); using tasks", exc)
                for f in futs.values():
                    f.release()
                self._actors = {}
        return {w: actor for w, (_, actor) in self._actors.items()}

    def _release_actors(self) -> None:
        for fut, _ in getattr(self, "_actors", {}).values():
            fut.release()
        self._actors = {}

    def close(self) -> None:
        self._release_actors()
        for fut in (self._params_future, self._payload_future):
            if fut is not None:
                fut.release()
        self._payload_future = self._params_future = None

    def _workers(self) -> list[str]:
        # The client's cached view of the scheduler; a stale entry only costs a hop, since
        # every task may run elsewhere (allow_other_workers).
        workers = sorted(self.client.scheduler_info(n_workers=-1)["workers"])
        return workers or [None]

    def _broadcast_params(self, params: np.ndarray):
        """The global weights for one round, sent once per worker under a fresh key."""
        if self._params_future is not None:
            self._params_future.release()
            self._params_future = None
        if params.nbytes <= INLINE_BYTES:
            return params
        # A bare (non-dict) object with hash=False gets a fresh random key, so the
        # scatter-reuses-dict-keys pitfall cannot serve last round's weights.
        self._params_future = self.client.scatter(params, broadcast=True, hash=False)
        return self._params_future

    @staticmethod
    def assign(jobs: list[ClientJob], cost: Callable[[ClientJob], float], n: int):
        """Longest-processing-time-first split of jobs over ``n`` workers."""
        loads = [0.0] * n
        shares: list[list[ClientJob]] = [[] for _ in range(n)]
        for job in sorted(jobs, key=lambda j: (-cost(j), j.cid)):
            i = min(range(n), key=lambda k: (loads[k], k))
            shares[i].append(job)
            loads[i] += cost(job)
        return [s for s in shares if s]

    def _submit(self, params_ref, jobs, rnd, worker, attempt):
        key = f"fl-train-{self.payload.token}-r{rnd}-{uuid.uuid4().hex[:8]}-a{attempt}"
        return self.client.submit(
            train_batch,
            self._payload_future,
            params_ref,
            jobs,
            rnd,
            key=key,
            workers=[worker] if worker else None,
            allow_other_workers=bool(worker),
            pure=False,
        )

    def run_round(
        self,
        rnd: int,
        params: np.ndarray,
        jobs: list[ClientJob],
        cost: Callable[[ClientJob], float],
        timeout: float | None = None,
    ) -> tuple[list[ClientResult], list[int]]:
        """Train ``jobs``; return results sorted by client id and the ids that were lost."""
        from distributed import wait
        from distributed.comm.core import CommClosedError
        from distributed.scheduler import KilledWorker

        if not jobs:
            return [], []
        self._ensure_payload()
        workers = self._workers()
        shares = list(zip(self.assign(jobs, cost, len(workers)), workers, strict=False))
        results: list[ClientResult] = []
        lost: list[int] = []
        actors = self._actor_pool(workers) if timeout is None else {}
        if actors:
            # Fast path: call each worker's trainer directly; shares whose worker fails
            # go through ordinary tasks below, which Dask can place on the survivors.
            calls = [(actors[w].train(params, share, rnd), share, w) for share, w in shares]
            failed = []
            for call, share, w in calls:
                try:
                    results.extend(call.result())
                except OSError as exc:
                    log.warning(
                        "round %d: worker %s failed (%s); retrying its clients", rnd, w, exc
                    )
                    failed.append((share, None))
            if failed:
                self._release_actors()
            shares = failed
        # Tasks (no actors, a deadline, or a failed worker) get the weights once per worker.
        params_ref = self._broadcast_params(params) if shares else None
        pending = {self._submit(params_ref, share, rnd, w, 0): (share, 0) for share, w in shares}
        if timeout is None and pending:
            # Fast path: one call that waits and fetches straight from the workers. Any
            # failure falls through to the loop below, which sorts out what to retry.
            try:
                batches = self.client.gather(list(pending), direct=True)
            except Exception as exc:  # noqa: BLE001 - classified per future below
                log.debug("round %d: gather failed (%s); checking each task", rnd, exc)
            else:
                results.extend(r for batch in batches for r in batch)
                pending = {}
        while pending:
            try:
                with self.client.as_current():
                    done, not_done = wait(list(pending), timeout=timeout)
            except TimeoutError:
                done = {f for f in pending if f.done()}
                not_done = set(pending) - done
            except CancelledError:
                # a dying worker took a task's inputs with it ("lost dependencies"):
                # retry what was cancelled below, keep waiting for the rest
                done = {f for f in pending if f.done()}
                not_done = set()
            if not_done:  # deadline passed: late clients are dropped
                for fut in not_done:
                    lost.extend(j.cid for j in pending.pop(fut)[0])
                    fut.cancel()
                log.warning("round %d: %d clients missed the deadline", rnd, len(lost))
            for fut in [f for f in done if f.status == "finished"]:
                try:
                    results.extend(fut.result())
                except CancelledError:
                    continue  # its result was lost with a worker after it finished: retry it
                pending.pop(fut)
            for fut in [f for f in done if f in pending]:
                share, attempt = pending.pop(fut)
                exc = fut.exception() if fut.status == "error" else None
                # lost, cancelled, or finished with its result gone: all retryable
                retryable = exc is None or isinstance(exc, KilledWorker | CommClosedError | OSError)
                if not retryable:
                    raise exc
                if attempt >= self.max_retries:
                    log.warning("round %d: giving up on %d clients", rnd, len(share))
                    lost.extend(j.cid for j in share)
                    continue
                log.warning(
                    "round %d: retrying %d clients after %s", rnd, len(share), exc or fut.status
                )
                self._ensure_payload()
                pending[self._submit(params_ref, share, rnd, None, attempt + 1)] = (
                    share,
                    attempt + 1,
                )
        self.lost_clients_total += len(lost)
        results.sort(key=lambda r: r.cid)
        return results, sorted(lost)

    def _ensure_payload(self) -> None:
        if self._payload_future is None or self._payload_future.status != "finished":
            log.warning("client data was lost with its workers; sending it again")
            self.start()
