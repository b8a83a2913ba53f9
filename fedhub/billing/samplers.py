"""The meter producer that lives with billing: storage, sampled daily.

Storage: once per UTC day, the home of every member of every tenant is measured by
:mod:`fedhub.storage` (the same code and the same path template as the tier spawner's
``storage_gb`` quota: ``c.BillingSettings.storage_path_template``, default
``$FEDHUB_STORAGE_PATH_TEMPLATE`` or ``$FEDHUB_STATE_DIR/homes/{username}``) and recorded
as ``storage_gb_days`` (GB x 1 day) with the key ``storage:<user>:<date>``, so sampling
twice a day still counts the day once.

API calls are counted by every service, billing or not: :mod:`fedhub.metering`
(:func:`~fedhub.metering.count_api_call`, :func:`~fedhub.metering.flush_api_calls`, re-exported
here for the billing service's shutdown flush).
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta

from fedhub import storage
from fedhub.db import get_engine, session_scope
from fedhub.limits import STORAGE_GB_DAYS
from fedhub.metering import Usage, count_api_call, flush_api_calls, record

__all__ = ["count_api_call", "flush_api_calls", "sample_storage"]

log = logging.getLogger("fedhub.billing")


def sample_storage(db_url: str | None, path_template: str, now: datetime) -> int:
    """Record today's storage sample of every member whose home exists, and of every
    tenant's own store (its datasets) that holds anything; returns rows added.

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
    for tenant in sorted({tenant for _username, tenant in members}):
        used = storage.tenant_store_bytes(tenant)  # the tenant's own datasets
        if used:
            usages.append(
                Usage(
                    tenant=tenant,
                    kind=STORAGE_GB_DAYS,
                    quantity=used / storage.GB,
                    start=day,
                    end=day + timedelta(days=1),
                    source="billing-storage",
                    idempotency_key=f"storage:tenant:{tenant}:{day:%Y-%m-%d}",
                    attributes={"store": "tenant-data"},
                )
            )
    with session_scope(engine) as s:
        return record(s, usages, now=now)
