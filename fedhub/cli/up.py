"""``fedhub up``: start the embedded deployment."""

from __future__ import annotations

from pathlib import Path

import click

from fedhub import accounts, launcher


@click.command("up", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option(
    "--demo", is_flag=True, help="Seed the demo tenants acme, globex and initech and their users."
)
@click.option("--port", default=8000, show_default=True, help="Port of the hub on 127.0.0.1.")
@click.option("--ip", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--state-dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Same as `fedhub --state-dir` (this one wins when both are given).",
)
@click.option("--db-url", default=None, help="Same as `fedhub --db-url` (this one wins).")
@click.option(
    "--config-file",
    default=None,
    type=click.Path(dir_okay=False),
    help="Same as `fedhub --config-file` (this one wins).",
)
@click.option(
    "--gateway",
    is_flag=True,
    help="Run the Dask Gateway (per-user Dask clusters; the `gateway` extra; docs/gateway.md).",
)
@click.argument("hub_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def command(ctx, demo, port, ip, state_dir, db_url, config_file, gateway, hub_args):
    """Start JupyterHub with fedhub on http://127.0.0.1:PORT.

    The hub and every service read the fedhub configuration file (`--config-file`, else
    $FEDHUB_CONFIG_FILE, else <state-dir>/fedhub_config.py if it exists).
    Extra arguments go to JupyterHub, e.g. `fedhub up -- --LocalTenantAuthenticator.lockout_seconds=60`.
    Stop with Ctrl-C: the hub, proxy, services and user servers all stop.
    """
    root = ctx.find_root().obj
    state_dir = Path(state_dir or root["state_dir"]).resolve()
    config = launcher.config_file_for(state_dir, config_file or root.get("config_file"))
    url, password, generated = launcher.prepare(
        state_dir, db_url or root.get("db_url"), demo, config
    )
    lctx = launcher.LaunchContext(
        state_dir=state_dir, db_url=url, port=port, ip=ip, config_file=config, gateway=gateway
    )
    click.echo(f"fedhub: state in {state_dir}")
    click.echo(f"fedhub: configuration file {config or '(none: defaults)'}")
    if accounts.can_isolate():
        click.echo("fedhub: each user's server runs as its own Unix account (fedhub-<user>)")
    else:
        click.echo(
            "fedhub: WARNING not root: every user's server runs as this account; "
            "users are NOT isolated (docs/security.md)"
        )
    if demo:
        users = ", ".join(u for u, _, _ in launcher.DEMO_USERS)
        source = "generated" if generated else "from $FEDHUB_DEMO_PASSWORD or the saved file"
        click.echo(f"fedhub: demo users {users}")
        click.echo(f"fedhub: demo password ({source}): {password}")
        click.echo(f"fedhub: also in {state_dir / 'demo-credentials.json'}")
    if launcher.gateway_enabled(lctx):
        click.echo(
            f"fedhub: Dask Gateway at {lctx.hub_url}/services/dask-gateway (docs/gateway.md)"
        )
    click.echo(f"fedhub: open {lctx.hub_url}/hub/login")
    launcher.run_hub(lctx, list(hub_args))
