"""fedhub's guard on the hub's own user API: no renames through ``PATCH /hub/api/users/<name>``.

JupyterHub lets anyone with ``admin:users`` rename a user; a tenant admin has
that scope on their tenant's group. A rename leaves fedhub's membership (and
with it the tier, the quotas, the local password) under the old name, and the
renamed user would start as somebody fedhub does not know. Everything keyed by
a username would have to follow too: the home folder, the Unix account, running
servers and their reservations, usage records, the audit trail. fedhub therefore
refuses renames for everybody, platform admins included: the supported way is
``fedhub user add <new>`` and ``fedhub user remove <old>``.

The authenticator registers :class:`TenantUserAPIHandler` through
``get_handlers``; JupyterHub puts an authenticator's handlers before its own, so
this handler answers ``/hub/api/users/<name>`` and every other method is
JupyterHub's unchanged.
"""

from __future__ import annotations

from jupyterhub.apihandlers.users import UserAPIHandler
from jupyterhub.scopes import needs_scope
from tornado import web

from fedhub import events
from fedhub.addresses import client_ip

RENAME_REFUSED = (
    "Renaming users is not supported in fedhub: the membership, home, Unix account "
    "and usage history would stay under the old name. Add the new name with "
    "`fedhub user add` and remove the old one with `fedhub user remove`."
)

# the hub's own pattern (jupyterhub/apihandlers/users.py default_handlers)
USER_API_PATTERN = r"/api/users/([^/]+)"


class TenantUserAPIHandler(UserAPIHandler):
    """JupyterHub's ``/api/users/<name>`` with renames refused (403, the hub's JSON error)."""

    @needs_scope("admin:users")
    async def patch(self, user_name):
        data = self.get_json_body()
        if isinstance(data, dict) and "name" in data and data["name"] != user_name:
            self._refuse_rename(user_name)
        return await super().patch(user_name)

    def _refuse_rename(self, user_name: str):
        store = getattr(self.authenticator, "store", None)
        info = store.user(user_name) if store is not None else None
        events.emit(
            "user.rename_refused",
            tenant=info.tenant if info else None,
            actor=self.current_user.name if self.current_user else None,
            target=user_name,
            result="denied",
            severity="warning",
            details={"reason": "renames_not_supported"},
            source_ip=client_ip(self.request),
            user_agent=self.request.headers.get("User-Agent"),
        )
        raise web.HTTPError(403, RENAME_REFUSED)
