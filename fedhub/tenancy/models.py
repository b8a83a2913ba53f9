"""Tenancy tables: tenants, memberships, local credentials (with password history and
MFA recovery codes), invitations, sign-up requests."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Enum, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from fedhub.db.base import Base, utcnow


class Role(enum.StrEnum):
    """A user's role in fedhub; the permission matrix is in :mod:`fedhub.tenancy.roles`."""

    PLATFORM_ADMIN = "platform-admin"
    TENANT_ADMIN = "tenant-admin"
    MEMBER = "member"
    ANALYST = "analyst"
    SERVICE_ACCOUNT = "service-account"


class TenantStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class SignupPolicy(enum.StrEnum):
    """How someone with an email address in a tenant's domains may join it."""

    VERIFY_EMAIL = "verify_email"  # after following a link sent to the address
    ADMIN_APPROVAL = "admin_approval"  # after the link, and a tenant admin's approval
    INVITATION_ONLY = "invitation_only"  # never by domain: invitations only


class SignupStatus(enum.StrEnum):
    AWAITING_EMAIL = "awaiting_email"
    AWAITING_APPROVAL = "awaiting_approval"


def _enum(cls, name):
    return Enum(
        cls, name=name, native_enum=False, values_callable=lambda e: [m.value for m in e], length=32
    )


class Tenant(Base):
    __tablename__ = "fedhub_tenants"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    tier: Mapped[str] = mapped_column(String(63))
    status: Mapped[TenantStatus] = mapped_column(
        _enum(TenantStatus, "tenant_status"), default=TenantStatus.ACTIVE
    )
    allowed_email_domains: Mapped[list[str]] = mapped_column(JSON, default=list)
    overrides: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    suspended_reason: Mapped[str | None] = mapped_column(String(500), default=None)
    # networks its members may log in from (fedhub.tenancy.allowlist); empty: anywhere
    ip_allowlist: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    signup_policy: Mapped[SignupPolicy] = mapped_column(
        _enum(SignupPolicy, "signup_policy"),
        default=SignupPolicy.VERIFY_EMAIL,
        server_default=SignupPolicy.VERIFY_EMAIL.value,
    )
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    memberships: Mapped[list[Membership]] = relationship(
        back_populates="tenant", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def group_name(self) -> str:
        return f"tenant-{self.slug}"

    @property
    def active(self) -> bool:
        return self.status == TenantStatus.ACTIVE


class Membership(Base):
    """A user's place in fedhub: one tenant and one role (platform admins may have no tenant)."""

    __tablename__ = "fedhub_memberships"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(255), unique=True)
    tenant_id: Mapped[int | None] = mapped_column(
        ForeignKey("fedhub_tenants.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[Role] = mapped_column(_enum(Role, "member_role"))
    email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    tenant: Mapped[Tenant | None] = relationship(back_populates="memberships")


class LocalCredential(Base):
    """A password (argon2 hash), lockout state and optional TOTP secret for local login."""

    __tablename__ = "fedhub_local_credentials"

    username: Mapped[str] = mapped_column(String(255), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    totp_secret: Mapped[str | None] = mapped_column(String(255), default=None)  # sealed: totp.py
    totp_enabled: Mapped[bool] = mapped_column(default=False)
    totp_last_counter: Mapped[int | None] = mapped_column(Integer, default=None)
    # an enrolment shown but not confirmed with a code yet (sealed like totp_secret)
    totp_pending_secret: Mapped[str | None] = mapped_column(String(255), default=None)
    # the tier's security.password.max_age_days counts from here
    password_changed_at: Mapped[datetime | None] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    # deleted with the credential, so a name given to someone new carries none of them
    previous_passwords: Mapped[list[PasswordHistory]] = relationship(
        cascade="all, delete-orphan", order_by="PasswordHistory.id.desc()"
    )
    recovery_codes: Mapped[list[RecoveryCode]] = relationship(cascade="all, delete-orphan")


class PasswordHistory(Base):
    """A password a user had before (argon2 hash): the tier's ``security.password.history``."""

    __tablename__ = "fedhub_password_history"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(
        ForeignKey("fedhub_local_credentials.username", ondelete="CASCADE"), index=True
    )
    password_hash: Mapped[str] = mapped_column(String(255))
    replaced_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class RecoveryCode(Base):
    """A one-time MFA recovery code; only its SHA-256 is stored (the code is random)."""

    __tablename__ = "fedhub_recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(
        ForeignKey("fedhub_local_credentials.username", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)


class Invitation(Base):
    """A one-time sign-up invitation; only the token's SHA-256 is stored."""

    __tablename__ = "fedhub_invitations"
    __table_args__ = (UniqueConstraint("token_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("fedhub_tenants.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[Role] = mapped_column(_enum(Role, "invite_role"))
    token_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    used_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    created_by: Mapped[str | None] = mapped_column(String(255))
    # sent by email (0024_invitation_mail): when, how often again, and a revocation
    created_at: Mapped[datetime | None] = mapped_column(DateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)  # the last link
    resent_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    revoked_by: Mapped[str | None] = mapped_column(String(255), default=None)

    tenant: Mapped[Tenant] = relationship()


class SignupRequest(Base):
    """A domain sign-up that is not an account yet (no membership, no credential).

    It becomes a :class:`Membership` and a :class:`LocalCredential` only when the
    address is proven (and, under ``admin_approval``, a tenant admin approves);
    until then nothing that reads memberships (login, the hub mirror, the
    services) knows the user. Only the SHA-256 of the emailed token is stored.
    """

    __tablename__ = "fedhub_signup_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(
        ForeignKey("fedhub_tenants.id", ondelete="CASCADE"), index=True
    )
    username: Mapped[str] = mapped_column(String(255), unique=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # one request per address
    password_hash: Mapped[str] = mapped_column(String(255))
    status: Mapped[SignupStatus] = mapped_column(_enum(SignupStatus, "signup_status"))
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)  # the last link
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)  # wrong passwords on confirm
    verified_at: Mapped[datetime | None] = mapped_column(DateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    tenant: Mapped[Tenant] = relationship()


class Revision(Base):
    """A counter bumped by every tenancy change, so the hub can mirror cheaply."""

    __tablename__ = "fedhub_tenancy_revision"

    id: Mapped[int] = mapped_column(primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)
