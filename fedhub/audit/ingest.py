"""Deliver spooled events into the chains: exactly once, in order, across restarts.

Every process appends events to ``<spool>/events-<pid>.jsonl``. The ingester
reads each file from its stored offset, appends the complete lines to the
chains and stores the new offset *in the same transaction*, so a crash or a
stop loses nothing and repeats nothing; the unique event id catches the rest
(a file copied twice, an offset row lost). Offsets are keyed by file name and
inode, so a new file that reuses a dead process's name starts at 0. A file of a
dead process, fully ingested, is renamed (later writers get a new file), its
tail ingested, then removed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import delete, select

from fedhub import events as fedhub_events
from fedhub.audit.chain import AuditLog
from fedhub.audit.models import SpoolOffset
from fedhub.db.base import utcnow
from fedhub.db.toolkit import upsert

log = logging.getLogger("fedhub.audit.ingest")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SpoolIngester:
    """Moves events from a spool directory into an :class:`AuditLog`."""

    def __init__(self, audit: AuditLog, spool: str | Path | None = None, batch_size: int = 1000):
        self.audit = audit
        self.spool = Path(spool) if spool else fedhub_events.spool_dir()
        self.batch_size = batch_size
        self.rejected = 0

    def ingest_once(self) -> int:
        """Ingest everything spooled so far; returns the number of events appended."""
        if self.spool is None or not self.spool.is_dir():
            return 0
        total = 0
        for path in sorted(self.spool.glob("retired-*.jsonl")):
            total += self._ingest_file(path)
            self._remove(path)
        for path in sorted(self.spool.glob("events-*.jsonl")):
            total += self._ingest_file(path)
            self._maybe_retire(path)
        return total

    # -- one file ------------------------------------------------------------------

    @staticmethod
    def _key(path: Path, st: os.stat_result) -> str:
        return f"{path.name.removeprefix('retired-').split('.')[0]}@{st.st_ino}"

    def _ingest_file(self, path: Path) -> int:
        """Append a file's complete lines from its stored offset, a batch per transaction.

        The next batch is read and parsed in a second thread while this one is
        appended: parsing holds the GIL, but the database work (SQLite's and
        psycopg's calls, the PostgreSQL server's share) releases it, so the two
        overlap instead of adding up.
        """
        try:
            f = open(path, "rb")  # noqa: SIM115 (closed below)
        except FileNotFoundError:
            return 0
        appended = 0
        with f, ThreadPoolExecutor(1, thread_name_prefix="audit-spool-reader") as reader:
            key = self._key(path, os.fstat(f.fileno()))
            with self.audit.session() as s:
                offset = s.scalar(select(SpoolOffset.offset).where(SpoolOffset.name == key)) or 0
            f.seek(offset)
            batches = self._batches(path, f)
            pending = reader.submit(next, batches, None)
            while (batch := pending.result()) is not None:
                pending = reader.submit(next, batches, None)
                events, consumed = batch
                with self.audit.session() as s:
                    appended += self.audit.append_in(s, events)
                    offset += consumed
                    self._store_offset(s, key, offset)
        return appended

    def _batches(self, path: Path, f: BinaryIO) -> Iterator[tuple[list[dict], int]]:
        """(valid events, bytes consumed) of up to ``batch_size`` complete lines at a time;
        a line still being written (no newline yet) is left for the next pass."""
        while True:
            lines = []
            consumed = 0
            while len(lines) < self.batch_size:
                raw = f.readline()
                if not raw.endswith(b"\n"):
                    break
                consumed += len(raw)
                lines.append(raw)
            if not lines:
                return
            yield [e for e in (self._parse(path, raw) for raw in lines) if e], consumed
            if len(lines) < self.batch_size:
                return

    def _parse(self, path: Path, raw: bytes) -> dict | None:
        try:
            event = json.loads(raw)
            fedhub_events.validate(event)
            return event
        except (ValueError, TypeError) as e:
            # a corrupt line must not block the spool forever: count it and move on
            self.rejected += 1
            log.warning("audit: skipped an invalid line in %s: %s", path.name, e)
            return None

    def _store_offset(self, s, key: str, offset: int) -> None:
        row = {"name": key, "offset": offset, "updated_at": utcnow()}
        upsert(s, SpoolOffset.__table__, row, ["name"], ["offset", "updated_at"])

    # -- finished files ----------------------------------------------------------------

    def _maybe_retire(self, path: Path) -> None:
        try:
            pid = int(path.stem.split("-", 1)[1])
        except (IndexError, ValueError):
            return
        if pid == os.getpid() or _pid_alive(pid):
            return
        try:
            st = path.stat()
        except FileNotFoundError:
            return
        with self.audit.session() as s:
            offset = s.scalar(
                select(SpoolOffset.offset).where(SpoolOffset.name == self._key(path, st))
            )
        if offset != st.st_size:
            return
        retired = path.with_name(f"retired-{path.name}")
        os.replace(path, retired)
        self._ingest_file(retired)  # lines written between the check and the rename
        self._remove(retired)

    def _remove(self, path: Path) -> None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return
        key = self._key(path, st)
        with self.audit.session() as s:
            offset = s.scalar(select(SpoolOffset.offset).where(SpoolOffset.name == key)) or 0
            if offset < st.st_size:
                return
            s.execute(delete(SpoolOffset).where(SpoolOffset.name == key))
        path.unlink(missing_ok=True)
