"""row-level security: every tenant-owned table answers only its tenant, or the platform

PostgreSQL only (SQLite has no row-level security; there the ORM filter is the only
wall, and this revision does nothing). Makes the ``NOLOGIN`` roles ``fedhub_tenant``
and ``fedhub_platform`` when they are missing and lets the migrating (login) role use
them; grants both roles on fedhub's tables and sequences; on each tenant-owned table
turns on ``ENABLE`` and ``FORCE ROW LEVEL SECURITY`` with the policies
``fedhub_tenant_isolation`` (the row's tenant is ``current_setting('fedhub.tenant')``)
and ``fedhub_platform_access`` (members of ``fedhub_platform``). See
:mod:`fedhub.db.rls` and docs/security.md, "Row-level security".

The table list is frozen here, as a migration's must be; a later migration that adds a
tenant-owned table calls ``rls.grant_sql`` and ``rls.enable_sql`` for it.

Revision ID: 0016_rls
Revises: (new branch "rls", after every branch's head)
Create Date: 2026-11-30
"""

from alembic import op

from fedhub.db import rls

revision = "0016_rls"
down_revision = None
branch_labels = ("rls",)
depends_on = (
    "0003_spawner",
    "0005_billing",
    "0006_experiments",
    "0010_rate_limits",
    "0011_sessions",
    "0012_security_policy",
    "0013_audit_canonical",
    "0015_scheduler_default_reports",
)

_SLUG = "tenant = current_setting('fedhub.tenant', true)"
_ID = (
    "tenant_id = (SELECT t.id FROM fedhub_tenants t "
    "WHERE t.slug = current_setting('fedhub.tenant', true))"
)
TABLES = {
    "fedhub_audit_checkpoints": _SLUG,
    "fedhub_audit_heads": _SLUG,
    "fedhub_audit_records": _SLUG,
    "fedhub_billing_adjustments": _SLUG,
    "fedhub_billing_budget_alerts": _SLUG,
    "fedhub_billing_budgets": _SLUG,
    "fedhub_billing_credit_notes": _SLUG,
    "fedhub_billing_invoices": _SLUG,
    "fedhub_billing_invoice_lines": (
        "EXISTS (SELECT 1 FROM fedhub_billing_invoices i WHERE i.id = invoice_id)"
    ),
    "fedhub_billing_subscriptions": _SLUG,
    "fedhub_experiments": _SLUG,
    "fedhub_experiment_rounds": (
        "EXISTS (SELECT 1 FROM fedhub_experiments e WHERE e.id = experiment_id)"
    ),
    "fedhub_invitations": _ID,
    "fedhub_memberships": _ID,
    "fedhub_meter_events": _SLUG,
    "fedhub_quota_notices": _SLUG,
    "fedhub_scheduled_jobs": _SLUG,
    "fedhub_scheduled_runs": _SLUG,
    "fedhub_scheduler_defaults": _SLUG,
    "fedhub_server_reservations": _SLUG,
    "fedhub_sessions": _ID,
    "fedhub_signup_requests": _ID,
}


def _fedhub_tables() -> list[str]:
    rows = op.get_bind().exec_driver_sql(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
        "AND tablename LIKE 'fedhub\\_%%' AND tablename <> 'fedhub_alembic_version' "
        "ORDER BY tablename"
    )
    return [name for (name,) in rows]


def _fedhub_sequences() -> list[str]:
    rows = op.get_bind().exec_driver_sql(
        "SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema() "
        "AND sequencename LIKE 'fedhub\\_%%' ORDER BY sequencename"
    )
    return [name for (name,) in rows]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for statement in rls.create_roles_sql():
        op.execute(statement)
    for table in _fedhub_tables():
        op.execute(rls.grant_sql(table))
    roles = f"{rls.TENANT_ROLE}, {rls.PLATFORM_ROLE}"
    for sequence in _fedhub_sequences():
        op.execute(f"GRANT USAGE, SELECT ON SEQUENCE {sequence} TO {roles}")
    for table, predicate in TABLES.items():
        for statement in rls.enable_sql(table, predicate):
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        for statement in rls.disable_sql(table):
            op.execute(statement)
    # the roles stay: other databases of the cluster may use them
