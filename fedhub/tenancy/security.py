"""A user's login security under their tier's policy: passwords, MFA enrolment, recovery
codes, and their tenant's IP allowlist (part of :class:`fedhub.tenancy.store.TenantStore`,
as ``store.security``).

The rules themselves are pure functions elsewhere (:func:`fedhub.tenancy.passwords.check_password`,
:func:`fedhub.tenancy.passwords.login_steps`, :mod:`fedhub.tenancy.allowlist`); this class
reads what they need from the database and writes what they decide. Argon2 is slow on
purpose (~50 ms a hash), and in the hub the store shares the hub's one database session,
so a password change is three calls: :meth:`password_context` (database),
:meth:`PasswordContext.check_and_hash` (a thread) and :meth:`store_password` (database).
:meth:`change_password` chains them for the CLI.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from fedhub import events
from fedhub.db.base import utcnow
from fedhub.errors import Conflict, Forbidden, InvalidRequest, NotFound
from fedhub.tenancy import allowlist, passwords
from fedhub.tenancy.models import LocalCredential, Membership, PasswordHistory, RecoveryCode
from fedhub.tiers import SecurityPolicy

#: Recovery codes handed out at once; each works once in place of a TOTP code.
RECOVERY_CODES = 10
#: The most previous passwords kept per user (the model's upper bound for ``history``).
HISTORY_KEPT = 24


def recovery_code_hash(code: str) -> str:
    """Codes are random (50 bits), so a plain SHA-256 is enough and allows a lookup."""
    normal = code.strip().lower().replace("-", "").replace(" ", "")
    return hashlib.sha256(normal.encode()).hexdigest()


def new_recovery_code() -> str:
    raw = "".join(secrets.choice("abcdefghjkmnpqrstuvwxyz23456789") for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


@dataclass(frozen=True)
class PasswordContext:
    """Everything :func:`check_password` needs about one user, read in one transaction."""

    username: str
    email: str | None
    policy: SecurityPolicy
    previous_hashes: tuple[str, ...]  # the current password first

    def check_and_hash(self, password: str) -> str:
        """The new password's hash, if the policy accepts it (slow: run it in a thread)."""
        passwords.check_password(
            self.policy.password, password, self.username, self.email, self.previous_hashes
        )
        return passwords.hash_password(password)


class AccountSecurity:
    """The security-policy operations of one :class:`TenantStore`."""

    def __init__(self, store):
        self.store = store  # the TenantStore (not imported: the store imports this module)

    # -- the policy ------------------------------------------------------------------

    def policy(self, s: Session, membership: Membership) -> SecurityPolicy:
        """The user's tier's policy; platform admins (no tenant) get the defaults."""
        if membership.tenant is None:
            return SecurityPolicy()
        return self.store.effective_tier(membership.tenant).security

    def policy_of(self, username: str) -> SecurityPolicy:
        with self.store.session() as s:
            return self.policy(s, self.store._membership(s, username))

    def login_steps(self, username: str, now: datetime | None = None) -> list[str]:
        """What ``username`` must do before a login with the right password completes."""
        with self.store.session() as s:
            policy = self.policy(s, self.store._membership(s, username))
            cred = s.get(LocalCredential, username)
            if cred is None:
                return []
            return passwords.login_steps(
                policy,
                totp_enabled=cred.totp_enabled,
                password_changed_at=cred.password_changed_at,
                now=now or utcnow(),
            )

    # -- passwords -------------------------------------------------------------------

    def password_context(self, username: str, policy: SecurityPolicy | None = None):
        """What a new password of ``username`` is checked against (``policy``: instead of
        the user's own, e.g. for a sign-up into a tenant)."""
        with self.store.session() as s:
            m = self.store._membership(s, username)
            policy = policy or self.policy(s, m)
            cred = s.get(LocalCredential, username)
            hashes: list[str] = []
            if cred is not None and policy.password.history:
                hashes.append(cred.password_hash)
                keep = policy.password.history - 1
                hashes += [h.password_hash for h in cred.previous_passwords[:keep]]
            return PasswordContext(username, m.email, policy, tuple(hashes))

    def check_new_account(
        self, tenant: str | None, username: str, email: str | None, password: str
    ) -> None:
        """Refuse the first password of a new account in ``tenant`` that breaks its policy."""
        policy = SecurityPolicy()
        if tenant is not None:
            with self.store.session() as s:
                policy = self.store.effective_tier(self.store._tenant(s, tenant)).security
        passwords.check_password(policy.password, password, username, email)

    def store_password(self, username: str, new_hash: str, *, actor: str | None = None) -> None:
        """Make ``new_hash`` the password; the old one joins the history, the age restarts."""
        with self.store.session() as s:
            m = self.store._membership(s, username)
            cred = s.get(LocalCredential, username)
            if cred is None:
                s.add(LocalCredential(username=username, password_hash=new_hash))
            else:
                cred.previous_passwords.insert(0, PasswordHistory(password_hash=cred.password_hash))
                del cred.previous_passwords[HISTORY_KEPT:]
                cred.password_hash = new_hash
                cred.password_changed_at = utcnow()
                cred.failed_attempts = 0
                cred.locked_until = None
            tenant = m.tenant.slug if m.tenant else None
        events.emit(
            "auth.password_changed", tenant=tenant, actor=actor or username, target=username
        )

    def change_password(self, username: str, password: str, *, actor: str | None = None) -> None:
        """Check ``password`` against the user's policy and history, then set it."""
        new_hash = self.password_context(username).check_and_hash(password)
        self.store_password(username, new_hash, actor=actor)

    # -- MFA enrolment ---------------------------------------------------------------

    def start_enrolment(self, username: str) -> str:
        """A new TOTP secret to show (QR code and text); it replaces the current one only
        once :meth:`confirm_enrolment` has seen a code from it."""
        secret = passwords.new_totp_secret()
        sealed = self.store.totp_box.seal(secret)
        with self.store.session() as s:
            self._credential(s, username).totp_pending_secret = sealed
        return secret

    def pending_secret(self, username: str) -> str | None:
        """The secret of the enrolment in progress, if there is one."""
        with self.store.session() as s:
            cred = s.get(LocalCredential, username)
            sealed = cred.totp_pending_secret if cred is not None else None
        return self.store.totp_box.reveal(sealed) if sealed else None

    def confirm_enrolment(self, username: str, code: str) -> list[str]:
        """Turn on the pending secret if ``code`` comes from it; returns new recovery codes."""
        with self.store.session() as s:
            cred = self._credential(s, username)
            if not cred.totp_pending_secret:
                raise InvalidRequest("no enrolment is in progress: start again")
            counter = passwords.verify_totp(cred.totp_pending_secret, code, box=self.store.totp_box)
            if counter is None:
                raise InvalidRequest(
                    "that code does not match: check the authenticator app's clock and "
                    "enter the code it shows now"
                )
            cred.totp_secret, cred.totp_pending_secret = cred.totp_pending_secret, None
            cred.totp_enabled = True
            cred.totp_last_counter = counter
            codes = self._replace_recovery_codes(s, cred)
            tenant = self._tenant_of(s, username)
        events.emit("auth.totp_enrolled", tenant=tenant, actor=username, target=username)
        return codes

    def regenerate_recovery_codes(self, username: str) -> list[str]:
        """New recovery codes (the old ones stop working); needs MFA turned on."""
        with self.store.session() as s:
            cred = self._credential(s, username)
            if not cred.totp_enabled:
                raise InvalidRequest("turn on two-factor login first")
            codes = self._replace_recovery_codes(s, cred)
            tenant = self._tenant_of(s, username)
        events.emit("auth.recovery_codes_replaced", tenant=tenant, actor=username, target=username)
        return codes

    def unused_recovery_codes(self, username: str) -> int:
        with self.store.session() as s:
            return len(
                s.scalars(
                    select(RecoveryCode.id).where(
                        RecoveryCode.username == username, RecoveryCode.used_at.is_(None)
                    )
                ).all()
            )

    @staticmethod
    def redeem_recovery_code(s: Session, username: str, code: str) -> bool:
        """Spend one of ``username``'s recovery codes (inside the login's transaction)."""
        if not code or len(code) > 32:
            return False
        spent = s.execute(
            update(RecoveryCode)
            .where(
                RecoveryCode.username == username,
                RecoveryCode.code_hash == recovery_code_hash(code),
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=utcnow())
        )
        return spent.rowcount == 1

    def _replace_recovery_codes(self, s: Session, cred: LocalCredential) -> list[str]:
        s.execute(delete(RecoveryCode).where(RecoveryCode.username == cred.username))
        codes = [new_recovery_code() for _ in range(RECOVERY_CODES)]
        s.add_all(
            RecoveryCode(username=cred.username, code_hash=recovery_code_hash(c)) for c in codes
        )
        return codes

    # -- the tenant's IP allowlist ---------------------------------------------------

    def allowlist(self, slug: str) -> list[str]:
        with self.store.session() as s:
            return list(self.store._tenant(s, slug).ip_allowlist or [])

    def set_allowlist(
        self,
        slug: str,
        cidrs: list[str],
        *,
        actor: str | None = None,
        keep_address: str | None = None,
    ) -> list[str]:
        """Store ``cidrs`` (validated, canonical); refused unless the tier allows allowlists,
        and (409) when the list leaves out ``keep_address``, the address of the tenant admin
        setting it, who would lock themselves out.

        An empty list is always accepted: it lifts the restriction (e.g. after a downgrade).
        """
        networks = allowlist.normalize(cidrs)
        with self.store.session() as s:
            tenant = self.store._tenant(s, slug)
            if networks and not self.store.effective_tier(tenant).security.ip_allowlist:
                raise Forbidden(
                    f"IP allowlists are not part of {tenant.name}'s {tenant.tier} tier",
                    details={"limit": "security.ip_allowlist", "tier": tenant.tier},
                )
            if keep_address is not None and not allowlist.address_allowed(networks, keep_address):
                raise Conflict(
                    f"this list leaves out your own address {keep_address}: you would lock"
                    " yourself out of the hub; add it (or a network containing it)",
                    details={"address": keep_address},
                )
            old, tenant.ip_allowlist = list(tenant.ip_allowlist or []), networks
        events.emit(
            "tenant.ip_allowlist_changed",
            tenant=slug,
            actor=actor,
            target=slug,
            details={"from": old, "to": networks},
        )
        return networks

    def check_login_address(self, username: str, address: str | None) -> None:
        """Refuse (:class:`allowlist.AddressNotAllowed`) a login from outside the user's
        tenant's allowlist. Platform admins belong to no tenant and are not restricted."""
        with self.store.session() as s:
            m = s.scalar(select(Membership).where(Membership.username == username))
            tenant = m.tenant if m is not None else None
            if tenant is None:
                return
            cidrs, slug = list(tenant.ip_allowlist or []), tenant.slug
        allowlist.check_login_address(slug, cidrs, address)

    # -- helpers ---------------------------------------------------------------------

    def _credential(self, s: Session, username: str) -> LocalCredential:
        cred = s.get(LocalCredential, username)
        if cred is None:
            raise NotFound(
                f"{username} has no local password (single sign-on users set up MFA"
                " with their identity provider)"
            )
        return cred

    def _tenant_of(self, s: Session, username: str) -> str | None:
        m = s.scalar(select(Membership).where(Membership.username == username))
        return m.tenant.slug if m is not None and m.tenant is not None else None
