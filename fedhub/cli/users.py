"""``fedhub user ...``: add, invite (and invitations, resend-invitation, revoke-invitation),
set-role, remove, password, totp, sign-up requests."""

from __future__ import annotations

import click

from fedhub.cli.common import ACTOR, output, store, table
from fedhub.mail import MailError, load_mailer
from fedhub.tenancy.models import Role
from fedhub.tenancy.passwords import totp_uri

ROLES = click.Choice([r.value for r in Role])


@click.group("user")
def command():
    """Manage users and their roles."""


@command.command("add")
@click.argument("username")
@click.option("--tenant", help="Tenant slug (not needed for a platform-admin).")
@click.option("--role", type=ROLES, default=Role.MEMBER.value, show_default=True)
@click.option("--email")
@click.option(
    "--password",
    envvar="FEDHUB_PASSWORD",
    help="Local password (or $FEDHUB_PASSWORD); omit for SSO users.",
)
@click.pass_context
def add(ctx, username, tenant, role, email, password):
    """Add a user to a tenant with a role (a password must keep the tier's policy)."""
    tenants = store(ctx)
    if password is not None:
        tenants.security.check_new_account(tenant, username, email, password)
    tenants.add_user(username, tenant, role, password=password, email=email, actor=ACTOR)
    click.echo(f"Added {username} ({role}{' of ' + tenant if tenant else ''}).")


@command.command("invite")
@click.argument("email")
@click.option("--tenant", required=True)
@click.option("--role", type=ROLES, default=Role.MEMBER.value, show_default=True)
@click.option("--days", default=7, show_default=True, help="Days the invitation stays valid.")
@click.pass_context
def invite(ctx, email, tenant, role, days):
    """Invite someone to sign up at /hub/signup; prints the invitation code once."""
    from datetime import timedelta

    invitation = store(ctx).invite(tenant, email, role, valid_for=timedelta(days=days), actor=ACTOR)
    click.echo(f"Invitation for {email} to {tenant} as {role}: {invitation.token}")
    click.echo("They sign up at <hub>/hub/signup?invitation=<code>.")


@command.command("invitations")
@click.option("--tenant", required=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def invitations(ctx, tenant, as_json):
    """List a tenant's invitations (pending, accepted, expired, revoked), newest first."""
    views = store(ctx).invitations(tenant)
    data = [v.to_json() for v in views]
    rows = [
        [str(v.id), v.email, str(v.role), v.state, f"{v.expires_at:%Y-%m-%d %H:%M}"] for v in views
    ]
    output(data, as_json, table(rows, ["ID", "EMAIL", "ROLE", "STATE", "EXPIRES"]))


@command.command("resend-invitation")
@click.argument("invitation_id", type=int)
@click.option("--tenant", required=True)
@click.option("--days", default=7, show_default=True, help="Days the new code stays valid.")
@click.pass_context
def resend_invitation(ctx, invitation_id, tenant, days):
    """A new code for an invitation (the old one stops working); prints it once."""
    from datetime import timedelta

    view = store(ctx).resend_invitation(
        tenant, invitation_id, valid_for=timedelta(days=days), actor=ACTOR
    )
    click.echo(f"New invitation code for {view.email} to {tenant}: {view.token}")


@command.command("revoke-invitation")
@click.argument("invitation_id", type=int)
@click.option("--tenant", required=True)
@click.pass_context
def revoke_invitation(ctx, invitation_id, tenant):
    """Revoke an invitation before it is used."""
    view = store(ctx).revoke_invitation(tenant, invitation_id, actor=ACTOR)
    click.echo(f"Invitation {view.id} for {view.email} to {tenant} is revoked.")


@command.command("set-role")
@click.argument("username")
@click.argument("role", type=ROLES)
@click.pass_context
def set_role(ctx, username, role):
    """Change a user's role."""
    store(ctx).set_role(username, role, actor=ACTOR)
    click.echo(f"{username} is now {role}.")


@command.command("remove")
@click.argument("username")
@click.pass_context
def remove(ctx, username):
    """Remove a user from fedhub.

    The membership and local password go at once (no more logins, every
    service refuses the user's tokens). The running hub finishes within one
    mirror interval (c.TenantAuthenticatorMixin.mirror_interval, 5 s): it stops
    the user's servers, deletes the hub user and its API tokens, removes the
    Unix account and archives the home, so the name can be given to someone
    new without handing them anything of the old user.
    """
    store(ctx).remove_user(username, actor=ACTOR)
    click.echo(
        f"Removed {username}. The hub stops their servers, revokes their tokens and "
        "archives their home within one mirror interval."
    )


@command.command("list")
@click.option("--tenant")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_(ctx, tenant, as_json):
    """List users, optionally of one tenant."""
    ms = [
        m
        for m in store(ctx).memberships()
        if tenant is None or (m.tenant and m.tenant.slug == tenant)
    ]
    rows = [[m.username, m.tenant.slug if m.tenant else "-", m.role, m.email or ""] for m in ms]
    data = [
        dict(zip(["username", "tenant", "role", "email"], map(str, r), strict=True)) for r in rows
    ]
    output(data, as_json, table(sorted(rows), ["USERNAME", "TENANT", "ROLE", "EMAIL"]))


@command.command("password")
@click.argument("username")
@click.password_option()
@click.pass_context
def password(ctx, username, password):
    """Set a user's local password under the tier's policy (and unlock the account)."""
    store(ctx).security.change_password(username, password, actor=ACTOR)
    click.echo(f"Password of {username} changed.")


@command.command("totp")
@click.argument("username")
@click.pass_context
def totp(ctx, username):
    """Turn on two-factor login (TOTP) for a user; prints the enrolment URI once."""
    secret = store(ctx).enable_totp(username)
    click.echo("Add this to an authenticator app (shown once):")
    click.echo(totp_uri(secret, username))


@command.command("signups")
@click.option("--tenant")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def signups(ctx, tenant, as_json):
    """List pending sign-up requests (waiting for the email link or for approval)."""
    pending = store(ctx).signup_requests(tenant)
    rows = [
        [p.username, p.tenant, p.email, str(p.status), f"{p.created_at:%Y-%m-%d %H:%M}"]
        for p in pending
    ]
    keys = ["username", "tenant", "email", "status", "requested"]
    data = [dict(zip(keys, r, strict=True)) for r in rows]
    output(data, as_json, table(rows, ["USERNAME", "TENANT", "EMAIL", "STATUS", "REQUESTED"]))


@command.command("approve")
@click.argument("username")
@click.option("--tenant", help="Only if the request is for this tenant.")
@click.option(
    "--notify/--no-notify",
    default=True,
    show_default=True,
    help="Email the requester that they can log in (c.Mailer in <state-dir>/jupyterhub_config.py).",
)
@click.pass_context
def approve(ctx, username, tenant, notify):
    """Approve a sign-up request whose email address is confirmed: it becomes a member."""
    result = store(ctx).approve_signup(username, tenant=tenant, actor=ACTOR)
    click.echo(f"Approved {username}: a member of {result.tenant} now.")
    if notify:
        _notify(
            ctx,
            result.email,
            "Your fedhub account is ready",
            f"Hello {username},\n\nAn administrator of {result.tenant_name} approved your "
            "sign-up: you can log in to fedhub now.\n",
        )


@command.command("reject")
@click.argument("username")
@click.option("--tenant", help="Only if the request is for this tenant.")
@click.option("--reason", help="Recorded in the audit log (not sent to the requester).")
@click.pass_context
def reject(ctx, username, tenant, reason):
    """Reject (delete) a sign-up request; the address may ask again later."""
    store(ctx).reject_signup(username, tenant=tenant, reason=reason, actor=ACTOR)
    click.echo(f"Rejected the sign-up request of {username}.")


def _notify(ctx, to: str, subject: str, text: str) -> None:
    from pathlib import Path

    state = Path(ctx.find_root().obj["state_dir"])
    try:
        load_mailer(state / "jupyterhub_config.py", state_dir=state).send(to, subject, text)
    except MailError as e:
        click.echo(f"Warning: {e} (the approval stands)", err=True)
