"""Cron schedules with a time zone, parsed by croniter.

Times are stored naive UTC like every time in fedhub; the cron expression is read in the
job's time zone (``0 7 * * 1`` in ``Europe/Paris`` is 07:00 Paris time, summer or winter).
A sixth field counts seconds (croniter's extension), which only a tier with a minimum
interval below a minute can use.
"""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from fedhub.errors import InvalidRequest

#: how many upcoming times the shortest interval is measured over
INTERVAL_SAMPLES = 12


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidRequest(
            f"unknown time zone {name!r} (an IANA name like Europe/Paris)"
        ) from None


def validate(cron: str, timezone: str = "UTC") -> None:
    """Refuse (400) an expression croniter cannot read, or an unknown time zone."""
    zone(timezone)
    if not isinstance(cron, str) or not croniter.is_valid(cron):
        raise InvalidRequest(f"schedule {cron!r} is not a cron expression such as '0 7 * * 1'")


def next_after(cron: str, timezone: str, after: datetime) -> datetime:
    """The first time strictly after ``after`` (naive UTC) that the schedule fires."""
    tz = zone(timezone)
    start = after.replace(tzinfo=UTC).astimezone(tz)
    try:
        fire = croniter(cron, start).get_next(datetime)
    except CroniterError as e:
        raise InvalidRequest(f"schedule {cron!r}: {e}") from None
    return fire.astimezone(UTC).replace(tzinfo=None)


def shortest_interval_minutes(cron: str, timezone: str, now: datetime) -> float:
    """The shortest gap between the next few fires, in minutes (what the tier bounds)."""
    times = [next_after(cron, timezone, now)]
    for _ in range(INTERVAL_SAMPLES):
        times.append(next_after(cron, timezone, times[-1]))
    return min((b - a).total_seconds() for a, b in pairwise(times)) / 60
