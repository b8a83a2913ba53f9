"""TOTP secrets encrypted at rest: a wider column, and clear secrets sealed

On the tenancy branch (after 0007_signup). ``enc:v1:<key id>:<base64>`` needs more
than the 64 characters a clear base32 secret did. Secrets stored in clear are
encrypted here with the key of :class:`fedhub.tenancy.totp.TotpSecretBox`
(``$FEDHUB_TOTP_KEY_FILE``, else ``$FEDHUB_STATE_DIR/keys/totp.key``; created if
missing, only when there is a secret to seal).

Revision ID: 0008_totp_encrypted
Revises: 0001_tenancy
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_totp_encrypted"
down_revision = "0007_signup"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from fedhub.tenancy import totp

    # SQLite does not enforce VARCHAR lengths: no table rebuild there
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column(
            "fedhub_local_credentials",
            "totp_secret",
            type_=sa.String(255),
            existing_type=sa.String(64),
            existing_nullable=True,
        )
    totp.reseal(op.get_bind())


def downgrade() -> None:
    from fedhub.tenancy import totp

    bind = op.get_bind()
    creds = sa.table("fedhub_local_credentials", sa.column("username"), sa.column("totp_secret"))
    rows = bind.execute(sa.select(creds.c.username, creds.c.totp_secret)).all()
    for username, stored in rows:
        if totp.is_sealed(stored):
            bind.execute(
                sa.update(creds)
                .where(creds.c.username == username)
                .values(totp_secret=totp.reveal(stored))
            )
    if bind.dialect.name != "sqlite":
        op.alter_column(
            "fedhub_local_credentials",
            "totp_secret",
            type_=sa.String(64),
            existing_type=sa.String(255),
            existing_nullable=True,
        )
