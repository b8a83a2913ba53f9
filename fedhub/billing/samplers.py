"""Meter producers that live with billing: storage sampled daily, API calls per hour.

Storage: once per UTC day, the home of every member of every tenant is measured by
:mod:`fedhub.storage` (the same code and the same path template as the tier spawner's
``storage_gb`` quota: ``c.BillingSettings.storage_path_template``, default
``$FEDHUB_STORAGE_PATH_TEMPLATE`` or ``$FEDHUB_STATE_DIR/homes/{username}``) and recorded
as ``storage_gb_days`` (GB x 1 day) with the key ``storage:<user>:<date>``, so sampling
twice a day still counts the day once.

API calls: :func:`count_api_call` (called by :class:`fedhub.web.APIHandler` when a
request finishes) adds to an in-process counter per (service, tenant, user, hour);
:func:`flush_api_calls` writes the deltas as ``api_calls`` events keyed by process
and flush sequence. A process killed between flushes loses at most one interval of
counts (they are never counted twice).
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections import Counter
from datetime import datetime, timedelta

from fedhub import storage
from fedhub.db import get_engine, session_scope
from fedhub.db.base import utcnow
from fedhub.limits import API_CALLS, STORAGE_GB_DAYS
from fedhub.metering import Usage, record

log = logging.getLogger("fedhub.billing")


def sample_storage(db_url: str | None, path_template: str, now: datetime) -> int:
    """Record today's storage sample of every member whose home exists; returns rows added.

    ``path_template`` is where homes live (``/home/{username}``); empty: nothing measured.
    """
    from sqlalchemy import select

    from fedhub.tenancy.models import Membership, Tenant

    if not path_template:
        return 0
    # runs in a worker thread: sessions of its own (an engine, never a process's
    # shared session, see fedhub.db.share_session)
    engine = get_engine(db_url)
    with session_scope(engine) as s:
        members = s.execute(
            select(Membership.username, Tenant.slug)
            .join(Tenant, Membership.tenant_id == Tenant.id)
            .order_by(Membership.username)
        ).all()
    day = datetime(now.year, now.month, now.day)
    usages = []
    for username, tenant in members:
        home = storage.home_path(path_template, username)
        if not os.path.isdir(home):
            continue
        usages.append(
            Usage(
                tenant=tenant,
                kind=STORAGE_GB_DAYS,
                quantity=storage.directory_bytes(home) / storage.GB,
                start=day,
                end=day + timedelta(days=1),
                source="billing-storage",
                idempotency_key=f"storage:{username}:{day:%Y-%m-%d}",
                username=username,
            )
        )
    with session_scope(engine) as s:
        return record(s, usages, now=now)


_calls: Counter = Counter()
_calls_lock = threading.Lock()
_process = uuid.uuid4().hex[:12]
_seq = 0


FLUSH_SECONDS = 60
_flusher = None


def count_api_call(service: str, tenant: str | None, username: str | None) -> None:
    """Count one finished API request (cheap: a dict increment; flushed every minute)."""
    if not tenant:
        return
    hour = utcnow().replace(minute=0, second=0, microsecond=0)
    with _calls_lock:
        _calls[(service, tenant, username, hour)] += 1
    _start_flusher()


def _start_flusher() -> None:
    global _flusher
    if _flusher is not None:
        return
    from tornado.ioloop import IOLoop, PeriodicCallback

    loop = IOLoop.current()

    async def flush():
        await loop.run_in_executor(None, flush_api_calls)

    _flusher = PeriodicCallback(flush, FLUSH_SECONDS * 1000)
    _flusher.start()


def flush_api_calls(db_url: str | None = None) -> int:
    """Write the counted API calls as meter events (one per service, tenant, user, hour)."""
    global _seq
    with _calls_lock:
        pending = dict(_calls)
        _calls.clear()
        _seq += 1
        seq = _seq
    if not pending:
        return 0
    usages = [
        Usage(
            tenant=tenant,
            kind=API_CALLS,
            quantity=n,
            start=hour,
            end=hour + timedelta(hours=1),
            source=f"api:{service}",
            idempotency_key=f"{_process}:{seq}:{tenant}:{username}:{hour:%Y%m%d%H}",
            username=username,
            attributes={"service": service},
        )
        for (service, tenant, username, hour), n in pending.items()
    ]
    try:
        # runs in a worker thread: a session of its own, never a shared one
        with session_scope(get_engine(db_url)) as s:
            return record(s, usages)
    except Exception:
        log.exception(
            "Could not record %d API-call counts; keeping them for the next flush", len(usages)
        )
        with _calls_lock:
            for (service, tenant, username, hour), n in pending.items():
                _calls[(service, tenant, username, hour)] += n
        return 0
