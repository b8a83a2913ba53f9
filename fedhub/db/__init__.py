"""Database access: engines, sessions and migrations for fedhub's tables.

The same code runs on SQLite (the embedded default, in WAL mode so the hub and
the services can read while one writes) and on PostgreSQL (production).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from fedhub.db import rls
from fedhub.db.base import Base, utcnow
from fedhub.db.toolkit import (
    InvalidCursor,
    insert_ignore,
    insert_ignore_stmt,
    keyset_page,
    parse_iso,
    tenant_lock,
)

__all__ = [
    "Base",
    "utcnow",
    "get_engine",
    "session_scope",
    "upgrade",
    "database_url",
    "read_only",
    "sqlite_url",
    "transaction",
    "ensure_sqlite_dir",
    "InvalidCursor",
    "insert_ignore",
    "insert_ignore_stmt",
    "keyset_page",
    "parse_iso",
    "tenant_lock",
]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "fedhub_alembic_version"

log = logging.getLogger(__name__)

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def sqlite_url(state_dir: str | os.PathLike[str]) -> str:
    """The embedded database of a state dir: ``sqlite:///<state_dir>/jupyterhub.sqlite``."""
    return f"sqlite:///{Path(state_dir) / 'jupyterhub.sqlite'}"


def ensure_sqlite_dir(url: str) -> None:
    """Create the folder of a SQLite file URL (no-op for other URLs)."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def database_url(url: str | None = None) -> str:
    """The URL fedhub uses: explicit, else ``$FEDHUB_DB_URL``, else the embedded SQLite file."""
    if url:
        return url
    if os.environ.get("FEDHUB_DB_URL"):
        return os.environ["FEDHUB_DB_URL"]
    return sqlite_url(Path(os.environ.get("FEDHUB_STATE_DIR", ".fedhub")).resolve())


def _sqlite_pragmas(dbapi_connection, _record):
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


#: the execution option of read-only work on SQLite (:func:`read_only`)
READ_ONLY = "fedhub_read_only"


def _sqlite_begin(conn):
    # A transaction that may write takes the write lock at BEGIN, so read-then-write
    # transactions (quota reservations) serialise instead of failing with "database is
    # locked". Read-only work begins deferred: in WAL mode a reader never waits for a
    # writer, and never waits on a write lock its own thread holds in another
    # transaction (which would stall for the whole busy timeout).
    if conn.get_execution_options().get(READ_ONLY):
        conn.exec_driver_sql("BEGIN")
        return
    held = _held()
    database = conn.engine.url.database
    if database in held.values():
        log.warning(
            "a second write transaction on %s in one thread waits on the first's lock "
            "(up to the busy timeout): read with fedhub.db.read_only, or use the open session",
            database,
            stack_info=True,
        )
    conn.exec_driver_sql("BEGIN IMMEDIATE")
    held[id(conn.info)] = database


#: this thread's connections in a write transaction: ``Connection.info`` id -> database
_writing = threading.local()


def _held() -> dict[int, str | None]:
    if not hasattr(_writing, "records"):
        _writing.records = {}
    return _writing.records


def _sqlite_end(conn):
    _held().pop(id(conn.info), None)


def _sqlite_reset(_dbapi_connection, record, _reset_state):
    _held().pop(id(record.info), None)


def create_db_engine(url: str, **kwargs) -> Engine:
    """A new engine with fedhub's connection settings (prefer :func:`get_engine`)."""
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
        engine = create_engine(url, **kwargs)
        engine.dialect._fedhub_sqlite = True  # type: ignore[attr-defined]
        event.listen(engine, "connect", _sqlite_pragmas)

        @event.listens_for(engine, "connect")
        def _no_pysqlite_transactions(dbapi_connection, _record):
            # let SQLAlchemy's "begin" event issue BEGIN (IMMEDIATE) itself
            dbapi_connection.isolation_level = None

        event.listen(engine, "begin", _sqlite_begin)
        for end in ("commit", "rollback"):
            event.listen(engine, end, _sqlite_end)
        event.listen(engine, "reset", _sqlite_reset)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def get_engine(url: str | None = None) -> Engine:
    """One shared engine per URL and process."""
    url = database_url(url)
    with _lock:
        if url not in _engines:
            _engines[url] = create_db_engine(url)
            rls.install(_engines[url])  # the tenant scope of each transaction (PostgreSQL)
        return _engines[url]


def read_only(engine: Engine) -> Engine:
    """``engine`` for work that only reads: on SQLite its transactions begin deferred
    (no write lock, no wait behind writers). Writing through it may fail with "database
    is locked" when another connection wrote since the read began; PostgreSQL is
    unaffected."""
    return engine.execution_options(**{READ_ONLY: True})


def dispose_engines() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


_shared_sessions: dict[str, Callable[[], AbstractContextManager[Session]]] = {}


def share_session(url: str, factory: Callable[[], AbstractContextManager[Session]]) -> None:
    """Make :func:`session_scope` for ``url`` use ``factory`` in this process.

    The hub registers its own session here: inside the hub process, every
    fedhub module then reads and writes on the hub's connection, and a SQLite
    database never waits on the hub's own pending writes.
    """
    _shared_sessions[url] = factory


@contextmanager
def transaction(session: Session) -> Iterator[Session]:
    """Commit ``session`` when the block succeeds, roll it back when it raises (the session
    stays open: the hub's shared session outlives every fedhub transaction on it)."""
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise


@contextmanager
def session_scope(url: str | Engine | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    if not isinstance(url, Engine):
        shared = _shared_sessions.get(database_url(url))
        if shared is not None:
            with shared() as session:
                yield session
            return
    engine = url if isinstance(url, Engine) else get_engine(url)
    session = sessionmaker(engine, expire_on_commit=False)()
    try:
        with transaction(session):
            yield session
    finally:
        session.close()


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("version_table", VERSION_TABLE)
    cfg.attributes["url"] = url
    return cfg


def upgrade(url: str | None = None, revision: str = "heads") -> None:
    """Bring fedhub's tables to the newest revision (idempotent, quick when current)."""
    from alembic import command

    url = database_url(url)
    ensure_sqlite_dir(url)
    command.upgrade(alembic_config(url), revision)


def current_heads(url: str | None = None) -> set[str]:
    from alembic.runtime.migration import MigrationContext

    with get_engine(url).connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return set(ctx.get_current_heads())
