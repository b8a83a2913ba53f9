"""Billing periods: calendar months in UTC, named ``YYYY-MM``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from fedhub.errors import InvalidRequest

PERIOD_RE = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True, order=True)
class Period:
    """One tenant billing month, ``[start, end)`` in naive UTC."""

    start: datetime
    end: datetime

    @property
    def name(self) -> str:
        return self.start.strftime("%Y-%m")

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def previous(self) -> Period:
        return containing(self.start - timedelta(days=1))

    def next(self) -> Period:
        return containing(self.end)

    def __str__(self) -> str:
        return self.name


def containing(moment: datetime | date) -> Period:
    """The period that contains ``moment``."""
    start = datetime(moment.year, moment.month, 1)
    end = (
        datetime(start.year + 1, 1, 1)
        if start.month == 12
        else datetime(start.year, start.month + 1, 1)
    )
    return Period(start, end)


def parse(name: str) -> Period:
    """``2026-10`` → the October 2026 period; a clear 400 for anything else."""
    m = PERIOD_RE.match(name or "")
    try:
        if m:
            return containing(datetime(int(m.group(1)), int(m.group(2)), 1))
    except ValueError:  # month 00 or 13, year 0000, or 9999-12 (it ends after year 9999)
        pass
    raise InvalidRequest(f"invalid billing period {name!r}: use YYYY-MM, e.g. 2026-10")


def day_start(moment: datetime) -> datetime:
    return datetime(moment.year, moment.month, moment.day)
