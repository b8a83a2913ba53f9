"""``fedhub audit verify|export|ingest|checkpoint|purge|erase-user|public-key|report``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from fedhub.audit.models import PLATFORM
from fedhub.cli.common import ACTOR, db_url, store


def audit_log(ctx: click.Context):
    """The AuditLog of the configured database and state dir (migrated if needed)."""
    from fedhub.audit import AuditLog

    store(ctx)  # migrates
    state = Path(ctx.find_root().obj["state_dir"]).resolve()
    audit_dir = os.environ.get("FEDHUB_AUDIT_DIR") or str(state / "audit")
    return AuditLog(db_url=db_url(ctx), audit_dir=audit_dir)


def _chain(tenant: str | None) -> str | None:
    return PLATFORM if tenant in ("platform", PLATFORM) else tenant


@click.group("audit")
def command():
    """The tamper-evident audit log: verify, ingest, checkpoint, purge, erase."""


@command.command("verify")
@click.option("--tenant", help="Only this tenant's chain ('platform' for platform events).")
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False, exists=True),
    help="Ed25519 public key (PEM) to check signatures with (default: the audit dir's).",
)
@click.option("--json", "as_json", is_flag=True)
@click.option("--deep", is_flag=True, help="Also check every record's columns against its hash.")
@click.pass_context
def verify_cmd(ctx, tenant, public_key, as_json, deep):
    """Recompute the chains and check them against the signed checkpoints.

    Exits 0 when every chain is intact, 1 naming the first bad record otherwise.
    """
    from fedhub.audit import crypto
    from fedhub.audit.verify import verify

    log = audit_log(ctx)
    public = crypto.load_public_key(Path(public_key).read_bytes()) if public_key else None
    reports = verify(log, _chain(tenant), public, deep=deep)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in reports], indent=2))
    for r in reports if not as_json else ():
        span = f"seq {r.first_seq}-{r.last_seq}" if r.records else "no records"
        if r.ok:
            click.echo(f"{r.tenant}: OK, {r.records} records ({span}), {r.checkpoints} checkpoints")
        else:
            click.echo(f"{r.tenant}: FAILED at seq {r.bad_seq}: {r.problem}")
        for w in r.warnings:
            click.echo(f"{r.tenant}: warning: {w}")
    bad = [r for r in reports if not r.ok]
    if bad:
        first = bad[0]
        click.echo(
            f"Error: audit log of {first.tenant!r} is not intact: first bad record seq "
            f"{first.bad_seq}: {first.problem}",
            err=True,
        )
        sys.exit(1)


@command.command("export")
@click.option("--tenant", help="Only this tenant's chain ('platform' for platform events).")
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True
)
@click.option("--action", help="Only actions starting with this prefix (e.g. 'auth.').")
@click.option("--since", default="", help="Only events at or after this time (ISO 8601).")
@click.option("--until", default="", help="Only events before this time (ISO 8601).")
@click.option("--output", "-o", default="-", help="File to write (default: standard output).")
@click.pass_context
def export_cmd(ctx, tenant, fmt, action, since, until, output):
    """Export events, personal fields decrypted where their keys still exist.

    Streams page by page (constant memory however long the log); the export
    itself is recorded in the audit log, like the service's.
    """
    from fedhub import events
    from fedhub.audit.query import EventFilter, export_lines

    log = audit_log(ctx)
    chain = _chain(tenant)
    flt = EventFilter(
        tenants=[chain] if chain else None,
        action=action,
        since=EventFilter.parse_time(since, "since"),
        until=EventFilter.parse_time(until, "until"),
    ).validate()
    events.emit(
        "audit.exported",
        tenant=None if chain in (None, PLATFORM) else chain,
        actor=ACTOR,
        target=chain or "*",
        details={"format": fmt, "action": action, "actor_filter": False},
    )
    chunks = export_lines(log, flt, fmt)
    if output == "-":
        for chunk in chunks:
            click.echo(chunk, nl=False)
        return
    with open(output, "w", encoding="utf-8", newline="") as out:  # CSV rows end in \r\n
        for chunk in chunks:
            out.write(chunk)


@command.command("ingest")
@click.option(
    "--spool", type=click.Path(file_okay=False), help="Spool directory (default: the state dir's)."
)
@click.option(
    "--checkpoint/--no-checkpoint", default=True, help="Checkpoint the chains that are due."
)
@click.pass_context
def ingest_cmd(ctx, spool, checkpoint):
    """Deliver spooled events into the chains now (the audit service does it periodically)."""
    from fedhub.audit.ingest import SpoolIngester

    log = audit_log(ctx)
    state = Path(ctx.find_root().obj["state_dir"]).resolve()
    spool_dir = spool or os.environ.get("FEDHUB_EVENTS_SPOOL") or str(state / "spool")
    ingester = SpoolIngester(log, spool_dir)
    n = ingester.ingest_once()
    cps = log.checkpoints_due() if checkpoint else []
    click.echo(
        f"ingested {n} events ({ingester.rejected} invalid lines skipped), {len(cps)} checkpoints"
    )


@command.command("checkpoint")
@click.option("--tenant", help="Only this chain (default: every chain with new records).")
@click.pass_context
def checkpoint_cmd(ctx, tenant):
    """Sign a checkpoint of the chains' heads now."""
    from fedhub.audit.verify import chains

    log = audit_log(ctx)
    for name in [_chain(tenant)] if tenant else chains(log):
        cp = log.checkpoint(name)
        if cp:
            click.echo(f"{name}: signed seq {cp['seq']} head {cp['head_hash'][:16]}")


@command.command("purge")
@click.pass_context
def purge_cmd(ctx):
    """Delete records older than each tier's audit_retention_days, behind signed checkpoints."""
    for p in audit_log(ctx).purge():
        click.echo(
            f"{p['tenant']}: purged seq {p['from_seq']}-{p['through_seq']} ({p['records']} records)"
        )


@command.command("erase-user")
@click.argument("username")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def erase_cmd(ctx, username, yes):
    """GDPR erasure: destroy USERNAME's data key, so their personal fields in the
    log become unreadable for good (every hash still verifies)."""
    if not yes:
        click.confirm(
            f"Erase {username}'s personal data from the audit log? This cannot be undone",
            abort=True,
        )
    key_id = audit_log(ctx).erase_subject(username, actor=ACTOR)
    click.echo(f"erased key {key_id}" if key_id else f"no audit data key for {username}")


@command.command("public-key")
@click.pass_context
def public_key_cmd(ctx):
    """Print the checkpoint signing public key (PEM), for auditors."""
    click.echo(audit_log(ctx).keys.public_pem().decode().rstrip())


@command.command("report")
@click.option("--tenant", required=True, help="Tenant slug ('platform' for platform events).")
@click.option("--since", default="", help="Start of the period (ISO 8601; default 30 days ago).")
@click.option("--until", default="", help="End of the period (ISO 8601; default now).")
@click.option("--output", "-o", default="compliance.html", show_default=True)
@click.pass_context
def report_cmd(ctx, tenant, since, until, output):
    """Render the compliance report (papermill + nbconvert) to HTML."""
    from fedhub.audit.report import render_compliance

    log = audit_log(ctx)
    path = render_compliance(
        tenant,
        output,
        period_start=since,
        period_end=until,
        db_url=log.db_url,
        audit_dir=log.audit_dir,
    )
    click.echo(f"wrote {path}")
