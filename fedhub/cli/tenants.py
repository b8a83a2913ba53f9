"""``fedhub tenant ...``: create, list, show, update (sign-up policy too), suspend, resume, delete."""

from __future__ import annotations

import click
import yaml

from fedhub.cli.common import ACTOR, output, store, table
from fedhub.errors import InvalidRequest
from fedhub.tenancy.models import SignupPolicy, TenantStatus

SIGNUP_POLICY = click.Choice([p.value for p in SignupPolicy])
SIGNUP_POLICY_HELP = (
    "How people with an address in the email domains join: verify_email (a link sent "
    "to the address), admin_approval (the link, then a tenant admin's approval) or "
    "invitation_only."
)


def _tenant_dict(t) -> dict:
    return {
        "slug": t.slug,
        "name": t.name,
        "tier": t.tier,
        "status": str(t.status),
        "allowed_email_domains": t.allowed_email_domains,
        "signup_policy": str(t.signup_policy),
        "overrides": t.overrides,
        "users": sorted((m.username, str(m.role)) for m in t.memberships)
        if "memberships" in t.__dict__
        else None,
        "created_at": t.created_at,
    }


def parse_overrides(pairs: tuple[str, ...]) -> dict:
    """``key=value`` pairs; values are YAML (numbers, booleans, lists), ``key=`` removes."""
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidRequest(f"override {pair!r} must look like key=value")
        *parents, leaf = key.split(".")
        node = result
        for part in parents:  # security.password.min_length nests at any depth
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InvalidRequest(f"override {pair!r} sets inside {part!r}, which is a value")
        node[leaf] = yaml.safe_load(value) if value else None
    return result


@click.group("tenant")
def command():
    """Manage tenants (organisations)."""


@command.command("create")
@click.argument("slug")
@click.option("--name", help="Display name (default: the slug).")
@click.option("--tier", default="free", show_default=True)
@click.option(
    "--email-domain",
    "domains",
    multiple=True,
    help="Allow sign-up from this email domain (repeatable).",
)
@click.option(
    "--override",
    "overrides",
    multiple=True,
    help="key=value override of a tier quota (repeatable).",
)
@click.option(
    "--signup-policy",
    type=SIGNUP_POLICY,
    default=SignupPolicy.VERIFY_EMAIL.value,
    show_default=True,
    help=SIGNUP_POLICY_HELP,
)
@click.pass_context
def create(ctx, slug, name, tier, domains, overrides, signup_policy):
    """Create a tenant."""
    s = store(ctx)
    t = s.create_tenant(
        slug, name, tier, email_domains=domains, overrides=parse_overrides(overrides), actor=ACTOR
    )
    if signup_policy != SignupPolicy.VERIFY_EMAIL.value:
        s.set_signup_policy(slug, signup_policy, actor=ACTOR)
    click.echo(f"Created tenant {t.slug} ({t.tier}, sign-up: {signup_policy}).")


@command.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_(ctx, as_json):
    """List tenants."""
    tenants = store(ctx).list_tenants()
    rows = [[t.slug, t.name, t.tier, t.status, len(t.memberships)] for t in tenants]
    output(
        [_tenant_dict(t) for t in tenants],
        as_json,
        table(rows, ["SLUG", "NAME", "TIER", "STATUS", "USERS"]),
    )


@command.command("show")
@click.argument("slug")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show(ctx, slug, as_json):
    """Show a tenant, its users and its effective quotas."""
    s = store(ctx)
    t = s.get_tenant(slug)
    data = _tenant_dict(t)
    data["effective_tier"] = s.effective_tier(t).model_dump()
    text = yaml.safe_dump({k: v for k, v in data.items() if k != "created_at"}, sort_keys=False)
    output(data, as_json, text.rstrip())


@command.command("update")
@click.argument("slug")
@click.option("--name")
@click.option("--tier")
@click.option("--email-domain", "domains", multiple=True, help="Replace the allowed email domains.")
@click.option(
    "--override", "overrides", multiple=True, help="key=value (key= removes the override)."
)
@click.option("--signup-policy", type=SIGNUP_POLICY, default=None, help=SIGNUP_POLICY_HELP)
@click.pass_context
def update(ctx, slug, name, tier, domains, overrides, signup_policy):
    """Change a tenant's name, tier, email domains, overrides or sign-up policy."""
    s = store(ctx)
    if name or tier or domains or overrides or not signup_policy:
        s.update_tenant(
            slug,
            name=name,
            tier=tier,
            email_domains=domains or None,
            overrides=parse_overrides(overrides) if overrides else None,
            actor=ACTOR,
        )
    if signup_policy:
        s.set_signup_policy(slug, signup_policy, actor=ACTOR)
    click.echo(f"Updated tenant {slug}.")


@command.command("suspend")
@click.argument("slug")
@click.option("--reason", default=None)
@click.pass_context
def suspend(ctx, slug, reason):
    """Suspend a tenant: its users cannot log in or start servers."""
    store(ctx).set_status(slug, TenantStatus.SUSPENDED, reason=reason, actor=ACTOR)
    click.echo(f"Suspended tenant {slug}.")


@command.command("resume")
@click.argument("slug")
@click.pass_context
def resume(ctx, slug):
    """Resume a suspended tenant."""
    store(ctx).set_status(slug, TenantStatus.ACTIVE, actor=ACTOR)
    click.echo(f"Resumed tenant {slug}.")


@command.command("delete")
@click.argument("slug")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def delete(ctx, slug, yes):
    """Delete a tenant and its users' memberships."""
    if not yes:
        click.confirm(f"Delete tenant {slug} and all its users?", abort=True)
    users = store(ctx).delete_tenant(slug, actor=ACTOR)
    click.echo(f"Deleted tenant {slug} ({len(users)} users removed).")
