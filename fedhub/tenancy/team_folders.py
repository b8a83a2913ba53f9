"""A shared folder per team that only the team's Unix accounts can open (the embedded default).

On the embedded default every hub user's server runs as a Unix account of its own
(:mod:`fedhub.accounts`, ``fedhub-alice``). A team gets a Unix group
(:func:`team_group`: ``fedhub_tm_acme_ml``, at most 32 characters, shortened with a hash
like account names) and the folder ``<root>/<tenant>/<team>`` (:attr:`TeamFolders.root`,
``<state>/team-data`` under ``fedhub up``):

- ``<root>`` and ``<root>/<tenant>``: ``root:root 0711``, so an account can reach a folder
  whose name it knows and list nothing;
- ``<root>/<tenant>/<team>``: ``root:<team group> 2770``: the group's members read and
  write it, files made inside belong to the group (setgid), nobody else enters, not even
  a member of the same tenant in another team.

The team's members' accounts are the group's members: :meth:`TeamFolders.sync` adds and
removes them when the team changes (the teams API), and the tier spawner joins a user's
account to its team's group at spawn (the account may not have existed when the user
joined). A server started before a change keeps the groups it started with: a user
taken out of a team loses the folder at their next server start (``docs/organisations.md``).

Deleting a team removes its group and locks the folder to root (``0700``): the files stay
for an operator. Not root, nothing here can make groups: :attr:`TeamFolders.enabled` is
False and teams have no folder (the launcher says servers are not isolated anyway).

Process owner: runs in the hub (root on the embedded default); it writes only below
``root`` and ``/etc/group`` (``groupadd``, ``gpasswd``, ``groupdel``).
"""

from __future__ import annotations

import grp
import os
import secrets
import stat
import time
from pathlib import Path

from traitlets import Unicode, default
from traitlets.config import LoggingConfigurable

from fedhub import accounts

#: team groups: the account prefix without its dash, then ``_tm_`` (no user account,
#: which starts ``fedhub-``, and no tenant account, ``fedhub_t_``, can have such a name)
TEAM_GROUP_PREFIX = accounts.ACCOUNT_PREFIX[:-1] + "_tm_"
FOLDER_MODE = 0o2770


def team_group(slug: str, name: str) -> str:
    """The Unix group of team ``name`` of tenant ``slug`` (at most 32 characters).

    ``_`` joins the two: neither a slug nor a team name has one, so no two teams share a
    group (``a-b`` + ``c`` and ``a`` + ``b-c`` would, with a dash)."""
    return accounts.account_name(f"{slug}_{name}", TEAM_GROUP_PREFIX)


def group_members(group: str) -> set[str] | None:
    try:
        return set(grp.getgrnam(group).gr_mem)
    except KeyError:
        return None


def ensure_group(group: str) -> int:
    """The gid of ``group``, made (a system group) if missing."""
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        pass
    result = accounts._run_locked(["groupadd", "--system", group])
    if result.returncode not in (0, 9):  # 9: made meanwhile by another request
        raise accounts.AccountError(f"groupadd {group} failed: {result.stderr.strip()}")
    return grp.getgrnam(group).gr_gid


def join(account: str, group: str) -> None:
    result = accounts._run_locked(["gpasswd", "-a", account, group])
    if result.returncode != 0:
        raise accounts.AccountError(f"gpasswd -a {account} {group}: {result.stderr.strip()}")


def ensure_member(account: str, group: str) -> None:
    """``account`` in ``group`` (both exist)."""
    if account not in (group_members(group) or set()):
        join(account, group)


def leave(account: str, group: str) -> None:
    result = accounts._run_locked(["gpasswd", "-d", account, group])
    if result.returncode not in (0, 3):  # 3: not a member (left meanwhile)
        raise accounts.AccountError(f"gpasswd -d {account} {group}: {result.stderr.strip()}")


class TeamFolders(LoggingConfigurable):
    """Where teams' folders live, and the Unix groups that guard them."""

    root = Unicode(
        config=True,
        help="""Folder that holds each team's shared folder, ``<root>/<tenant>/<team>``
        (mode 2770, group: the team's Unix group). Empty: teams have no folder. Defaults to
        ``$FEDHUB_STATE_DIR/team-data`` (``fedhub up``). Needs the hub to run as root, as
        the per-user accounts do::

            c.TeamFolders.root = "/srv/fedhub/team-data"
        """,
    )

    @default("root")
    def _default_root(self):
        state = os.environ.get("FEDHUB_STATE_DIR", "")
        return os.path.join(state, "team-data") if state else ""

    @property
    def enabled(self) -> bool:
        return bool(self.root) and accounts.can_isolate()

    def folder(self, slug: str, name: str) -> Path:
        return Path(self.root) / slug / name

    def _traversable(self, folder: Path) -> None:
        if not folder.exists():
            folder.mkdir(mode=0o711, parents=False, exist_ok=True)
        os.chown(folder, 0, 0)
        os.chmod(folder, 0o711)  # explicit: the hub's umask is 077

    def sync(self, slug: str, name: str, members: list[str]) -> Path | None:
        """Make the team's group and folder, and its group's members exactly the accounts
        of ``members`` that exist (blocking: run it off the event loop). None: disabled."""
        if not self.enabled:
            return None
        group = team_group(slug, name)
        gid = ensure_group(group)
        root = Path(self.root)
        root.parent.mkdir(parents=True, exist_ok=True)
        self._traversable(root)
        self._traversable(root / slug)
        folder = self.folder(slug, name)
        folder.mkdir(mode=0o700, exist_ok=True)
        st = folder.stat()
        if (st.st_uid, st.st_gid) != (0, gid):
            os.chown(folder, 0, gid)
        if stat.S_IMODE(folder.stat().st_mode) != FOLDER_MODE:
            os.chmod(folder, FOLDER_MODE)
        wanted = {accounts.account_name(u) for u in members}
        wanted = {a for a in wanted if accounts.lookup(a) is not None}
        current = group_members(group) or set()
        for account in sorted(wanted - current):
            join(account, group)
        for account in sorted(current - wanted):
            leave(account, group)
        self.log.info("team folder %s: group %s, %d account(s)", folder, group, len(wanted))
        return folder

    def join_account(self, slug: str, name: str, account: str) -> None:
        """At spawn: ``account`` (which exists now) joins its team's group, made if missing."""
        if not self.enabled:
            return
        group = team_group(slug, name)
        ensure_group(group)
        ensure_member(account, group)

    def remove(self, slug: str, name: str) -> Path | None:
        """A deleted team: its group goes, its folder is locked to root and set aside as
        ``.<team>-deleted-<time>-<random>`` (files kept for an operator; a new team of the same
        name starts empty). Returns where the files went."""
        if not self.enabled:
            return None
        folder = self.folder(slug, name)
        kept = None
        if folder.exists():
            os.chown(folder, 0, 0)
            os.chmod(folder, 0o700)
            stamp = f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
            kept = folder.with_name(f".{name}-deleted-{stamp}")
            folder.rename(kept)
        group = team_group(slug, name)
        if group_members(group) is not None:
            accounts._run_locked(["groupdel", group])
        return kept
