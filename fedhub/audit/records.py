"""How a record is encoded: its time, the fields its hash covers, its batch insert.

Kept apart from :mod:`fedhub.audit.chain` so the verifier and the tests share
exactly the encoding the writer uses (:data:`HASHED_COLUMNS`, :func:`canonical_record`).
"""

from __future__ import annotations

from datetime import datetime
from json.encoder import encode_basestring
from typing import Any

from sqlalchemy.orm import Session

from fedhub.audit import crypto
from fedhub.audit.models import AuditRecord

# The stored columns a record hash covers, in the order canonical_record takes them.
HASHED_COLUMNS = (
    "tenant",
    "seq",
    "event_id",
    "time",
    "action",
    "result",
    "severity",
    "schema_version",
    "details",
    "actor_key",
    "actor_enc",
    "target_key",
    "target_enc",
    "prev_hash",
)


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


# The hashed fields' keys in sorted order, as ``crypto.canonical`` writes them.
_TEMPLATE = (
    '{"action":%s,"actor_enc":%s,"actor_key":%s,"details":%s,"id":%s,"prev_hash":%s,'
    '"result":%s,"seq":%d,"severity":%s,"target_enc":%s,"target_key":%s,"tenant":%s,'
    '"time":%s,"v":%d}'
)
# The same, for text that needs no escaping (the quotes are in the template).
_PLAIN_TEMPLATE = (
    '{"action":"%s","actor_enc":%s,"actor_key":%s,"details":%s,"id":"%s","prev_hash":"%s",'
    '"result":"%s","seq":%d,"severity":"%s","target_enc":%s,"target_key":%s,"tenant":"%s",'
    '"time":"%s","v":%d}'
)


def canonical_record(
    tenant,
    seq,
    event_id,
    time,
    action,
    result,
    severity,
    schema_version,
    details,
    actor_key,
    actor_enc,
    target_key,
    target_enc,
    prev_hash,
) -> bytes:
    """The bytes a record hash covers: ``crypto.canonical(hashed_fields(row))``, built
    without a dict, a key sort or the JSON encoder's machinery (it runs once per
    record appended and once per record verified).

    JSON text escapes only ``"``, ``\\`` and characters below U+0020
    (``encode_basestring``, what ``json.dumps(ensure_ascii=False)`` uses, and
    the only escaping there is). The stored fields but ``details`` are ids,
    hashes, base64 and names: one scan of them all shows that they need none,
    and they are written between quotes as they are. Anything else (a quote, a
    control character, a float, bytes in a SQLite column edited by hand) takes
    the general path, so the bytes are the same for every input, tampered or not.
    """
    if type(seq) is int and type(schema_version) is int:
        try:
            # time_text(time), inlined
            if time.__class__ is str:
                when = time.replace(" ", "T", 1)
            else:
                when = time.isoformat(timespec="microseconds")
            text = "".join(
                (
                    action,
                    "" if actor_enc is None else actor_enc,
                    "" if actor_key is None else actor_key,
                    event_id,
                    prev_hash,
                    result,
                    severity,
                    "" if target_enc is None else target_enc,
                    "" if target_key is None else target_key,
                    tenant,
                    when,
                )
            )
        except (TypeError, AttributeError):  # a value that is not text: the general path
            text = None
        if (
            text is not None
            and details.__class__ is str
            and '"' not in text
            and "\\" not in text
            and text.isprintable()
        ):
            return (
                _PLAIN_TEMPLATE
                % (
                    action,
                    "null" if actor_enc is None else f'"{actor_enc}"',
                    "null" if actor_key is None else f'"{actor_key}"',
                    encode_basestring(details),
                    event_id,
                    prev_hash,
                    result,
                    seq,
                    severity,
                    "null" if target_enc is None else f'"{target_enc}"',
                    "null" if target_key is None else f'"{target_key}"',
                    tenant,
                    when,
                    schema_version,
                )
            ).encode()
        if text is not None:
            enc = encode_basestring
            try:
                return (
                    _TEMPLATE
                    % (
                        enc(action),
                        "null" if actor_enc is None else enc(actor_enc),
                        "null" if actor_key is None else enc(actor_key),
                        enc(details),
                        enc(event_id),
                        enc(prev_hash),
                        enc(result),
                        seq,
                        enc(severity),
                        "null" if target_enc is None else enc(target_enc),
                        "null" if target_key is None else enc(target_key),
                        enc(tenant),
                        enc(when),
                        schema_version,
                    )
                ).encode()
            except TypeError:
                pass
    values = (tenant, seq, event_id, time, action, result, severity, schema_version, details)
    values += (actor_key, actor_enc, target_key, target_enc, prev_hash)
    return crypto.canonical(hashed_fields(dict(zip(HASHED_COLUMNS, values, strict=True))))


def record_canonical(row: dict[str, Any]) -> bytes:
    """A record's canonical bytes, from its hashed fields."""
    return canonical_record(*[row[c] for c in HASHED_COLUMNS])


def record_hash(row: dict[str, Any]) -> str:
    return crypto.sha256_hex(record_canonical(row))


_RECORD_COLUMNS = [c.name for c in AuditRecord.__table__.columns if c.name != "id"]


def insert_records(s: Session, rows: list[dict[str, Any]]) -> None:
    """Insert a batch of records: ``COPY`` on PostgreSQL (psycopg 3), else one DBAPI
    ``executemany``; no ``RETURNING``, nothing read back.

    SQLAlchemy's per-row parameter processing cost as much as everything
    else in an append; the values here are already plain (str, int, datetime,
    bytes), except that SQLite stores a DateTime as SQLAlchemy's fixed text format.
    The ``COPY`` is in binary format: the canonical bytes go as they are, where the
    text format would write each of them out in hex and the server parse it back.
    """
    conn = s.connection()
    dialect = conn.dialect
    table = AuditRecord.__tablename__
    if dialect.name == "postgresql":
        cur = conn.connection.cursor()
        # COPY is refused where row-level security applies (fedhub.db.rls: a platform
        # role made without BYPASSRLS, or a tenant's scope): then plain INSERTs
        copy_allowed = not conn.exec_driver_sql(
            "SELECT row_security_active(%(t)s)", {"t": table}
        ).scalar()
        if hasattr(cur, "copy") and copy_allowed:  # psycopg 3
            columns = ", ".join(_RECORD_COLUMNS)
            with cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(_PG_TYPES)
                for row in rows:
                    copy.write_row([row[c] for c in _RECORD_COLUMNS])
            return
    sqlite_times = dialect.name == "sqlite"
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"INSERT INTO {table} ({', '.join(_RECORD_COLUMNS)}) "
        f"VALUES ({', '.join([mark] * len(_RECORD_COLUMNS))})"
    )
    params = []
    ingested: dict = {}
    for row in rows:
        values = [row[c] for c in _RECORD_COLUMNS]
        if sqlite_times:
            values[_TIME_INDEX] = row["time"].isoformat(" ", "microseconds")
            at = row["ingested_at"]
            if at not in ingested:  # one time for the whole batch: formatted once
                ingested[at] = at.isoformat(" ", "microseconds")
            values[_INGESTED_INDEX] = ingested[at]
        params.append(tuple(values))
    conn.exec_driver_sql(sql, params)


# the PostgreSQL type of each column, for a binary COPY (which must name them exactly)
_PG_TYPE_NAMES = {
    "BigInteger": "int8",
    "Integer": "int4",
    "String": "varchar",
    "Text": "text",
    "DateTime": "timestamp",
    "LargeBinary": "bytea",
}
_PG_TYPES = [
    _PG_TYPE_NAMES[type(AuditRecord.__table__.c[c].type).__name__] for c in _RECORD_COLUMNS
]
_TIME_INDEX = _RECORD_COLUMNS.index("time")
_INGESTED_INDEX = _RECORD_COLUMNS.index("ingested_at")
