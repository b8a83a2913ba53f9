"""Leaving fedhub inside the hub: deleted and removed users, suspended tenants.

Three ways out, one end state:

* ``DELETE /hub/api/users/<name>`` (a tenant admin or platform admin): JupyterHub
  stops the default server and calls ``Authenticator.delete_user``, which ends
  the other servers, removes the membership and password, removes the Unix
  account and archives the home; the hub then deletes its user row, and the
  user's API tokens with it.
* ``fedhub user remove`` / ``fedhub tenant delete`` (outside the hub): only
  fedhub's rows change; the mirror notices within one interval that a hub user
  has no membership any more and finishes the job the same way.
* A username that comes back (added or signed up again) is a new person: when
  the membership is newer than the hub's user row, the old hub user (tokens,
  servers, home, account) is retired before the newcomer uses it.

Suspension stops the tenant's running servers at the next mirror run (no grace
period: a budget overrun keeps the reconciler's grace, a suspension does not).

Everything here runs on the hub's event loop; only file and account work
(:func:`retire_files`) goes to a thread, with plain strings.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from fedhub import accounts
from fedhub.db.base import utcnow

log = logging.getLogger("fedhub.offboarding")


@dataclass(frozen=True)
class Retired:
    """What happened to a leaving user's files and account (for the audit event)."""

    home_archived: bool
    account_removed: bool


def retire_files(home: str | None, archive_dir: str, account: str | None) -> Retired:
    """End the account's processes, delete it, and move the home to the archive (blocking)."""
    removed = accounts.remove_account(account) if account else False
    archived = False
    if home:
        archived = accounts.archive_home(home, archive_dir) is not None
    return Retired(home_archived=archived, account_removed=removed)


def live_servers(user) -> list[tuple[str, object]]:
    """The user's servers that are running and not in the middle of starting or stopping."""
    return [
        (name, spawner)
        for name, spawner in list(user.spawners.items())
        if spawner.active and not spawner.pending
    ]


async def stop_servers(app, user, reason: str) -> list[str]:
    """Stop every running server of ``user`` (proxy route first, as the hub does)."""
    stopped = []

    async def stop(name, spawner):
        spawner.fedhub_stop_reason = reason
        spawner.fedhub_stop_requested = utcnow().isoformat()
        log.warning("Stopping %s (%s)", spawner._log_name, reason)
        await app.proxy.delete_user(user, name)
        await user.stop(name)
        stopped.append(name)

    results = await asyncio.gather(
        *(stop(name, spawner) for name, spawner in live_servers(user)), return_exceptions=True
    )
    for result in results:
        if isinstance(result, Exception):
            log.error("Could not stop a server of %s: %s", user.name, result)
    return stopped


def home_of(template: str, username: str) -> str | None:
    return template.format(username=username) if template else None


def default_archive_dir(state_dir: str) -> str:
    return str(Path(state_dir) / "archive" / "homes")
