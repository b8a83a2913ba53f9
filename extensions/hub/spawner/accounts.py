"""``UnixAccountSpawner``: each hub user's server runs as a Unix account of its own.

The embedded default's backend (``c.TierSpawner.backend_class``). It is
JupyterHub's ``LocalProcessSpawner`` with two differences that make it usable
without pre-made system users:

* the account is created on first spawn (``useradd --system``, no login shell),
  named ``fedhub-<username>`` (:func:`fedhub.accounts.account_name`) so a hub
  user can never be mapped onto ``root`` or another system account;
* the home is ``home_dir_template`` (the embedded default: ``<state>/homes/<name>``),
  created ``0700`` and owned by that account; the folders above it are 0711 so
  the account can reach its home without listing anyone else's.

The server process drops to the account before ``exec`` (``set_user_setuid``),
so the notebook code of one tenant cannot read the hub's database, keys or
another user's home. Run by a hub that is not root, it cannot switch accounts:
servers then run as the hub's own account, which the launcher, the login page
and ``fedhub doctor`` state plainly.

Process owner: the single-user server and its kernels run as ``fedhub-<username>``;
they can read the platform's Python environment and their own home, nothing of
the hub's state directory.
"""

from __future__ import annotations

import os
import pwd

from jupyterhub.spawner import LocalProcessSpawner, set_user_setuid
from traitlets import Bool, Integer, Unicode

from fedhub import accounts
from fedhub.tenancy import team_folders


class UnixAccountSpawner(LocalProcessSpawner):
    """Local processes, one Unix account per hub user, created on first spawn."""

    home_dir_template = Unicode(
        "/home/{username}",
        config=True,
        help="""Home of each user's server; ``{username}`` is the hub username.

        Created 0700 and owned by the user's account on first spawn. The embedded
        default (``fedhub up``) uses ``<state>/homes/{username}``::

            c.UnixAccountSpawner.home_dir_template = "/srv/fedhub/homes/{username}"
        """,
    )

    account_prefix = Unicode(
        accounts.ACCOUNT_PREFIX,
        config=True,
        help="""Prefix of the system account made for each hub user (``fedhub-alice``).
        A prefix keeps hub usernames out of the system's own account names.""",
    )

    create_accounts = Bool(
        True,
        config=True,
        help="""Create a missing account on first spawn (needs root). With False the
        account must exist (made by an operator or an identity system).""",
    )

    umask = Integer(
        0o022,
        config=True,
        help="""File-creation mask of the user's server and kernels. The home itself is
        0700, so 022 keeps files private to the user while letting tools work as usual.""",
    )

    @property
    def isolated(self) -> bool:
        """True when the server runs as the user's own account (the hub is root)."""
        return accounts.can_isolate()

    @property
    def account(self) -> str:
        return accounts.account_name(self.user.name, self.account_prefix)

    @property
    def home_dir(self) -> str:
        return self.home_dir_template.format(username=self.user.name)

    def _account_entry(self, account: str, home: str) -> pwd.struct_passwd | None:
        return accounts.account_for(
            account,
            home=home,
            create=self.create_accounts,
            setting="c.UnixAccountSpawner.create_accounts",
        )

    #: Unix groups the account joins at spawn (the tier spawner sets its team's group, which
    #: guards the team folder: fedhub.tenancy.team_folders); each must exist already
    extra_groups: tuple[str, ...] = ()

    def prepare_account(
        self, account: str, home: str, groups: tuple[str, ...] = ()
    ) -> pwd.struct_passwd | None:
        """Make sure ``account`` and its private ``home`` exist (blocking; idempotent),
        and that it is in ``groups`` (the process's groups are read at ``exec``).

        Runs in a worker thread, so it takes plain values: ``self.account`` and
        ``self.home_dir`` read the hub's ``User``, whose attributes may lazy-load
        from the hub's database session (fedhub.extensions.hub.session_guard).
        """
        entry = self._account_entry(account, home)
        path = accounts.make_home(home, entry)
        if entry is not None and path.stat().st_uid != entry.pw_uid:
            accounts.chown_tree(path, entry)
        if entry is not None:
            for group in groups:
                team_folders.ensure_member(account, group)
        return entry

    async def start(self):
        import asyncio

        # the hub's User is read here, on the loop; only plain values cross into the thread
        self._entry = await asyncio.to_thread(
            self.prepare_account, self.account, self.home_dir, tuple(self.extra_groups)
        )
        if self._entry is None:
            self.log.warning(
                "fedhub is not running as root: %s's server runs as the hub's own account "
                "and is NOT isolated from other users",
                self.user.name,
            )
        return await super().start()

    def make_preexec_fn(self, name):
        entry = getattr(self, "_entry", None)
        home = self.home_dir
        mask = self.umask
        if entry is None:

            def preexec():
                os.umask(mask)
                os.chdir(home)

            return preexec
        switch = set_user_setuid(entry.pw_name, chdir=False)

        def preexec():
            switch()
            os.umask(mask)
            os.chdir(home)

        return preexec

    def user_env(self, env):
        entry = getattr(self, "_entry", None)
        env["USER"] = entry.pw_name if entry is not None else self.user.name
        env["HOME"] = self.home_dir
        env["SHELL"] = "/bin/bash"
        return env

    def move_certs(self, paths):
        # internal TLS is not used by the embedded default
        return paths
