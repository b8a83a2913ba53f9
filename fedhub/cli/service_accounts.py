"""``fedhub service-accounts ...``: accounts for pipelines, which act through API keys only.

A service account belongs to one tenant, has no password and cannot log in; its keys
(``fedhub keys``) are hub tokens with chosen fedhub scopes. Deleting it takes its keys
with it: fedhub's services and the hub refuse them at once (no membership), and the
running hub deletes its hub user, tokens included, within one mirror interval.
"""

from __future__ import annotations

import click

from fedhub.cli.common import ACTOR, output, store, table


@click.group("service-accounts")
def command():
    """Manage service accounts (no login; API keys only)."""


@command.command("create")
@click.option("--tenant", required=True, help="The tenant it belongs to.")
@click.argument("name")
@click.pass_context
def create(ctx, tenant, name):
    """Create a service account; then give it keys with `fedhub keys create`."""
    store(ctx).add_service_account(name, tenant, actor=ACTOR)
    click.echo(
        f"Created service account {name} in {tenant}. Keys: fedhub keys create --account {name}"
    )


@command.command("list")
@click.option("--tenant", required=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_(ctx, tenant, as_json):
    """List a tenant's service accounts."""
    names = store(ctx).service_accounts(tenant)
    output(
        [{"name": n, "tenant": tenant} for n in names],
        as_json,
        table([[n] for n in names], ["NAME"]),
    )


@command.command("delete")
@click.argument("name")
@click.pass_context
def delete(ctx, name):
    """Delete a service account and, with it, every key it has."""
    tenancy = store(ctx)
    tenancy.service_account(name)  # 'no service account' for anyone else
    tenancy.remove_user(name, actor=ACTOR)
    click.echo(
        f"Deleted {name}: its keys are refused now, and the hub deletes them within one "
        "mirror interval."
    )
