"""``fedhub requests ...``: list, show, approve and reject approval requests.

The operator at the CLI decides as a platform admin would (every request, every kind),
through the same :class:`fedhub.approvals.ApprovalStore` the hub's API calls; the
requester is emailed through the ``c.Mailer`` of the state dir's config file.
Importing this module also loads every request kind, so a sign-up approved with
``fedhub user approve`` decides its ``join_tenant`` request too.
"""

from __future__ import annotations

from pathlib import Path

import click

from fedhub.approvals import ApprovalStore, RequestView, load_kinds
from fedhub.cli.common import ACTOR, output, store, table
from fedhub.db import rls
from fedhub.mail import load_mailer

load_kinds()


def requests_store(ctx: click.Context) -> ApprovalStore:
    obj = ctx.find_root().obj
    state = Path(obj["state_dir"])
    mailer = load_mailer(obj.get("config_file") or state / "jupyterhub_config.py", state)
    return ApprovalStore(store(ctx), mailer, background_mail=False)


@click.group("requests")
def command():
    """Approval requests: tier changes, onboardings, joins, team quotas."""


@command.command("list")
@click.option("--state", help="pending, approved, rejected or withdrawn.")
@click.option("--kind", help="tier_change, onboarding, join_tenant, team_quota...")
@click.option("--tenant", help="One tenant's requests.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_(ctx, state, kind, tenant, as_json):
    """List requests, newest first."""
    with rls.platform():
        views = requests_store(ctx).list(None, state=state, kind=kind, tenant=tenant)
    rows = [[v.id, v.state, v.kind, v.tenant or "-", v.requester, v.summary] for v in views]
    text = table(rows, ["id", "state", "kind", "tenant", "requester", "summary"])
    output([v.to_json() for v in views], as_json, text if rows else "No requests.")


@command.command("show")
@click.argument("request_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def show(ctx, request_id, as_json):
    """Show one request with its comments."""
    with rls.platform():
        view = requests_store(ctx).get(request_id)
    output(view.to_json(comments=True), as_json, _describe(view))


@command.command("approve")
@click.argument("request_id", type=int)
@click.option("--reason", help="Shown to the requester.")
@click.pass_context
def approve(ctx, request_id, reason):
    """Approve a request (its change is made at once)."""
    with rls.platform():
        view = requests_store(ctx).approve(request_id, reason=reason, actor=ACTOR)
    click.echo(f"Request {view.id} approved: {view.summary}.")


@command.command("reject")
@click.argument("request_id", type=int)
@click.option("--reason", required=True, help="Shown to the requester (required).")
@click.pass_context
def reject(ctx, request_id, reason):
    """Reject a request, with the reason the requester is shown."""
    with rls.platform():
        view = requests_store(ctx).reject(request_id, reason=reason, actor=ACTOR)
    click.echo(f"Request {view.id} rejected: {view.summary}.")


def _describe(view: RequestView) -> str:
    lines = [
        f"Request {view.id}: {view.summary}",
        f"  kind:       {view.kind} (approved by: {view.approver})",
        f"  tenant:     {view.tenant or '-'}",
        f"  requester:  {view.requester}"
        + (f" <{view.requester_email}>" if view.requester_email else ""),
        f"  state:      {view.state}",
        f"  created:    {view.created_at:%Y-%m-%d %H:%M} UTC",
    ]
    if view.decided_at:
        lines.append(f"  decided:    {view.decided_at:%Y-%m-%d %H:%M} UTC by {view.decided_by}")
    if view.reason:
        lines.append(f"  reason:     {view.reason}")
    for c in view.comments:
        lines.append(f"  [{c.created_at:%Y-%m-%d %H:%M}] {c.author}: {c.text}")
    return "\n".join(lines)
