"""Hub sessions that users can see and end, with their tier's lifetimes.

JupyterHub's login cookie names a *user*: all of a user's browsers carry the
same ``cookie_id``, so the hub alone cannot log out one browser. What tells
browsers apart is the session id each login gets (``jupyterhub-session-id``),
which the hub also stamps on the OAuth tokens that session hands to services
and servers. fedhub keeps a row per session id
(:class:`fedhub.tenancy.sessions.HubSession`) and checks it on every
cookie-authenticated hub request.

JupyterHub has no request middleware, so :func:`install` wraps (never
replaces) three cookie methods of the hub's ``BaseHandler``, which every page
and API handler inherits:

- ``set_login_cookie`` (every successful login, local or OIDC): a fresh
  session id, a row, and ``fedhub-session``, a cookie signed with the hub's
  cookie secret that carries the id. The session id cookie itself is plain
  text, readable by services and listed by the hub's token API, so it proves
  nothing; the signed copy does.
- ``get_current_user_cookie`` (identifying the browser): the signed id must
  match the session cookie and name a live row of that user, within its tier's
  ``security.sessions`` lifetimes. Otherwise the hub's own logout runs
  (cookies cleared) and the request is anonymous: a page redirects to the login
  form, an API call gets 403. An expired session is ended first (``why`` idle
  or absolute). The cost is one read by primary key (joined to the tenant's
  tier) per request, and a write at most once a minute (``last_seen_at``).
  Browsers logged in before fedhub tracked sessions have no signed cookie and
  log in once more.
- ``clear_login_cookie`` (logout): the row is ended (``why`` logout).

Ending a session (:meth:`SessionTracker.end`) also deletes the OAuth tokens
and codes the hub issued to it, so services and servers stop accepting that
browser when they next ask the hub (fedhub's services cache an answer for at
most 5 s). Each end is a ``session.ended`` audit event.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Set as AbstractSet

from fedhub import events
from fedhub.addresses import client_ip
from fedhub.clock import get_clock
from fedhub.tenancy.sessions import (
    TOUCH_EVERY,
    EndReason,
    SessionBook,
    SessionView,
    expiry_reason,
)

COOKIE = "fedhub-session"
EXPIRER = "fedhub"  # ended_by of sessions the lifetimes end


class SessionTracker:
    """The session rows of one hub, kept by the wrapped cookie methods (see the module)."""

    def __init__(self, authenticator):
        self.auth = authenticator
        self.book = SessionBook(authenticator.db_url)
        self._lifetimes: dict[tuple[str, str], tuple[int, int]] = {}

    # -- the three moments ------------------------------------------------------

    def start(self, handler, user) -> str:
        """A login: a fresh session id (never one the browser brought), cookies and a row."""
        self._end_previous(handler)
        handler._session_id = session_id = uuid.uuid4().hex
        handler.set_session_cookie()
        handler._set_cookie(COOKIE, session_id, encrypted=True, path=handler.hub.base_url)
        info = self.auth.store.user(user.name)
        self.book.start(
            session_id,
            user.name,
            tenant=info.tenant if info else None,
            now=get_clock().now(),
            ip=client_ip(handler.request),
            user_agent=handler.request.headers.get("User-Agent"),
        )
        return session_id

    def admits(self, handler, user, session_id: str | None, plain_id: str | None) -> bool:
        """Whether the browser's live session lets ``user`` in (ending it if it expired)."""
        if not session_id or session_id != plain_id:
            return False
        view = self.book.get(session_id)
        if view is None or view.username != user.name or not view.active:
            return False
        now = get_clock().now()
        idle, absolute = self.lifetimes(view)
        why = expiry_reason(
            view.created_at, view.last_seen_at, now, idle_minutes=idle, absolute_hours=absolute
        )
        if why is not None:
            self.end(view.username, by=EXPIRER, why=why, only={session_id}, handler=handler)
            return False
        if now - view.last_seen_at >= TOUCH_EVERY:
            self.book.touch(session_id, now, client_ip(handler.request))
        return True

    def logged_out(self, handler, user) -> None:
        """The browser logs out: its session ends (the hub revokes its tokens itself)."""
        session_id = signed_session_id(handler)
        if user is not None and session_id:
            self.end(
                user.name, by=user.name, why=EndReason.LOGOUT, only={session_id}, handler=handler
            )

    # -- ending -------------------------------------------------------------------

    def end(
        self,
        username: str,
        *,
        by: str,
        why: EndReason,
        only: AbstractSet[str] | None = None,
        keep: AbstractSet[str] = frozenset(),
        handler=None,
    ) -> list[SessionView]:
        """End ``username``'s live sessions (``only`` some, never ``keep``); revoke their
        OAuth tokens; one ``session.ended`` event each. Returns the sessions ended."""
        ended = self.book.end(username, by=by, why=why, now=get_clock().now(), only=only, keep=keep)
        if not ended:
            return []
        revoked = self._revoke_tokens(username, {s.id for s in ended})
        client = {}
        if handler is not None:
            client = {
                "source_ip": client_ip(handler.request),
                "user_agent": handler.request.headers.get("User-Agent"),
            }
        for session in ended:
            events.emit(
                "session.ended",
                tenant=session.tenant,
                actor=by,
                target=username,
                details={"session": session.id, "why": why.value, "tokens_revoked": revoked},
                **client,
            )
        self.auth.log.info(
            "Ended %d session(s) of %s (%s, by %s)", len(ended), username, why.value, by
        )
        return ended

    def _revoke_tokens(self, username: str, session_ids: set[str]) -> int:
        """Delete the OAuth tokens and codes the hub issued to these sessions."""
        from jupyterhub import orm

        db = self.auth.parent.db
        user = orm.User.find(db, username)
        if user is None:
            return 0
        tokens = (
            db.query(orm.APIToken)
            .filter(orm.APIToken.user_id == user.id, orm.APIToken.session_id.in_(session_ids))
            .all()
        )
        for token in tokens:
            db.delete(token)
        for code in db.query(orm.OAuthCode).filter(orm.OAuthCode.session_id.in_(session_ids)):
            db.delete(code)
        db.commit()
        return len(tokens)

    def _end_previous(self, handler) -> None:
        """A browser that logs in again (maybe as someone else) ends its earlier session."""
        previous = signed_session_id(handler)
        view = self.book.get(previous) if previous else None
        if view is not None and view.active:
            self.end(
                view.username,
                by=view.username,
                why=EndReason.REPLACED,
                only={previous},
                handler=handler,
            )

    # -- the tier's lifetimes ----------------------------------------------------------

    def lifetimes(self, view: SessionView) -> tuple[int, int]:
        """``(idle_minutes, absolute_hours)`` of the session's tenant (0: no limit).

        Cached per tier and overrides: a tier file is loaded once per process,
        and a tenant's new overrides are a new key.
        """
        if view.tier is None:  # platform admins: the hub cookie's own lifetime
            return 0, 0
        key = (view.tier, json.dumps(view.overrides or {}, sort_keys=True))
        if key not in self._lifetimes:
            policy = self.auth.store.tiers.effective(view.tier, view.overrides).security.sessions
            self._lifetimes[key] = (policy.idle_minutes, policy.absolute_hours)
        return self._lifetimes[key]


def signed_session_id(handler) -> str | None:
    """The session id of the ``fedhub-session`` cookie, if its signature holds."""
    value = handler.get_secure_cookie(COOKIE, max_age_days=handler.cookie_max_age_days)
    return value.decode("ascii", "replace") if value else None


def install(authenticator) -> list[tuple]:
    """Track sessions in this hub process; returns the sessions page and API to route.

    Called from ``TenantAuthenticatorMixin.get_handlers``; the methods are
    wrapped once per process (a second call returns the handlers only).
    """
    from jupyterhub.handlers.base import SESSION_COOKIE_NAME, BaseHandler

    from fedhub.extensions.hub import session_pages

    if getattr(BaseHandler, "fedhub_sessions", None) is None:
        tracker = SessionTracker(authenticator)
        BaseHandler.fedhub_sessions = tracker
        _wrap_cookie_methods(BaseHandler, tracker, SESSION_COOKIE_NAME)
    return session_pages.handlers()


def _wrap_cookie_methods(cls, tracker: SessionTracker, plain_cookie: str) -> None:
    identify = cls.get_current_user_cookie
    set_login = cls.set_login_cookie
    clear_login = cls.clear_login_cookie

    @functools.wraps(identify)
    def get_current_user_cookie(self):
        # decided once per request: the hub calls this several times
        admitted = getattr(self, "_fedhub_session_admitted", None)
        if admitted is False:
            return None
        plain_id = self.get_cookie(plain_cookie)  # before the hub makes up a new one
        user = identify(self)
        if user is None or admitted:
            return user
        self._fedhub_session_admitted = tracker.admits(
            self, user, signed_session_id(self), plain_id
        )
        if self._fedhub_session_admitted:
            return user
        self.log.info("Session of %s ended or unknown: logging this browser out", user.name)
        self.clear_login_cookie()
        return None

    @functools.wraps(set_login)
    def set_login_cookie(self, user):
        tracker.start(self, user)
        self._fedhub_session_admitted = True
        set_login(self, user)
        # set again even when the request carried one: a guard earlier in this
        # response may have cleared it (a browser whose session had ended)
        self.set_hub_cookie(user)

    @functools.wraps(clear_login)
    def clear_login_cookie(self, name=None):
        tracker.logged_out(self, self.get_current_user_cookie())
        clear_login(self, name)
        self.clear_cookie(COOKIE, path=self.hub.base_url)

    cls.get_current_user_cookie = get_current_user_cookie
    cls.set_login_cookie = set_login_cookie
    cls.clear_login_cookie = clear_login_cookie
