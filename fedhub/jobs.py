"""Background work on the event loop: a periodic job, and blocking calls run off the loop.

One idiom for "run this every N seconds, log and keep going on error, stop cleanly" and
one for "run this blocking database call in a thread", shared by the hub's plug-ins, the
services and the meter (docs/architecture.md, "Shared toolkit").
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tornado.ioloop import IOLoop

from fedhub.db import rls

__all__ = ["PeriodicJob", "run_blocking"]

T = TypeVar("T")

log = logging.getLogger("fedhub.jobs")


async def run_blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking work (database, files, hashing) in the loop's default thread pool.

    Pass plain values (ids, URLs, dicts), not ORM objects or the hub's session: the
    thread opens its own session. Inside the hub, fedhub's store shares the hub's session
    and must stay on the event-loop thread.

    The thread runs in a copy of the caller's context (as ``asyncio.to_thread`` does), so
    the caller's row-level-security scope (:mod:`fedhub.db.rls`) goes with the work.
    """
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    return await loop.run_in_executor(None, context.run, functools.partial(fn, *args, **kwargs))


class PeriodicJob:
    """Run ``fn`` every ``seconds`` on the running event loop until :meth:`stop`.

    ``fn`` may be a coroutine function (run on the loop) or a plain function; a plain
    function runs in a thread when ``blocking`` is true (:func:`run_blocking`), on the
    loop otherwise. A periodic job is platform work: its transactions see every
    tenant's rows (:func:`fedhub.db.rls.platform`); a job that works for one tenant at a
    time narrows itself with ``rls.tenant(slug)``. An exception is logged with the job's name and the job keeps its
    schedule: one database hiccup must not end the job for good. ``first_delay`` is the
    wait before the first run (default: one interval); ``on_result(ok)`` is called after
    every run, for metrics.
    """

    def __init__(
        self,
        name: str,
        fn: Callable[[], Any] | Callable[[], Awaitable[Any]],
        seconds: float,
        *,
        blocking: bool = False,
        first_delay: float | None = None,
        logger: logging.Logger | None = None,
        on_result: Callable[[bool], None] | None = None,
    ) -> None:
        if seconds <= 0:
            raise ValueError(f"{name}: the interval must be positive, not {seconds!r}")
        self.name = name
        self.fn = fn
        self.seconds = float(seconds)
        self.blocking = blocking
        self.first_delay = self.seconds if first_delay is None else float(first_delay)
        self.log = logger or log
        self.on_result = on_result
        self.runs = 0
        self.failures = 0
        self._task: asyncio.Task | None = None
        self._pending = False

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> PeriodicJob:
        """Schedule the job (idempotent).

        On the running loop; called before the loop runs (a service wires its jobs, then
        serves), the job starts when this thread's tornado IOLoop starts.
        """
        if self.running:
            return self
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._pending = True
            IOLoop.current().add_callback(self._start_pending)
            return self
        self._task = loop.create_task(self._loop(), name=self.name)
        return self

    def _start_pending(self) -> None:
        if self._pending:  # not stopped meanwhile
            self._pending = False
            self.start()

    def stop(self) -> None:
        """Cancel the job; a run in progress on the loop is cancelled, one in a thread ends
        on its own (its result is dropped)."""
        self._pending = False
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def run_once(self) -> bool:
        """One run, errors logged; True when it succeeded."""
        with rls.platform():
            return await self._run_once()

    async def _run_once(self) -> bool:
        try:
            if inspect.iscoroutinefunction(self.fn):
                await self.fn()
            elif self.blocking:
                await run_blocking(self.fn)
            else:
                result = self.fn()
                if inspect.isawaitable(result):
                    await result
            ok = True
        except asyncio.CancelledError:
            raise
        except Exception:
            ok = False
            self.failures += 1
            self.log.exception("%s failed; retrying in %ss", self.name, self.seconds)
        self.runs += 1
        if self.on_result is not None:
            self.on_result(ok)
        return ok

    async def _loop(self) -> None:
        delay = self.first_delay
        while True:
            await asyncio.sleep(delay)
            await self.run_once()
            delay = self.seconds
