"""One owner per database session: the hub's session is used on the event loop's thread only.

Inside the hub, fedhub reads and writes its tables on the hub's own SQLAlchemy
session (:func:`fedhub.db.share_session`). A ``Session`` is not thread-safe: a
worker thread (``asyncio.to_thread``, an executor) that uses it while the loop
does fails with "This session is provisioning a new connection; concurrent
operations are not permitted" (a 500), or silently runs inside the loop's
transaction. Reading an attribute of a hub ``User``/``Spawner`` or of a fedhub
ORM object is enough: after any rollback the hub's objects are expired, and
the read lazy-loads. So work moved off the loop gets plain values (strings,
numbers, paths) computed on the loop, never ORM objects or the hub's
``User``/``Spawner``.

:func:`install` makes that rule checkable. Listeners on the hub's session (ORM
statements, which include lazy loads and refreshes of expired attributes, and
flushes) and on its engine (every cursor) notice any use from a thread other
than the one that installed them (the event loop's). Each use is logged as one
ERROR line that starts with :data:`MARKER`, with the offending stack (once per
call path). The modes:

- ``log``: report only;
- ``raise``: report and refuse the use with :class:`SessionThreadViolation`;
- ``strict`` (the tests): ``raise``, and the session also expires every object
  at each commit, as a rollback does. A thread that reads an ORM attribute then
  loads it and is caught every time, not only when it happens to lose a race
  with a rollback (how the 500 showed up: one run in two).

``c.TenantAuthenticatorMixin.check_session_thread`` picks the mode;
``$FEDHUB_CHECK_SESSION_THREAD`` is the fallback. The default is ``log``: a
check is one thread-id comparison per statement, and with the listeners on,
reads on an in-memory hub database (no I/O: the worst case) ran within the
noise of runs without them (~340 µs per statement either way, best of 10
interleaved runs, November 30, on a loaded 2-core machine).
"""

from __future__ import annotations

import logging
import os
import threading
import traceback

from sqlalchemy import event
from sqlalchemy.orm import Session
from traitlets import CaselessStrEnum

MARKER = "FEDHUB-SESSION-THREAD-VIOLATION"
ENV = "FEDHUB_CHECK_SESSION_THREAD"
MODES = ("off", "log", "raise", "strict")
DEFAULT_MODE = "log"

log = logging.getLogger("fedhub.session_guard")
_SQLALCHEMY = os.sep + "sqlalchemy" + os.sep


class SessionThreadViolation(RuntimeError):
    """The hub's database session was used from a thread that does not own it."""


class _ModeOption(CaselessStrEnum):
    """The mode trait; its default is read from the environment when first used."""

    def make_dynamic_default(self):
        return os.environ.get(ENV) or DEFAULT_MODE

    def default_value_repr(self):
        return f"${ENV}, else {DEFAULT_MODE!r}"


def check_session_thread_option() -> CaselessStrEnum:
    """The ``check_session_thread`` trait of :class:`TenantAuthenticatorMixin`."""
    return _ModeOption(
        MODES,
        config=True,
        help=f"""Check that fedhub code uses the hub's database session only on the
        event loop's thread (a worker thread that touches it, even by reading an
        expired attribute of a hub User, races the loop: a 500 under load).
        ``log``: an ERROR line starting with {MARKER} and the stack; ``raise``:
        the same, and the use is refused; ``strict`` (tests): ``raise``, and every
        object is expired at each commit so that any off-loop read is caught, not
        only those that lose a race; ``off``: no check. Falls back to ``${ENV}``::

            c.TenantAuthenticatorMixin.check_session_thread = "raise"
        """,
    )


class SessionThreadGuard:
    """Listeners that report use of one session (and its engine) off its owner thread."""

    def __init__(self, session: Session, *, mode: str = DEFAULT_MODE, logger=None):
        if mode not in MODES or mode == "off":
            raise ValueError(f"mode must be one of {MODES[1:]}, not {mode!r}")
        self.session = session
        self.engine = session.get_bind()
        self.mode = mode
        self.log = logger or log
        self.owner = threading.get_ident()
        self.owner_name = threading.current_thread().name
        self.violations: list[str] = []
        self._reported: set[tuple] = set()
        self._listeners = [
            (self.session, "do_orm_execute", self._on_orm_execute),
            (self.session, "before_flush", self._on_flush),
            (self.engine, "before_cursor_execute", self._on_cursor),
        ]

    # -- listeners -------------------------------------------------------------

    def _on_orm_execute(self, state) -> None:
        if threading.get_ident() != self.owner:
            if state.is_column_load:
                what = "refresh of an expired attribute (lazy load)"
            elif state.is_relationship_load:
                what = "relationship lazy load"
            else:
                what = "ORM statement"
            self._violation(what, str(state.statement))

    def _on_flush(self, session, flush_context, instances) -> None:
        if threading.get_ident() != self.owner:
            self._violation("flush", "")

    def _on_cursor(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if threading.get_ident() != self.owner:
            self._violation("statement on the hub's engine", statement)

    def _violation(self, what: str, statement: str) -> None:
        thread = threading.current_thread()
        sql = " ".join(statement.split())[:300]
        self.violations.append(f"{what}: {sql}")
        # one access fires several events (the refresh, its eager loads, each cursor):
        # log each call path once, up to where it entered SQLAlchemy
        frames = []
        for f in traceback.extract_stack():
            if _SQLALCHEMY in f.filename:
                break
            frames.append(f)
        site = tuple((f.filename, f.lineno) for f in frames)
        if site not in self._reported:
            self._reported.add(site)
            self.log.error(
                "%s: the hub's database session was used from thread %r, not the event "
                "loop's thread %r (%s: %s). Work moved off the loop must get plain values, "
                "never the session, ORM objects or the hub's User/Spawner. Stack:\n%s",
                MARKER,
                thread.name,
                self.owner_name,
                what,
                sql,
                "".join(traceback.format_list(frames)),
            )
        try:
            from fedhub.extensions.hub.spawner import metrics

            metrics.SESSION_THREAD_VIOLATIONS.labels(what).inc()
        except ImportError:  # prometheus_client missing: the log line is enough
            pass
        if self.mode in ("raise", "strict"):
            raise SessionThreadViolation(
                f"{MARKER}: the hub's database session was used from thread {thread.name!r} "
                f"({what})"
            )

    # -- wiring -----------------------------------------------------------------

    def install(self) -> SessionThreadGuard:
        for target, name, fn in self._listeners:
            event.listen(target, name, fn)
        self.session.info["fedhub_session_guard"] = self
        if self.mode == "strict":
            self._expire_on_commit = self.session.expire_on_commit
            self.session.expire_on_commit = True
        return self

    def remove(self) -> None:
        for target, name, fn in self._listeners:
            if event.contains(target, name, fn):
                event.remove(target, name, fn)
        self.session.info.pop("fedhub_session_guard", None)
        if self.mode == "strict":
            self.session.expire_on_commit = self._expire_on_commit


def install(session: Session | None, mode: str = DEFAULT_MODE, logger=None):
    """Guard ``session`` (the hub's ``app.db``) from the calling thread, once.

    Call it on the event loop's thread: that thread becomes the session's owner.
    Returns the guard, or None when ``mode`` is ``off`` or there is no session.
    """
    if session is None or mode == "off":
        return None
    guard = session.info.get("fedhub_session_guard")
    if guard is None:
        guard = SessionThreadGuard(session, mode=mode, logger=logger).install()
        guard.log.info(
            "Checking that the hub's database session stays on thread %r (%s)",
            guard.owner_name,
            mode,
        )
    return guard
