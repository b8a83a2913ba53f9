"""Tenancy operations: the one place that changes tenants, users and roles.

The CLI, the authenticators and the services all go through :class:`TenantStore`,
so every change is validated the same way, bumps the tenancy revision (which the
hub's mirror watches) and is reported as an audit event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, selectinload

from fedhub import events, limits
from fedhub.db import session_scope
from fedhub.db.base import utcnow
from fedhub.errors import Conflict, InvalidRequest, NotFound, QuotaExceeded
from fedhub.tenancy import members, passwords, plans
from fedhub.tenancy.checks import (  # noqa: F401  (SLUG_RE, EMAIL_RE: re-exported)
    EMAIL_RE,
    SLUG_RE,
    bump_revision,
    validate_domains,
    validate_password,
    validate_slug,
    validate_username,
)
from fedhub.tenancy.models import (
    LocalCredential,
    Membership,
    Revision,
    Role,
    Tenant,
    TenantStatus,
)
from fedhub.tenancy.signup import SignupMixin
from fedhub.tenancy.totp import TotpSecretBox, default_box
from fedhub.tiers import Tier, TierCatalog, load_tiers


@dataclass(frozen=True)
class UserInfo:
    """A read-only view of a user's place in fedhub (safe to pass around)."""

    username: str
    role: Role
    tenant: str | None
    tenant_status: TenantStatus | None
    tier: str | None
    email: str | None = None

    @property
    def is_platform_admin(self) -> bool:
        return self.role == Role.PLATFORM_ADMIN


#: the columns of a UserInfo, in its order
_USER_INFO = select(
    Membership.username,
    Membership.role,
    Tenant.slug,
    Tenant.status,
    Tenant.tier,
    Membership.email,
).outerjoin(Tenant, Membership.tenant_id == Tenant.id)


class TenantStore(SignupMixin):
    """Tenants, memberships and local credentials in fedhub's database."""

    def __init__(
        self,
        db: str | Engine | None = None,
        tiers: TierCatalog | None = None,
        totp_box: TotpSecretBox | None = None,
    ):
        self.db = db
        # the file's tiers and the database's (docs/tier-templates.md)
        self.tiers = tiers or load_tiers(db=db if isinstance(db, str) else None)
        self._totp_box = totp_box

    @property
    def totp_box(self) -> TotpSecretBox:
        """What encrypts TOTP secrets (default: the key file the environment names)."""
        return self._totp_box or default_box()

    def session(self) -> AbstractContextManager[Session]:
        """A transaction: commits on success, rolls back on error (see ``fedhub.db.share_session``)."""
        return session_scope(self.db)

    # -- reading -----------------------------------------------------------

    def revision(self) -> int:
        with self.session() as s:
            return s.execute(select(Revision.value).where(Revision.id == 1)).scalar_one()

    def list_tenants(self) -> list[Tenant]:
        with self.session() as s:
            return list(
                s.scalars(
                    select(Tenant).options(selectinload(Tenant.memberships)).order_by(Tenant.slug)
                )
            )

    def get_tenant(self, slug: str) -> Tenant:
        with self.session() as s:
            return self._tenant(s, slug, load_members=True)

    def effective_tier(self, tenant: Tenant) -> Tier:
        return self.tiers.effective(tenant.tier, tenant.overrides)

    def user(self, username: str) -> UserInfo | None:
        # one statement, plain columns, no ORM objects: the hub asks this when it refreshes
        # a user's standing (auth_refresh_age) and the user is not in its cache
        with self.session() as s:
            row = s.execute(_USER_INFO.where(Membership.username == username)).first()
            return None if row is None else UserInfo(*row)

    def users(self) -> dict[str, UserInfo]:
        """Every membership, by username, in one statement (the hub's standing cache)."""
        with self.session() as s:
            return {row[0]: UserInfo(*row) for row in s.execute(_USER_INFO)}

    def memberships(self) -> list[Membership]:
        with self.session() as s:
            return list(s.scalars(select(Membership).options(selectinload(Membership.tenant))))

    # -- tenants -----------------------------------------------------------

    def create_tenant(
        self,
        slug: str,
        name: str | None = None,
        tier: str = "free",
        *,
        email_domains: Iterable[str] = (),
        overrides: Mapping[str, Any] | None = None,
        actor: str | None = None,
    ) -> Tenant:
        validate_slug(slug)
        self.tiers.get(tier)
        overrides = dict(overrides or {})
        self.tiers.effective(tier, overrides)
        with self.session() as s:
            if s.scalar(select(Tenant).where(Tenant.slug == slug)):
                raise Conflict(f"tenant {slug!r} already exists")
            tenant = Tenant(
                slug=slug,
                name=name or slug,
                tier=tier,
                status=TenantStatus.ACTIVE,
                allowed_email_domains=validate_domains(email_domains),
                overrides=overrides,
            )
            s.add(tenant)
            plans.record_change(s, slug, tier, overrides, actor=actor)
            bump_revision(s)
        events.emit("tenant.created", tenant=slug, actor=actor, target=slug, details={"tier": tier})
        return tenant

    def update_tenant(
        self,
        slug: str,
        *,
        name: str | None = None,
        tier: str | None = None,
        email_domains: Iterable[str] | None = None,
        overrides: Mapping[str, Any] | None = None,
        actor: str | None = None,
    ) -> Tenant:
        with self.session() as s:
            tenant, changes = self.update_tenant_in(
                s,
                slug,
                name=name,
                tier=tier,
                email_domains=email_domains,
                overrides=overrides,
                actor=actor,
            )
        self.emit_tenant_updated(slug, changes, actor)
        return tenant

    def update_tenant_in(
        self,
        s: Session,
        slug: str,
        *,
        name: str | None = None,
        tier: str | None = None,
        email_domains: Iterable[str] | None = None,
        overrides: Mapping[str, Any] | None = None,
        actor: str | None = None,
    ) -> tuple[Tenant, dict[str, Any]]:
        """:meth:`update_tenant` in an open transaction (an approved request's change):
        returns the tenant and the changes, for :meth:`emit_tenant_updated` once committed."""
        tenant = self._tenant(s, slug)
        changes: dict[str, Any] = {}
        new_tier = tier or tenant.tier
        new_overrides = dict(tenant.overrides)
        if overrides is not None:
            new_overrides.update(overrides)
            new_overrides = {k: v for k, v in new_overrides.items() if v is not None}
        self.tiers.effective(new_tier, new_overrides)
        if name is not None and name != tenant.name:
            changes["name"] = [tenant.name, name]
            tenant.name = name
        if tier is not None and tier != tenant.tier:
            changes["tier"] = [tenant.tier, tier]
            tenant.tier = tier
        if email_domains is not None:
            tenant.allowed_email_domains = validate_domains(email_domains)
            changes["allowed_email_domains"] = tenant.allowed_email_domains
        if new_overrides != tenant.overrides:
            changes["overrides"] = new_overrides
            tenant.overrides = new_overrides
        if "tier" in changes or "overrides" in changes:  # billing prorates from today
            plans.record_change(s, slug, new_tier, new_overrides, actor=actor)
        bump_revision(s)
        return tenant, changes

    @staticmethod
    def emit_tenant_updated(slug: str, changes: dict[str, Any], actor: str | None) -> None:
        events.emit("tenant.updated", tenant=slug, actor=actor, target=slug, details=changes)
        if "tier" in changes:
            events.emit(
                "tenant.tier_changed",
                tenant=slug,
                actor=actor,
                target=slug,
                details={"from": changes["tier"][0], "to": changes["tier"][1]},
            )

    def set_status(
        self,
        slug: str,
        status: TenantStatus,
        *,
        reason: str | None = None,
        actor: str | None = None,
    ) -> Tenant:
        with self.session() as s:
            tenant = self._tenant(s, slug)
            tenant.status = status
            tenant.suspended_reason = reason if status == TenantStatus.SUSPENDED else None
            bump_revision(s)
        action = "tenant.suspended" if status == TenantStatus.SUSPENDED else "tenant.resumed"
        events.emit(
            action,
            tenant=slug,
            actor=actor,
            target=slug,
            severity="warning",
            details={"reason": reason} if reason else None,
        )
        return tenant

    def delete_tenant(self, slug: str, *, actor: str | None = None) -> list[str]:
        """Delete a tenant, its memberships and its users' local credentials."""
        with self.session() as s:
            tenant = self._tenant(s, slug, load_members=True)
            usernames = [m.username for m in tenant.memberships]
            for cred in s.scalars(
                select(LocalCredential).where(LocalCredential.username.in_(usernames))
            ):
                s.delete(cred)
            s.delete(tenant)
            bump_revision(s)
        events.emit(
            "tenant.deleted",
            tenant=slug,
            actor=actor,
            target=slug,
            severity="warning",
            details={"users": usernames},
        )
        return usernames

    # -- users -------------------------------------------------------------

    def add_user(
        self,
        username: str,
        tenant: str | None,
        role: Role | str = Role.MEMBER,
        *,
        password: str | None = None,
        password_hash: str | None = None,
        email: str | None = None,
        actor: str | None = None,
    ) -> Membership:
        """Add ``username`` to ``tenant`` with ``role``, with a local ``password`` if given.

        ``password_hash`` is ``passwords.hash_password(password)`` when the caller already
        has it (the demo users share one password: hashed once, not once a user).
        """
        validate_username(username)
        role = Role(role)
        if tenant is None and role != Role.PLATFORM_ADMIN:
            raise InvalidRequest(f"a {role} must belong to a tenant")
        if password is not None:
            validate_password(password)
        with self.session() as s:
            if s.scalar(select(Membership).where(Membership.username == username)):
                raise Conflict(f"user {username!r} already exists")
            t = self._tenant(s, tenant) if tenant else None
            if t is not None:
                self._check_user_quota(s, t)
            m = Membership(username=username, tenant_id=t.id if t else None, role=role, email=email)
            s.add(m)
            if password is not None:
                password_hash = password_hash or passwords.hash_password(password)
                s.add(LocalCredential(username=username, password_hash=password_hash))
            bump_revision(s)
        events.emit(
            "user.created", tenant=tenant, actor=actor, target=username, details={"role": str(role)}
        )
        return m

    def _check_user_quota(self, s: Session, tenant: Tenant) -> None:
        limit = self.effective_tier(tenant).max_users
        count = s.scalar(
            select(func.count()).select_from(Membership).where(Membership.tenant_id == tenant.id)
        )
        if count >= limit:
            raise QuotaExceeded(
                f"tenant {tenant.slug!r} has {count} of {limit} users allowed by its "
                f"{tenant.tier} tier: remove a user or upgrade the tier",
                details=limits.details("max_users", limit, count, 1),
            )

    def set_role(
        self,
        username: str,
        role: Role | str,
        *,
        tenant: str | None = None,
        actor: str | None = None,
    ) -> Membership:
        """Change a user's role (``fedhub user set-role``, and the tenancy API).

        With ``tenant`` (a tenant admin's change, :mod:`fedhub.tenancy.members`) the
        user must be in that tenant, the new role is a tenant's role, and the tenant
        keeps at least one tenant admin (409 otherwise)."""
        role = members.parse_role(role)
        with self.session() as s:
            m = self._membership(s, username)
            if tenant is not None:
                members.check_role_change(s, m, role, tenant)
            if m.tenant_id is None and role != Role.PLATFORM_ADMIN:
                raise InvalidRequest(f"user {username!r} has no tenant; add them to one first")
            old = m.role
            m.role = role
            tenant = m.tenant.slug if m.tenant else None
            bump_revision(s)
        events.emit(
            "user.role_changed",
            tenant=tenant,
            actor=actor,
            target=username,
            details={"from": str(old), "to": str(role)},
        )
        return m

    def remove_user(self, username: str, *, actor: str | None = None) -> None:
        with self.session() as s:
            m = self._membership(s, username)
            tenant = m.tenant.slug if m.tenant else None
            s.delete(m)
            cred = s.get(LocalCredential, username)
            if cred:
                s.delete(cred)
            bump_revision(s)
        events.emit("user.removed", tenant=tenant, actor=actor, target=username, severity="warning")

    def set_password(
        self, username: str, password: str, *, password_hash: str | None = None
    ) -> None:
        """Set ``username``'s local password (``password_hash``: as in :meth:`add_user`)."""
        validate_password(password)
        password_hash = password_hash or passwords.hash_password(password)
        with self.session() as s:
            self._membership(s, username)
            cred = s.get(LocalCredential, username)
            if cred is None:
                s.add(LocalCredential(username=username, password_hash=password_hash))
            else:
                cred.password_hash = password_hash
                cred.failed_attempts = 0
                cred.locked_until = None

    def enable_totp(self, username: str) -> str:
        """Turn on TOTP for a user and return the new secret (shown once, never logged).

        The database gets the secret encrypted (:mod:`fedhub.tenancy.totp`), never clear.
        """
        secret = passwords.new_totp_secret()
        sealed = self.totp_box.seal(secret)
        with self.session() as s:
            cred = s.get(LocalCredential, username)
            if cred is None:
                raise NotFound(f"user {username!r} has no local password")
            cred.totp_secret = sealed
            cred.totp_enabled = True
            cred.totp_last_counter = None
            tenant = self._membership(s, username).tenant
        events.emit(
            "auth.totp_enrolled",
            tenant=tenant.slug if tenant else None,
            actor=username,
            target=username,
        )
        return secret

    # -- service accounts ----------------------------------------------------

    def add_service_account(self, name: str, tenant: str, *, actor: str | None = None) -> None:
        """A pipeline's account in ``tenant``: no password and no login, only API keys
        (``fedhub keys``, :mod:`fedhub.extensions.hub.keys_api`). It counts as a user."""
        self.add_user(name, tenant, Role.SERVICE_ACCOUNT, actor=actor)

    def service_accounts(self, tenant: str) -> list[str]:
        with self.session() as s:
            t = self._tenant(s, tenant)
            return sorted(
                s.scalars(
                    select(Membership.username).where(
                        Membership.tenant_id == t.id, Membership.role == Role.SERVICE_ACCOUNT
                    )
                )
            )

    def service_account(self, name: str, tenant: str | None = None) -> UserInfo:
        """The service account ``name`` (of ``tenant``, if named), else 404."""
        info = self.user(name)
        if info is None or info.role != Role.SERVICE_ACCOUNT or tenant not in (None, info.tenant):
            raise NotFound(f"no service account {name!r}")
        return info

    # -- helpers -----------------------------------------------------------

    def _tenant(self, s: Session, slug: str, load_members: bool = False) -> Tenant:
        q = select(Tenant).where(Tenant.slug == slug)
        if load_members:
            q = q.options(selectinload(Tenant.memberships))
        tenant = s.scalar(q)
        if tenant is None:
            raise NotFound(f"no tenant {slug!r}")
        return tenant

    def _membership(self, s: Session, username: str) -> Membership:
        m = s.scalar(
            select(Membership)
            .options(selectinload(Membership.tenant))
            .where(Membership.username == username)
        )
        if m is None:
            raise NotFound(f"no user {username!r}")
        return m

    @property
    def security(self):
        """Passwords, MFA enrolment and IP allowlists under the tier's security policy."""
        from fedhub.tenancy.security import AccountSecurity

        return AccountSecurity(self)


def lockout_state(cred: LocalCredential, now: datetime | None = None) -> datetime | None:
    """When the account is locked until, or None when it is not locked."""
    now = now or utcnow()
    if cred.locked_until and cred.locked_until > now:
        return cred.locked_until
    return None
