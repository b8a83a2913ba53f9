"""The database helpers every part of fedhub shares (docs/architecture.md, "Shared toolkit").

Each concern is written once here, so a fix (a dialect quirk, a lock order) lands
everywhere: an insert that ignores duplicates (row by row, or in bulk), an upsert,
the per-tenant lock, keyset (cursor) pagination, and reading an ISO 8601 time into
the naive UTC that fedhub stores.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import (
    JSON,
    Column,
    ColumnElement,
    Dialect,
    MetaData,
    Select,
    Table,
    and_,
    delete,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateTable
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import TypeEngine

from fedhub.errors import InvalidRequest

__all__ = [
    "InvalidCursor",
    "decode_cursor",
    "encode_cursor",
    "insert_ignore",
    "insert_ignore_many",
    "insert_ignore_stmt",
    "keyset_page",
    "parse_iso",
    "tenant_lock",
    "upsert",
]

#: the first key of fedhub's tenant advisory locks (PostgreSQL), apart from other users' locks
TENANT_LOCK_NAMESPACE = 0x46454448  # "FEDH"


def _dialect_insert(session: Session, tbl: Table) -> Insert:
    """The session's dialect's ``insert`` (the one with ``on_conflict_*``)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(tbl)
    if dialect == "sqlite":
        return sqlite.insert(tbl)
    raise NotImplementedError(f"fedhub supports SQLite and PostgreSQL, not {dialect}")


def insert_ignore_stmt(session: Session, tbl: Table, conflict_cols: Sequence[str]) -> Insert:
    """``INSERT ... ON CONFLICT (conflict_cols) DO NOTHING`` in the session's dialect.

    For callers that add ``.values()`` or ``.returning()`` themselves.
    """
    return _dialect_insert(session, tbl).on_conflict_do_nothing(index_elements=list(conflict_cols))


def upsert(
    session: Session,
    tbl: Table,
    row: Mapping[str, Any],
    conflict_cols: Sequence[str],
    update_cols: Sequence[str],
) -> None:
    """Insert ``row``, or where it collides on ``conflict_cols`` set ``update_cols`` to its
    values (``INSERT ... ON CONFLICT ... DO UPDATE``): one statement, no read-then-write
    race. The caller commits."""
    stmt = _dialect_insert(session, tbl).values(dict(row))
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=list(conflict_cols), set_={c: row[c] for c in update_cols}
        )
    )


def insert_ignore(
    session: Session,
    tbl: Table,
    rows: Mapping[str, Any] | Iterable[Mapping[str, Any]],
    conflict_cols: Sequence[str],
    *,
    returning: Column | None = None,
) -> int:
    """Insert ``rows``, skipping those that collide on ``conflict_cols``; how many were new.

    The count comes from ``RETURNING returning`` (default: the table's primary key), exact
    on both engines for one row and for many; a driver's rowcount is not (psycopg reports
    0 for an insertmanyvalues batch). The caller commits.
    """
    rows = [dict(rows)] if isinstance(rows, Mapping) else [dict(r) for r in rows]
    if not rows:
        return 0
    if returning is None:
        returning = next(iter(tbl.primary_key.columns))
    stmt = insert_ignore_stmt(session, tbl, conflict_cols).returning(returning)
    if len(rows) == 1:
        return len(session.execute(stmt.values(rows[0])).all())
    return len(session.execute(stmt, rows).all())


def insert_ignore_many(
    session: Session,
    tbl: Table,
    rows: Sequence[Mapping[str, Any]],
    conflict_cols: Sequence[str],
) -> int:
    """:func:`insert_ignore` for large batches (thousands of rows): how many were new.

    Counted by the statement's row count, not by ``RETURNING`` a row per row. Values are
    converted by the columns' own types (what SQLAlchemy would bind); every row has the
    first row's keys (column names). SQLAlchemy's Python-side column defaults are not
    applied, so rows carry those columns; server defaults are. The caller commits.

    PostgreSQL: ``COPY`` into a temporary staging table, then one ``INSERT ... SELECT
    ... ORDER BY conflict_cols ON CONFLICT DO NOTHING``; in that order two concurrent
    batches that share keys wait for each other's keys in the same order, never in a
    cycle (unsorted, billing's ingest deadlocked). SQLite: one ``executemany`` on the
    driver (fedhub's ``BEGIN IMMEDIATE`` already serialises writers).
    """
    if not rows:
        return 0
    cols = tuple(rows[0])
    dialect = session.get_bind().dialect
    values = _bound_values(tbl, cols, rows, dialect)
    if dialect.name == "postgresql":
        return _copy_ignore(session, _copy_statements(tbl, cols, tuple(conflict_cols)), values)
    sql, order = _sqlite_statement(tbl, cols, tuple(conflict_cols))
    if order != cols:  # the driver takes the values in the statement's order
        positions = [cols.index(c) for c in order]
        values = [tuple(v[i] for i in positions) for v in values]
    cursor = session.connection().connection.driver_connection.cursor()
    try:
        cursor.executemany(sql, values)
        return cursor.rowcount  # SQLite's is the sum over the rows
    finally:
        cursor.close()


def _bound_values(tbl: Table, cols: Sequence[str], rows, dialect) -> list[tuple]:
    """The rows as the driver takes them: each column converted by its type's bind
    processor once per distinct value (a batch repeats its tenants, kinds and times)."""
    columns = []
    for c in cols:
        values = [r[c] for r in rows]
        process = _bind_processor(tbl.c[c].type, dialect)
        if process is not None:
            try:
                done = {v: process(v) for v in set(values)}
                values = [done[v] for v in values]
            except TypeError:  # unhashable values (JSON objects)
                values = _convert_each(process, values)
        columns.append(values)
    return list(zip(*columns, strict=True))


def _bind_processor(type_: TypeEngine, dialect: Dialect) -> Callable[[Any], Any] | None:
    """What SQLAlchemy would bind, except JSON on PostgreSQL: ``COPY`` takes its text
    (SQLAlchemy's bind value, psycopg's ``Json`` wrapper, would serialise once per row)."""
    if dialect.name == "postgresql" and isinstance(type_, JSON):
        return dialect._json_serializer or json.dumps
    return type_.dialect_impl(dialect).bind_processor(dialect)


def _convert_each(process, values: list) -> list:
    """Unhashable values one by one, except empty ones, converted once per type: most
    JSON attributes are ``{}``, and serialising each costs as much as the rest of a row."""
    empty: dict[type, Any] = {}
    out = []
    for v in values:
        if v:
            out.append(process(v))
        else:
            if type(v) not in empty:
                empty[type(v)] = process(v)
            out.append(empty[type(v)])
    return out


@lru_cache(maxsize=32)
def _sqlite_statement(
    tbl: Table, cols: tuple[str, ...], conflict_cols: tuple[str, ...]
) -> tuple[str, tuple[str, ...]]:
    """SQLite's ``INSERT ... ON CONFLICT DO NOTHING`` for ``cols``, and its parameter order."""
    stmt = (
        sqlite.insert(tbl)
        .on_conflict_do_nothing(index_elements=list(conflict_cols))
        .compile(dialect=sqlite.dialect(), column_keys=list(cols))
    )
    return stmt.string, tuple(stmt.positiontup)


class _CopySQL(NamedTuple):
    create: str  # the staging table, if missing
    probe: str  # its columns' type oids, from the result's description
    copy: str  # COPY ... FROM STDIN, text format
    copy_binary: str  # the same in binary format
    move: str  # INSERT ... SELECT ... ON CONFLICT DO NOTHING, from the staging table


def _copy_ignore(session: Session, sql: _CopySQL, values: list[tuple]) -> int:
    """PostgreSQL's half of :func:`insert_ignore_many`: ``COPY``, then one statement.

    ``COPY`` goes in binary format when every column has a built-in type (a third of
    the client's CPU of the text format: no dates or numbers are formatted); the types
    are asked once per pooled connection.
    """
    pooled = session.connection().connection  # its .info lives as long as the connection
    with pooled.driver_connection.cursor() as cursor:
        cursor.execute(sql.create)
        if sql.probe not in pooled.info:
            cursor.execute(sql.probe)
            pooled.info[sql.probe] = _binary_copy_types(d.type_code for d in cursor.description)
        oids = pooled.info[sql.probe]
        with cursor.copy(sql.copy if oids is None else sql.copy_binary) as copy:
            if oids is not None:
                copy.set_types(oids)
            for row in values:
                copy.write_row(row)
        cursor.execute(sql.move)
        return cursor.rowcount


def _binary_copy_types(oids: Iterable[int]) -> list[int] | None:
    """The types psycopg dumps a binary ``COPY``'s values as; None: use the text format.

    ``json`` is dumped as ``text``: its binary form is its text, and the values are
    serialised already (psycopg's own json dumper would quote them again). Types that are
    not built in, and ``jsonb`` (whose binary form is not its text), take the text format.
    """
    from psycopg.postgres import types

    json, text = types["json"].oid, types["text"].oid
    oids = [text if oid == json else oid for oid in oids]
    usable = all(types.get(oid) for oid in oids) and types["jsonb"].oid not in oids
    return oids if usable else None


@lru_cache(maxsize=32)
def _copy_statements(tbl: Table, cols: tuple[str, ...], conflict_cols: tuple[str, ...]) -> _CopySQL:
    """PostgreSQL's statements: create the staging table, ``COPY`` into it, move.

    The staging table (``<table>_stage``: the table's column types, none of its
    constraints) is temporary, so each connection has its own, created in the batch's
    transaction if missing. ``DELETE ... RETURNING`` feeds the ``INSERT``, so it is
    empty again for a later batch in the same transaction, and ``ON COMMIT DELETE
    ROWS`` truncates it at commit (no dead rows pile up). The move runs on the driver's
    cursor: SQLAlchemy reports no row count for a statement with a ``RETURNING`` CTE.
    """
    dialect = postgresql.dialect()
    stage = Table(
        f"{tbl.name}_stage",
        MetaData(),
        *(Column(c.name, c.type) for c in tbl.columns),
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DELETE ROWS",
    )
    create = CreateTable(stage, if_not_exists=True).compile(dialect=dialect)
    quote = dialect.identifier_preparer.quote
    names = ", ".join(quote(c) for c in cols)
    copy = f"COPY {quote(stage.name)} ({names}) FROM STDIN"
    staged = delete(stage).returning(*(stage.c[c] for c in cols)).cte("staged")
    move = (
        postgresql.insert(tbl)
        .from_select(list(cols), select(staged).order_by(*(staged.c[c] for c in conflict_cols)))
        .on_conflict_do_nothing(index_elements=list(conflict_cols))
        .compile(dialect=dialect)
    )
    probe = f"SELECT {names} FROM {quote(stage.name)} LIMIT 0"
    return _CopySQL(str(create), probe, copy, f"{copy} (FORMAT BINARY)", str(move))


def tenant_lock(session: Session, tenant: str) -> None:
    """Serialise read-then-write work on one tenant until the transaction ends.

    PostgreSQL: a transaction-scoped advisory lock on the tenant's name
    (``pg_advisory_xact_lock(<fedhub's namespace>, hashtext(tenant))``), so two transactions
    of the same tenant (a spawn reservation, an experiment submission) queue behind each
    other and different tenants do not. SQLite: fedhub's engine opens every transaction
    with ``BEGIN IMMEDIATE`` (:func:`fedhub.db.create_db_engine`), which already holds the
    database's write lock, so there is nothing more to take.

    Why not ``SELECT ... FOR UPDATE`` of the tenant's row (what quotas did): it locks
    nothing when the row is absent (the experiments service reserves by tenant name, and
    with a row lock racing submissions for a tenant without a row all won:
    tests/experiments/test_quota_db.py), and it makes every update of the tenant row (a
    plan change, a suspension) wait for the reservation. The advisory lock holds in both
    cases and touches no table.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(:ns, hashtext(:tenant))"),
            {"ns": TENANT_LOCK_NAMESPACE, "tenant": tenant},
        )
    else:
        session.connection()  # begin now: on fedhub's engine, BEGIN IMMEDIATE takes the lock


def parse_iso(value: str | datetime) -> datetime:
    """An ISO 8601 time (``Z`` or an offset allowed) as naive UTC, how fedhub stores times.

    Raises :class:`ValueError` for text that is not ISO 8601.
    """
    if isinstance(value, datetime):
        dt = value
    else:
        raw = value.strip()
        if raw.endswith(("Z", "z")):
            raw = raw[:-1] + "+00:00"
        dt = datetime.fromisoformat(raw)
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt


# -- cursor pagination ----------------------------------------------------------------


class InvalidCursor(InvalidRequest):
    """A page cursor that this code did not write (or that was tampered with)."""


def encode_cursor(values: Sequence[Any]) -> str:
    """An opaque cursor for the sort-key values of a page's last row."""
    plain = [{"t": v.isoformat()} if isinstance(v, datetime) else v for v in values]
    raw = json.dumps(plain, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    """The values :func:`encode_cursor` wrote; :class:`InvalidCursor` for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
        if not isinstance(values, list):
            raise ValueError(cursor)
        return [
            datetime.fromisoformat(v["t"]) if isinstance(v, dict) and set(v) == {"t"} else v
            for v in values
        ]
    except (ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise InvalidCursor("invalid cursor") from None


def keyset_page(
    session: Session,
    stmt: Select,
    order: Sequence[tuple[ColumnElement, bool]],
    *,
    cursor: str | None,
    limit: int,
) -> tuple[list[Any], str | None]:
    """One page of ``stmt`` in ``order`` after ``cursor``, and the next page's cursor.

    ``order`` is ``[(column, descending), ...]`` of a mapped entity that ``stmt`` selects;
    together the columns must identify a row (a unique key, or one ending with the primary
    key). Keyset, not offset: a page costs the same at any depth, and rows inserted while
    a client pages make no other row repeat or go missing. A cursor that does not fit
    ``order`` (count or types of its values) is an :class:`InvalidCursor`, a 400.
    """
    if cursor:
        values = decode_cursor(cursor)
        if len(values) != len(order) or not all(
            _fits(col, v) for (col, _desc), v in zip(order, values, strict=True)
        ):
            raise InvalidCursor("invalid cursor")
        after = []
        for i, (col, desc) in enumerate(order):
            ties = [c == v for (c, _d), v in zip(order[:i], values[:i], strict=True)]
            after.append(and_(*ties, col < values[i] if desc else col > values[i]))
        stmt = stmt.where(or_(*after))
    stmt = stmt.order_by(*(col.desc() if desc else col.asc() for col, desc in order))
    rows = list(session.scalars(stmt.limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last = rows[-1]
    return rows, encode_cursor([getattr(last, col.key) for col, _desc in order])


def _fits(col: ColumnElement, value: Any) -> bool:
    """Whether a cursor value can be compared with ``col`` (no 500 from a forged cursor)."""
    try:
        expected = col.type.python_type
    except NotImplementedError:  # a custom type: let the database judge
        return isinstance(value, str | int | float)
    return isinstance(value, expected) and not (isinstance(value, bool) and expected is int)
