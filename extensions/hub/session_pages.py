"""The sessions page (``/hub/fedhub/sessions``) and API (``/hub/api/fedhub/...``).

Who may do what follows the hub's own scopes, so a narrowed token can do less:

- a user's own sessions: listed with ``read:tokens``, ended with ``tokens``
  (sessions are how the hub hands out OAuth tokens; every user holds both on
  themselves);
- a tenant admin holds ``admin:users`` on their tenant's group, a platform
  admin on everyone: that lists and ends a member's sessions;
- anyone else gets 404, as for a user who does not exist (another tenant's
  admin learns nothing), and 403 only when they can see the sessions but not
  end them.

API tokens (not tied to a browser) are listed beside the sessions; creating and
revoking them stays on JupyterHub's own ``/hub/token`` page.
"""

from __future__ import annotations

import json

from jupyterhub import orm
from jupyterhub.handlers import BaseHandler
from jupyterhub.user import User
from tornado import web

from fedhub.errors import Forbidden, NotFound
from fedhub.extensions.hub.api import FedhubAPIHandler
from fedhub.extensions.hub.sessions import signed_session_id
from fedhub.tenancy.sessions import EndReason


class _SessionsAccess:
    """Whose sessions the caller may see and end (a mixin of the page and the API)."""

    def subject(self, user_name: str | None, *, end: bool) -> orm.User:
        """The hub user whose sessions are asked for (the caller's own by default)."""
        caller = self.current_user
        if caller is None:
            raise Forbidden("log in, or send a token (Authorization: token ...)")
        if not isinstance(caller, User):
            raise NotFound("no such user")  # a service has no sessions
        orm_user = orm.User.find(self.db, user_name) if user_name else caller.orm_user
        if orm_user is None or not (self._may("read:tokens", orm_user) or self._admin(orm_user)):
            raise NotFound(f"no such user: {user_name}")
        if end and not (self._may("tokens", orm_user) or self._admin(orm_user)):
            raise Forbidden(f"you may not end {orm_user.name}'s sessions")
        return orm_user

    def _may(self, scope: str, orm_user: orm.User) -> bool:
        return bool(self.get_scope_filter(scope)(orm_user, kind="user"))

    def _admin(self, orm_user: orm.User) -> bool:
        return orm_user.id != self.current_user.id and self._may("admin:users", orm_user)

    def end_sessions(self, orm_user: orm.User, *, only=None, keep=frozenset()) -> list[str]:
        caller = self.current_user.name
        why = EndReason.USER if caller == orm_user.name else EndReason.ADMIN
        ended = self.fedhub_sessions.end(
            orm_user.name, by=caller, why=why, only=only, keep=keep, handler=self
        )
        return [s.id for s in ended]

    def current_session(self) -> str | None:
        """This browser's session (None for token requests)."""
        if getattr(self, "_token_authenticated", False):
            return None
        return signed_session_id(self)


class _SessionsAPI(_SessionsAccess, FedhubAPIHandler):
    """The sessions API: fedhub's error shape, the access rules of the page."""


class SessionsAPIHandler(_SessionsAPI):
    """``GET``: a user's live sessions and API tokens; ``DELETE``: end all of them but
    the caller's own browser session (``?all=1``: that one too)."""

    async def get(self, user_name=None):
        orm_user = self.subject(user_name, end=False)
        current = self.current_session()
        sessions = [
            {**s.public(), "current": s.id == current}
            for s in self.fedhub_sessions.book.list(orm_user.name)
        ]
        tokens = [self.token_model(t) for t in orm_user.api_tokens if t.session_id is None]
        self.write(json.dumps({"sessions": sessions, "tokens": tokens}))

    async def delete(self, user_name=None):
        orm_user = self.subject(user_name, end=True)
        current = self.current_session()
        keep = {current} if current and self.get_argument("all", "") not in ("1", "true") else set()
        self.write(json.dumps({"ended": self.end_sessions(orm_user, keep=keep)}))


class SessionAPIHandler(_SessionsAPI):
    """``DELETE``: end one session (404 if it is not the user's or has ended)."""

    async def delete(self, *args):
        user_name, session_id = args if len(args) == 2 else (None, args[0])
        orm_user = self.subject(user_name, end=True)
        ended = self.end_sessions(orm_user, only={session_id})
        if not ended:
            raise NotFound("no such live session")
        self.write(json.dumps({"ended": ended}))


class SessionsPage(_SessionsAccess, BaseHandler):
    """``/hub/fedhub/sessions``: your sessions and tokens, with buttons to end them."""

    @web.authenticated
    async def get(self):
        await self._page()

    @web.authenticated
    async def post(self):
        orm_user = self.subject(None, end=True)
        current = self.current_session()
        target = self.get_body_argument("session", "")
        if target == "others":
            ended = self.end_sessions(orm_user, keep={current} if current else set())
        else:
            ended = self.end_sessions(orm_user, only={target})
        if current in ended:
            # this browser's own session: log it out now, not at its next request
            self.clear_login_cookie()
            self.redirect(self.get_login_url())
            return
        await self._page(notice=f"Ended {len(ended)} session(s).")

    async def _page(self, notice: str | None = None):
        user = self.current_user
        current = self.current_session()
        sessions = self.fedhub_sessions.book.list(user.name)
        tokens = [t for t in user.orm_user.api_tokens if t.session_id is None]
        html = await self.render_template(
            "sessions.html",
            sessions=sessions,
            current=current,
            tokens=tokens,
            notice=notice,
        )
        self.finish(html)


def handlers() -> list[tuple]:
    """Routes relative to the hub's prefix (``/hub/``)."""
    api = r"/api/fedhub"
    return [
        (r"/fedhub/sessions", SessionsPage),
        (rf"{api}/sessions", SessionsAPIHandler),
        (rf"{api}/sessions/([0-9a-f]+)", SessionAPIHandler),
        (rf"{api}/users/([^/]+)/sessions", SessionsAPIHandler),
        (rf"{api}/users/([^/]+)/sessions/([0-9a-f]+)", SessionAPIHandler),
    ]
