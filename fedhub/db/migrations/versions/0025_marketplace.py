"""marketplace: assets, immutable versions, purchases, entitlements, reviews, payout lines

Full-text search over an asset's name, description and tags: on SQLite an FTS5 table
(``fedhub_market_fts``, external content, kept by triggers); on PostgreSQL a stored
generated ``search_vector`` column (``to_tsvector('english', ...)``) with a GIN index
(:mod:`fedhub.marketplace.fulltext`). On PostgreSQL every table gets row-level security
(fedhub.db.rls.TENANT_TABLES); the predicates are frozen here, as a migration's must be.

Revision ID: 0025_marketplace
Revises: 0024_invitation_mail
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from fedhub.db import rls

revision = "0025_marketplace"
down_revision = "0024_invitation_mail"
branch_labels = None
depends_on = ("0016_rls",)

_S = "current_setting('fedhub.tenant', true)"
_ASSET_VISIBLE = (
    f"fedhub_market_assets.tenant = {_S} OR fedhub_market_assets.state = 'listed' OR "
    "EXISTS (SELECT 1 FROM fedhub_market_entitlements e "
    f"WHERE e.asset_id = fedhub_market_assets.id AND e.tenant = {_S})"
)
POLICIES = {
    "fedhub_market_assets": _ASSET_VISIBLE,
    "fedhub_market_versions": (
        "EXISTS (SELECT 1 FROM fedhub_market_assets a WHERE a.id = "
        f"fedhub_market_versions.asset_id AND (a.tenant = {_S} OR "
        "fedhub_market_versions.state = 'listed'))"
    ),
    "fedhub_market_purchases": f"tenant = {_S}",
    "fedhub_market_entitlements": f"tenant = {_S}",
    "fedhub_market_reviews": (
        f"fedhub_market_reviews.tenant = {_S} OR EXISTS (SELECT 1 FROM fedhub_market_assets a "
        "WHERE a.id = fedhub_market_reviews.asset_id)"
    ),
    "fedhub_market_payout_lines": f"tenant = {_S}",
}
# what a tenant may write where it is less than what it reads: its own assets, versions of
# its own assets, its own reviews (the publisher's answer is platform work)
CHECKS = {
    "fedhub_market_assets": f"tenant = {_S}",
    "fedhub_market_versions": (
        "EXISTS (SELECT 1 FROM fedhub_market_assets a WHERE a.id = "
        f"fedhub_market_versions.asset_id AND a.tenant = {_S})"
    ),
    "fedhub_market_reviews": f"tenant = {_S}",
}

SEARCH_DOCUMENT = (
    "coalesce(name, '') || ' ' || coalesce(description, '') || ' ' || coalesce(tags, '')"
)

SQLITE_FTS = [
    "CREATE VIRTUAL TABLE fedhub_market_fts USING fts5(name, description, tags, "
    "content='fedhub_market_assets', content_rowid='id', tokenize='porter unicode61')",
    "CREATE TRIGGER fedhub_market_fts_ai AFTER INSERT ON fedhub_market_assets BEGIN "
    "INSERT INTO fedhub_market_fts(rowid, name, description, tags) "
    "VALUES (new.id, new.name, new.description, new.tags); END",
    "CREATE TRIGGER fedhub_market_fts_ad AFTER DELETE ON fedhub_market_assets BEGIN "
    "INSERT INTO fedhub_market_fts(fedhub_market_fts, rowid, name, description, tags) "
    "VALUES ('delete', old.id, old.name, old.description, old.tags); END",
    "CREATE TRIGGER fedhub_market_fts_au AFTER UPDATE OF name, description, tags "
    "ON fedhub_market_assets BEGIN "
    "INSERT INTO fedhub_market_fts(fedhub_market_fts, rowid, name, description, tags) "
    "VALUES ('delete', old.id, old.name, old.description, old.tags); "
    "INSERT INTO fedhub_market_fts(rowid, name, description, tags) "
    "VALUES (new.id, new.name, new.description, new.tags); END",
]


def _money(name: str, **kw) -> sa.Column:
    return sa.Column(name, sa.String(40), **kw)


def upgrade() -> None:
    op.create_table(
        "fedhub_market_assets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant", sa.String(63), nullable=False, index=True),
        sa.Column("slug", sa.String(63), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("asset_type", sa.String(16), nullable=False),
        sa.Column("category", sa.String(63), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("tags", sa.String(500), nullable=False),
        sa.Column("licence", sa.Text, nullable=False),
        _money("price", nullable=False),
        sa.Column("price_cents", sa.Integer, nullable=False),
        sa.Column("pricing", sa.String(16), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("per_seat", sa.Boolean, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("review_note", sa.Text),
        sa.Column("created_by", sa.String(255)),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("listed_at", sa.DateTime, index=True),
        sa.Column("downloads", sa.Integer, nullable=False),
        sa.Column("rating_count", sa.Integer, nullable=False),
        sa.Column("rating_sum", sa.Integer, nullable=False),
        sa.Column("rating", sa.Float, nullable=False),
    )
    op.create_table(
        "fedhub_market_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "asset_id",
            sa.Integer,
            sa.ForeignKey("fedhub_market_assets.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),
        sa.Column("changelog", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("review_note", sa.Text),
        sa.Column("reviewed_by", sa.String(255)),
        sa.Column("reviewed_at", sa.DateTime),
        sa.Column("created_by", sa.String(255)),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("asset_id", "version", name="uq_market_version"),
    )
    op.create_table(
        "fedhub_market_purchases",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column(
            "asset_id",
            sa.Integer,
            sa.ForeignKey("fedhub_market_assets.id"),
            nullable=False,
            index=True,
        ),
        sa.Column(
            "version_id", sa.Integer, sa.ForeignKey("fedhub_market_versions.id"), nullable=False
        ),
        sa.Column("publisher", sa.String(63), nullable=False),
        _money("amount", nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("pricing", sa.String(16), nullable=False),
        sa.Column("seat", sa.String(255)),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("refunded_at", sa.DateTime),
        sa.Column("credit_note", sa.String(64)),
        sa.UniqueConstraint("tenant", "idempotency_key", name="uq_market_purchase_key"),
    )
    op.create_table(
        "fedhub_market_entitlements",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant", sa.String(63), nullable=False, index=True),
        sa.Column("username", sa.String(255)),
        sa.Column(
            "asset_id",
            sa.Integer,
            sa.ForeignKey("fedhub_market_assets.id"),
            nullable=False,
            index=True,
        ),
        sa.Column(
            "version_id", sa.Integer, sa.ForeignKey("fedhub_market_versions.id"), nullable=False
        ),
        sa.Column(
            "purchase_id", sa.Integer, sa.ForeignKey("fedhub_market_purchases.id"), nullable=False
        ),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("ended_at", sa.DateTime),
    )
    op.create_table(
        "fedhub_market_reviews",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "asset_id",
            sa.Integer,
            sa.ForeignKey("fedhub_market_assets.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("stars", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("answer", sa.Text),
        sa.Column("answered_by", sa.String(255)),
        sa.Column("answered_at", sa.DateTime),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("asset_id", "username", name="uq_market_review_user"),
    )
    op.create_table(
        "fedhub_market_payout_lines",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant", sa.String(63), nullable=False, index=True),
        sa.Column("period_start", sa.DateTime, nullable=False),
        sa.Column(
            "purchase_id", sa.Integer, sa.ForeignKey("fedhub_market_purchases.id"), nullable=False
        ),
        sa.Column("asset_slug", sa.String(63), nullable=False),
        sa.Column("buyer", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        _money("gross", nullable=False),
        _money("share_percent", nullable=False),
        _money("amount", nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("purchase_id", "kind", "period_start", name="uq_market_payout_line"),
    )
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for statement in SQLITE_FTS:
            op.execute(statement)
    elif bind.dialect.name == "postgresql":
        # stored, not an expression index: under row-level security the planner may not use
        # an index for a non-leakproof qual (@@), so searches scan the rows; a stored vector
        # makes that scan cheap (no to_tsvector per row) and ranks without recomputing
        op.execute(
            "ALTER TABLE fedhub_market_assets ADD COLUMN search_vector tsvector GENERATED "
            f"ALWAYS AS (to_tsvector('english'::regconfig, {SEARCH_DOCUMENT})) STORED"
        )
        op.execute(
            "CREATE INDEX ix_market_assets_search ON fedhub_market_assets USING GIN (search_vector)"
        )
        roles = f"{rls.TENANT_ROLE}, {rls.PLATFORM_ROLE}"
        for table, predicate in POLICIES.items():
            op.execute(rls.grant_sql(table))
            op.execute(f"GRANT USAGE, SELECT ON SEQUENCE {table}_id_seq TO {roles}")
            for statement in rls.enable_sql(table, predicate, CHECKS.get(table)):
                op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # the assets' policy reads the entitlements, the versions' and reviews' the assets
        for table in POLICIES:
            for statement in rls.disable_sql(table):
                op.execute(statement)
    if op.get_bind().dialect.name == "sqlite":
        for name in ("fedhub_market_fts_ai", "fedhub_market_fts_ad", "fedhub_market_fts_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS fedhub_market_fts")
    for table in (
        "fedhub_market_payout_lines",
        "fedhub_market_reviews",
        "fedhub_market_entitlements",
        "fedhub_market_purchases",
        "fedhub_market_versions",
        "fedhub_market_assets",
    ):
        op.drop_table(table)
