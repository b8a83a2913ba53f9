"""How a record is encoded: its time, the fields its hash covers, its batch insert.

Kept apart from :mod:`fedhub.audit.chain` so the verifier and the tests share
exactly the encoding the writer uses.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from fedhub.audit import crypto
from fedhub.audit.models import AuditRecord


def event_time(value: str | datetime) -> datetime:
    """An event's time as naive UTC with microseconds (how it is stored and hashed)."""
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    return dt


def time_text(dt: datetime | str) -> str:
    """ISO 8601 with microseconds; also accepts SQLite's stored text of a DateTime
    (``YYYY-MM-DD HH:MM:SS.ffffff``), which verify reads raw because parsing it
    back into a datetime costs more than hashing the record."""
    if isinstance(dt, str):
        return dt.replace(" ", "T", 1)
    return dt.isoformat(timespec="microseconds")


def hashed_fields(row: dict[str, Any]) -> dict[str, Any]:
    """The stored fields the record hash covers (everything but id, hash, mac, ingested_at)."""
    return {
        "tenant": row["tenant"],
        "seq": row["seq"],
        "id": row["event_id"],
        "time": time_text(row["time"]),
        "action": row["action"],
        "result": row["result"],
        "severity": row["severity"],
        "v": row["schema_version"],
        "details": row["details"],
        "actor_key": row["actor_key"],
        "actor_enc": row["actor_enc"],
        "target_key": row["target_key"],
        "target_enc": row["target_enc"],
        "prev_hash": row["prev_hash"],
    }


def record_hash(row: dict[str, Any]) -> str:
    return crypto.sha256_hex(crypto.canonical(hashed_fields(row)))


def _insert(session: Session, table):
    return (postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert)(
        table
    )


_RECORD_COLUMNS = [c.name for c in AuditRecord.__table__.columns if c.name != "id"]


def _insert_rows(s: Session, rows: list[dict[str, Any]]) -> None:
    """One DBAPI ``executemany`` for a batch of records.

    SQLAlchemy's per-row parameter processing cost as much as everything
    else in an append; the values here are already plain (str, int, datetime),
    except that SQLite stores a DateTime as SQLAlchemy's fixed text format.
    """
    conn = s.connection()
    dialect = conn.dialect
    sqlite_times = dialect.name == "sqlite"
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"INSERT INTO {AuditRecord.__tablename__} ({', '.join(_RECORD_COLUMNS)}) "
        f"VALUES ({', '.join([mark] * len(_RECORD_COLUMNS))})"
    )
    params = []
    for row in rows:
        values = [row[c] for c in _RECORD_COLUMNS]
        if sqlite_times:
            values[_TIME_INDEX] = row["time"].isoformat(" ", "microseconds")
            values[_INGESTED_INDEX] = row["ingested_at"].isoformat(" ", "microseconds")
        params.append(tuple(values))
    conn.exec_driver_sql(sql, params)


_TIME_INDEX = _RECORD_COLUMNS.index("time")
_INGESTED_INDEX = _RECORD_COLUMNS.index("ingested_at")
