"""Tiers stored in the database (``fedhub tiers import|clone|apply``, docs/tier-templates.md).

The tables are made by migration 0019_tier_templates. A version row is never changed;
which version of a name applies is the newest row of ``fedhub_tier_applied`` for it.
:class:`fedhub.tiers.TierCatalog` merges the tiers that apply into the file's
(:func:`applied_tiers`, cached for :data:`STORED_TIERS_TTL` seconds per process).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, DateTime, ForeignKeyConstraint, Integer, String, func, inspect, select
from sqlalchemy.orm import Mapped, mapped_column

from fedhub import db as fedhub_db
from fedhub import events
from fedhub.db.base import Base, utcnow
from fedhub.errors import ConfigError

if TYPE_CHECKING:
    from fedhub.tiers import Tier, TierCatalog

TIER_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")

#: seconds a process reuses what it read of the database's tiers (writes of this
#: process clear it at once)
STORED_TIERS_TTL = 30.0


class TierVersion(Base):
    """One version of a tier created by ``fedhub tiers import`` or ``clone`` (never changed)."""

    __tablename__ = "fedhub_tier_versions"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    sha256: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))  # imported | cloned
    source: Mapped[str] = mapped_column(String(1024))  # the file, or the tier cloned
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime)


class TierApplied(Base):
    """From ``applied_at`` on, version ``version`` of tier ``name`` is the one that applies."""

    __tablename__ = "fedhub_tier_applied"
    __table_args__ = (
        ForeignKeyConstraint(
            ["name", "version"], ["fedhub_tier_versions.name", "fedhub_tier_versions.version"]
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63), index=True)
    version: Mapped[int] = mapped_column(Integer)
    applied_by: Mapped[str] = mapped_column(String(255))
    applied_at: Mapped[datetime] = mapped_column(DateTime)


def _tiers_database(db: str | None) -> str | None:
    """The database to read tiers from, or None when this process was told of none."""
    url = db or os.environ.get("FEDHUB_DB_URL")
    if not url and os.environ.get("FEDHUB_STATE_DIR"):
        url = fedhub_db.sqlite_url(Path(os.environ["FEDHUB_STATE_DIR"]).resolve())
    if url and url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return None  # reading would create the file
    return url


_stored_cache: dict[str, tuple[float, dict[str, tuple[int, dict[str, Any]]]]] = {}
_stored_lock = threading.Lock()


def applied_tiers(url: str) -> dict[str, tuple[int, dict[str, Any]]]:
    """``{name: (version, definition)}`` of the database's tiers, at the version that applies.

    One query, cached for :data:`STORED_TIERS_TTL` seconds per database and process:
    :func:`fedhub.tiers.load_tiers` runs in the hub, the spawner and every service.
    """
    with _stored_lock:
        hit = _stored_cache.get(url)
        if hit and time.monotonic() - hit[0] < STORED_TIERS_TTL:
            return hit[1]
    if _tiers_database(url) is None:
        result = {}  # a SQLite file gone since: reading would make an empty one
    else:
        result = _read_applied(url)
    with _stored_lock:
        _stored_cache[url] = (time.monotonic(), result)
    return result


def _read_applied(url: str) -> dict[str, tuple[int, dict[str, Any]]]:
    newest = select(func.max(TierApplied.id)).group_by(TierApplied.name).scalar_subquery()
    query = (
        select(TierVersion.name, TierVersion.version, TierVersion.definition)
        .join(
            TierApplied,
            (TierApplied.name == TierVersion.name) & (TierApplied.version == TierVersion.version),
        )
        .where(TierApplied.id.in_(newest))
    )
    # read-only: callers are often inside a transaction of their own on this database
    # (a rating, a spawn), whose write lock a second BEGIN IMMEDIATE would wait on
    with fedhub_db.read_only(fedhub_db.get_engine(url)).connect() as conn:
        if not inspect(conn).has_table(TierApplied.__tablename__):
            return {}  # not migrated yet: the file alone
        return {name: (version, definition) for name, version, definition in conn.execute(query)}


def forget_stored_tiers(url: str | None = None) -> None:
    """Drop what this process read of a database's tiers (default: of every database)."""
    with _stored_lock:
        if url is None:
            _stored_cache.clear()
        else:
            _stored_cache.pop(url, None)


def tier_sha256(definition: Mapping[str, Any]) -> str:
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def tier_versions(url: str, name: str) -> list[tuple[TierVersion, list[TierApplied]]]:
    """Every stored version of ``name``, oldest first, each with the times it was applied."""
    with fedhub_db.session_scope(url) as s:
        versions = list(
            s.scalars(
                select(TierVersion).where(TierVersion.name == name).order_by(TierVersion.version)
            )
        )
        applied = list(
            s.scalars(select(TierApplied).where(TierApplied.name == name).order_by(TierApplied.id))
        )
    return [(v, [a for a in applied if a.version == v.version]) for v in versions]


def store_tier_version(
    url: str,
    catalog: TierCatalog,
    name: str,
    tier: Tier,
    *,
    action: str,
    source: str,
    actor: str,
) -> tuple[TierVersion, bool]:
    """Record a new version of ``name`` (never overwrites). Returns it and whether it
    applies already: the first version of a name does (no tenant can be on it yet), a
    later one waits for :func:`apply_tier_version`.

    Refused with a :class:`ConfigError` for a name the tiers file defines (the file wins).
    """
    if not TIER_NAME_RE.match(name):
        raise ConfigError(
            f"tier name {name!r}: use lower-case letters, digits, '-' and '_' (at most 63)"
        )
    if name in catalog and name not in catalog.versions:
        raise ConfigError(
            f"tier {name!r} is defined in {catalog.source}, which wins over the database: "
            "import or clone it under another name, or edit that file"
        )
    catalog._check_profiles(name, tier, source)
    definition = tier.model_dump(mode="json")
    now = utcnow()
    with fedhub_db.session_scope(url) as s:
        last = s.scalar(select(func.max(TierVersion.version)).where(TierVersion.name == name))
        row = TierVersion(
            name=name,
            version=(last or 0) + 1,
            definition=definition,
            sha256=tier_sha256(definition),
            action=action,
            source=source[:1024],
            created_by=actor,
            created_at=now,
        )
        s.add(row)
        applies = last is None
        if applies:
            s.flush()
            s.add(TierApplied(name=name, version=row.version, applied_by=actor, applied_at=now))
    forget_stored_tiers()
    events.emit(
        f"tier.{action}",
        tenant=None,
        actor=actor,
        target=f"{name}@{row.version}",
        details={
            "tier": name,
            "version": row.version,
            "sha256": row.sha256,
            "source": source,
            "applied": applies,
        },
    )
    return row, applies


def apply_tier_version(url: str, name: str, version: int | None, *, actor: str) -> TierVersion:
    """Make ``version`` (default: the newest) of a database tier the one that applies."""
    with fedhub_db.session_scope(url) as s:
        query = select(TierVersion).where(TierVersion.name == name)
        if version is None:
            query = query.order_by(TierVersion.version.desc()).limit(1)
        else:
            query = query.where(TierVersion.version == version)
        row = s.scalar(query)
        if row is None:
            what = f"version {version} of tier {name!r}" if version else f"tier {name!r}"
            raise ConfigError(f"{what} is not stored in the database (see fedhub tiers history)")
        current = s.scalar(
            select(TierApplied.version)
            .where(TierApplied.name == name)
            .order_by(TierApplied.id.desc())
            .limit(1)
        )
        s.add(TierApplied(name=name, version=row.version, applied_by=actor, applied_at=utcnow()))
    forget_stored_tiers()
    events.emit(
        "tier.applied",
        tenant=None,
        actor=actor,
        target=f"{name}@{row.version}",
        details={"tier": name, "version": row.version, "previous": current, "sha256": row.sha256},
    )
    return row
