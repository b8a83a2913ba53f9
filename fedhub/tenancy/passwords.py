"""Password hashing (argon2id via argon2-cffi), the tier's password policy, and TOTP
(pyotp; secrets sealed by ``totp``).

The policy (:class:`fedhub.tiers.PasswordPolicy`) is checked wherever a password is set:
``fedhub user create`` / ``set-password``, sign-up and the hub's change-password page all
call :func:`check_password`, which names the rule a refused password breaks.
:func:`login_steps` says what a user must do after a correct password and before the
login completes (change an expired password, enrol MFA); see docs/security-policy.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from fedhub.errors import InvalidRequest
from fedhub.tenancy import totp as totp_secrets
from fedhub.tiers import PasswordPolicy, SecurityPolicy

_hasher = PasswordHasher()

MIN_PASSWORD_LENGTH = 8


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


class PasswordRefused(InvalidRequest):
    """A new password breaks the tier's password policy; the message names the rule."""

    code = "password_policy"


#: What :func:`check_password` counts as a character class, in the order messages name them.
CHARACTER_CLASSES = (
    ("lower case", str.islower),
    ("upper case", str.isupper),
    ("digits", str.isdigit),
    ("symbols", lambda c: not c.isalnum() and not c.isspace()),
)


def _classes(password: str) -> int:
    return sum(any(test(c) for c in password) for _, test in CHARACTER_CLASSES)


def check_password(
    policy: PasswordPolicy,
    password: str,
    username: str,
    email: str | None = None,
    previous_hashes: Iterable[str] = (),
) -> str:
    """Refuse a new password that breaks ``policy``, naming the rule; returns it otherwise.

    The cheap rules run first; the history check verifies one argon2 hash per remembered
    password (~50 ms each), so callers run it off the event loop.
    """
    password = password or ""
    if len(password) < policy.min_length:
        raise _refused("min_length", f"at least {policy.min_length} characters")
    if _classes(password) < policy.character_classes:
        names = ", ".join(name for name, _ in CHARACTER_CLASSES)
        raise _refused("character_classes", f"{policy.character_classes} of: {names}")
    lowered = password.lower()
    names = [n.lower() for n in (username, email, (email or "").partition("@")[0]) if n]
    if any(len(n) >= 3 and n in lowered for n in names):
        raise _refused("personal", "must not contain your user name or email")
    if policy.history and any(verify_password(h, password) for h in previous_hashes):
        raise _refused("history", f"must not be one of your last {policy.history} passwords")
    return password


def _refused(rule: str, requirement: str) -> PasswordRefused:
    return PasswordRefused(
        f"password refused: {requirement}", details={"rule": rule, "requirement": requirement}
    )


#: The steps :func:`login_steps` may ask for, in the order a user does them.
CHANGE_PASSWORD, ENROL_MFA = "change_password", "enrol_mfa"


def password_expired(policy: PasswordPolicy, changed_at: datetime | None, now: datetime) -> bool:
    """True when the tier limits a password's age and this one is older (or undated)."""
    if not policy.max_age_days:
        return False
    return changed_at is None or now - changed_at >= timedelta(days=policy.max_age_days)


def login_steps(
    policy: SecurityPolicy,
    *,
    totp_enabled: bool,
    password_changed_at: datetime | None,
    now: datetime,
) -> list[str]:
    """What a user who gave the right password must still do before the login completes."""
    steps = []
    if password_expired(policy.password, password_changed_at, now):
        steps.append(CHANGE_PASSWORD)
    if policy.mfa_required and not totp_enabled:
        steps.append(ENROL_MFA)
    return steps


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(secret: str, username: str, issuer: str = "fedhub") -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=issuer)


def verify_totp(
    secret: str, code: str, *, last_counter: int | None = None, now=None, box=None
) -> int | None:
    """Check a TOTP code (±1 step of clock drift) and refuse replays.

    ``secret`` is the value stored in ``fedhub_local_credentials``: sealed
    (``enc:v1:...``, opened with ``box``, by default the process's
    :func:`fedhub.tenancy.totp.default_box`) or, stored before encryption, clear.
    Returns the accepted time-step counter, to be stored so the same code
    cannot be used twice, or None when the code is wrong or replayed.
    """
    code = (code or "").strip().replace(" ", "")
    if not code.isdigit():
        return None
    totp = pyotp.TOTP(totp_secrets.reveal(secret, box))
    import time

    t = now if now is not None else time.time()
    current = int(t // totp.interval)
    for counter in (current, current - 1, current + 1):
        if last_counter is not None and counter <= last_counter:
            continue
        if pyotp.utils.strings_equal(totp.generate_otp(counter), code):
            return counter
    return None
