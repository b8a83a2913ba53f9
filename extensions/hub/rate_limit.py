"""The tenant rate limiter on the hub's REST API (``/hub/api/...``).

JupyterHub has no middleware hook, so :func:`install` wraps one method,
``jupyterhub.apihandlers.base.APIHandler.prepare``, which every hub API handler runs
(JupyterHub's ``prepare`` identifies the caller; ours runs right after it and before the
handler's method). It is the whole patch: one method wrapped once, at start-up, from
``TenantAuthenticatorMixin.load_managed_roles`` (as :mod:`session_guard` is installed),
and only when ``c.RateLimits.enabled``. A request of a tenant's user or service account
(the user is in a ``tenant-<slug>`` group) counts one API call of that tenant in the
storage the services count in too (:mod:`fedhub.ratelimit`), is metered as ``api_calls``
(source ``api:hub``), and gets the ``RateLimit-*`` headers; over a limit it is answered
429 with JupyterHub's error body plus fedhub's ``{"error": {"code": "rate_limited", ...}}``.
Platform admins and services belong to no tenant and are not counted.

Two requests are not API calls of the tenant and are neither counted nor refused
(:data:`EXEMPT`): ``GET /hub/api/user``, the identity lookup that fedhub's services and
the tenant's own notebook servers make with a user's token to learn whose it is (counting
it would count every service call twice; refusing it turns a service's 429 into its
500), and ``POST /hub/api/users/<name>/activity``, a server's heartbeat.
"""

from __future__ import annotations

import json
import re
import sqlite3
from contextlib import contextmanager

from jupyterhub import orm
from jupyterhub.apihandlers.base import APIHandler

from fedhub import metering
from fedhub.db import transaction
from fedhub.ratelimit import RateLimited, RateLimits, TenantRateLimiter
from fedhub.tenancy.roles import GROUP_PREFIX

#: (method, path below the hub's base URL) of the hub API requests that are not counted
EXEMPT = (
    ("GET", re.compile(r"api/user/?")),
    ("POST", re.compile(r"api/users/[^/]+/activity/?")),
)


def install(authenticator) -> None:
    """Count and limit the hub API (idempotent: the hub calls load_managed_roles twice)."""
    app = authenticator.parent
    if app is None or hasattr(APIHandler.prepare, "fedhub_rate_limiter"):
        return
    # on the hub's own session when fedhub's tables are in the hub's SQLite file: a second
    # connection to it would wait on the hub's pending writes. On PostgreSQL the counter has
    # a pooled connection of its own: a commit on the hub's session would end the hub's
    # transaction, and its next statement would check a connection out again and pay
    # JupyterHub's ping (BEGIN, SELECT 1, COMMIT) on every API request
    shared = app.db_url == authenticator.db_url and app.db_url.startswith("sqlite")
    begin = CounterTransactions(app.db) if shared else None
    limiter = RateLimits(parent=app).limiter(
        authenticator.store,
        where="hub",
        db_url=authenticator.db_url,
        begin=begin,
    )
    metering.flush_to(authenticator.db_url)
    original = APIHandler.prepare

    async def prepare(self):
        await original(self)
        if not self._finished:
            count_request(self, limiter)

    prepare.fedhub_rate_limiter = limiter
    APIHandler.prepare = prepare
    authenticator.log.info(
        "fedhub: hub API calls metered; rate limits %s",
        f"on (storage: {type(limiter.storage).__name__})" if limiter else "off",
    )


class CounterTransactions:
    """Transactions of the counters on the hub's session, not synced to disk on their own.

    JupyterHub's SQLite connection runs with ``synchronous=FULL``: in WAL mode every commit
    waits for an fsync (0.6 ms median and 8 ms p99 on an idle 2-core machine, 3.5 ms median
    on a busy one), which would be nearly all of the limiter's cost. A count lost in a power
    cut is harmless, so when the database is in WAL mode (fedhub creates it so) and the hub
    has no write of its own pending, a counter's transaction runs with
    ``synchronous=NORMAL`` (safe from corruption in WAL mode; the hub's next synced commit
    makes it durable) and the hub's level is restored right after. PostgreSQL gets
    ``SET LOCAL synchronous_commit TO OFF`` from the storage itself.
    """

    def __init__(self, session):
        self.session = session
        self._level: int | None = None  # the hub's synchronous level; None: do not relax
        self._checked = False

    def _relaxable(self, raw: sqlite3.Connection) -> bool:
        if not self._checked:  # the journal mode is the file's: ask once
            if raw.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                self._level = int(raw.execute("PRAGMA synchronous").fetchone()[0])
            self._checked = True
        return self._level is not None and not raw.in_transaction

    @contextmanager
    def __call__(self):
        raw = self.session.connection().connection.driver_connection
        relax = isinstance(raw, sqlite3.Connection) and self._relaxable(raw)
        if relax:
            raw.execute("PRAGMA synchronous=NORMAL")
        try:
            with transaction(self.session):
                yield self.session
        finally:
            if relax:
                raw.execute(f"PRAGMA synchronous={self._level}")


def tenant_of(user) -> str | None:
    """The tenant of a hub user (its ``tenant-<slug>`` group); None for services and admins."""
    if user is None or isinstance(user, orm.Service):
        return None
    for group in user.groups:
        if group.name.startswith(GROUP_PREFIX):
            return group.name[len(GROUP_PREFIX) :]
    return None


def exempt(handler) -> bool:
    path = handler.request.path.removeprefix(handler.hub.base_url)
    return any(
        handler.request.method == method and pattern.fullmatch(path) for method, pattern in EXEMPT
    )


def count_request(handler, limiter: TenantRateLimiter | None) -> None:
    """Count the request as an API call of its tenant; answer 429 when a limit refuses it."""
    if exempt(handler):  # first: tenant_of may load the user's groups
        return
    user = handler.current_user
    tenant = tenant_of(user)
    if tenant is None:
        return
    window = None
    if limiter is not None:
        try:
            window = limiter.check(tenant, actor=user.name, request=handler.request)
        except RateLimited as e:
            refuse(handler, e)
            return
    metering.count_api_call("hub", tenant, user.name)
    if window is not None:
        for name, value in window.headers().items():
            handler.set_header(name, value)


def refuse(handler, e: RateLimited) -> None:
    handler.set_status(e.status)
    for name, value in e.headers.items():
        handler.set_header(name, value)
    handler.set_header("Content-Type", "application/json")
    # JupyterHub's error body (status, message) and fedhub's (error.code, error.message)
    handler.finish(json.dumps({"status": e.status, "message": e.message, **e.to_json()}))
