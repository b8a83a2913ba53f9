"""API rate limits per tenant, from the tier, counted once for the hub and every service.

A tenant's ``api_calls_per_hour`` and ``api_calls_per_day`` (:mod:`fedhub.limits`) cap the
requests its users and service accounts make to the hub's REST API and to every fedhub
service, together: the hub (:mod:`fedhub.extensions.hub.rate_limit`) and each service
(:meth:`fedhub.web.APIHandler.prepare`) count in one shared storage, so ten calls to the hub
and ten to billing are twenty calls of the tenant. ``docs/rate-limits.md`` tells the whole
story; the short of it:

- the `limits <https://limits.readthedocs.io>`_ library's **fixed window**: a window starts
  at a key's first hit and lasts the limit's hour or day; a hit is ``incr(key) <= amount``
  (:class:`limits.strategies.FixedWindowRateLimiter`). One counter per tenant and limit,
  so one atomic write per limit and request, and an exact ``Retry-After``;
- the storage is fedhub's database by default (:class:`SQLStorage`, one upsert per hit,
  on SQLite and PostgreSQL), or any storage ``limits`` knows, such as Redis
  (``c.RateLimits.storage_uri``);
- the first refusal in a window (the hit that makes the count ``amount + 1``, which exactly
  one process sees) emits one ``ratelimit.exceeded`` audit event; every refusal counts in
  the Prometheus counter :data:`REFUSALS` and leaves as a 429 :class:`RateLimited`.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from limits import RateLimitItem, RateLimitItemPerDay, RateLimitItemPerHour
from limits.storage import Storage, storage_from_string
from prometheus_client import Counter
from sqlalchemy import BigInteger, Float, String, bindparam, case, delete, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column
from traitlets import Bool, Unicode
from traitlets import Float as FloatTrait
from traitlets.config import LoggingConfigurable

from fedhub import events
from fedhub.addresses import client_ip
from fedhub.db import get_engine
from fedhub.db.base import Base
from fedhub.errors import FedhubError

log = logging.getLogger("fedhub.ratelimit")

#: The tier keys the limiter enforces, tightest window first, with their window.
WINDOWS: tuple[tuple[str, type[RateLimitItem]], ...] = (
    ("api_calls_per_hour", RateLimitItemPerHour),
    ("api_calls_per_day", RateLimitItemPerDay),
)
NAMESPACE = "fedhub-api"

REFUSALS = Counter(
    "fedhub_rate_limited_requests",
    "API requests refused with 429 because the tenant reached a rate limit",
    ["limit", "where"],
)


class RateLimited(FedhubError, code="rate_limited", status=429):
    """The tenant used up an API rate limit of its tier; ``headers`` say when it resets."""

    def __init__(self, message: str, *, headers: dict[str, str], details: dict[str, Any]):
        super().__init__(message, details=details)
        self.headers = headers


# -- the counters in fedhub's database ---------------------------------------------------


class RateLimitCounter(Base):
    """One fixed window of one limit: ``count`` hits until ``expires_at`` (epoch seconds)."""

    __tablename__ = "fedhub_rate_limits"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[float] = mapped_column(Float(precision=53))


Begin = Callable[[], AbstractContextManager[Any]]


class SQLStorage(Storage):
    """A ``limits`` storage in fedhub's database (SQLite or PostgreSQL).

    ``limits`` ships Redis, Memcached, MongoDB and in-memory storages, none in SQL; the
    embedded deployment has only its database, and production PostgreSQL is there anyway.
    Each hit is one statement, ``INSERT ... ON CONFLICT (key) DO UPDATE ... RETURNING``,
    which restarts an expired window and otherwise adds to it: atomic on both engines
    (PostgreSQL locks the row for the update, SQLite has one writer), so processes that
    count the same tenant never lose a hit. ``begin`` opens a transaction and yields
    something with ``execute`` (a connection; in the hub, the hub's own session, see
    :mod:`fedhub.extensions.hub.rate_limit`); ``clock`` gives epoch seconds (tests move it).
    """

    STORAGE_SCHEME = None  # built by RateLimits, not from a URI

    def __init__(self, begin: Begin, *, clock: Callable[[], float] = time.time, **options: Any):
        super().__init__(**options)
        self.begin = begin
        self.clock = clock
        self.table = RateLimitCounter.__table__

    @classmethod
    def for_url(cls, url: str | None = None, **kw: Any) -> SQLStorage:
        return cls(get_engine(url).begin, **kw)

    @property
    def base_exceptions(self) -> type[Exception]:
        return SQLAlchemyError

    def incr_with_expiry(self, key: str, expiry: int, amount: int = 1) -> tuple[int, float]:
        """Add ``amount`` to the key's window (a new one if it expired): (count, expires_at)."""
        now = self.clock()
        params = {"key": key, "amount": amount, "now": now, "new_expiry": now + expiry}
        with self.begin() as conn:
            dialect = _dialect(conn)
            if dialect == "postgresql":
                # a lost count after a crash is harmless; a WAL flush per API call is not
                conn.execute(text("SET LOCAL synchronous_commit TO OFF"))
            count, expires_at = conn.execute(_upsert(dialect), params).one()
        return int(count), float(expires_at)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self.incr_with_expiry(key, expiry, amount)[0]

    def _row(self, key: str) -> tuple[int, float] | None:
        with self.begin() as conn:
            row = conn.execute(
                select(self.table.c.count, self.table.c.expires_at).where(self.table.c.key == key)
            ).one_or_none()
        if row is None or row[1] <= self.clock():
            return None
        return int(row[0]), float(row[1])

    def get(self, key: str) -> int:
        row = self._row(key)
        return row[0] if row else 0

    def get_expiry(self, key: str) -> float:
        row = self._row(key)
        return row[1] if row else self.clock()

    def check(self) -> bool:
        try:
            with self.begin() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def reset(self) -> int | None:
        with self.begin() as conn:
            return conn.execute(delete(self.table)).rowcount

    def clear(self, key: str) -> None:
        with self.begin() as conn:
            conn.execute(delete(self.table).where(self.table.c.key == key))


def _dialect(conn) -> str:
    return (conn.get_bind() if hasattr(conn, "get_bind") else conn).dialect.name


@functools.cache
def _upsert(dialect: str):
    """The hit, built once per dialect (building it per call was half its cost in the hub)."""
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}.get(dialect)
    if insert is None:
        raise NotImplementedError(f"fedhub supports SQLite and PostgreSQL, not {dialect}")
    c = RateLimitCounter.__table__.c
    expired = c.expires_at <= bindparam("now")
    amount, new_expiry = bindparam("amount"), bindparam("new_expiry")
    return (
        insert(RateLimitCounter.__table__)
        .values(key=bindparam("key"), count=amount, expires_at=new_expiry)
        .on_conflict_do_update(
            index_elements=[c.key],
            set_={
                "count": case((expired, amount), else_=c.count + amount),
                "expires_at": case((expired, new_expiry), else_=c.expires_at),
            },
        )
        .returning(c.count, c.expires_at)
    )


# -- the limiter -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Where one limit stands after a hit: what the ``RateLimit-*`` headers say."""

    key: str  # the tier key, e.g. api_calls_per_hour
    tier: str
    allowed: int
    count: int
    reset_at: float  # epoch seconds
    now: float

    @property
    def refused(self) -> bool:
        return self.count > self.allowed

    @property
    def remaining(self) -> int:
        return max(0, self.allowed - self.count)

    @property
    def reset_in(self) -> int:
        """Whole seconds until the window resets (at least 1 while it is open)."""
        return max(1, int(self.reset_at - self.now + 0.999))

    def headers(self) -> dict[str, str]:
        """IETF draft ``RateLimit-*`` headers (and ``Retry-After`` when refused)."""
        seconds = 3600 if self.key.endswith("hour") else 86400
        out = {
            "RateLimit-Limit": str(self.allowed),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_in),
            "RateLimit-Policy": f"{self.allowed};w={seconds}",
        }
        if self.refused:
            out["Retry-After"] = str(self.reset_in)
        return out

    def error(self, tenant: str) -> RateLimited:
        at = datetime.fromtimestamp(self.reset_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        message = (
            f"rate limit reached: {self.key} of tier {self.tier!r} allows {self.allowed} API "
            f"calls for organisation {tenant!r}; it resets in {self.reset_in} s (at {at})"
        )
        details = {"limit": self.key, "allowed": self.allowed, "tier": self.tier, "reset": at}
        return RateLimited(message, headers=self.headers(), details=details)


#: ``tier_of(tenant)``: the tenant's tier name and its effective limits (None: unknown tenant).
TierLookup = Callable[[str], "tuple[str, dict[str, int | None]] | None"]


class TenantRateLimiter:
    """Counts a tenant's API calls against its tier's limits in one shared storage."""

    def __init__(
        self,
        storage: Storage,
        tier_of: TierLookup,
        *,
        where: str,
        revision: Callable[[], int] | None = None,
        cache_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
    ):
        self.storage = storage
        self.tier_of = tier_of
        self.where = where  # "hub" or the service's name: the metric's label
        self.revision = revision  # the tenancy revision: any change of a tenant bumps it
        self.cache_seconds = cache_seconds
        self.clock = clock
        base = storage.base_exceptions
        # what a failing storage or tier lookup raises: logged, and the call goes through
        self._failures = (*(base if isinstance(base, tuple) else (base,)), SQLAlchemyError)
        self._limits: dict[str, tuple[str, tuple[tuple[str, RateLimitItem], ...]]] = {}
        self._seen: tuple[float, int | None] = (0.0, None)  # (next check, revision)
        self._lock = threading.Lock()

    def _forget_changed_tiers(self) -> None:
        """Every ``cache_seconds``, drop the cached limits if the tenancy changed since
        (with no ``revision``: drop them every ``cache_seconds``)."""
        now = time.monotonic()
        next_check, seen = self._seen
        if now < next_check:
            return
        revision = self.revision() if self.revision is not None else None
        if revision is None or revision != seen:
            with self._lock:
                self._limits.clear()
        self._seen = (now + self.cache_seconds, revision)

    def items(self, tenant: str) -> tuple[str, tuple[tuple[str, RateLimitItem], ...]]:
        """The tenant's tier and limits, read once per change of the tenancy.

        A tenant read on every call would cost a query per request of every tenant that
        calls less often than a cache's lifetime (most of them, at 1,000 tenants); the
        revision check is one query per ``cache_seconds`` for all of them.
        """
        self._forget_changed_tiers()
        cached = self._limits.get(tenant)
        if cached is not None:
            return cached
        found = self.tier_of(tenant)
        tier, values = found if found is not None else ("", {})
        items = tuple(
            (key, window(values[key], namespace=NAMESPACE))
            for key, window in WINDOWS
            if values.get(key) is not None
        )
        with self._lock:
            self._limits[tenant] = (tier, items)
        return tier, items

    def _incr(self, item: RateLimitItem, tenant: str) -> tuple[int, float]:
        key, expiry = item.key_for(tenant), item.get_expiry()
        if isinstance(self.storage, SQLStorage):  # one round trip for count and reset
            return self.storage.incr_with_expiry(key, expiry)
        return self.storage.incr(key, expiry), self.storage.get_expiry(key)

    def hit(self, tenant: str) -> Window | None:
        """Count one call; the window that refuses it, else the one with least left.

        Windows are hit tightest first and a refusal stops there, so a call the hourly
        limit refuses does not use up the day. None: the tier sets no limit.
        """
        tier, items = self.items(tenant)
        tightest = None
        for key, item in items:
            count, reset_at = self._incr(item, tenant)
            window = Window(key, tier, item.amount, count, reset_at, self.clock())
            if window.refused:
                return window
            if tightest is None or window.remaining < tightest.remaining:
                tightest = window
        return tightest

    def check(self, tenant: str, *, actor: str | None, request: Any) -> Window | None:
        """Count a request of ``tenant``; raise :class:`RateLimited` when a limit refuses it.

        ``request`` is the tornado request (method, path, client for the audit event).
        When the storage (or the tier lookup) fails, the call goes through and the failure
        is logged: a limiter that cannot count must not turn every API call into a 500.
        """
        try:
            window = self.hit(tenant)
        except self._failures as e:
            log.warning(
                "Rate limit not checked for tenant %s (%s: %s)", tenant, type(e).__name__, e
            )
            return None
        if window is None or not window.refused:
            return window
        REFUSALS.labels(window.key, self.where).inc()
        if window.count == window.allowed + 1:  # the first refusal of this window
            self._first_refusal(tenant, actor, request, window)
        raise window.error(tenant)

    def _first_refusal(self, tenant: str, actor: str | None, request: Any, window: Window):
        log.warning(
            "Tenant %s reached %s (%d, tier %s) at %s; refused until the window resets in %d s",
            tenant, window.key, window.allowed, window.tier, self.where, window.reset_in,
        )  # fmt: skip
        events.emit(
            "ratelimit.exceeded",
            tenant=tenant,
            actor=actor,
            target=f"{request.method} {request.path}",
            result="denied",
            severity="warning",
            details={
                "limit": window.key,
                "allowed": window.allowed,
                "tier": window.tier,
                "where": self.where,
                "reset_in_seconds": window.reset_in,
            },
            source_ip=client_ip(request),
            user_agent=request.headers.get("User-Agent"),
        )


def tier_limits(tier) -> dict[str, int | None]:
    """The caps a tier puts on API calls.

    ``api_calls_per_hour`` always (None: no hourly cap). ``api_calls_per_day`` only where
    calls beyond it cost nothing (``overage.api_calls_1k`` is 0, the free tier): a paid
    tier's daily number is the allowance its price includes, and the calls beyond it are
    billed (``api_calls_1k``), not refused.
    """
    return {
        "api_calls_per_hour": tier.api_calls_per_hour,
        "api_calls_per_day": None if tier.overage.api_calls_1k else tier.api_calls_per_day,
    }


def store_tier_lookup(store) -> TierLookup:
    """A :data:`TierLookup` reading a :class:`fedhub.tenancy.store.TenantStore`."""
    from fedhub.errors import NotFound

    def tier_of(tenant: str):
        try:
            t = store.get_tenant(tenant)
        except NotFound:
            return None
        return t.tier, tier_limits(store.effective_tier(t))

    return tier_of


# -- configuration ---------------------------------------------------------------------------


class RateLimits(LoggingConfigurable):
    """``c.RateLimits``: the API rate limiter of the hub and of every fedhub service."""

    enabled = Bool(
        True,
        config=True,
        help="""Refuse a tenant's API calls beyond its tier's ``api_calls_per_hour`` and
        ``api_calls_per_day`` (429). Off: nothing is counted or refused (the calls are
        still metered for billing).

            c.RateLimits.enabled = False
        """,
    )

    storage_uri = Unicode(
        "",
        config=True,
        help="""Where the hub and every service count API calls: empty (the default) is
        fedhub's own database (a table, one upsert per limit and call); any storage URI of
        the ``limits`` library otherwise, e.g. Redis (needs ``pip install redis``). Every
        process of a deployment must name the same storage, or each counts alone.

            c.RateLimits.storage_uri = "redis://redis.internal:6379/0"
        """,
    )

    tier_cache_seconds = FloatTrait(
        5.0,
        config=True,
        help="""How often a process checks whether any tenant changed (the tenancy
        revision, one query); a tier change or a negotiated override reaches the limiter
        within this time. Each tenant's limits are read once per change, not per call.

            c.RateLimits.tier_cache_seconds = 10
        """,
    )

    def make_storage(self, db_url: str | None = None, begin: Begin | None = None) -> Storage:
        if self.storage_uri:
            return storage_from_string(self.storage_uri)
        return SQLStorage(begin) if begin is not None else SQLStorage.for_url(db_url)

    def limiter(
        self, store, *, where: str, db_url: str | None = None, begin=None
    ) -> TenantRateLimiter | None:
        """The process's limiter, reading tiers from ``store`` (a TenantStore); None when
        disabled."""
        if not self.enabled:
            return None
        return TenantRateLimiter(
            self.make_storage(db_url, begin),
            store_tier_lookup(store),
            where=where,
            revision=store.revision,
            cache_seconds=self.tier_cache_seconds,
        )


_current: TenantRateLimiter | None = None


def configure(limiter: TenantRateLimiter | None) -> None:
    """Set this process's limiter (a service's :class:`fedhub.service.ServiceApp` does at start)."""
    global _current
    _current = limiter


def current() -> TenantRateLimiter | None:
    return _current


def configure_service(app) -> None:
    """Set a service's limiter from its ``c.RateLimits`` (:meth:`fedhub.service.ServiceApp.initialize`).

    The service counts in the same storage as the hub (fedhub's database, or the
    configured URI) and reads tenants' tiers from the tiers file the app has applied.
    """
    from fedhub.tenancy.store import TenantStore

    where = os.environ.get("JUPYTERHUB_SERVICE_NAME") or app.name
    configure(RateLimits(parent=app).limiter(TenantStore(), where=where))
