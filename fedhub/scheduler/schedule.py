"""Cron schedules with a time zone, parsed by croniter.

Times are stored naive UTC like every time in fedhub; the cron expression is read in the
job's time zone (``0 7 * * 1`` in ``Europe/Paris`` is 07:00 Paris time, summer or winter).
A sixth field counts seconds (croniter's extension), which only a tier with a minimum
interval below a minute can use.

A job that runs **once** has no cron expression (``""``) and one time, ``at``: an ISO
date and time read in the job's time zone unless it names its own offset (:func:`once_at`).
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


def once_at(value: str, timezone: str, now: datetime) -> datetime:
    """``value`` (``2026-12-24T18:00``, read in ``timezone``, or with its own offset) as
    naive UTC; refused (400) if it cannot be read or is not in the future."""
    try:
        when = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise InvalidRequest(
            f"at {value!r} is not a date and time such as '2026-12-24T18:00'"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone(timezone))
    utc = when.astimezone(UTC).replace(tzinfo=None)
    if utc <= now:
        raise InvalidRequest(
            f"at {value!r} ({utc:%Y-%m-%d %H:%M} UTC, read in {timezone}) is not in the "
            f"future; it is now {now:%Y-%m-%d %H:%M} UTC"
        )
    return utc


def following(cron: str, timezone: str, after: datetime) -> datetime | None:
    """The job's next time after ``after``: None for a job that runs once (its one time
    is set when it is made, and is past once it has run)."""
    return next_after(cron, timezone, after) if cron else None


def plan(cron: str | None, at: str | None, timezone: str,
         now: datetime) -> tuple[str, datetime | None]:  # fmt: skip
    """A job's timing from a request: ``(cron, None)`` for a repeating job, ``("", time)``
    for one that runs once; 400 unless exactly one of ``cron`` and ``at`` is given."""
    if (cron is None) == (at is None):
        raise InvalidRequest("give either cron (a repeating schedule) or at (one run at a "
                             "date and time), not " + ("both" if cron else "neither"))  # fmt: skip
    zone(timezone)
    if at is not None:
        return "", once_at(at, timezone, now)
    validate(cron, timezone)
    return cron, None


def next_from(cron: str, once: datetime | None, timezone: str, now: datetime) -> datetime | None:
    """The next time from ``now`` on: the schedule's next, or the one time if still ahead."""
    if cron:
        return next_after(cron, timezone, now)
    return once if once is not None and once > now else None
