"""Row-level security: the database's own wall behind the ORM's tenant filter (PostgreSQL).

Every query fedhub writes filters by tenant (``WHERE tenant = :caller's``). One
forgotten filter would show a tenant another tenant's rows; on PostgreSQL the
database refuses that too. Migration ``0016_rls`` turns on ``ROW LEVEL SECURITY``
(``ENABLE`` and ``FORCE``) for every tenant-owned table (:data:`TENANT_TABLES`)
with two policies:

- ``fedhub_tenant_isolation``: a row is visible, and may be written, only when
  its tenant is the transaction's ``fedhub.tenant`` setting
  (``current_setting('fedhub.tenant', true)``); with no setting, no row;
- ``fedhub_platform_access``: every row, for a role that is a member of
  :data:`PLATFORM_ROLE` (``fedhub_platform``).

A unit of work says whom it is for with a context variable (it follows asyncio
tasks and :func:`fedhub.jobs.run_blocking`'s threads):

    with rls.tenant("acme"):      # a request of one of acme's users
        ...
    with rls.platform():          # invoice closing, audit ingestion, the scheduler's loop
        ...

and at the start of each transaction on fedhub's engines (:func:`install`) the
scope becomes ``SET LOCAL``-style settings, with bind parameters:

- tenant ``X``: role :data:`TENANT_ROLE` and ``fedhub.tenant = X``;
- platform: role :data:`PLATFORM_ROLE`;
- nothing said, in a process that :func:`enforce`\\ s (every hub service): role
  :data:`TENANT_ROLE` and no tenant, so the transaction sees **no** tenant rows
  (fail closed); in other processes (the hub, the CLI, tests of the library) the
  transaction keeps the login role.

Both roles are ``NOLOGIN`` roles the login role is a member of (so it may switch);
``LOCAL`` settings end with the transaction, so a pooled connection never carries
one request's tenant into the next. SQLite has no row-level security: there the
ORM filter is the only wall, tested the same way.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Engine, event

__all__ = [
    "PLATFORM_ROLE",
    "as_platform",
    "TENANT_ROLE",
    "TENANT_SETTING",
    "TENANT_TABLES",
    "Scope",
    "current",
    "enforce",
    "install",
    "platform",
    "tenant",
    "enter",
]

T = TypeVar("T")

TENANT_SETTING = "fedhub.tenant"
TENANT_ROLE = "fedhub_tenant"
PLATFORM_ROLE = "fedhub_platform"

_SETTING = f"current_setting('{TENANT_SETTING}', true)"

# How each tenant-owned table names its tenant: the policies' predicate. A table
# holds the tenant's slug (``tenant``), the tenant's id (``tenant_id``), or hangs
# off a parent row (visible exactly when the parent is: the parent's own policy
# filters the sub-query). tests/security/test_rls.py fails for any table of the
# metadata with a tenant column, or a foreign key to a table listed here, that is
# missing from this map.
_BY_SLUG = f"tenant = {_SETTING}"
_BY_ID = f"tenant_id = (SELECT t.id FROM fedhub_tenants t WHERE t.slug = {_SETTING})"
# A federation's rows are shared with the tenants it lists (a lookup table whose own
# policy is by slug, so no policy refers back to the table it guards).
_FEDERATION_LISTED = (
    "EXISTS (SELECT 1 FROM fedhub_federation_tenants v "
    "WHERE v.federation_id = {table}.{column} AND v.tenant = " + _SETTING + ")"
)

TENANT_TABLES: dict[str, str] = {
    "fedhub_audit_checkpoints": _BY_SLUG,
    "fedhub_audit_heads": _BY_SLUG,
    "fedhub_audit_records": _BY_SLUG,
    "fedhub_billing_adjustments": _BY_SLUG,
    "fedhub_billing_budget_alerts": _BY_SLUG,
    "fedhub_billing_budgets": _BY_SLUG,
    "fedhub_billing_credit_notes": _BY_SLUG,
    "fedhub_billing_invoices": _BY_SLUG,
    "fedhub_billing_invoice_lines": (
        "EXISTS (SELECT 1 FROM fedhub_billing_invoices i WHERE i.id = invoice_id)"
    ),
    "fedhub_billing_subscriptions": _BY_SLUG,
    "fedhub_experiments": _BY_SLUG,
    "fedhub_experiment_rounds": "EXISTS (SELECT 1 FROM fedhub_experiments e WHERE e.id = experiment_id)",
    # federations (0018): visible to every tenant listed for them in
    # fedhub_federation_tenants (owner, members, invitees); a member's own metrics to
    # that member only. What a tenant may write is narrower (FEDERATION_WRITES).
    "fedhub_federation_tenants": _BY_SLUG,
    "fedhub_federations": f"{_BY_SLUG} OR {_FEDERATION_LISTED.format(table='fedhub_federations', column='id')}",
    "fedhub_federation_members": _FEDERATION_LISTED.format(
        table="fedhub_federation_members", column="federation_id"
    ),
    "fedhub_federation_rounds": _FEDERATION_LISTED.format(
        table="fedhub_federation_rounds", column="federation_id"
    ),
    "fedhub_federation_member_metrics": _BY_SLUG,
    "fedhub_invitations": _BY_ID,
    "fedhub_memberships": _BY_ID,
    # marketplace (0025): a listed asset, its listed versions and the reviews of an asset a
    # tenant may see are readable by every tenant; a pending asset by its publisher's tenant;
    # a delisted one also by the tenants holding a licence for it. A tenant writes only its
    # own assets, their versions and its own reviews (the migration's CHECKS); purchases
    # write the publisher's payout line as platform work.
    "fedhub_market_assets": (
        f"fedhub_market_assets.tenant = {_SETTING} OR fedhub_market_assets.state = 'listed' OR "
        "EXISTS (SELECT 1 FROM fedhub_market_entitlements e "
        f"WHERE e.asset_id = fedhub_market_assets.id AND e.tenant = {_SETTING})"
    ),
    "fedhub_market_entitlements": _BY_SLUG,
    "fedhub_market_payout_lines": _BY_SLUG,
    "fedhub_market_payout_statements": _BY_SLUG,  # 0026: the publisher's
    "fedhub_market_purchases": _BY_SLUG,
    "fedhub_market_reviews": (
        f"fedhub_market_reviews.tenant = {_SETTING} OR EXISTS (SELECT 1 FROM "
        "fedhub_market_assets a WHERE a.id = fedhub_market_reviews.asset_id)"
    ),
    "fedhub_market_versions": (
        "EXISTS (SELECT 1 FROM fedhub_market_assets a WHERE a.id = "
        f"fedhub_market_versions.asset_id AND (a.tenant = {_SETTING} OR "
        "fedhub_market_versions.state = 'listed'))"
    ),
    "fedhub_meter_events": _BY_SLUG,
    "fedhub_quota_notices": _BY_SLUG,
    # approval requests (0021): a request with no tenant yet (an onboarding) is the
    # platform's alone; comments are visible exactly when their request is
    "fedhub_requests": _BY_ID,
    "fedhub_request_comments": "EXISTS (SELECT 1 FROM fedhub_requests r WHERE r.id = request_id)",
    "fedhub_scheduled_jobs": _BY_SLUG,
    "fedhub_scheduled_runs": _BY_SLUG,
    "fedhub_scheduler_defaults": _BY_SLUG,
    "fedhub_server_reservations": _BY_SLUG,
    "fedhub_sessions": _BY_ID,
    "fedhub_signup_requests": _BY_ID,
    "fedhub_tenant_datasets": _BY_SLUG,
    "fedhub_tenant_branding": _BY_ID,
    "fedhub_teams": _BY_ID,
    "fedhub_team_members": "EXISTS (SELECT 1 FROM fedhub_teams t WHERE t.id = team_id)",
}

# Where a tenant may write less than it reads (the policies' WITH CHECK; the platform
# writes anything): no tenant lists a tenant for a federation (the service does it, as
# platform work, for the creator and the tenants its admins invite: a tenant that could
# list itself would see any federation whose id it knew; a check that asked for the
# federation's owner would refer back to this table, which PostgreSQL refuses as
# recursion); a member row is written by the federation's owner or by its own tenant;
# rounds and members' metrics are the runner's alone.
_FEDERATION_OWNED = (
    "EXISTS (SELECT 1 FROM fedhub_federations f "
    "WHERE f.id = {table}.federation_id AND f.tenant = " + _SETTING + ")"
)
FEDERATION_WRITES: dict[str, str] = {
    "fedhub_federation_tenants": "false",
    "fedhub_federation_members": (
        f"({TENANT_TABLES['fedhub_federation_members']}) AND (tenant = {_SETTING} OR "
        + _FEDERATION_OWNED.format(table="fedhub_federation_members")
        + ")"
    ),
    "fedhub_federation_rounds": "false",
    "fedhub_federation_member_metrics": "false",
}

# Tables with no tenant of their own, left out on purpose (docs/security.md):
# the tenant registry and its revision counter (read to resolve a slug, before
# any tenant is known), local credentials and their history (keyed by user name,
# read at login), the rate limiter's counters (keys hash the tenant), the audit
# service's signing keys, erasure log and spool offsets (platform bookkeeping), the
# tiers stored in the database (the platform's price list, read by every scope: 0019).
PLATFORM_TABLES = frozenset(
    {
        "fedhub_tenants",
        "fedhub_tenancy_revision",
        "fedhub_local_credentials",
        "fedhub_password_history",
        "fedhub_recovery_codes",
        "fedhub_rate_limits",
        "fedhub_audit_keys",
        "fedhub_audit_erasures",
        "fedhub_audit_spool_offsets",
        "fedhub_tier_versions",
        "fedhub_tier_applied",
        "fedhub_onboardings",  # no tenant yet (fedhub.tenancy.onboarding)
    }
)


class Scope(NamedTuple):
    """Whom a unit of work is for: one tenant (its slug), or the platform (``tenant=None``)."""

    tenant: str | None

    @property
    def is_platform(self) -> bool:
        return self.tenant is None


_scope: ContextVar[Scope | None] = ContextVar("fedhub_rls_scope", default=None)
_enforced = False


def current() -> Scope | None:
    """The scope of the running task or thread (None: nothing said)."""
    return _scope.get()


def enter(scope: Scope | None) -> Token:
    """Set the scope for the rest of this task (a request handler: the task ends with the
    request); :func:`tenant` and :func:`platform` are the block-shaped forms."""
    if scope is not None and not scope.is_platform and not scope.tenant:
        raise ValueError("a tenant scope needs the tenant's slug")
    return _scope.set(scope)


@contextmanager
def tenant(slug: str) -> Iterator[None]:
    """Transactions begun inside see (and write) only ``slug``'s rows."""
    token = enter(Scope(slug))
    try:
        yield
    finally:
        _scope.reset(token)


@contextmanager
def platform() -> Iterator[None]:
    """Transactions begun inside are platform work: every tenant's rows."""
    token = enter(Scope(None))
    try:
        yield
    finally:
        _scope.reset(token)


def as_platform(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` run as platform work: for a thread's target (a new thread starts with an
    empty context, so nothing said, which a service refuses)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> T:
        with platform():
            return fn(*args, **kwargs)

    return run


def enforce(on: bool = True) -> None:
    """Make unscoped transactions of this process see no tenant rows (every hub service)."""
    global _enforced
    _enforced = on


def enforced() -> bool:
    return _enforced


def _on_begin(conn) -> None:
    scope = _scope.get()
    if scope is None and not _enforced:
        return  # the login role (the hub, the CLI, library tests)
    if scope is not None and scope.is_platform:
        conn.exec_driver_sql("SELECT set_config('role', %(role)s, true)", {"role": PLATFORM_ROLE})
        return
    conn.exec_driver_sql(
        "SELECT set_config('role', %(role)s, true), set_config(%(name)s, %(tenant)s, true)",
        {"role": TENANT_ROLE, "name": TENANT_SETTING, "tenant": scope.tenant if scope else ""},
    )


def install(engine: Engine) -> None:
    """Apply the scope at the start of each transaction on ``engine`` (PostgreSQL only)."""
    if engine.dialect.name == "postgresql" and not event.contains(engine, "begin", _on_begin):
        event.listen(engine, "begin", _on_begin)


# -- for migrations ------------------------------------------------------------


def create_roles_sql() -> list[str]:
    """Statements that make the two roles (when missing) and let the login role switch to them.

    Creating a role needs ``CREATEROLE`` (or a superuser); an operator whose login
    role has neither creates them beforehand (docs/operators.md) and the statements
    then only check that the login role may use them.
    """
    statements = []
    for role in (TENANT_ROLE, PLATFORM_ROLE):
        statements.append(
            f"""
            DO $$
            BEGIN
                IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
                    BEGIN
                        CREATE ROLE {role} NOLOGIN;
                        IF '{role}' = '{PLATFORM_ROLE}' AND (
                            SELECT rolsuper FROM pg_roles WHERE rolname = current_user
                        ) THEN
                            -- platform work may COPY (audit ingestion): not subject to RLS
                            ALTER ROLE {role} BYPASSRLS;
                        END IF;
                    EXCEPTION WHEN duplicate_object OR unique_violation THEN
                        NULL;  -- another database of this cluster made it meanwhile
                    END;
                END IF;
                IF NOT pg_has_role(current_user, '{role}', 'MEMBER') THEN
                    EXECUTE format('GRANT {role} TO %I', current_user);
                END IF;
            EXCEPTION WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'fedhub: the role {role} is missing or % may not use it; '
                    'as a superuser run: CREATE ROLE {role} NOLOGIN; GRANT {role} TO %;',
                    current_user, current_user;
            END
            $$
            """
        )
    return statements


def grant_sql(table: str) -> str:
    """Let both roles read and write ``table`` (its policies then decide which rows)."""
    return f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {TENANT_ROLE}, {PLATFORM_ROLE}"


def enable_sql(table: str, predicate: str, check: str | None = None) -> list[str]:
    """``ENABLE`` + ``FORCE`` row-level security on ``table`` and its two policies.

    A migration that adds a tenant-owned table calls this for it (and adds it to
    :data:`TENANT_TABLES`). ``check``, when given, is what a tenant may write
    (``WITH CHECK``) where it differs from what it may read (``predicate``): a table
    shared between tenants whose rows only one of them, or only the platform, writes."""
    platform_check = f"pg_has_role(current_user, '{PLATFORM_ROLE}', 'MEMBER')"
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"DROP POLICY IF EXISTS fedhub_tenant_isolation ON {table}",
        f"CREATE POLICY fedhub_tenant_isolation ON {table} FOR ALL TO PUBLIC "
        f"USING ({predicate}) WITH CHECK ({check or predicate})",
        f"DROP POLICY IF EXISTS fedhub_platform_access ON {table}",
        f"CREATE POLICY fedhub_platform_access ON {table} FOR ALL TO PUBLIC "
        f"USING ({platform_check}) WITH CHECK ({platform_check})",
    ]


def disable_sql(table: str) -> list[str]:
    return [
        f"DROP POLICY IF EXISTS fedhub_tenant_isolation ON {table}",
        f"DROP POLICY IF EXISTS fedhub_platform_access ON {table}",
        f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY",
    ]
