"""Helpers shared by the CLI commands."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from fedhub import db as fedhub_db
from fedhub.tenancy.store import TenantStore

ACTOR = "cli:" + (os.environ.get("USER") or "unknown")


def db_url(ctx: click.Context) -> str:
    obj = ctx.find_root().obj
    state = Path(obj["state_dir"]).resolve()
    # TOTP secrets are sealed with <state-dir>/keys/totp.key, also with an explicit --db-url
    os.environ.setdefault("FEDHUB_TOTP_KEY_FILE", str(state / "keys" / "totp.key"))
    if obj.get("db_url"):
        return obj["db_url"]
    os.environ.setdefault("FEDHUB_STATE_DIR", str(state))
    return fedhub_db.sqlite_url(state)


def store(ctx: click.Context) -> TenantStore:
    """The tenant store of the configured database, migrated if needed."""
    url = db_url(ctx)
    fedhub_db.ensure_sqlite_dir(url)
    fedhub_db.upgrade(url)
    return TenantStore(url)


def output(data: Any, as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text)


def table(rows: list[list[Any]], headers: list[str]) -> str:
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
