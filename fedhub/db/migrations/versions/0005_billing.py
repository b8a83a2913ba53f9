"""billing: subscriptions, invoices, lines, adjustments, credit notes, budgets

Revision ID: 0005_billing
Revises:
Create Date: 2026-11-24

Finalized invoices and their lines are protected by triggers on both engines,
so no statement (ORM or hand-written SQL) can edit what a customer was sent.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_billing"
down_revision = None
branch_labels = ("billing",)
depends_on = None

D = sa.String(40)  # exact decimals as text (fedhub.billing.money.DecimalText)

SQLITE_TRIGGERS = [
    """CREATE TRIGGER fedhub_billing_invoice_immutable BEFORE UPDATE ON fedhub_billing_invoices
    WHEN OLD.status = 'finalized'
    BEGIN SELECT RAISE(ABORT, 'finalized invoices are immutable'); END""",
    """CREATE TRIGGER fedhub_billing_invoice_nodelete BEFORE DELETE ON fedhub_billing_invoices
    WHEN OLD.status = 'finalized'
    BEGIN SELECT RAISE(ABORT, 'finalized invoices are immutable'); END""",
    """CREATE TRIGGER fedhub_billing_line_noupdate BEFORE UPDATE ON fedhub_billing_invoice_lines
    WHEN (SELECT status FROM fedhub_billing_invoices WHERE id = OLD.invoice_id) = 'finalized'
    BEGIN SELECT RAISE(ABORT, 'finalized invoices are immutable'); END""",
    """CREATE TRIGGER fedhub_billing_line_nodelete BEFORE DELETE ON fedhub_billing_invoice_lines
    WHEN (SELECT status FROM fedhub_billing_invoices WHERE id = OLD.invoice_id) = 'finalized'
    BEGIN SELECT RAISE(ABORT, 'finalized invoices are immutable'); END""",
    """CREATE TRIGGER fedhub_billing_line_noinsert BEFORE INSERT ON fedhub_billing_invoice_lines
    WHEN (SELECT status FROM fedhub_billing_invoices WHERE id = NEW.invoice_id) = 'finalized'
    BEGIN SELECT RAISE(ABORT, 'finalized invoices are immutable'); END""",
]

PG_TRIGGERS = [
    """CREATE FUNCTION fedhub_billing_invoice_immutable() RETURNS trigger AS $$
    BEGIN
      IF OLD.status = 'finalized' THEN
        RAISE EXCEPTION 'finalized invoices are immutable';
      END IF;
      IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
      RETURN NEW;
    END $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER fedhub_billing_invoice_immutable BEFORE UPDATE OR DELETE
    ON fedhub_billing_invoices FOR EACH ROW EXECUTE FUNCTION fedhub_billing_invoice_immutable()""",
    """CREATE FUNCTION fedhub_billing_line_immutable() RETURNS trigger AS $$
    DECLARE inv integer;
    BEGIN
      IF TG_OP = 'INSERT' THEN inv := NEW.invoice_id; ELSE inv := OLD.invoice_id; END IF;
      IF (SELECT status FROM fedhub_billing_invoices WHERE id = inv) = 'finalized' THEN
        RAISE EXCEPTION 'finalized invoices are immutable';
      END IF;
      IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
      RETURN NEW;
    END $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER fedhub_billing_line_immutable BEFORE INSERT OR UPDATE OR DELETE
    ON fedhub_billing_invoice_lines FOR EACH ROW EXECUTE FUNCTION fedhub_billing_line_immutable()""",
]


def upgrade() -> None:
    op.create_table(
        "fedhub_billing_subscriptions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("tier", sa.String(63), nullable=False),
        sa.Column("overrides", sa.JSON, nullable=False),
        sa.Column("effective_at", sa.DateTime, nullable=False),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
        sa.Column("actor", sa.String(255)),
    )
    op.create_index(
        "ix_billing_sub_tenant_at", "fedhub_billing_subscriptions", ["tenant", "effective_at"]
    )
    op.create_table(
        "fedhub_billing_invoices",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("period_start", sa.DateTime, nullable=False),
        sa.Column("period_end", sa.DateTime, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("number", sa.String(64), unique=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("total", D, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("rated_at", sa.DateTime),
        sa.Column("finalized_at", sa.DateTime),
        sa.Column("content_sha256", sa.String(64)),
        sa.UniqueConstraint("tenant", "period_start", name="uq_billing_invoice_period"),
    )
    op.create_table(
        "fedhub_billing_invoice_lines",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "invoice_id",
            sa.Integer,
            sa.ForeignKey("fedhub_billing_invoices.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("line_type", sa.String(16), nullable=False),
        sa.Column("line_key", sa.String(200), nullable=False),
        sa.Column("meter", sa.String(63)),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("quantity", D, nullable=False),
        sa.Column("unit", sa.String(32), nullable=False),
        sa.Column("unit_price", D, nullable=False),
        sa.Column("amount", D, nullable=False),
        sa.Column("included", D),
        sa.Column("usage", D),
        sa.Column("attribution", sa.JSON, nullable=False),
    )
    op.create_index(
        "ix_fedhub_billing_invoice_lines_invoice_id", "fedhub_billing_invoice_lines", ["invoice_id"]
    )
    op.create_table(
        "fedhub_billing_credit_notes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("number", sa.String(64), nullable=False, unique=True),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column(
            "invoice_id", sa.Integer, sa.ForeignKey("fedhub_billing_invoices.id"), nullable=False
        ),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("total", D, nullable=False),
        sa.Column("lines", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("created_by", sa.String(255)),
    )
    op.create_index(
        "ix_fedhub_billing_credit_notes_tenant", "fedhub_billing_credit_notes", ["tenant"]
    )
    op.create_table(
        "fedhub_billing_adjustments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column(
            "source_invoice_id",
            sa.Integer,
            sa.ForeignKey("fedhub_billing_invoices.id"),
            nullable=False,
        ),
        sa.Column("line_key", sa.String(200), nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("amount", D, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("applied_invoice_id", sa.Integer, sa.ForeignKey("fedhub_billing_invoices.id")),
        sa.Column("credit_note_id", sa.Integer, sa.ForeignKey("fedhub_billing_credit_notes.id")),
        sa.Column("attribution", sa.JSON, nullable=False),
    )
    op.create_index(
        "ix_fedhub_billing_adjustments_tenant", "fedhub_billing_adjustments", ["tenant"]
    )
    op.create_index(
        "ix_fedhub_billing_adjustments_applied_invoice_id",
        "fedhub_billing_adjustments",
        ["applied_invoice_id"],
    )
    op.create_table(
        "fedhub_billing_budgets",
        sa.Column("tenant", sa.String(63), primary_key=True),
        sa.Column("monthly_limit", D, nullable=False),
        sa.Column("thresholds", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("updated_by", sa.String(255)),
    )
    op.create_table(
        "fedhub_billing_budget_alerts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("period_start", sa.DateTime, nullable=False),
        sa.Column("threshold", sa.Integer, nullable=False),
        sa.Column("amount", D, nullable=False),
        sa.Column("budget", D, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("tenant", "period_start", "threshold", name="uq_billing_budget_alert"),
    )
    dialect = op.get_bind().dialect.name
    for statement in PG_TRIGGERS if dialect == "postgresql" else SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(
            "DROP TRIGGER IF EXISTS fedhub_billing_line_immutable ON fedhub_billing_invoice_lines"
        )
        op.execute(
            "DROP TRIGGER IF EXISTS fedhub_billing_invoice_immutable ON fedhub_billing_invoices"
        )
        op.execute("DROP FUNCTION IF EXISTS fedhub_billing_line_immutable()")
        op.execute("DROP FUNCTION IF EXISTS fedhub_billing_invoice_immutable()")
    for table in (
        "fedhub_billing_budget_alerts",
        "fedhub_billing_budgets",
        "fedhub_billing_adjustments",
        "fedhub_billing_credit_notes",
        "fedhub_billing_invoice_lines",
        "fedhub_billing_invoices",
        "fedhub_billing_subscriptions",
    ):
        op.drop_table(table)
