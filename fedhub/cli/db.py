"""``fedhub db upgrade|current``."""

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
