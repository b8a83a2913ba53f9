"""Leaving fedhub and the periodic mirror, the hub's side (part of
:class:`~fedhub.extensions.hub.tenant_auth.TenantAuthenticatorMixin`).

:class:`DeparturesMixin` retires a user who leaves (``DELETE /hub/api/users/<name>``, or a
removal outside the hub that the mirror notices), stops a suspended tenant's servers, and
runs the periodic mirror that notices both (every ``mirror_interval`` seconds, when the
tenancy revision moves). The file and account work is :mod:`.offboarding`; the mirror
itself :mod:`.mirror`.
"""

from __future__ import annotations

import asyncio

from tornado import web

from fedhub import events
from fedhub.errors import NotFound
from fedhub.extensions.hub import offboarding
from fedhub.extensions.hub.mirror import departed_users
from fedhub.jobs import PeriodicJob


class DeparturesMixin:
    """Retire leaving users, stop suspended tenants' servers, run the periodic mirror.

    Uses the authenticator's ``store``, ``mirror``, ``mirror_interval``,
    ``home_dir_template``, ``archive_dir`` and its ``_departing`` and
    ``_suspended_users`` sets, and its standing cache (``_load_standing``,
    ``_forget_standing``).
    """

    # -- leaving: deletion, removal, suspension (offboarding.py) ---------------

    async def retire_user(self, user, *, remove_membership: bool, how: str) -> None:
        """Stop ``user``'s servers, drop the membership, remove the account, archive the home."""
        name = user.name
        await offboarding.stop_servers(self.parent, user, "user_deleted")
        if any(s.active for s in user.spawners.values()):
            raise web.HTTPError(400, f"{name}'s servers are starting or stopping; try again")
        info = self.store.user(name)
        if remove_membership and info is not None:
            try:
                self.store.remove_user(name, actor=f"hub:{how}")
            except NotFound:
                pass  # removed meanwhile
        try:
            retired = await asyncio.to_thread(
                offboarding.retire_files,
                offboarding.home_of(self.home_dir_template, name),
                self.archive_dir,
                self._account_name(name),
            )
        except (OSError, RuntimeError) as e:
            # the membership is gone (no access); the mirror retries the rest
            self.log.error("Could not remove the account or archive the home of %s: %s", name, e)
            self._departing.add(name)
            raise web.HTTPError(
                503, f"{name} was removed from fedhub but their files could not be archived yet"
            ) from None
        events.emit(
            "user.deleted",
            # a retired hub user whose name is someone else's now: not that tenant's event
            tenant=info.tenant if info and remove_membership else None,
            actor=f"hub:{how}",
            target=name,
            severity="warning",
            details={
                "how": how,
                "home_archived": retired.home_archived,
                "account_removed": retired.account_removed,
            },
        )

    def _account_name(self, username: str) -> str:
        from fedhub import accounts

        config = self.parent.config if self.parent is not None else self.config
        prefix = accounts.ACCOUNT_PREFIX
        if "UnixAccountSpawner" in config and "account_prefix" in config.UnixAccountSpawner:
            prefix = config.UnixAccountSpawner.account_prefix
        return accounts.account_name(username, prefix)

    async def _finish_departures(self) -> None:
        """Delete the hub users of people who left fedhub outside the hub (see mirror.py)."""
        app = self.parent
        retired = []
        for name in sorted(self._departing):
            user = app.users.get(name)
            if user is None or getattr(user, "fedhub_deleting", False):
                self._departing.discard(name)
                continue
            try:
                await self.retire_user(user, remove_membership=False, how="mirror")
                await user.delete_spawners()
                app.users.delete(user)
            except web.HTTPError as e:
                self.log.warning("Retiring %s later: %s", name, e.log_message)
                continue
            self._departing.discard(name)
            retired.append(name)
            self.log.info("fedhub mirror: deleted hub user %s (no longer in fedhub)", name)
        if retired:  # a name given again gets a fresh hub user in its tenant's group
            self.mirror.sync()

    async def _stop_suspended_servers(self) -> None:
        """Suspension takes effect at once: no grace period for running servers."""
        app = self.parent
        # users with servers are always in the hub's in-memory cache: no query per user
        for user in list(app.users.values()):
            if user.name in self._suspended_users and offboarding.live_servers(user):
                await offboarding.stop_servers(app, user, "tenant_suspended")

    # -- the periodic mirror ---------------------------------------------------

    def _start_mirror_loop(self) -> None:
        if self.mirror_interval <= 0 or getattr(self, "_mirror_job", None):
            return
        self._mirror_seen = self.store.revision()
        # (not _forget_standing: at start-up the hub's users must not be touched yet)
        self._load_standing()
        # on the event loop, not in a thread: the store shares the hub's session; an error
        # is logged and the next tick retries (a database hiccup must not stop mirroring)
        self._mirror_job = PeriodicJob(
            "fedhub mirror", self._mirror_once, self.mirror_interval, logger=self.log
        ).start()

    async def _mirror_once(self) -> None:
        revision = self.store.revision()
        if revision != self._mirror_seen:
            self._forget_standing()
            self._departing |= departed_users(self.parent.db, self.store)
            self._suspended_users = self.mirror.sync().suspended_users
            self._mirror_seen = revision
        await self._finish_departures()
        await self._stop_suspended_servers()
