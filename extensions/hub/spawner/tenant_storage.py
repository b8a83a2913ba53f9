"""A tenant's storage as the tier spawner measures it for the ``storage_gb`` quota: every
member's storage path summed by :mod:`fedhub.storage` (the measurement billing's daily
sample uses), reused for a while per tenant and hub process."""

from __future__ import annotations

import asyncio
import time

from fedhub import quotas, storage

#: tenant -> (time.monotonic() of the measurement, bytes)
_cache: dict[str, tuple[float, int]] = {}


async def tenant_bytes(db, tenant: str, template: str, cache_seconds: float) -> int | None:
    """Bytes stored by ``tenant``'s members under ``template`` (``{username}`` replaced);
    None when ``template`` is empty (not measured). A measurement younger than
    ``cache_seconds`` is reused."""
    if not template:
        return None
    hit = _cache.get(tenant)
    if hit and time.monotonic() - hit[0] < cache_seconds:
        return hit[1]
    members = quotas.member_names(db, tenant)
    # only plain strings (made on the loop) go to the thread
    total = await asyncio.to_thread(storage.tenant_bytes, template, members, tenant)
    _cache[tenant] = (time.monotonic(), total)
    return total
