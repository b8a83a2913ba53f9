"""Where the "now" of billing's decisions and of a tenant's plan history comes from.

Every time-dependent billing decision (which period is open, whether the grace period
is over, whether an event is too late) asks a :class:`Clock`, and so does the tenancy
when it records a plan change (:mod:`fedhub.tenancy.plans`): a test moves a tenant
through months, changing its tier on the way, without waiting and without patching.
It sits in the core, below both, because tenancy must not import billing.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from fedhub.db.base import utcnow


class Clock:
    """The real clock: naive UTC, like every time fedhub stores."""

    def now(self) -> datetime:
        return utcnow()


class FixedClock(Clock):
    """A clock that only moves when told to (tests, replays, ``FEDHUB_BILLING_NOW``)."""

    def __init__(self, now: datetime):
        self._now = now

    def now(self) -> datetime:
        return self._now

    def set(self, now: datetime) -> None:
        self._now = now

    def advance(self, **delta: float) -> datetime:
        self._now += timedelta(**delta)
        return self._now


_default: Clock | None = None


def get_clock() -> Clock:
    """The process clock: ``$FEDHUB_BILLING_NOW`` (ISO time, frozen) if set, else the real one."""
    global _default
    if _default is None:
        frozen = os.environ.get("FEDHUB_BILLING_NOW")
        _default = FixedClock(datetime.fromisoformat(frozen)) if frozen else Clock()
    return _default


def set_clock(clock: Clock | None) -> None:
    """Replace the process clock (None: back to the default)."""
    global _default
    _default = clock
