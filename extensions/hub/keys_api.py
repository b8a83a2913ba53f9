"""Service accounts and their API keys, through the hub's REST API (and the ``fedhub`` CLI).

A service account is a fedhub user with the ``service-account`` role in one tenant: no
password, no login (``tenant_auth_model`` refuses it), only keys. A key is a JupyterHub API
token of that user, made with the scopes a tenant admin chose (a subset of the role's
fedhub scopes, filtered to the tenant's group: :func:`fedhub.tenancy.scopes.key_scopes`)
and an expiry. The hub itself keeps a key from outgrowing its account: a token's scopes
are always intersected with its owner's, and deleting the account deletes the hub user
and its tokens with it.

    GET    /hub/api/fedhub/service-accounts[?tenant=]          the tenant's accounts
    POST   /hub/api/fedhub/service-accounts                    {"name", "tenant"?} -> 201
    DELETE /hub/api/fedhub/service-accounts/<name>             the account and its keys -> 204
    GET    /hub/api/fedhub/service-accounts/<name>/keys        id, note, scopes, dates
    POST   /hub/api/fedhub/service-accounts/<name>/keys        {"scopes", "expires_in"?, "note"?}
                                                               -> 201 with the token, shown once
    DELETE /hub/api/fedhub/service-accounts/<name>/keys/<id>   revoke -> 204

Callers are tenant admins (their own tenant) and platform admins (``?tenant=`` or
``"tenant"``), with a token holding ``custom:fedhub:tenant:admin`` for that tenant.
Another tenant's account is answered 404, as one that does not exist. Errors are
``{"error": {"code", "message"}}``. Creating and revoking are audit events
(``key.created``, ``key.revoked``; the account's own are ``user.created``/``user.deleted``).

The functions under "Keys" work on any session of the hub's database: the handlers pass
the hub's own, the CLI (``fedhub keys``) one of its own.
"""

from __future__ import annotations

import json

from jupyterhub import orm
from jupyterhub.scopes import define_custom_scopes, scope_definitions
from jupyterhub.utils import isoformat, maybe_future
from sqlalchemy import inspect
from traitlets import Integer
from traitlets.config import LoggingConfigurable

from fedhub import events
from fedhub.errors import Forbidden, InvalidRequest, NotFound
from fedhub.extensions.hub.api import FedhubAPIHandler
from fedhub.tenancy import scopes as fedhub_scopes
from fedhub.tenancy.models import Role
from fedhub.tenancy.store import UserInfo

API = r"/api/fedhub/service-accounts"


class ServiceAccountKeys(LoggingConfigurable):
    """How long service-account keys live (in ``fedhub_config.py``; the hub and the CLI read it)."""

    default_expires_in = Integer(
        30 * 86400,
        config=True,
        help="""Seconds a key lives when its creator names no expiry (30 days).

            c.ServiceAccountKeys.default_expires_in = 30 * 86400
        """,
    )
    max_expires_in = Integer(
        365 * 86400,
        config=True,
        help="""The longest a key may live, in seconds (a year). Keys never live forever.

            c.ServiceAccountKeys.max_expires_in = 90 * 86400
        """,
    )

    def expires_in(self, requested) -> int:
        """The key's lifetime in seconds, from what its creator asked (None: the default)."""
        if requested is None:
            return self.default_expires_in
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise InvalidRequest("expires_in must be a positive whole number of seconds")
        if requested > self.max_expires_in:
            raise InvalidRequest(
                f"expires_in {requested} is longer than the longest a key may live "
                f"({self.max_expires_in} s, c.ServiceAccountKeys.max_expires_in)"
            )
        return requested


# -- Keys -----------------------------------------------------------------------------


def define_fedhub_scopes() -> None:
    """Make fedhub's scopes known to JupyterHub in this process (the CLI: no hub config)."""
    missing = {k: v for k, v in fedhub_scopes.custom_scopes().items() if k not in scope_definitions}
    if missing:
        define_custom_scopes(missing)


def key_model(token: orm.APIToken) -> dict:
    """What a key's listing shows: never the token itself."""
    return {
        "id": token.api_id,
        "note": token.note,
        "scopes": sorted(token.scopes),
        "created": isoformat(token.created),
        "expires_at": isoformat(token.expires_at),
        "last_activity": isoformat(token.last_activity),
    }


def keys_of(user: orm.User) -> list[orm.APIToken]:
    """The account's tokens, read from the database (not the hub's cached relationship:
    the CLI adds and removes keys from another process)."""
    db = inspect(user).session
    return db.query(orm.APIToken).filter_by(user_id=user.id).order_by(orm.APIToken.id).all()


def list_keys(user: orm.User) -> list[dict]:
    return [key_model(t) for t in keys_of(user)]


def create_key(
    user: orm.User,
    account: UserInfo,
    scopes: list,
    expires_in: int,
    note: str | None,
    actor: str,
) -> tuple[str, dict]:
    """A new key of ``account`` (whose hub user is ``user``): the token, shown once, and its model."""
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise InvalidRequest(
            'scopes must be a list of scope names, e.g. ["custom:fedhub:usage:read"]'
        )
    if note is not None and not isinstance(note, str):
        raise InvalidRequest("note must be a string")
    granted = fedhub_scopes.key_scopes(scopes, account.tenant)
    try:
        token = user.new_api_token(
            note=note or f"key of {account.username}", scopes=granted, expires_in=expires_in
        )
    except ValueError as e:  # JupyterHub: more than the account holds
        raise InvalidRequest(f"the key would hold more than its account: {e}") from None
    model = key_model(orm.APIToken.find(inspect(user).session, token))
    events.emit(
        "key.created",
        tenant=account.tenant,
        actor=actor,
        target=account.username,
        details={"key_id": model["id"], "scopes": granted, "expires_at": model["expires_at"]},
    )
    return token, model


def revoke_key(user: orm.User, account: UserInfo, key_id: str, actor: str) -> None:
    token = next((t for t in keys_of(user) if t.api_id == key_id), None)
    if token is None:
        raise NotFound(f"no key {key_id!r} of {account.username}")
    db = inspect(user).session
    db.delete(token)
    db.commit()
    events.emit(
        "key.revoked",
        tenant=account.tenant,
        actor=actor,
        target=account.username,
        details={"key_id": key_id},
    )


# -- the hub API ------------------------------------------------------------------------


class _AccountsAPI(FedhubAPIHandler):
    """Who may manage which tenant's service accounts, and with which token."""

    def administrator(self) -> UserInfo:
        """The caller, if a tenant admin or platform admin; else 403."""
        user = self.current_user  # a hub User, a hub service (orm.Service) or nobody
        is_user = user is not None and not isinstance(user, orm.Service)
        info = self.store.user(user.name) if is_user else None
        if info is None:
            raise Forbidden("only a tenant's administrators manage its service accounts")
        if info.role not in (Role.TENANT_ADMIN, Role.PLATFORM_ADMIN):
            raise Forbidden(f"your role ({info.role}) may not manage service accounts")
        return info

    def tenant(self, requested: str | None) -> str:
        """The tenant this request manages: the caller's own, or the one a platform admin names."""
        caller = self.administrator()
        if caller.is_platform_admin:
            if not requested:
                raise InvalidRequest("platform admins name the tenant (?tenant=<slug>)")
            self.store.get_tenant(requested)  # 404 when there is none
            tenant = requested
        elif requested and requested != caller.tenant:
            raise NotFound(f"no tenant {requested!r}")
        else:
            tenant = caller.tenant
        self.check_token(tenant)
        return tenant

    def check_token(self, tenant: str) -> None:
        if not fedhub_scopes.granted("tenant:admin", self.expanded_scopes, tenant):
            raise Forbidden(
                "this token does not hold the scope custom:fedhub:tenant:admin for the tenant"
            )

    def account(self, name: str) -> tuple[UserInfo, orm.User | None]:
        """The service account ``name``, if the caller administers its tenant; else 404."""
        caller = self.administrator()
        info = self.store.user(name)
        if (
            info is None
            or info.role != Role.SERVICE_ACCOUNT
            or not (caller.is_platform_admin or info.tenant == caller.tenant)
        ):
            raise NotFound(f"no service account {name!r}")
        self.check_token(info.tenant)
        return info, orm.User.find(self.db, name)

    def actor(self) -> str:
        return self.current_user.name


class ServiceAccountsHandler(_AccountsAPI):
    def get(self):
        tenant = self.tenant(self.get_argument("tenant", None))
        accounts = self.store.service_accounts(tenant)
        keys = {
            u.name: len(keys_of(u))
            for u in self.db.query(orm.User).filter(orm.User.name.in_(accounts))
        }
        listing = [{"name": a, "tenant": tenant, "keys": keys.get(a, 0)} for a in accounts]
        self.write(json.dumps({"service_accounts": listing}))

    def post(self):
        body = self.body()
        tenant = self.tenant(body.get("tenant"))
        name = body.get("name")
        if not isinstance(name, str):
            raise InvalidRequest('expected {"name": "<account name>"}')
        self.store.add_service_account(name, tenant, actor=self.actor())
        self.authenticator.mirror.sync()  # its hub user and role now, so keys can be made
        self.set_status(201)
        self.write(json.dumps({"name": name, "tenant": tenant, "keys": 0}))


class ServiceAccountHandler(_AccountsAPI):
    async def delete(self, name: str):
        info, _ = self.account(name)
        user = self.find_user(name)
        if user is None:  # the mirror never made it: only fedhub's rows
            self.store.remove_user(name, actor=self.actor())
        else:  # as DELETE /hub/api/users/<name> does: membership, hub user, tokens
            await maybe_future(self.authenticator.delete_user(user))
            await user.delete_spawners()
            self.users.delete(user)
        self.set_status(204)


class KeysHandler(_AccountsAPI):
    def get(self, name: str):
        _, user = self.account(name)
        self.write(json.dumps({"keys": list_keys(user) if user else []}))

    def post(self, name: str):
        account, user = self.account(name)
        if user is None:
            raise NotFound(f"no service account {name!r} in the hub yet; try again in a moment")
        body = self.body()
        policy = ServiceAccountKeys(parent=self.authenticator)
        token, model = create_key(
            user,
            account,
            body.get("scopes", []),
            policy.expires_in(body.get("expires_in")),
            body.get("note"),
            actor=self.actor(),
        )
        self.set_status(201)
        self.write(json.dumps({**model, "token": token}))


class KeyHandler(_AccountsAPI):
    def delete(self, name: str, key_id: str):
        account, user = self.account(name)
        if user is None:
            raise NotFound(f"no key {key_id!r} of {name}")
        revoke_key(user, account, key_id, actor=self.actor())
        self.set_status(204)


def handlers() -> list[tuple]:
    """The hub API routes (the hub puts its prefix in front: ``/hub/api/fedhub/...``)."""
    return [
        (API, ServiceAccountsHandler),
        (API + r"/([^/]+)", ServiceAccountHandler),
        (API + r"/([^/]+)/keys", KeysHandler),
        (API + r"/([^/]+)/keys/([^/]+)", KeyHandler),
    ]
