"""``fedhub keys ...``: API keys of service accounts (create, list, revoke).

A key is a JupyterHub API token of a service account, written straight into the hub's
database (as ``jupyterhub token`` does), so the hub needs no restart and no admin token.
The account must be known to the hub: a running hub creates its hub user within one
mirror interval of ``fedhub service-accounts create``. Service accounts themselves:
``fedhub service-accounts`` (:mod:`fedhub.cli.service_accounts`).
"""

from __future__ import annotations

import re
from contextlib import contextmanager

import click

from fedhub.cli.common import ACTOR, db_url, output, store, table
from fedhub.errors import InvalidRequest, NotFound

DURATION_RE = re.compile(r"^(\d+)([smhd]?)$")
SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """``30d``, ``12h``, ``90m``, ``3600s`` or ``3600`` -> seconds."""
    m = DURATION_RE.match(text.strip())
    if not m:
        raise InvalidRequest(f"--expires-in {text!r}: use a number with s, m, h or d (e.g. 30d)")
    return int(m.group(1)) * SECONDS[m.group(2)]


@contextmanager
def hub_account(ctx: click.Context, name: str):
    """The service account ``name`` and its hub user, on a session of the hub's database."""
    from jupyterhub import orm
    from sqlalchemy.exc import OperationalError, ProgrammingError
    from sqlalchemy.orm import Session

    from fedhub.db import get_engine
    from fedhub.extensions.hub.keys_api import define_fedhub_scopes

    account = store(ctx).service_account(name)
    define_fedhub_scopes()
    # the hub's tables: in fedhub's database (the default, TenantAuthenticatorMixin.db_url)
    with Session(get_engine(db_url(ctx))) as db:
        try:
            user = orm.User.find(db, name)
        except (OperationalError, ProgrammingError):
            raise NotFound("the hub has not run on this database yet: start it first") from None
        if user is None:
            raise NotFound(
                f"the hub does not know {name} yet: a running hub adds it within one mirror "
                "interval (c.TenantAuthenticatorMixin.mirror_interval); try again then"
            )
        yield account, user


def key_policy(ctx: click.Context):
    """``c.ServiceAccountKeys`` from the configuration file, as the hub reads it."""
    from fedhub.config import default_config_file, load_config_file
    from fedhub.extensions.hub.keys_api import ServiceAccountKeys

    obj = ctx.find_root().obj
    path = obj.get("config_file") or default_config_file(obj["state_dir"])
    return ServiceAccountKeys(config=load_config_file(path)) if path else ServiceAccountKeys()


@click.group("keys")
def command():
    """API keys of service accounts: hub tokens with chosen fedhub scopes and an expiry."""


@command.command("create")
@click.option("--account", required=True, help="The service account.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    help="A fedhub scope the key holds, e.g. custom:fedhub:usage:read (repeat for more).",
)
@click.option("--expires-in", help="How long the key lives: 30d, 12h, 90m (default: 30d).")
@click.option("--note", help="What the key is for (shown in listings).")
def create(account, scopes, expires_in, note):
    """Create a key; prints the token once (it cannot be shown again)."""
    from fedhub.extensions.hub.keys_api import create_key

    ctx = click.get_current_context()
    seconds = key_policy(ctx).expires_in(parse_duration(expires_in) if expires_in else None)
    with hub_account(ctx, account) as (info, user):
        token, model = create_key(user, info, list(scopes), seconds, note, actor=ACTOR)
    click.echo(f"Key {model['id']} of {account}, expires {model['expires_at']}:")
    click.echo(token)


@command.command("list")
@click.option("--account", required=True, help="The service account.")
@click.option("--json", "as_json", is_flag=True)
def list_(account, as_json):
    """List an account's keys (never the tokens)."""
    from fedhub.extensions.hub.keys_api import list_keys

    with hub_account(click.get_current_context(), account) as (_, user):
        keys = list_keys(user)
    rows = [
        [
            k["id"],
            k["note"],
            " ".join(k["scopes"]),
            k["created"],
            k["expires_at"],
            k["last_activity"],
        ]
        for k in keys
    ]
    headers = ["ID", "NOTE", "SCOPES", "CREATED", "EXPIRES", "LAST USED"]
    output(keys, as_json, table(rows, headers))


@command.command("revoke")
@click.option("--account", required=True, help="The service account.")
@click.argument("key_id")
def revoke(account, key_id):
    """Revoke a key at once."""
    from fedhub.extensions.hub.keys_api import revoke_key

    with hub_account(click.get_current_context(), account) as (info, user):
        revoke_key(user, info, key_id, actor=ACTOR)
    click.echo(f"Revoked key {key_id} of {account}.")
