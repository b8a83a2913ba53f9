"""``fedhub db upgrade|current|reseal-totp``."""

from __future__ import annotations

import click

from fedhub import db as fedhub_db
from fedhub.cli.common import db_url


@click.group("db")
def command():
    """Database migrations of fedhub's tables."""


@command.command("upgrade")
@click.pass_context
def upgrade(ctx):
    """Apply fedhub's migrations (idempotent)."""
    url = db_url(ctx)
    fedhub_db.upgrade(url)
    click.echo(f"fedhub tables at {', '.join(sorted(fedhub_db.current_heads(url)))}")


@command.command("current")
@click.pass_context
def current(ctx):
    """Print the applied revisions."""
    click.echo(", ".join(sorted(fedhub_db.current_heads(db_url(ctx)))) or "(none)")


@command.command("reseal-totp")
@click.pass_context
def reseal_totp(ctx):
    """Encrypt TOTP secrets with the key file's first key (after adding a new key)."""
    from fedhub.tenancy import totp

    url = db_url(ctx)
    fedhub_db.upgrade(url)
    with fedhub_db.get_engine(url).begin() as conn:
        n = totp.reseal(conn)
    click.echo(
        f"{n} TOTP secret(s) re-encrypted with key {totp.key_id(totp.default_box().keys()[0])}"
        if n
        else "every TOTP secret is already encrypted with the first key"
    )
