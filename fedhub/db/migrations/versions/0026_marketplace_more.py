"""marketplace: payout statements that close and are paid; a dataset version's schema

A publisher's payout statement per billing month becomes a row
(``fedhub_market_payout_statements``: open, closed with its total frozen, paid with a
reference) and each payout line names the statement that pays it (``statement_id``:
its month's, or the first open one once that month is closed). Existing lines get their
month's statement, open. A version gets a JSON ``schema`` (a dataset's columns, rows,
label column and default partition). On PostgreSQL the statements are the publisher's
rows (row-level security by tenant, fedhub.db.rls.TENANT_TABLES).

Revision ID: 0026_marketplace_more
Revises: 0025_marketplace
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from fedhub.db import rls

revision = "0026_marketplace_more"
down_revision = "0025_marketplace"
branch_labels = None
depends_on = None

STATEMENTS = "fedhub_market_payout_statements"
LINES = "fedhub_market_payout_lines"
POLICY = "tenant = current_setting('fedhub.tenant', true)"


def upgrade() -> None:
    op.create_table(
        STATEMENTS,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant", sa.String(63), nullable=False, index=True),
        sa.Column("period_start", sa.DateTime, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("gross", sa.String(40)),
        sa.Column("amount", sa.String(40)),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("closed_at", sa.DateTime),
        sa.Column("paid_at", sa.DateTime),
        sa.Column("paid_by", sa.String(255)),
        sa.Column("paid_reference", sa.String(200)),
        sa.UniqueConstraint("tenant", "period_start", name="uq_market_payout_statement"),
    )
    with op.batch_alter_table(LINES) as batch:
        batch.add_column(sa.Column("statement_id", sa.Integer))
        batch.create_foreign_key(
            "fk_market_payout_line_statement", STATEMENTS, ["statement_id"], ["id"]
        )
        batch.create_index("ix_fedhub_market_payout_lines_statement_id", ["statement_id"])
    with op.batch_alter_table("fedhub_market_versions") as batch:
        batch.add_column(sa.Column("schema", sa.JSON))
    # the lines sold so far: on their month's statement, open (the service closes it)
    op.execute(
        f"INSERT INTO {STATEMENTS} (tenant, period_start, state, currency, created_at) "
        f"SELECT DISTINCT tenant, period_start, 'open', 'USD', CURRENT_TIMESTAMP FROM {LINES}"
    )
    op.execute(
        f"UPDATE {LINES} SET statement_id = (SELECT s.id FROM {STATEMENTS} s "
        f"WHERE s.tenant = {LINES}.tenant AND s.period_start = {LINES}.period_start)"
    )
    if op.get_bind().dialect.name == "postgresql":
        roles = f"{rls.TENANT_ROLE}, {rls.PLATFORM_ROLE}"
        op.execute(rls.grant_sql(STATEMENTS))
        op.execute(f"GRANT USAGE, SELECT ON SEQUENCE {STATEMENTS}_id_seq TO {roles}")
        for statement in rls.enable_sql(STATEMENTS, POLICY):
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in rls.disable_sql(STATEMENTS):
            op.execute(statement)
    # not a batch: on SQLite a batch copies the table and drops the old one, which the
    # purchases' and entitlements' foreign keys to their versions refuse
    op.execute('ALTER TABLE fedhub_market_versions DROP COLUMN "schema"')
    with op.batch_alter_table(LINES) as batch:
        batch.drop_index("ix_fedhub_market_payout_lines_statement_id")
        batch.drop_constraint("fk_market_payout_line_statement", type_="foreignkey")
        batch.drop_column("statement_id")
    op.drop_table(STATEMENTS)
