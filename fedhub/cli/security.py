"""``fedhub security ...``: a tenant's login policy and IP allowlist, a user's recovery codes.

The policy itself is the tier's (``security:`` in tiers.yaml, docs/security-policy.md);
here an operator reads it, sets a tenant's allowlisted networks (the tenant's admins do
the same through ``/hub/api/fedhub/tenants/<slug>/ip-allowlist``) and hands a user who
lost their authenticator new recovery codes.
"""

from __future__ import annotations

import click

from fedhub.cli.common import ACTOR, output, store


@click.group("security")
def command():
    """Login security: tier policy, IP allowlists, recovery codes."""


@command.command("policy")
@click.argument("tenant")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def policy(ctx, tenant, as_json):
    """Show the security policy of TENANT's tier (with its overrides)."""
    s = store(ctx)
    t = s.get_tenant(tenant)
    data = s.effective_tier(t).security.model_dump()
    data["ip_allowlist_networks"] = s.security.allowlist(tenant)
    lines = [f"{tenant} ({t.tier}):"] + [f"  {k}: {v}" for k, v in data.items()]
    output(data, as_json, "\n".join(lines))


@command.group("allowlist")
def allowlist():
    """The networks a tenant's members may log in from."""


@allowlist.command("show")
@click.argument("tenant")
@click.pass_context
def allowlist_show(ctx, tenant):
    """Print TENANT's allowlisted networks, one a line (none: logins from anywhere)."""
    networks = store(ctx).security.allowlist(tenant)
    click.echo("\n".join(networks) if networks else f"{tenant}: no allowlist (any address)")


@allowlist.command("set")
@click.argument("tenant")
@click.argument("networks", nargs=-1, required=True)
@click.pass_context
def allowlist_set(ctx, tenant, networks):
    """Allow TENANT's logins only from NETWORKS (CIDRs, e.g. 10.0.0.0/8 2001:db8::/32)."""
    stored = store(ctx).security.set_allowlist(tenant, list(networks), actor=ACTOR)
    click.echo(f"{tenant}: logins allowed from {', '.join(stored)}")


@allowlist.command("clear")
@click.argument("tenant")
@click.pass_context
def allowlist_clear(ctx, tenant):
    """Lift TENANT's allowlist (logins from any address)."""
    store(ctx).security.set_allowlist(tenant, [], actor=ACTOR)
    click.echo(f"{tenant}: no allowlist (any address)")


@command.command("recovery-codes")
@click.argument("username")
@click.pass_context
def recovery_codes(ctx, username):
    """New one-time recovery codes for USERNAME (the old ones stop working); shown once."""
    codes = store(ctx).security.regenerate_recovery_codes(username)
    click.echo(f"Recovery codes of {username} (each works once; shown only now):")
    click.echo("\n".join(codes))
